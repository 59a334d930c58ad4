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

import { type StatusEntry, statusTable } from '../lib/statuses.ts';

export const DEFAULT_TERMINAL = Object.freeze([100, 200, 300, 400] as const);

export type TerminalEntry = StatusEntry;

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
    // A bare multiple of 100 is its class here (lib/statuses.ts): `400` accepts 400-499.
    return new Verdicts(statusTable(entries, 'class', onProblem));
  }

  accepts(status: number): boolean {
    return this.#table[status] === 1;
  }
}
