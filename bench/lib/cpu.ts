/**
 * CPU time of a process tree from /proc (Linux): utime + stime of the process and of every
 * live descendant (a Manifold primary and its workers, nginx's master and workers), read
 * before and after a measured window. Requests ÷ those CPU seconds is "requests per second per
 * proxy core" (DESIGN.md, "Performance targets"): unlike req/s it does not depend on how much
 * of the machine the load generator and the upstream left to the proxy.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, nearly always 100). */
const TICKS = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

interface Stat {
  ppid: number;
  /** utime + stime, in ticks. */
  ticks: number;
}

/** Fields of /proc/<pid>/stat after the command name, which may itself hold spaces and ')'. */
function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // gone, or not Linux
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
}

/** Whether CPU times can be read here (a Linux /proc). */
export function cpuAvailable(): boolean {
  return readStat(process.pid) !== null;
}

/** CPU seconds used so far by `pid` and every live descendant; NaN when `pid` is unreadable. */
export function treeCpuSeconds(pid: number): number {
  const root = readStat(pid);
  if (root === null) return Number.NaN;
  const children = new Map<number, number[]>();
  const stats = new Map<number, Stat>();
  for (const name of readdirSync('/proc')) {
    const p = Number(name);
    if (!Number.isInteger(p) || p === pid) continue;
    const s = readStat(p);
    if (s === null) continue;
    stats.set(p, s);
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [p]);
    else list.push(p);
  }
  let ticks = root.ticks;
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const p = queue.pop()!;
    ticks += stats.get(p)!.ticks;
    queue.push(...(children.get(p) ?? []));
  }
  return ticks / TICKS;
}
