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
 * multiplex's limiter), and then follows the deadline.
 *
 * Timers are shared: the deadlines armed with the same duration (every request of a route with
 * its `timeout`) wait in one list, in due order, under one Node timer that fires for the
 * earliest and is armed again for the next (`TimerList`); an empty list is dropped. Arming and clearing a deadline is a
 * link in and out of that list: no Timeout object per request.
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

/**
 * The armed deadlines of one duration, earliest first (they were armed in that order), and
 * the one Node timer that fires for the first. Ref'd while a deadline waits, as a timer of its
 * own would be; stopped when the list empties.
 */
class TimerList {
  readonly ms: number;
  head: Deadline | null = null;
  tail: Deadline | null = null;
  timer: NodeJS.Timeout | null = null;
  constructor(ms: number) {
    this.ms = ms;
  }
}

const timerLists = new Map<number, TimerList>();

function fire(list: TimerList): void {
  list.timer = null;
  const now = performance.now();
  // A Node timer may fire a fraction of a millisecond before performance.now() says it is due.
  while (list.head !== null && list.head.dueAt - now < 1) list.head.expire();
  if (list.head === null) return;
  // A listener of an expired deadline may have armed another in this list meanwhile (and its
  // timer with the full duration): the timer is for the head.
  if (list.timer !== null) clearTimeout(list.timer);
  list.timer = setTimeout(fire, Math.ceil(list.head.dueAt - now), list);
}

export class Deadline implements AbortHook {
  #reason: GatewayError | null = null;
  /** Made on first use of `signal` only. */
  #controller: AbortController | null = null;
  /** Abort listeners: none, one, or a list (most deadlines have one or two). */
  #listeners: Listener | Listener[] | null = null;
  /** The shared timer list it waits in, and its neighbours there; null = no timer armed. */
  #list: TimerList | null = null;
  #prev: Deadline | null = null;
  #next: Deadline | null = null;
  /** What its armed time is (`route`, `batch`…), for the TARGET_TIMEOUT message. */
  #what = '';
  /** When the armed timer fires (performance.now() time); Infinity = no timer. */
  #dueAt = Infinity;
  /** The hook this deadline follows (a parent deadline, or a foreign signal), and its listener. */
  #source: AbortHook | null = null;
  #onSource: Listener | null = null;

  /** When its armed time passes (TimerList orders by it). */
  get dueAt(): number {
    return this.#dueAt;
  }

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
      this.#unlink();
      this.#dueAt = dueAt;
      this.#what = what;
      let list = timerLists.get(ms);
      if (list === undefined) timerLists.set(ms, (list = new TimerList(ms)));
      // Same duration, armed later: due no earlier than the tail.
      this.#list = list;
      this.#prev = list.tail;
      if (list.tail === null) list.head = this;
      else list.tail.#next = this;
      list.tail = this;
      list.timer ??= setTimeout(fire, ms, list);
    }
    return this;
  }

  /** Its armed time passed (TimerList). */
  expire(): void {
    const list = this.#list!;
    this.abort(new GatewayError('TARGET_TIMEOUT', `${this.#what} deadline of ${list.ms} ms passed`));
  }

  /** Out of its timer list; the list's timer stops when nothing else waits in it. */
  #unlink(): void {
    const list = this.#list;
    if (list === null) return;
    const prev = this.#prev;
    const next = this.#next;
    if (prev === null) list.head = next;
    else prev.#next = next;
    if (next === null) list.tail = prev;
    else next.#prev = prev;
    this.#list = this.#prev = this.#next = null;
    if (list.head === null) {
      // Durations may come from clients (`grpc-timeout`): an empty list is not kept.
      if (timerLists.get(list.ms) === list) timerLists.delete(list.ms);
      if (list.timer !== null) {
        clearTimeout(list.timer);
        list.timer = null;
      }
    }
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
    this.#unlink();
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
