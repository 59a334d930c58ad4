/**
 * bench/lib/cpu.ts: "requests per proxy core" divides by the CPU time of the proxy's whole
 * process tree (a Manifold primary and its workers), so a live child's time must be counted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { cpuAvailable, treeCpuSeconds } from '../../bench/lib/cpu.ts';

test('a process tree’s CPU seconds include its live children', { skip: !cpuAvailable() && 'no /proc here' }, async () => {
  // The child spins until it has used 0.3 s of CPU, says so, then waits (alive) for its stdin to close.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const t0 = process.cpuUsage();
       for (;;) { const u = process.cpuUsage(t0); if (u.user + u.system >= 300000) break; }
       process.stdout.write('spun\\n');
       process.stdin.resume();
       process.stdin.on('end', () => process.exit(0));`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await once(child.stdout!, 'data');
  const own = process.cpuUsage();
  const ownSeconds = (own.user + own.system) / 1e6;
  const tree = treeCpuSeconds(process.pid);
  const childOnly = treeCpuSeconds(child.pid!);
  child.stdin!.end();
  await once(child, 'exit');
  assert.ok(childOnly >= 0.29, `the child's own ${childOnly} s`);
  // Clock ticks are 10 ms: allow two of rounding on each side.
  assert.ok(tree >= ownSeconds + childOnly - 0.02, `tree ${tree} s < own ${ownSeconds} s + child ${childOnly} s`);
  assert.ok(Number.isNaN(treeCpuSeconds(2 ** 22 + 12345)), 'an unknown pid has no CPU time');
});
