/**
 * The one status-list parser (issue 11): every config key that takes a list of HTTP statuses —
 * `routes[].proxy.terminal`, `routes[].defer.success`, `pools.<name>.health.expect` — is
 * compiled here, once at config time, into a 600-entry table, so a check is one array read.
 *
 * Entries: a code (`204`), an inclusive range (`500-503`, also written as a string `"204"`)
 * or a class (`4xx`). A bare multiple of 100 (`200`) has one meaning per key, documented with
 * each key:
 * - `'class'` (`terminal`, as balancing-reverse-proxy's `-terminal-responses 100,200,300,400`
 *   means): `400` is 400-499; the exact code is written as the range `400-400`;
 * - `'exact'` (`success`, `expect`, as a health check or a webhook sender means): `200` is 200.
 */

export type StatusEntry = number | string;

/** What a bare multiple of 100 means for a key (see above). */
export type Hundreds = 'class' | 'exact';

const RANGE = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/;
const CLASS = /^([1-5])xx$/i;

/** The inclusive range an entry covers, or why it is not valid. */
export function parseStatusEntry(entry: StatusEntry, hundreds: Hundreds): [number, number] | string {
  if (typeof entry === 'number') {
    if (!Number.isInteger(entry) || entry < 100 || entry > 599) return `${entry} is not a status (100-599)`;
    return hundreds === 'class' && entry % 100 === 0 ? [entry, entry + 99] : [entry, entry];
  }
  const s = entry.trim();
  const cls = CLASS.exec(s);
  if (cls) return [Number(cls[1]) * 100, Number(cls[1]) * 100 + 99];
  const m = RANGE.exec(s);
  if (!m) return `"${entry}" is not a status, a class (4xx) or a range (500-503)`;
  if (m[2] === undefined) return parseStatusEntry(Number(m[1]), hundreds);
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo > hi) return `range "${entry}" ends before it starts`;
  return [lo, hi];
}

/** A compiled status list. */
export class StatusSet {
  /** 1 at index `status` when listed; statuses ≥ 600 are never in a set. */
  readonly #table: Uint8Array;

  private constructor(table: Uint8Array) {
    this.#table = table;
  }

  /** `onProblem` is called with the index and message of each entry that is not valid. */
  static compile(
    entries: readonly StatusEntry[],
    hundreds: Hundreds,
    onProblem: (index: number, message: string) => void = () => {},
  ): StatusSet {
    const table = new Uint8Array(600);
    entries.forEach((entry, i) => {
      const r = parseStatusEntry(entry, hundreds);
      if (typeof r === 'string') onProblem(i, r);
      else table.fill(1, r[0], r[1] + 1);
    });
    return new StatusSet(table);
  }

  has(status: number): boolean {
    return this.#table[status] === 1;
  }
}
