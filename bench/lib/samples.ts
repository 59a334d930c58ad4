/**
 * Measurements with the contestant's own CPU time over them, and what the proxy and TLS
 * suites report of a list of them: medians over rounds, the spread of req/s, and ratios as the
 * median of the ratios measured within each round (so slow drift in the machine's load hits
 * both sides of a ratio alike).
 */
import { treeCpuSeconds } from './cpu.ts';
import type { Measurement } from './load.ts';
import { fmtFixed, fmtInt, median, round } from './report.ts';

/** A measurement with the contestant's own CPU time over it. */
export interface Sample extends Measurement {
  /** CPU seconds (user + system) the proxy process tree used; NaN without a process. */
  cpu: number;
  /** 200 answers per CPU second of the proxy: requests per second per proxy core. */
  perCore: number;
}

/**
 * Runs `load` with the CPU time of the process tree of `pid` read just before and just after
 * it, so answers ÷ CPU seconds is per proxy core.
 */
export async function withCpu(pid: number | undefined, load: () => Promise<Measurement>): Promise<Sample> {
  const before = pid === undefined ? Number.NaN : treeCpuSeconds(pid);
  const m = await load();
  const cpu = pid === undefined ? Number.NaN : treeCpuSeconds(pid) - before;
  return { ...m, cpu, perCore: cpu > 0 ? m.ok / cpu : Number.NaN };
}

export interface Summarised {
  rps: number;
  perCore: number;
  cpu: number;
  p50: number;
  p99: number;
  minRps: number;
  maxRps: number;
  rounds: number;
  problems: string[];
}

/** Medians over the rounds; `dead` (the process died) and no measurement at all are problems. */
export function summarise(ms: readonly Sample[], dead: string | null): Summarised {
  const problems = [...new Set(ms.flatMap((m) => m.problems))];
  if (dead !== null) problems.push('process died during the run');
  if (ms.length === 0) problems.push('not measured');
  const rps = ms.map((m) => m.rps);
  return {
    rps: median(rps),
    perCore: median(ms.map((m) => m.perCore)),
    cpu: median(ms.map((m) => m.cpu)),
    p50: median(ms.map((m) => m.p50)),
    p99: median(ms.map((m) => m.p99)),
    minRps: Math.min(...rps),
    maxRps: Math.max(...rps),
    rounds: ms.length,
    problems,
  };
}

/**
 * A results table's cells for `s`: req/s, min–max over rounds (empty for a single round), per
 * core (empty without a process of its own), p50 ms, p99 ms.
 */
export function summaryCells(s: Summarised): string[] {
  return [
    fmtInt(s.rps),
    s.rounds > 1 ? `${fmtInt(s.minRps)}–${fmtInt(s.maxRps)}` : '',
    Number.isFinite(s.perCore) ? fmtInt(s.perCore) : '',
    fmtFixed(s.p50, 2),
    fmtFixed(s.p99, 2),
  ];
}

/** A results table's status cell: "ok", or what makes the result invalid. */
export function statusCell(s: Summarised): string {
  return s.problems.length === 0 ? 'ok' : `INVALID: ${s.problems.join(', ')}`;
}

/**
 * Judges a per-core ratio against its target, when it has one and was measured: records the
 * verdict in `met` under `name` and returns the mark for its cell (" (met)", " (below)" or "").
 */
export function judge(met: Record<string, boolean>, name: string, perCore: number, target: number | undefined): string {
  if (target === undefined || !Number.isFinite(perCore)) return '';
  met[name] = perCore >= target;
  return met[name] ? ' (met)' : ' (below)';
}

export type Figure = 'rps' | 'perCore' | 'p99';

/** Median over rounds of num/den of `figure` measured in the same round. */
export function pairedRatio(num: readonly Sample[], den: readonly Sample[], figure: Figure): number {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(num.length, den.length); i++) ratios.push(num[i][figure] / den[i][figure]);
  return median(ratios);
}

/** The JSON summary of one contestant under one load. */
function sampleJson(s: Summarised, list: readonly Sample[]): Record<string, unknown> {
  return {
    rps: round(s.rps, 0),
    per_core: round(s.perCore, 0),
    cpu_s: round(s.cpu, 2),
    p50_ms: round(s.p50, 3),
    p99_ms: round(s.p99, 3),
    rounds_rps: list.map((m) => round(m.rps, 0)),
    rounds_per_core: list.map((m) => round(m.perCore, 0)),
    valid: s.problems.length === 0,
    ...(s.problems.length > 0 ? { problems: s.problems } : {}),
  };
}

/** The JSON summary of every contestant under every load: `{ [contestant]: { [load]: sampleJson } }`. */
export function contestantsJson<L extends { id: string }>(
  ids: readonly string[],
  loads: readonly L[],
  of: (id: string, load: L) => [Summarised, readonly Sample[]],
): Record<string, Record<string, unknown>> {
  const json: Record<string, Record<string, unknown>> = {};
  for (const id of ids) {
    json[id] = {};
    for (const load of loads) json[id][load.id] = sampleJson(...of(id, load));
  }
  return json;
}
