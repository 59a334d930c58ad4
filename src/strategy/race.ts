/**
 * The bookkeeping every strategy shares, so each policy is a short loop (STYLE.md §3):
 * launching attempts, receiving their outcomes in order, aborting losers, keeping the last
 * answer that was not accepted, and building the final error with every attempt listed.
 *
 * Losers. With `cancellable`, each attempt gets its own AbortController (one listener on the
 * route's deadline aborts them all): aborting a pending attempt makes `forward` destroy its
 * connection, an answered loser is dropped with `AttemptResult.abort()`. `single`, which takes
 * the first answer whatever it is, passes the route's signal through: no controller per attempt.
 *
 * The fallback answer (issue #4 point 3): a response that was not accepted is held, paused
 * after its first chunk, until a newer answer replaces it (then it is aborted) or nothing
 * better comes: then it is relayed as is, so a client whose targets all said 503 gets the last
 * 503 with its headers and body rather than a gateway-made 502. That holds when the route
 * deadline ends the race too (a real 503 says more than our 504); only a client that went away
 * drops it. Holding it keeps one connection busy while the next attempt runs: the price of
 * relaying a real answer.
 */
import { performance } from 'node:perf_hooks';
import { asGatewayError, Deadline } from '../deadline.ts';
import { GatewayError, isGatewayError } from '../errors.ts';
import { AttemptError, type AttemptResult } from '../proxy/forward.ts';
import type { Target } from '../upstream/target.ts';
import { countersFor, type StrategyCounters } from './stats.ts';
import type { AttemptRecord, StrategyRun } from './types.ts';

/** Why a losing attempt was aborted; never sent to a client. */
function lost(): GatewayError {
  return new GatewayError('ATTEMPT_CANCELLED', 'another attempt answered first');
}

export interface Attempt {
  readonly target: Target;
  readonly record: AttemptRecord;
  readonly startedAt: number;
  readonly hedge: boolean;
  /** The attempt's own abort hook (cancellable races): a light Deadline, no AbortController. */
  readonly controller: Deadline | null;
  result: AttemptResult | null;
  settled: boolean;
  /** Its answer was aborted (superseded fallback, loser). */
  dropped: boolean;
}

export type Outcome =
  | { kind: 'answer'; attempt: Attempt; result: AttemptResult; accepted: boolean }
  | { kind: 'error'; attempt: Attempt; error: GatewayError };

const round = (ms: number) => Math.round(ms * 1000) / 1000;

const clientClosed = (reason: unknown) => isGatewayError(reason) && reason.code === 'CLIENT_CLOSED';

export class Race {
  readonly run: StrategyRun;
  readonly counters: StrategyCounters;
  /**
   * The targets tried: the first alone until there is a second (issue 11 item 4: the one
   * attempt of most requests makes no Set), then all of them.
   */
  #first: Target | null = null;
  #tried: Set<Target> | null = null;
  readonly #cancellable: boolean;
  readonly #attempts: Attempt[] = [];
  /** Outcomes not yet read with `next()`; made by the first (`single`'s fast path never reads any). */
  #queue: Outcome[] | null = null;
  #wake: (() => void) | null = null;
  #inflight = 0;
  #fallback: Attempt | null = null;
  #lastError: GatewayError | null = null;
  #done = false;
  #lastLaunchAt = 0;
  #onAbort: (() => void) | null = null;
  /** Called with each attempt's duration when it answers or is cancelled (hedge latency). */
  onLatency: ((ms: number) => void) | null = null;

