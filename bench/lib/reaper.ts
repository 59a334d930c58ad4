/**
 * The reaper: a tiny process that outlives a bench killed with SIGKILL (which runs no exit
 * handler) and stops the children that have no IPC channel of their own (Manifold, nginx).
 * The bench sends `{add: pid}` / `{forget: pid}` / `{remove: dir}`; when the channel closes,
 * for whatever reason, every pid still listed gets SIGTERM, then SIGKILL after 3 s, and the
 * listed directories (the run's temp dir) are removed.
 */
import { rmSync } from 'node:fs';

const pids = new Set<number>();
const dirs = new Set<string>();

process.on('message', (m: { add?: number; forget?: number; remove?: string }) => {
  if (typeof m.add === 'number') pids.add(m.add);
  if (typeof m.forget === 'number') pids.delete(m.forget);
  if (typeof m.remove === 'string') dirs.add(m.remove);
});

function exit(): never {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

function signal(sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      pids.delete(pid); // already gone
    }
  }
}

process.on('disconnect', () => {
  signal('SIGTERM');
  if (pids.size === 0) exit();
  setTimeout(() => {
    signal('SIGKILL');
    exit();
  }, 3000);
});
// Ctrl-C reaches the whole process group: the bench handles it, the reaper waits for the channel.
process.on('SIGINT', () => {});
