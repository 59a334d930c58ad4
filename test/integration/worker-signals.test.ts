/**
 * Signals sent to the whole process group (systemd's default KillMode=control-group, Ctrl-C
 * in a terminal) are the primary's to act on: a worker ignores them from its first moment
 * (src/cluster/worker-entry.ts), so even one still loading its modules is neither killed nor
 * replaced, and the primary's graceful stop is the one that happens.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, NODE, ROOT, scratch } from '../helpers/index.ts';

/** The pids of `pid`'s children, from ps. */
function childrenOf(pid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
}

test('SIGTERM to the process group while workers are still loading: one graceful stop, no worker killed by it', async () => {
  const port = await freePort();
  const file = scratch('manifold-signals-').configFile(`workers: 2
admin: { enabled: false }
listen: { host: 127.0.0.1, port: ${port} }
log: { level: info }
routes: []
`);
  // Its own process group, as a service manager starts it.
  const child = spawn(NODE, [`${ROOT}src/main.ts`, '--config', file], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    // The moment the first worker process exists (it is still loading its modules), the group gets SIGTERM.
    for (let i = 0; i < 2000 && childrenOf(child.pid!).length === 0; i++) await sleep(5);
    assert.ok(childrenOf(child.pid!).length > 0, 'a worker was forked');
    process.kill(-child.pid!, 'SIGTERM');
    const [code, signal] = await exited;
    assert.deepEqual([code, signal], [0, null], out);
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; signal?: string });
    assert.equal(lines.filter((l) => l.msg === 'worker died; replacing it').length, 0, out);
    // Stopped the one way or the other: during the start, or after it, gracefully.
    assert.ok(lines.some((l) => l.msg === 'stopped' || l.msg === 'stopped during start'), out);
  } finally {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
  }
});
