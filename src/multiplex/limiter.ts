/**
 * Counting semaphore for outbound requests: FIFO, and a waiter whose signal aborts leaves the
 * queue at once (so a batch past its deadline holds no place in line).
 */
import type { AbortHook } from '../deadline.ts';

export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
}

export class Limiter {
  readonly #max: number;
  #active = 0;
  readonly #waiting = new Set<Waiter>();

  constructor(max: number) {
    this.#max = max;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /** Resolves with a release function once a slot is free; rejects with the reason `signal` (a deadline) aborts with. */
  acquire(signal: AbortHook): Promise<Release> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.#max) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiting.delete(waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.add(waiter);
    });
  }

  #releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.values().next();
      if (next.done) {
        this.#active--;
        return;
      }
      // Hand the slot straight to the next waiter: #active stays the same.
      this.#waiting.delete(next.value);
      next.value.grant(this.#releaser());
    };
  }
}
