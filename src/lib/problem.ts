/**
 * A problem found while compiling the config: the key path it is about and what is wrong.
 * The feature compilers (upstream/, strategy/, defer/, multiplex/) report with it, and
 * config/load.ts adds the file name; it lives here so they need not import config/ (issue 11).
 */
export interface CompileProblem {
  path: Array<string | number>;
  message: string;
}

/** One wording for every key that names a pool: `unknown pool "x" (pools: a, b)`, or `(no pools defined)`. */
export function unknownPool(name: string, pools: Iterable<string>): string {
  const known = [...pools];
  return `unknown pool "${name}" ${known.length > 0 ? `(pools: ${known.join(', ')})` : '(no pools defined)'}`;
}
