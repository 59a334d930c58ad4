/**
 * A problem found while compiling the config: the key path it is about and what is wrong.
 * The feature compilers (upstream/, strategy/, defer/, multiplex/) report with it, and
 * config/load.ts adds the file name; it lives here so they need not import config/ (issue 11).
 */
export interface CompileProblem {
  path: Array<string | number>;
  message: string;
}
