/**
 * Passive health (outlier ejection), decided in each process from the traffic it sends
 * itself (issue 3, point 3). `failures` consecutive target failures (connect errors,
 * timeouts, invalid answers, 5xx) eject a target for `ejection`, doubled on each repeat up to
 * `max_ejection`; a success resets the streak. At most `max_ejected` percent of a pool is
 * ejected at once.
 *
 * Why local and not reported to the primary: ejection must react within a few requests, and
 * a round trip through the primary on every attempt would put IPC on the hot path for no gain
 * in correctness — each worker stops sending to a target after seeing it fail, which is what
 * protects that worker's requests. The cost: with N workers, a dead target is ejected after up
 * to N × `failures` failed attempts instead of `failures`. Active checks (run once, by the
 * primary) are the global verdict; the admin API shows in how many workers a target is ejected.
 */
import type { TargetState } from '../state.ts';

export class Outlier {
  readonly #state: TargetState;
  ejected = false;
  /** Ejections since the target state was created (`manifold_target_ejections_total`). */
  total = 0;
  #streak = 0;
  /** Ejections in a row; the backoff multiplier. */
  #ejections = 0;
  #readmittedAt = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(state: TargetState) {
    this.#state = state;
  }

  success(): void {
    this.#streak = 0;
  }

  failure(): void {
    const passive = this.#state.pool.passive;
    if (passive === null || this.ejected) return;
    if (++this.#streak < passive.failures || !this.#state.pool.mayEject()) return;
    // A target that stayed in long enough is forgiven its earlier ejections.
    if (Date.now() - this.#readmittedAt > passive.maxEjectionMs) this.#ejections = 0;
    const ms = Math.min(passive.maxEjectionMs, passive.ejectionMs * 2 ** this.#ejections);
    this.#ejections++;
    this.total++;
    this.#streak = 0;
    this.ejected = true;
    this.#timer = setTimeout(() => this.#readmit(), ms);
    this.#timer.unref();
    this.#state.refresh();
  }

  #readmit(): void {
    this.#timer = null;
    this.ejected = false;
    this.#readmittedAt = Date.now();
    this.#state.refresh();
  }

  dispose(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
