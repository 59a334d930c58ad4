/**
 * Verdicts at response-headers time (issue #4 point 1). A route's `terminal` list names the
 * statuses it accepts; everything else (by default 5xx) means "try another target" while the
 * strategy may, and "answer it" when it may not. The list is compiled once, at config time,
 * into a 600-entry table, so a verdict per attempt is one array read.
 *
 * Entries, as in balancing-reverse-proxy's `-terminal-responses`:
 * - a multiple of 100 (`100` … `500`) is that whole class: `400` means 400-499;
 * - any other code is exact: `429`; an exact code that is a multiple of 100 is written as a
 *   range: `200-200`;
 * - `lo-hi` is an inclusive range: `500-503`; `4xx` is the class spelled out.
 */

export const DEFAULT_TERMINAL = Object.freeze([100, 200, 300, 400] as const);

export type TerminalEntry = number | string;

const RANGE = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/;
const CLASS = /^([1-5])xx$/i;

/** The inclusive status range an entry covers, or an error message. */
export function parseTerminalEntry(entry: TerminalEntry): [number, number] | string {
  if (typeof entry === 'number') {
    if (!Number.isInteger(entry) || entry < 100 || entry > 599) return `${entry} is not a status (100-599)`;
    return entry % 100 === 0 ? [entry, entry + 99] : [entry, entry];
  }
  const s = entry.trim();
  const cls = CLASS.exec(s);
  if (cls) return [Number(cls[1]) * 100, Number(cls[1]) * 100 + 99];
  const m = RANGE.exec(s);
  if (!m) return `"${entry}" is not a status, a class (400 or 4xx) or a range (500-503)`;
  if (m[2] === undefined) return parseTerminalEntry(Number(m[1]));
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo > hi) return `range "${entry}" ends before it starts`;
  return [lo, hi];
}

/** The compiled `terminal` list of one route. */
export class Verdicts {
  /** 1 at index `status` when the status is accepted. Statuses ≥ 600 are never accepted. */
  readonly #table: Uint8Array;

  constructor(table: Uint8Array) {
    this.#table = table;
  }

  /** Builds the table; `onProblem` is called with the index of each entry that is not valid. */
  static compile(
    entries: readonly TerminalEntry[],
    onProblem: (index: number, message: string) => void = () => {},
  ): Verdicts {
    const table = new Uint8Array(600);
    entries.forEach((entry, i) => {
      const r = parseTerminalEntry(entry);
      if (typeof r === 'string') onProblem(i, r);
      else table.fill(1, r[0], r[1] + 1);
    });
    return new Verdicts(table);
  }

  accepts(status: number): boolean {
    return this.#table[status] === 1;
  }
}
