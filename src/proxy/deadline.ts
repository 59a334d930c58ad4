/**
 * The request's one deadline (issue 11 item 1). It lives in proxy/, below every path that
 * spends attempts (the pipeline, defer's overflow accept and deliverers, multiplex, upgrades),
 * so each takes it from here without importing server/ (issue 11 item 3).
 */
import { GatewayError } from '../errors.ts';

/**
 * The one deadline of a request or a delivery (DESIGN.md vocabulary): an AbortSignal whose
 * reason is always a GatewayError — CLIENT_CLOSED when the downstream leaves, TARGET_TIMEOUT
 * when the route timeout (or a batch or delivery deadline) passes. Every path takes its signal
 * from here instead of building its own (issue 11: an `AbortSignal.timeout()` reason, a
 * DOMException with a numeric `code`, crashed classify()). The controller is made on first use,
 * so a route that never reads the signal (respond) pays nothing, and the timer carries its
 * arguments instead of a closure.
 */
export class Deadline {
  #controller: AbortController | null = null;
  #timer: NodeJS.Timeout | undefined = undefined;

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  get aborted(): boolean {
    return this.#controller !== null && this.#controller.signal.aborted;
  }

  /** Aborts after `ms` (0 = never) with TARGET_TIMEOUT naming `what`; a later call replaces the timer. */
  within(ms: number, what: string): this {
    if (ms > 0 && !this.aborted) {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(expire, ms, this, ms, what);
    }
    return this;
  }

  /** Ends the deadline now with `reason` (the first reason wins). */
  abort(reason: GatewayError): void {
    clearTimeout(this.#timer);
    const controller = (this.#controller ??= new AbortController());
    if (!controller.signal.aborted) controller.abort(reason);
  }

  /** The work finished: the timer stops; nothing aborts. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** The downstream connection closed: a complete answer clears, anything else is CLIENT_CLOSED. */
  closed(finished: boolean): void {
    if (finished) this.clear();
    else this.abort(new GatewayError('CLIENT_CLOSED'));
  }
}

function expire(deadline: Deadline, ms: number, what: string): void {
  deadline.abort(new GatewayError('TARGET_TIMEOUT', `${what} deadline of ${ms} ms passed`));
}
