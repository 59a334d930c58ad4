/** Small statistics, plain-text table and progress-line helpers shared by the suites. */
import { availableParallelism, loadavg } from 'node:os';

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

export function fmtFixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '—';
}

/** Rounds for the JSON summary (null for NaN, which JSON cannot carry). */
export function round(n: number, digits: number): number | null {
  if (!Number.isFinite(n)) return null;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export type Align = 'left' | 'right';

/** A plain-text table: the first row is the header, columns padded to their widest cell. */
export function table(rows: readonly (readonly string[])[], align: readonly Align[]): string {
  const widths: number[] = [];
  for (const row of rows)
    for (let i = 0; i < row.length; i++) widths[i] = Math.max(widths[i] ?? 0, row[i].length);
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => (align[i] === 'right' ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const [head, ...body] = rows;
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** One line of the suite's progress or report on stdout. */
export function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** The 1-, 5- and 15-minute load averages, e.g. "0.59 1.85 1.75". */
export function loadAverages(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** The machine line every suite prints first: Node's version, the cores, the load average. */
export function machineLine(): string {
  return `node ${process.version}, ${availableParallelism()} cores, load average ${loadAverages()}`;
}

/** A ratio's table cell: "0.93×", or "n/a" when it could not be measured. */
export function ratioCell(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}
