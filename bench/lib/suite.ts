/**
 * What a benchmark suite is: `npm run bench -- <suite>` loads one through the map in
 * bench/run.ts. A suite gets the common options plus the values of any flags it declares,
 * prints its own progress and tables, and returns a JSON-serialisable summary that run.ts
 * prints as the last line of the run.
 */
import type { ParseArgsOptionsConfig } from 'node:util';

export interface BenchOptions {
  /** Seconds per measurement. */
  duration: number;
  /** Seconds of warm-up load per contestant before the first round. */
  warmup: number;
  connections: number;
  /** Interleaved rounds; results are medians over them. */
  rounds: number;
  quick: boolean;
  /** Contestant ids to keep (empty: all). */
  only: readonly string[];
  /** Values of the suite's own flags (see `Suite.options`). */
  extra: Record<string, string | boolean | undefined>;
}

export interface Suite {
  description: string;
  /** Extra flags of this suite, in node:util parseArgs form. */
  options?: ParseArgsOptionsConfig;
  run(options: BenchOptions): Promise<Record<string, unknown>>;
}
