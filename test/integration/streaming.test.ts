/**
 * Issue #2 point 4: a 1 GiB upload and a 1 GiB download pass through the gateway in constant
 * memory. The gateway runs as its own process (the real CLI) so its peak resident memory
 * (VmHWM) can be read from /proc and compared with the body size.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { type Cli, cliPort, spawnCli, startUpstream, until, type Upstream } from '../helpers/index.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/**
 * Most a 1 GiB body may add to the gateway's peak resident memory over what it had settled at
 * before the first body: far below the body size, so memory that grew with the body would blow
 * well past it. What streaming leaves is garbage, not retention: each socket read is a new
 * 64 KiB buffer, and V8 lets about 64 MiB of such external memory pile up before it collects,
 * plus the growth of its young generation (measured here: +80–105 MiB on a 1 GiB body with
 * Node's defaults, +25–40 MiB with `--max-semi-space-size=1`). The gateway's absolute size is
 * not the point (it depends on the machine and on what the process loaded), so the bound is on
 * the growth.
 */
const MAX_GROWTH = 160 * MiB;

function zeros(total: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(CHUNK.length, total - sent);
      sent += n;
      this.push(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    },
  });
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Fetches `path` from the gateway and throws the body away. */
function drain(port: number, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST' }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end('warm');
  });
}

describe('streaming large bodies', { timeout: 300_000 }, () => {
  let up: Upstream;
  let cli: Cli;
  let port: number;
  let baseline: number;
  /** The gateway's peak resident memory is within MAX_GROWTH of its baseline. */
  function assertBounded(): void {
    const growth = peakRss(cli.child.pid!) - baseline;
    assert.ok(growth < MAX_GROWTH, `gateway peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  }
  /** Sends 1 GiB of zeros to /upload through the gateway; resolves with the answer's text. */
  function upload(method: string, headers: Record<string, string> = {}): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/upload', method, headers }, (res) => {
        let out = '';
        res.on('data', (c) => (out += c));
        res.on('end', () => resolve(out));
      });
      req.on('error', reject);
      zeros(GiB).pipe(req);
    });
  }
  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/download') {
        res.writeHead(200, { 'content-length': String(GiB) });
        zeros(GiB).pipe(res);
        return;
      }
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
    });
    const file = join(tmpdir(), `manifold-stream-${process.pid}.yaml`);
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 0 }
workers: 0
log: { level: warn }
pools:
  up: { targets: [${up.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: up }, timeout: 0 }
`,
    );
    cli = spawnCli(['--config', file, '--log-level', 'info']);
    port = await cliPort(cli);
    // The baseline is the gateway as it serves: started, and one request through it.
    await drain(port, '/upload');
    baseline = peakRss(cli.child.pid!);
  });
  after(async () => {
    cli.kill();
    await cli.exited;
    await up.close();
  });

  test('1 GiB upload streams through in bounded memory', async () => {
    const body = await upload('POST', { 'content-length': String(GiB) });
    assert.equal(body, String(GiB));
    assertBounded();
  });

  test('1 GiB chunked upload (no Content-Length) streams through too', async () => {
    const body = await upload('PUT');
    assert.equal(body, String(GiB));
    assertBounded();
  });

  test('1 GiB download streams through in bounded memory', async () => {
    const received = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/download' }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(received, GiB);
    assertBounded();
  });

  test('a slow reader holds the target back instead of filling memory', async () => {
    // Read 16 MiB of the 1 GiB download, then stop reading for a while: with backpressure
    // the target is paused and the gateway's memory stays flat.
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/download' }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n >= 16 * 1024 ** 2) {
            res.pause();
            // Give the target time to push, then check nothing piled up in the gateway.
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 1500);
          }
        });
      });
      req.on('error', () => {});
      req.on('close', () => resolve());
      req.end();
      setTimeout(() => reject(new Error('no data')), 60_000).unref();
    });
    assertBounded();
  });
});

describe('a deferred delivery with a 1 GiB answer', { timeout: 300_000 }, () => {
  let up: Upstream;
  let cli: Cli;
  let sent = 0;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': String(GiB) });
      const body = zeros(GiB);
      body.on('data', (c: Buffer) => (sent += c.length));
      body.pipe(res);
    });
  });
  after(async () => {
    cli?.kill();
    await cli?.exited;
    await up.close();
  });

  test('is drained by the deliverer in bounded memory', async (t) => {
    const dir = join(tmpdir(), `manifold-stream-defer-${process.pid}`);
    const file = `${dir}.yaml`;
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 0 }
workers: 0
queue: { driver: sqlite, path: ${join(dir, 'queue.db')} }
pools:
  up: { targets: [${up.url}] }
routes:
  - { match: { path: /hooks }, defer: { pool: up }, timeout: 0 }
  - { match: { path: /warm }, respond: { status: 200, body: ok } }
`,
    );
    cli = spawnCli(['--config', file, '--log-level', 'debug']);
    const port = await cliPort(cli);
    await drain(port, '/warm');
    const baseline = peakRss(cli.child.pid!);
    const accepted = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/hooks', method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end('{"event":"big"}');
    });
    assert.equal(accepted, 202);
    // The job completes only once the deliverer has read the whole answer to its end.
    await until(() => cli.logs().find((l) => l.msg === 'delivered'), 'delivery', 240_000);
    assert.equal(sent, GiB);
    const growth = peakRss(cli.child.pid!) - baseline;
    t.diagnostic(`peak RSS growth ${(growth / MiB).toFixed(1)} MiB`);
    assert.ok(growth < MAX_GROWTH, `gateway peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  });
});
