/**
 * The hedging budget (issue #4): over a sliding window, hedges may add at most `ratio` extra
 * attempts per request (0.1 = 10%), so a slow target cannot make hedging double the load on
 * everything behind it. The window is BUCKETS slices rotated lazily on use (no timers); a hedge
 * is granted while `hedges < ratio × requests`, which lets the first request of a quiet window
 * hedge and keeps the total at most ⌈ratio × requests⌉. Per route and per process.
 */

const BUCKETS = 10;

export class HedgeBudget {
  readonly #ratio: number;
  readonly #sliceMs: number;
  readonly #requests = new Uint32Array(BUCKETS);
  readonly #hedges = new Uint32Array(BUCKETS);
  /** Index of the current slice since the epoch (now / sliceMs). */
  #slice = 0;

  constructor(ratio: number, windowMs: number) {
    this.#ratio = ratio;
    this.#sliceMs = Math.max(1, windowMs / BUCKETS);
  }

  #rotate(now: number): number {
    const slice = Math.floor(now / this.#sliceMs);
    const gap = slice - this.#slice;
    if (gap > 0) {
      for (let i = 1; i <= Math.min(gap, BUCKETS); i++) {
        const b = (this.#slice + i) % BUCKETS;
        this.#requests[b] = 0;
        this.#hedges[b] = 0;
      }
      this.#slice = slice;
    }
    return slice % BUCKETS;
  }

  /** Counts one request that may hedge. */
  request(now: number): void {
    this.#requests[this.#rotate(now)]++;
  }

  /** Whether a hedge would be granted now; takes nothing (check before picking a target). */
  allows(now: number): boolean {
    this.#rotate(now);
    let requests = 0;
    let hedges = 0;
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.#requests[i];
      hedges += this.#hedges[i];
    }
    return hedges < this.#ratio * requests;
  }

  /** Takes one hedge from the budget; false when it is spent. */
  tryHedge(now: number): boolean {
    if (!this.allows(now)) return false;
    this.#hedges[this.#rotate(now)]++;
    return true;
  }
}
