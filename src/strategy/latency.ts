/**
 * Recent attempt latency of one route, for `hedge_after: pNN`. A ring of the last SIZE samples
 * (per process); the percentile is re-read from a sorted copy only every RESORT_EVERY new
 * samples, so a request pays an array write, not a sort.
 *
 * Attempts cancelled before they answered (hedge losers) are recorded with the time they had
 * run: a lower bound of their latency. Leaving them out would teach the window that the route is
 * faster than it is, and hedges would fire ever earlier.
 */

const SIZE = 512;
const RESORT_EVERY = 16;
/** Below this many samples there is no history to call anything slow: no hedge fires. */
export const MIN_SAMPLES = 20;

export class LatencyWindow {
  readonly #samples = new Float64Array(SIZE);
  #count = 0;
  #next = 0;
  #fresh = 0;
  #sorted: Float64Array | null = null;

  add(ms: number): void {
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % SIZE;
    if (this.#count < SIZE) this.#count++;
    this.#fresh++;
  }

  get size(): number {
    return this.#count;
  }

  /** The q-th percentile (0 < q < 100) of the window, or null before MIN_SAMPLES samples. */
  percentile(q: number): number | null {
    if (this.#count < MIN_SAMPLES) return null;
    if (this.#sorted === null || this.#fresh >= RESORT_EVERY) {
      this.#sorted = this.#samples.slice(0, this.#count).sort();
      this.#fresh = 0;
    }
    const s = this.#sorted;
    return s[Math.min(s.length - 1, Math.ceil((q / 100) * s.length) - 1)];
  }
}
