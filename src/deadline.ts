/**
 * The one deadline of a request or a delivery (DESIGN.md vocabulary): an AbortSignal whose
 * reason is always a GatewayError — CLIENT_CLOSED when the downstream leaves, TARGET_TIMEOUT
 * when the route timeout (or a batch or delivery deadline) passes. Every path takes its signal
 * from here instead of building its own (issue 11: an `AbortSignal.timeout()` reason, a
 * DOMException with a numeric `code`, crashed classify()). The controller is made on first use,
 * so a route that never reads the signal (respond) pays nothing, and the timer carries its
 * arguments instead of a closure.
 *
 * A leaf module (it imports only the error catalog) so that every folder — server, defer,
 * multiplex — can take its deadline from here without an import circle.
 */
import { performance } from 'node:perf_hooks';
import { GatewayError, isGatewayError } from './errors.ts';

export class Deadline {
  #controller: AbortController | null = null;
  #timer: NodeJS.Timeout | undefined = undefined;
  /** When the armed timer fires (performance.now() time); Infinity = no timer. */
  #dueAt = Infinity;
  /** The signal this deadline follows (a parent deadline's, or a foreign one), and its listener. */
  #source: AbortSignal | null = null;
  #onSource: (() => void) | null = null;

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  get aborted(): boolean {
    return this.#controller !== null && this.#controller.signal.aborted;
  }

  /**
   * Aborts after `ms` (0 = never) with TARGET_TIMEOUT naming `what`, unless an earlier time is
   * armed already: the earliest deadline wins (route timeout ∩ batch deadline).
   */
  within(ms: number, what: string): this {
    if (ms > 0 && !this.aborted) {
      const dueAt = performance.now() + ms;
      if (dueAt >= this.#dueAt) return this;
      clearTimeout(this.#timer);
      this.#dueAt = dueAt;
      this.#timer = setTimeout(expire, ms, this, ms, what);
    }
    return this;
  }

  /** Ends the deadline now with `reason` (the first reason wins). */
  abort(reason: GatewayError): void {
    this.#stop();
    const controller = (this.#controller ??= new AbortController());
    if (!controller.signal.aborted) controller.abort(reason);
  }

  /** The work finished: the timer stops, the deadline stops following its source; nothing aborts. */
  clear(): void {
    this.#stop();
  }

  #stop(): void {
    clearTimeout(this.#timer);
    this.#dueAt = Infinity;
    if (this.#onSource !== null) this.#source!.removeEventListener('abort', this.#onSource);
    this.#source = null;
    this.#onSource = null;
  }

  /** The downstream connection closed: a complete answer clears, anything else is CLIENT_CLOSED. */
  closed(finished: boolean): void {
    if (finished) this.clear();
    else this.abort(new GatewayError('CLIENT_CLOSED'));
  }

  /**
   * A deadline inside this one (a batch item's): it ends when this one does, with the same
   * reason, or earlier by its own `within()`. `clear()` it when its work is done.
   */
  child(): Deadline {
    return Deadline.follow(this.signal);
  }

  /**
   * A deadline that ends when `signal` aborts, for callers that hold a plain AbortSignal
   * (embedding, tests). A foreign reason becomes a GatewayError: a TimeoutError
   * (`AbortSignal.timeout()`) is TARGET_TIMEOUT, anything else not a GatewayError CLIENT_CLOSED.
   */
  static follow(signal: AbortSignal): Deadline {
    const d = new Deadline();
    if (signal.aborted) {
      d.abort(asGatewayError(signal.reason));
      return d;
    }
    d.#source = signal;
    d.#onSource = () => d.abort(asGatewayError(signal.reason));
    signal.addEventListener('abort', d.#onSource, { once: true });
    return d;
  }
}

function asGatewayError(reason: unknown): GatewayError {
  if (isGatewayError(reason)) return reason;
  if (reason instanceof DOMException && reason.name === 'TimeoutError')
    return new GatewayError('TARGET_TIMEOUT', reason.message, { cause: reason });
  return new GatewayError('CLIENT_CLOSED', undefined, { cause: reason });
}

function expire(deadline: Deadline, ms: number, what: string): void {
  deadline.abort(new GatewayError('TARGET_TIMEOUT', `${what} deadline of ${ms} ms passed`));
}
