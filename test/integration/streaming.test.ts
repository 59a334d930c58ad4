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
import { type Cli, cliPort, spawnCli, startUpstream, type Upstream } from '../helpers/index.ts';

const GiB = 1024 ** 3;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/** Far below the body size: memory that grew with the body would blow well past it. */
const MAX_PEAK_RSS = 256 * 1024 ** 2;

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

describe('streaming large bodies', { timeout: 300_000 }, () => {
  let up: Upstream;
  let cli: Cli;
  let port: number;
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
  });
  after(async () => {
    cli.kill();
    await cli.exited;
    await up.close();
  });

  test('1 GiB upload streams through in bounded memory', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/upload',
          method: 'POST',
          headers: { 'content-length': String(GiB) },
        },
        (res) => {
          let out = '';
          res.on('data', (c) => (out += c));
          res.on('end', () => resolve(out));
        },
      );
      req.on('error', reject);
      zeros(GiB).pipe(req);
    });
    assert.equal(body, String(GiB));
    const peak = peakRss(cli.child.pid!);
    assert.ok(peak < MAX_PEAK_RSS, `gateway peak RSS ${peak} bytes`);
  });

  test('1 GiB chunked upload (no Content-Length) streams through too', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/upload', method: 'PUT' }, (res) => {
        let out = '';
        res.on('data', (c) => (out += c));
        res.on('end', () => resolve(out));
      });
      req.on('error', reject);
      zeros(GiB).pipe(req);
    });
    assert.equal(body, String(GiB));
    assert.ok(peakRss(cli.child.pid!) < MAX_PEAK_RSS);
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
    const peak = peakRss(cli.child.pid!);
    assert.ok(peak < MAX_PEAK_RSS, `gateway peak RSS ${peak} bytes`);
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
    assert.ok(peakRss(cli.child.pid!) < MAX_PEAK_RSS);
  });
});
