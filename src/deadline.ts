/**
 * The one deadline of a request or a delivery (DESIGN.md vocabulary): it ends once, and its
 * reason is always a GatewayError — CLIENT_CLOSED when the downstream leaves, TARGET_TIMEOUT
 * when the route timeout (or a batch or delivery deadline) passes. Every path takes its deadline
 * from here instead of building its own (issue 11: an `AbortSignal.timeout()` reason, a
 * DOMException with a numeric `code`, crashed classify()).
 *
 * A Deadline is its own abort hook (`AbortHook`: `aborted`, `reason`, `addEventListener('abort')`),
 * which is all an attempt watches (forward.ts, the strategies): a request whose deadline never
 * ends pays for no AbortController, no EventTarget dispatch and no closure (issue 11 item 4).
 * An AbortSignal is made only when a consumer needs a real one (`signal`: undici's `fetch`,
 * multiplex's limiter), and then follows the deadline. The timer carries its arguments
 * instead of a closure.
 *
 * A leaf module (it imports only the error catalog) so that every folder — server, defer,
 * multiplex — can take its deadline from here without an import circle.
 */
import { performance } from 'node:perf_hooks';
import { GatewayError, isGatewayError } from './errors.ts';

/**
 * What an attempt watches to know it must stop: a Deadline, or any AbortSignal (the subset of
 * its interface used). Listeners run once, when it aborts.
 */
export interface AbortHook {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

type Listener = () => void;

export class Deadline implements AbortHook {
  #reason: GatewayError | null = null;
  /** Made on first use of `signal` only. */
  #controller: AbortController | null = null;
  /** Abort listeners: none, one, or a list (most deadlines have one or two). */
  #listeners: Listener | Listener[] | null = null;
  #timer: NodeJS.Timeout | undefined = undefined;
  /** When the armed timer fires (performance.now() time); Infinity = no timer. */
  #dueAt = Infinity;
  /** The hook this deadline follows (a parent deadline, or a foreign signal), and its listener. */
  #source: AbortHook | null = null;
  #onSource: Listener | null = null;

  /** A real AbortSignal that aborts with this deadline (and its reason); made on first use. */
  get signal(): AbortSignal {
    let c = this.#controller;
    if (c === null) {
      c = this.#controller = new AbortController();
      if (this.#reason !== null) c.abort(this.#reason);
    }
    return c.signal;
  }

  get aborted(): boolean {
    return this.#reason !== null;
  }

  /** The GatewayError it ended with; undefined while it runs. */
  get reason(): GatewayError | undefined {
    return this.#reason ?? undefined;
  }

  addEventListener(_type: 'abort', listener: Listener, _options?: { once?: boolean }): void {
    if (this.#reason !== null) return; // as an AbortSignal: an ended one never fires again
    const l = this.#listeners;
    if (l === null) this.#listeners = listener;
    else if (typeof l === 'function') this.#listeners = [l, listener];
    else l.push(listener);
  }

  removeEventListener(_type: 'abort', listener: Listener): void {
    const l = this.#listeners;
    if (l === listener) this.#listeners = null;
    else if (l !== null && typeof l !== 'function') {
      const i = l.indexOf(listener);
      if (i !== -1) l.splice(i, 1);
    }
  }

  /**
   * Aborts after `ms` (0 = never) with TARGET_TIMEOUT naming `what`, unless an earlier time is
   * armed already: the earliest deadline wins (route timeout ∩ batch deadline).
   */
  within(ms: number, what: string): this {
    if (ms > 0 && this.#reason === null) {
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
    if (this.#reason !== null) return;
    this.#stop();
    this.#reason = reason;
    this.#controller?.abort(reason);
    const l = this.#listeners;
    this.#listeners = null;
    if (l === null) return;
    if (typeof l === 'function') call(l);
    else for (const fn of l) call(fn);
  }

  /** The work finished: the timer stops, the deadline stops following its source; nothing aborts. */
  clear(): void {
    this.#stop();
  }

  #stop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
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
   * A deadline inside this one (a batch item's, an attempt's): it ends when this one does, with
   * the same reason, or earlier by its own `within()` or `abort()`. `clear()` it when its work is done.
   */
  child(): Deadline {
    return Deadline.follow(this);
  }

  /**
   * A deadline that ends when `source` aborts: another deadline, or a plain AbortSignal
   * (embedding, tests). A foreign reason becomes a GatewayError: a TimeoutError
   * (`AbortSignal.timeout()`) is TARGET_TIMEOUT, anything else not a GatewayError CLIENT_CLOSED.
   */
  static follow(source: AbortHook): Deadline {
    const d = new Deadline();
    if (source.aborted) {
      d.abort(asGatewayError(source.reason));
      return d;
    }
    d.#source = source;
    d.#onSource = () => d.abort(asGatewayError(source.reason));
    source.addEventListener('abort', d.#onSource, { once: true });
    return d;
  }
}

/** A listener that throws does not stop the others; its error is thrown on, as EventTarget does. */
function call(fn: Listener): void {
  try {
    fn();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

export function asGatewayError(reason: unknown): GatewayError {
  if (isGatewayError(reason)) return reason;
  if (reason instanceof DOMException && reason.name === 'TimeoutError')
    return new GatewayError('TARGET_TIMEOUT', reason.message, { cause: reason });
  return new GatewayError('CLIENT_CLOSED', undefined, { cause: reason });
}

function expire(deadline: Deadline, ms: number, what: string): void {
  deadline.abort(new GatewayError('TARGET_TIMEOUT', `${what} deadline of ${ms} ms passed`));
}
