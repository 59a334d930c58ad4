/**
 * Retry delays for deferred jobs: exponential backoff with jitter, as a pure function.
 *
 * Jitter spreads the retries of jobs that failed together (a target outage fails every job
 * at once), so the target is not hit by synchronized waves when it comes back. See
 * "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015): `full` has the least total
 * work; `decorrelated` grows from the previous delay instead of the attempt number.
 */

export const JITTER = Object.freeze({
  /** uniform in [0, min(maxMs, baseMs · 2^(attempt-1))] */
  full: 'full',
  /** uniform in [baseMs, min(maxMs, 3 · previous delay)] */
  decorrelated: 'decorrelated',
  /** exactly min(maxMs, baseMs · 2^(attempt-1)): predictable, for tests and tools */
  none: 'none',
} as const);

export type Jitter = (typeof JITTER)[keyof typeof JITTER];

export interface BackoffPolicy {
  /** Delay scale for the first retry, ms (> 0). */
  baseMs: number;
  /** Upper bound of any delay, ms (≥ baseMs). */
  maxMs: number;
  jitter: Jitter;
}

/**
 * The delay in ms before the next attempt, after `attempt` attempts have failed (1 = the
 * first). An integer in [0, maxMs] (in [baseMs, maxMs] for `decorrelated`).
 *
 * `previousMs` is the delay used before the failed attempt; only `decorrelated` reads it. The
 * queue does not store it, so a deliverer that does not know it can leave it out: the
 * un-jittered exponential delay of the previous attempt stands in for it, which keeps the
 * growth exponential and the spread wide.
 * `random` returns a number in [0, 1); inject it to make the result deterministic.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  previousMs?: number,
  random: () => number = Math.random,
): number {
  const { baseMs, maxMs } = policy;
  const n = Math.max(1, Math.floor(attempt));
  // 2 ** n overflows to Infinity for huge n; Math.min caps it, so no loop or clamp is needed.
  const ceiling = Math.min(maxMs, baseMs * 2 ** (n - 1));
  switch (policy.jitter) {
    case 'none':
      return Math.floor(ceiling);
    case 'full':
      return Math.min(Math.floor(ceiling), Math.floor(random() * (ceiling + 1)));
    case 'decorrelated': {
      const previous = previousMs ?? (n === 1 ? baseMs : Math.min(maxMs, baseMs * 2 ** (n - 2)));
      const high = Math.min(maxMs, Math.max(baseMs, previous * 3));
      return Math.min(Math.floor(high), Math.floor(baseMs + random() * (high - baseMs + 1)));
    }
  }
}
