/**
 * The multiplex engine of one route: created once from compiled options, it owns the route's
 * undici Agent (keep-alive pools per address, guarded connector, undici's dns and redirect
 * interceptors) and a limiter of outbound requests. `run()` sends every item under the
 * request's one deadline and answers in order.
 *
 * One handler per route on purpose: pooled connections were checked against THIS route's
 * allow list when they were opened, so they must never serve a route with another list.
 */
import { isUtf8 } from 'node:buffer';
import type { ConnectionOptions } from 'node:tls';
import { Agent, type Dispatcher, interceptors } from 'undici';
import { Deadline } from '../deadline.ts';
import { tlsOptions } from '../lib/tls.ts';
import { passingOverContinue } from '../lib/continue.ts';
import { classifyError } from './classify.ts';
import { dnsInterceptor, shareQueries, systemResolve } from '../lib/dns.ts';
import { Limiter } from './limiter.ts';
import type { MultiplexOptions } from './schema.ts';
import { ByteBudget, type SendContext, sendItem } from './send.ts';
import { guardedConnector, guardedResolve, type Resolve, TargetGuard } from './ssrf.ts';
import type { Batch, BatchItem, BatchResult, ItemErrorCode, ItemResult } from './types.ts';

export interface HandlerDeps {
  /** Replaces system DNS (tests, embedding); answers still pass the guard and the dns interceptor's cache. */
  resolve?: Resolve;
  /** Extra TLS options for target connections, e.g. `{ ca }` to trust a private CA. */
  tls?: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'>;
  /** Share one limiter between handlers to bound outbound requests across routes. */
  limiter?: Limiter;
}

/** DNS answers without a TTL (getaddrinfo) are kept this long, in seconds. */
const FALLBACK_TTL = 5;
const DNS_QUERY_TIMEOUT_MS = 2000;
/** Distinct names cached per route; batch authors choose names, so this must be bounded. */
const DNS_MAX_ENTRIES = 10_000;

function failure(code: ItemErrorCode, message: string, duration: number): ItemResult {
  return { error: { code, message }, duration_msec: duration };
}

export class MultiplexHandler {
  readonly #opts: MultiplexOptions;
  readonly #agent: Agent;
  /** The agent with the dns and redirect interceptors composed onto it. */
  readonly #dispatcher: Dispatcher;
  readonly #limiter: Limiter;