  constructor(run: StrategyRun, cancellable: boolean) {
    this.run = run;
    this.counters = countersFor(run.routeId);
    this.#cancellable = cancellable;
    if (cancellable) {
      this.#onAbort = () => {
        const reason = asGatewayError(run.signal.reason);
        for (const a of this.#attempts) if (!a.settled) a.controller!.abort(reason);
        if (this.#fallback !== null && clientClosed(reason)) this.#drop(this.#fallback, reason);
      };
      run.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Attempts launched so far. */
  get count(): number {
    return this.#attempts.length;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Attempts still running or outcomes not yet read with `next()`. */
  get busy(): boolean {
    return this.#inflight > 0 || (this.#queue !== null && this.#queue.length > 0);
  }

  get lastLaunchAt(): number {
    return this.#lastLaunchAt;
  }

  /** The next target in the route's order that was not tried yet and is available. */
  pickNext(): Target | undefined {
    const { pool, spec, signal } = this.run;
    if (signal.aborted) return undefined;
    if (spec.order === 'selector') return pool.pick(this.#triedSet(), this.run.pickContext);
    for (const t of pool.targets) if (!this.#wasTried(t) && t.available()) return t;
    return undefined;
  }

  #wasTried(t: Target): boolean {
    return this.#tried !== null ? this.#tried.has(t) : this.#first === t;
  }

  #triedSet(): ReadonlySet<Target> | null {
    if (this.#tried === null && this.#first !== null) this.#tried = new Set([this.#first]);
    return this.#tried;
  }

  /** Starts an attempt on `target`; its outcome comes out of `next()`. */
  launch(target: Target, hedge = false): void {
    void this.#start(target, hedge, (o) => {
      if (o !== null) this.#push(o);
    });
  }

  /**
   * `single`'s fast path (issue 11 item 4): starts an attempt and hands its outcome to `then`
   * directly, without the queue and its wake-up promise. Only for one attempt in flight at a
   * time, never mixed with `launch`/`next`; null when the race had already ended.
   */
  attempt<T>(target: Target, then: (o: Outcome | null) => T | Promise<T>): Promise<T> {
    return this.#start(target, false, then);
  }

  /** Launches the attempt; `then` gets its outcome (null once the race is over) in the same promise step. */
  #start<T>(target: Target, hedge: boolean, then: (o: Outcome | null) => T | Promise<T>): Promise<T> {
    const now = performance.now();
    const controller = this.#cancellable ? new Deadline() : null;
    const record: AttemptRecord = { target: target.id, duration_ms: 0, outcome: 'pending' };
    if (hedge) record.hedge = true;
    const attempt: Attempt = {
      target,
      record,
      startedAt: now,
      hedge,
      controller,
      result: null,
      settled: false,
      dropped: false,
    };
    if (this.#first === null) this.#first = target;
    else (this.#tried ??= new Set([this.#first])).add(target);
    this.#attempts.push(attempt);
    this.run.attempts.push(record);
    this.#inflight++;
    this.#lastLaunchAt = now;
    if (this.#attempts.length > 1 && !hedge) this.counters.retries++;
    const signal = controller ?? this.run.signal;
    return this.run.forward(target, this.run.request, signal).then(
      (result) => then(this.#settle(attempt, result, null)),
      (err) => then(this.#settle(attempt, null, err)),
    );
  }

  /** Records how an attempt ended; the outcome to hand on, or null once the race is over. */
  #settle(attempt: Attempt, result: AttemptResult | null, err: unknown): Outcome | null {
    attempt.settled = true;
    this.#inflight--;
    const record = attempt.record;
    const duration = performance.now() - attempt.startedAt;
    record.duration_ms = round(duration);
    if (result !== null) {
      attempt.result = result;
      record.status = result.status;
      this.onLatency?.(duration);
      if (this.#done) {
        // A loser that answered a moment too late to be cancelled while pending.
        this.#markCancelled(attempt);
        attempt.dropped = true;
        result.abort(lost());
        return null;
      }
      const accepted = this.run.spec.verdicts.accepts(result.status);
      if (!accepted) record.outcome = 'rejected';
      return { kind: 'answer', attempt, result, accepted };
    }
    const error = isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
    record.error = error.code;
    if (error.code === 'ATTEMPT_CANCELLED' || record.outcome === 'cancelled') {
      this.#markCancelled(attempt);
      this.onLatency?.(duration);
    } else {
      record.outcome = 'failed';
      record.message = error.message;
    }
    if (this.#done) return null;
    this.#lastError = error;
    return { kind: 'error', attempt, error };
  }

  #push(o: Outcome): void {
    (this.#queue ??= []).push(o);
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /**
   * The next outcome, in the order they happened; `null` when `timeoutMs` passes first (the
   * hedge timer). A non-accepted answer becomes the fallback, replacing (and aborting) the older.
   */
  async next(timeoutMs?: number): Promise<Outcome | null> {
    if (this.#queue === null || this.#queue.length === 0) {
      if (timeoutMs !== undefined && timeoutMs <= 0) return null;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        if (timeoutMs !== undefined) timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.#wake = null;
      if (this.#queue === null || this.#queue.length === 0) return null;
    }
    const o = this.#queue.shift()!;
    if (o.kind === 'answer' && !o.accepted) {
      if (this.#fallback !== null) this.#drop(this.#fallback, lost());
      this.#fallback = o.attempt;
    }
    return o;
  }

  /**
   * Whether the failure in `o` allows another attempt (STYLE.md §7): never after the deadline or
   * with a body that cannot be sent again; after a connect failure always (nothing was sent);
   * after the target saw the request only for idempotent methods or with the route's consent.
   */
  mayRetry(o: Outcome, consent: boolean): boolean {
    if (this.run.signal.aborted || !this.run.replayable) return false;
    if (o.kind === 'error') {
      if (o.error.code === 'ATTEMPT_CANCELLED') return false;
      // Refused before sending (issue 15): every target would refuse it the same way.
      if (o.error instanceof AttemptError && o.error.phase === 'request') return false;
      if (o.error instanceof AttemptError && o.error.phase === 'connect') return true;
    }
    return this.run.idempotent || consent;
  }

  /** Ends the race with `o` as the answer to stream: every other attempt is aborted at once. */
  win(o: Extract<Outcome, { kind: 'answer' }>): AttemptResult {
    return this.#win(o.attempt, o.accepted);
  }

  #win(winner: Attempt, accepted: boolean): AttemptResult {
    this.#end();
    winner.record.outcome = accepted ? 'accepted' : 'relayed';
    this.#fallback = null;
    for (const a of this.#attempts) {
      if (a === winner) continue;
      if (a.settled) this.#drop(a, lost());
      else {
        this.#markCancelled(a);
        a.controller?.abort(lost());
      }
    }
    return winner.result!;
  }

  /** Aborts an answered attempt's response (once); an accepted one becomes `cancelled`. */
  #drop(a: Attempt, reason: Error): void {
    if (a.result === null || a.dropped) return;
    a.dropped = true;
    if (a.record.outcome === 'pending') this.#markCancelled(a);
    a.result.abort(reason);
  }

  #markCancelled(a: Attempt): void {
    a.record.outcome = 'cancelled';
  }

  /**
   * Ends the race with nothing accepted: the last answer is relayed if there is one; otherwise
   * a 502/504 (the code of the deadline or of the last failure) listing every attempt.
   */
  finish(): AttemptResult {
    const signal = this.run.signal;
    const reason = signal.aborted ? signal.reason : null;
    if (this.#fallback !== null && !clientClosed(reason)) return this.#win(this.#fallback, false);
    this.#end();
    for (const a of this.#attempts) {
      if (a.settled) this.#drop(a, (signal.reason as Error | undefined) ?? lost());
      else {
        this.#markCancelled(a);
        a.controller?.abort(signal.aborted ? asGatewayError(signal.reason) : lost());
      }
    }
    const details = { attempts: this.run.attempts };
    if (isGatewayError(reason)) {
      if (reason.code === 'CLIENT_CLOSED') throw reason;
      throw new GatewayError(reason.code, reason.message, { details });
    }
    const last = this.#lastError;
    if (last === null)
      throw new GatewayError('NO_TARGET_AVAILABLE', `no target is available in pool "${this.run.pool.name}"`);
    const n = this.#attempts.length;
    throw new GatewayError(last.code, n > 1 ? `${n} attempts failed; last: ${last.message}` : last.message, {
      cause: last,
      details,
    });
  }

  #end(): void {
    this.#done = true;
    if (this.#onAbort !== null) this.run.signal.removeEventListener('abort', this.#onAbort);
  }
}
