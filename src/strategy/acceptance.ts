/**
 * Verdicts at response-headers time (issue #4 point 1). A route's `terminal` list names the
 * statuses it accepts; everything else (by default 5xx) means "try another target" while the
 * strategy may, and "answer it" when it may not. The list is compiled once, at config time, by
 * the one status-list parser (src/status-list.ts), so a verdict per attempt is one array read.
 *
 * Entries, as in balancing-reverse-proxy's `-terminal-responses`:
 * - a multiple of 100 (`100` … `500`) is that whole class: `400` means 400-499;
 * - any other code is exact: `429`; an exact code that is a multiple of 100 is written as a
 *   range: `200-200`;
 * - `lo-hi` is an inclusive range: `500-503`; `4xx` is the class spelled out.
 */

import { parseStatusEntry, type StatusEntry, StatusSet } from '../status-list.ts';

export const DEFAULT_TERMINAL = Object.freeze([100, 200, 300, 400] as const);

export type TerminalEntry = StatusEntry;

/** The inclusive status range a `terminal` entry covers (a multiple of 100 is its class), or an error. */
export function parseTerminalEntry(entry: TerminalEntry): [number, number] | string {
  return parseStatusEntry(entry, 'class');
}

/** The compiled `terminal` list of one route (src/status-list.ts, multiples of 100 are classes). */
export class Verdicts {
  readonly #set: StatusSet;

  constructor(set: StatusSet) {
    this.#set = set;
  }

  /** Builds the list; `onProblem` is called with the index of each entry that is not valid. */
  static compile(
    entries: readonly TerminalEntry[],
    onProblem: (index: number, message: string) => void = () => {},
  ): Verdicts {
    return new Verdicts(StatusSet.compile(entries, 'class', onProblem));
  }

  accepts(status: number): boolean {
    return this.#set.has(status);
  }
}