  constructor(opts: MultiplexOptions, deps: HandlerDeps = {}) {
    this.#opts = opts;
    const guard = new TargetGuard(opts.allow);
    const resolve = shareQueries(
      deps.resolve ?? systemResolve({ fallbackTtl: FALLBACK_TTL, timeoutMs: DNS_QUERY_TIMEOUT_MS }),
    );
    this.#agent = new Agent({
      // The route's own `ca`/`cert`/`key` (issue 14 item 4); the guard stays in front of them.
      connect: passingOverContinue(
        guardedConnector(guard, resolve, { timeout: opts.maxTimeoutMs, ...tlsOptions(opts.tls), ...deps.tls }),
      ),
      keepAliveTimeout: opts.keepAliveTimeoutMs,
      // A cap, not just a bound: undici's Pool opens a new connection when a request arrives
      // in the tick between a response ending and its connection being marked free. Pools are
      // per address: the dns interceptor sends each request to the address it resolved.
      connections: opts.maxConnectionsPerOrigin,
    });
    // Issue 11: undici's own interceptors instead of a hand-written redirect loop and DNS cache.
    // The redirect interceptor is the outer one, so every hop passes the dns interceptor (and
    // with it the guard) and the guarded connector again.
    this.#dispatcher = this.#agent.compose(
      dnsInterceptor(guardedResolve(guard, resolve), { maxTtlMs: opts.dnsMaxTtlMs, maxEntries: DNS_MAX_ENTRIES }),
      interceptors.redirect({ throwOnMaxRedirect: true }),
    );
    this.#limiter = deps.limiter ?? new Limiter(opts.maxConcurrency);
  }

  /**
   * Runs every item and resolves with one result per item, in order, by the batch deadline at
   * the latest (unfinished items then report TIMEOUT). Per-item failures never reject.
   *
   * The batch deadline is the request's one deadline (issue 11): the pipeline passes its
   * RequestContext's `Deadline`, armed here with the batch `timeout_msec` (the earlier of that
   * and the route timeout wins); each item's own `timeout_msec` is a child deadline of it. A
   * plain AbortSignal (embedding, tests) is followed by a new Deadline. When the deadline ends
   * with TARGET_TIMEOUT (the batch's, the route's, or an `AbortSignal.timeout()`), the batch
   * ends with partial results; with any other reason everything in flight is aborted and the
   * promise rejects with CLIENT_CLOSED (or the GatewayError given as reason).
   */
  run(batch: Batch, deadlineOrSignal: Deadline | AbortSignal): Promise<BatchResult> {
    const deadline =
      deadlineOrSignal instanceof Deadline ? deadlineOrSignal : Deadline.follow(deadlineOrSignal);
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    // itemClock (Octoplex format): each item counts from the moment it got its slot; one still
    // waiting for a slot when the deadline passes reports 0.
    const starts = batch.itemClock ? new Array<number>(batch.items.length).fill(Number.NaN) : null;
    const sinceSlot = (i: number) => () =>
      Number.isNaN(starts![i]) ? 0 : Math.round(performance.now() - starts![i]);
    const elapsedOf = (i: number) => (starts === null ? elapsed : sinceSlot(i));
    const responses = new Array<ItemResult | undefined>(batch.items.length);
    const ctx: SendContext = {
      dispatcher: this.#dispatcher,
      maxItemBytes: this.#opts.maxItemBytes,
      maxRedirects: this.#opts.maxRedirects,
      decompress: this.#opts.decompress,
      budget: new ByteBudget(this.#opts.maxTotalBytes),
    };
    let open = batch.items.length;

    return new Promise<BatchResult>((resolve, reject) => {
      let done = false;
      const end = (finish: () => void) => {
        if (done) return;
        done = true;
        deadline.removeEventListener('abort', onAbort);
        // The batch is over: its timer stops (a deadline that ended has aborted every item's).
        deadline.clear();
        finish();
      };
      const answer = () => resolve({ responses: responses as ItemResult[] });
      const settle = (i: number, result: ItemResult) => {
        if (done || responses[i]) return;
        responses[i] = result;
        if (--open === 0) end(answer);
      };
      const onAbort = () => {
        const reason = deadline.reason!;
        if (reason.code !== 'TARGET_TIMEOUT') {
          end(() => reject(reason));
          return;
        }
        const message = `no complete response within ${batch.timeoutMs} ms (the batch timeout_msec)`;
        for (let i = 0; i < responses.length; i++) {
          responses[i] ??= failure('TIMEOUT', message, elapsedOf(i)());
        }
        end(answer);
      };
      if (open === 0) {
        end(answer);
        return;
      }
      if (deadline.aborted) {
        onAbort();
        return;
      }
      deadline.addEventListener('abort', onAbort, { once: true });
      deadline.within(batch.timeoutMs, 'batch');
      batch.items.forEach((item, i) => {
        const onSlot = starts === null ? undefined : () => (starts[i] = performance.now());
        this.#runItem(ctx, item, batch.timeoutMs, deadline, elapsedOf(i), onSlot).then((r) => settle(i, r));
      });
    });
  }

  async #runItem(
    ctx: SendContext,
    item: BatchItem,
    batchTimeoutMs: number,
    batch: Deadline,
    elapsed: () => number,
    onSlot?: () => void,
  ): Promise<ItemResult> {
    // The item's deadline derives from the batch's: it ends with it, or at its own timeout_msec.
    const deadline = batch.child();
    if (item.timeoutMs < batchTimeoutMs) deadline.within(item.timeoutMs, 'item');
    let release: (() => void) | undefined;
    try {
      release = await this.#limiter.acquire(deadline);
      onSlot?.();
      const res = await sendItem(ctx, item, deadline);
      const text = isUtf8(res.body);
      return {
        status: res.status,
        headers: res.headers,
        ...(text ? { body: res.body.toString('utf8') } : { body_base64: res.body.toString('base64') }),
        duration_msec: elapsed(),
      };
    } catch (err) {
      // Its own timeout: the batch's deadline has not ended (when it has, this result is not used).
      if (deadline.aborted && !batch.aborted) {
        return failure(
          'TIMEOUT',
          `no complete response within ${item.timeoutMs} ms (timeout_msec)`,
          elapsed(),
        );
      }
      const { code, message } = classifyError(err);
      return failure(code, message, elapsed());
    } finally {
      deadline.clear();
      release?.();
    }
  }

  /** The route options it was built from (the HTTP layer reads max_body_bytes, parseBatch the rest). */
  get options(): MultiplexOptions {
    return this.#opts;
  }

  /** Outbound requests in flight / waiting for a slot (for metrics and tests). */
  get load(): { active: number; waiting: number } {
    return { active: this.#limiter.active, waiting: this.#limiter.waiting };
  }

  /** Closes the target connections; waits for requests in flight (each bounded by its deadline). */
  close(): Promise<void> {
    return this.#agent.close();
  }

  /** Immediate: aborts whatever is in flight (after a shutdown grace period ran out). */
  destroy(): Promise<void> {
    return this.#agent.destroy();
  }
}

export function createMultiplexHandler(opts: MultiplexOptions, deps?: HandlerDeps): MultiplexHandler {
  return new MultiplexHandler(opts, deps);
}
