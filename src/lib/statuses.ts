/**
 * The one status-list parser (issue 11 item 3). Three keys take lists of statuses — a pool's
 * health `expect`, a defer route's `success`, a proxy route's `terminal` — as codes (`204`),
 * inclusive ranges (`200-399`) and classes (`2xx`). One reading differs, and each key's
 * description says which it has: in `terminal` a bare multiple of 100 is its whole class
 * (`400` = 400-499, as balancing-reverse-proxy's `-terminal-responses`); in `expect` and
 * `success` every code is exact (`200` = 200 only). Compiled once, at config time.
 */

export type StatusEntry = number | string;

/** How a bare multiple of 100 reads: `exact` (200 = 200) or `class` (200 = 200-299). */
export type Hundreds = 'exact' | 'class';

const RANGE = /^([1-5]\d\d)(?:-([1-5]\d\d))?$/;
const CLASS = /^([1-5])xx$/i;

/** The inclusive range an entry covers, or a message saying why it is not one. */
export function statusRange(entry: StatusEntry, hundreds: Hundreds): [number, number] | string {
  if (typeof entry === 'number') {
    if (!Number.isInteger(entry) || entry < 100 || entry > 599) return `${entry} is not a status (100-599)`;
    return hundreds === 'class' && entry % 100 === 0 ? [entry, entry + 99] : [entry, entry];
  }
  const s = entry.trim();
  const cls = CLASS.exec(s);
  if (cls) return [Number(cls[1]) * 100, Number(cls[1]) * 100 + 99];
  const m = RANGE.exec(s);
  if (!m) return `"${entry}" is not a status (429), a class (4xx) or a range (500-503)`;
  if (m[2] === undefined) return statusRange(Number(m[1]), hundreds);
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo > hi) return `range "${entry}" is empty (low > high)`;
  return [lo, hi];
}

/** Every entry's range; `onProblem` gets the index and message of each entry that is not one. */
export function statusRanges(
  list: readonly StatusEntry[],
  hundreds: Hundreds,
  onProblem: (index: number, message: string) => void,
): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  list.forEach((entry, i) => {
    const r = statusRange(entry, hundreds);
    if (typeof r === 'string') onProblem(i, r);
    else out.push(r);
  });
  return out;
}

/** The list as a 600-entry table, 1 where the status is listed: a lookup is one array read. */
export function statusTable(
  list: readonly StatusEntry[],
  hundreds: Hundreds,
  onProblem: (index: number, message: string) => void = () => {},
): Uint8Array {
  const table = new Uint8Array(600);
  for (const [lo, hi] of statusRanges(list, hundreds, onProblem)) table.fill(1, lo, hi + 1);
  return table;
}
