/**
 * Issue #2 points 2 and 7: the real CLI — workers forked per --workers, a dead worker
 * replaced, graceful drain on SIGTERM with a request in flight, validate, help and version.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cliPort, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

let seq = 0;
function configFile(text: string): string {
  const file = join(tmpdir(), `manifold-proc-${process.pid}-${seq++}.yaml`);
  writeFileSync(file, text);
  return file;
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

describe('processes', { timeout: 120_000 }, () => {
  let up: Upstream;
  const held: Array<() => void> = [];
  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/hold') {
        res.writeHead(200);
        res.write('started;');
        held.push(() => res.end('finished'));
        return;
      }
      res.end(`pid-agnostic ok`);
    });
  });
  after(() => up.close());

  const yaml = (extra = '') => `listen: { host: 127.0.0.1, port: 0 }
pools:
  up: { targets: [${up.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: up } }
${extra}`;

  test('--workers 2 forks two workers; a killed worker is replaced and traffic keeps flowing', async () => {
    // Port 0 cannot be shared by cluster workers predictably, so pick a free one first.
    const probe = spawnCli(['--config', configFile(yaml()), '--workers', '0']);
    const port = await cliPort(probe);
    probe.kill();
    await probe.exited;
    const cli = spawnCli(['--config', configFile(yaml()), '--workers', '2', '--port', String(port)]);
    try {
      assert.equal(await cliPort(cli), port);
      const workers: number[] = await until(() => {
        const pids = childPids(cli.child.pid!);
        return pids.length === 2 ? pids : null;
      }, 'two workers');
      assert.equal((await send(`http://127.0.0.1:${port}/x`)).status, 200);
      process.kill(workers[0], 'SIGKILL');
      await until(() => {
        const now = childPids(cli.child.pid!);
        return now.length === 2 && !now.includes(workers[0]);
      }, 'a replacement worker');
      await until(
        async () => (await send(`http://127.0.0.1:${port}/x`)).status === 200,
        'traffic after replacement',
      );
      assert.ok(cli.logs().some((l) => l.msg === 'worker died; replacing it'));
    } finally {
      cli.kill();
      assert.equal(await cli.exited, 0);
    }
  });

  for (const workers of ['0', '2']) {
    test(`SIGTERM drains: in-flight request completes, new connections refused, exit 0 (--workers ${workers})`, async () => {
      const probe = spawnCli(['--config', configFile(yaml()), '--workers', '0']);
      const port = await cliPort(probe);
      probe.kill();
      await probe.exited;
      const cli = spawnCli([
        '--config',
        configFile(yaml('shutdown: { grace: 20s }')),
        '--workers',
        workers,
        '--port',
        String(port),
      ]);
      await cliPort(cli);
      const before = held.length;
      const body = new Promise<{ status: number; text: string; connection: string | undefined }>(
        (resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path: '/hold' }, (res) => {
            let text = '';
            res.on('data', (c) => (text += c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, text, connection: res.headers.connection }),
            );
            res.on('error', reject);
          });
          req.on('error', reject);
          req.end();
        },
      );
      await until(() => held.length > before, 'request in flight at the target');
      cli.kill('SIGTERM');
      await until(() => cli.logs().some((l) => l.msg === 'draining'), 'draining');
      // The listener is closed: a new connection is refused while the old request runs. (With
      // SO_REUSEPORT, a connection the kernel queued on a worker's socket in the instant it
      // closed is reset rather than refused; either way it is never served nor left hanging.)
      await until(
        () =>
          send(`http://127.0.0.1:${port}/x`).then(
            () => false,
            (e) => (e as NodeJS.ErrnoException).code === 'ECONNREFUSED',
          ),
        'new connections refused',
      );
      assert.equal(cli.child.exitCode, null, 'still running while a request is in flight');
      held[before]();
      const r = await body;
      assert.equal(r.status, 200);
      assert.equal(r.text, 'started;finished');
      assert.equal(await cli.exited, 0);
    });
  }

  test('the grace period ends a request that does not finish', async () => {
    const cli = spawnCli(['--config', configFile(yaml('shutdown: { grace: 300ms }')), '--workers', '0']);
    const port = await cliPort(cli);
    const before = held.length;
    const cut = new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/hold' }, (res) => {
        res.resume();
        res.on('end', () => resolve(false));
        res.on('error', () => resolve(true));
        res.on('close', () => resolve(!res.complete));
      });
      req.on('error', () => resolve(true));
      req.end();
    });
    await until(() => held.length > before, 'request in flight');
    cli.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
    assert.equal(await cut, true);
    held[before]();
  });
});

describe('cli', () => {
  test('--help and --version', async () => {
    const help = spawnCli(['--help']);
    assert.equal(await help.exited, 0);
    assert.match(help.stdout, /Usage:/);
    assert.match(help.stdout, /--workers/);
    const version = spawnCli(['--version']);
    assert.equal(await version.exited, 0);
    assert.match(version.stdout, /^manifold \d+\.\d+\.\d+/);
  });

  test('unknown flags and a missing config are refused with usage, exit 2', async () => {
    const bad = spawnCli(['--nope']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr, /Unknown option '--nope'/);
    const none = spawnCli([], { MANIFOLD_CONFIG: '' });
    assert.equal(await none.exited, 2);
    assert.match(none.stderr, /no config file/);
  });

  test('validate prints every problem with file, line and key path, exit 1', async () => {
    const file = configFile(`pools:
  api: { targets: [http://127.0.0.1:1] }
routes:
  - match: { path: /a }
    proxy: { pool: api }
  - match: { path: /b, colour: red }
    proxy: { pool: api }
    timeout: soon
`);
    const v = spawnCli(['validate', '--config', file]);
    assert.equal(await v.exited, 1);
    assert.match(v.stderr, new RegExp(`${file}:6: routes\\[1\\]\\.match\\.colour: unknown key`));
    assert.match(v.stderr, new RegExp(`${file}:8: routes\\[1\\]\\.timeout: must be a duration`));
    assert.match(v.stderr, /2 config problems/);
    const unknownPool = configFile(`pools:
  api: { targets: [http://127.0.0.1:1] }
routes:
  - { match: { path: /a }, proxy: { pool: api } }
  - { match: { path: /b }, proxy: { pool: api } }
  - { match: { path: /c }, proxy: { pool: apii } }
`);
    const u = spawnCli(['validate', '--config', unknownPool]);
    assert.equal(await u.exited, 1);
    assert.match(u.stderr, /routes\[2\]\.proxy\.pool: unknown pool "apii" \(pools: api\)/);
    const good = spawnCli([
      'validate',
      '--config',
      configFile('routes: [{ match: { path: /x }, respond: { body: hi } }]'),
    ]);
    assert.equal(await good.exited, 0);
    assert.match(good.stdout, /ok \(1 routes, 0 pools\)/);
  });

  test('flags override env, env overrides the file, ${VAR} is interpolated', async () => {
    const file = configFile(`listen: { host: 127.0.0.1, port: 1 }
workers: 0
routes:
  - match: { path: /x }
    respond: { body: "\${GREETING:-hello} from \${WHO}" }
`);
    const cli = spawnCli(['--config', file, '--port', '0'], {
      MANIFOLD_LISTEN__PORT: '2',
      MANIFOLD_LOG__LEVEL: 'debug',
      WHO: 'env',
    });
    try {
      const port = await cliPort(cli);
      assert.notEqual(port, 2, 'the flag wins over the env');
      assert.equal((await send(`http://127.0.0.1:${port}/x`)).text, 'hello from env');
    } finally {
      cli.kill();
      await cli.exited;
    }
    const bad = spawnCli(['validate', '--config', file], { MANIFOLD_LISTEN__PORT: 'high', WHO: 'x' });
    assert.equal(await bad.exited, 1);
    assert.match(bad.stderr, /env MANIFOLD_LISTEN__PORT: listen\.port: must be integer/);
    const missing = spawnCli(['validate', '--config', file], { WHO: '' });
    assert.equal(await missing.exited, 1);
    assert.match(missing.stderr, /routes\[0\]\.respond\.body: environment variable \$\{WHO\} is not set/);
  });
});
