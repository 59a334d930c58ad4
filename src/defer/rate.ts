/**
 * A token bucket: `perSecond` tokens a second, holding at most `burst`. Deliverers take one
 * token per delivery started (a route's `rate`), the accept handler one per direct delivery
 * (overflow mode). The default burst is a tenth of a second's worth (at least one), so a
 * limit holds over any short window instead of allowing a full second's worth at once.
 */
import { performance } from 'node:perf_hooks';

export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  readonly #perMs: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(
    perSecond: number,
    burst = Math.max(1, perSecond / 10),
    now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !Number.isFinite(perSecond))
      throw new RangeError('perSecond must be a positive number');
    if (!(burst >= 1)) throw new RangeError('burst must be at least 1');
    this.perSecond = perSecond;
    this.burst = burst;
    this.#perMs = perSecond / 1000;
    this.#now = now;
    this.#tokens = burst;
    this.#last = now();
  }

  /** Whole tokens available now. */
  available(): number {
    this.#refill();
    return Math.floor(this.#tokens);
  }

  /** Takes one token if there is one. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /** Takes `n` tokens (the caller checked `available()`); the bucket may go below zero. */
  take(n: number): void {
    this.#refill();
    this.#tokens -= n;
  }

  /** Milliseconds until a token is available (0 when one is). */
  waitMs(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil((1 - this.#tokens) / this.#perMs);
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#last) * this.#perMs);
    this.#last = now;
  }
}
