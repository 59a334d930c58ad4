/**
 * The Deliverer of one `defer` route: claims its jobs with a lease, delivers each once
 * (delivery.ts), and completes it, schedules a retry with backoff and jitter, or lets the
 * store dead-letter it after `max_attempts`. At most `concurrency` deliveries run at once and
 * at most `rate` start per second.
 *
 * Claims come in batches, sized by the free slots and the rate tokens, and only once a
 * quarter of the slots is free: each claim is a write transaction, and SQLite's lock is not
 * fair across processes, so a deliverer claiming one job at a time would starve the workers'
 * enqueues. When a claim comes back empty the deliverer waits for a wake-up (an enqueue, a
 * release, a retry it scheduled itself) instead of polling in a loop.
 *
 * Leases are short and renewed (issue 16 item 6): while deliveries run, one heartbeat every
 * third of the lease renews all of them in one statement, so a job outlives its lease only when
 * this process stops renewing it (killed, stalled, cut off from the store) — then another
 * instance takes it within about one lease. A renewal that finds a job no longer ours (another
 * instance claimed it after our lease ran out, or an operator deleted it) stops caring about
 * it: the delivery runs on, but its outcome is not recorded (the store would refuse it anyway).
 *
 * Shutdown (`stop(graceMs)`): stop claiming, let in-flight deliveries finish within the
 * grace period, then abort the rest and release their leases without counting the attempt.
 */
import { performance } from 'node:perf_hooks';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { Deadline } from '../deadline.ts';
import type { Forward } from '../proxy/forward.ts';
import type { Route } from '../routing/route.ts';
import type { AttemptRecord } from '../strategy/types.ts';
import type { Pool } from '../upstream/pool.ts';
import { backoffDelay } from './backoff.ts';
import { deliver } from './delivery.ts';
import type { Job, Queue } from './queue.ts';
import { RateLimiter } from './rate.ts';
import type { DeferSpec } from './spec.ts';

/** The `x-request-id` stored with the job (the accept side always adds one). */
function requestIdOf(job: Job): string | undefined {
  for (const [name, value] of job.headers) if (name.toLowerCase() === 'x-request-id') return value;
  return undefined;
}

/** The route as served now, or null once it is gone (or no longer defers). */
export interface DeliveryTarget {
  route: Route;
  spec: DeferSpec;
  pool: Pool | undefined;
  /** `tracing.enabled`: each delivery gets a span id of its own (issue 7). */
  tracing: boolean;
}

export interface DelivererOptions {
  routeId: string;
  queue: Queue;
  forward: Forward;
  log: Logger;
  resolve: () => DeliveryTarget | null;
  /** Injected for tests: the jitter source. */
  random?: () => number;
  /**
   * Issue 16 item 4: this instance's share (0 < share <= 1) of the route's `rate` and
   * `concurrency`, read before every claim; default 1 (the limits are per instance).
   */
  share?: () => number;
  /** Each delivery attempt's outcome and duration (issue 7). */
  metrics?: Metrics | null;
}

/** Longest a claim batch gets (also bounded by free slots and rate tokens). */
const CLAIM_BATCH_MAX = 256;
/** An idle deliverer still claims this often: jobs retried by other processes, leases expiring. */
const IDLE_POLL_MS = 1000;
/** Pause after a store error before claiming again. */
const ERROR_PAUSE_MS = 1000;
/** Retry times remembered for wake-ups; beyond this the idle poll finds them. */
const RETRY_TIMES_MAX = 10_000;
/**
 * Leases are renewed every lease / RENEW_PER_LEASE: two heartbeats in a row may fail (a slow
 * commit, a busy SQLite lock) before the job is taken by another instance.
 */
const RENEW_PER_LEASE = 3;
/**
 * A route with `timeout: 0` still bounds each delivery by this: a renewed lease no longer does
 * (it did before issue 16, at the old 5-minute default), and a target that never answers must
 * not hold a slot and a job forever.
 */
const UNTIMED_DELIVERY_MS = 5 * 60_000;

interface Inflight {
  deadline: Deadline;
  /**
   * The lease was given back (shutdown) or is no longer ours (a renewal said so): the outcome
   * must not be recorded.
   */
  released: boolean;
  /** The delivery has returned: its outcome is being recorded, the lease needs no renewal. */
  finished: boolean;
  done: Promise<void>;
}

interface Idle {
  controller: AbortController;
  until: number;
  timer: NodeJS.Timeout | undefined;
}

export class Deliverer {
  readonly routeId: string;
  readonly #queue: Queue;
  readonly #forward: Forward;
  readonly #log: Logger;
  readonly #resolve: () => DeliveryTarget | null;
  readonly #random: () => number;
  readonly #metrics: Metrics | null;
  readonly #share: () => number;
  readonly #inflight = new Map<string, Inflight>();
  readonly #stop = new AbortController();
  #limiter: RateLimiter | null = null;
  #slotWaiter: (() => void) | null = null;
  /** Sorted times (ms epoch) of retries this deliverer scheduled: when to claim again. */
  #retryTimes: number[] = [];
  #idle: Idle | null = null;
  #nudge = new AbortController();
  #loop: Promise<void> | null = null;
  #stopping: Promise<void> | null = null;
  /** The lease of the latest claim: what renewals extend to. */
  #leaseMs = 0;
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(options: DelivererOptions) {
    this.routeId = options.routeId;
    this.#queue = options.queue;
    this.#forward = options.forward;
    this.#log = options.log.child({ route: options.routeId, component: 'deliverer' });
    this.#resolve = options.resolve;
    this.#random = options.random ?? Math.random;
    this.#metrics = options.metrics ?? null;
    this.#share = options.share ?? (() => 1);
  }

  /** The route's settings changed (a reload): end a rate or idle wait now and re-read them. */
  wake(): void {
    const nudge = this.#nudge;
    this.#nudge = new AbortController();
    nudge.abort();
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  start(): void {
    this.#loop ??= this.#supervise();
  }

  /** Idempotent; resolves when every delivery has ended or been released. */
  stop(graceMs: number): Promise<void> {
    this.#stopping ??= this.#shutdown(graceMs);
    return this.#stopping;
  }

  /** A bug in the loop must not silently stop a route's deliveries: log it and start over. */
  async #supervise(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#run();
        return;
      } catch (err) {
        this.#log.error({ err }, 'deliverer failed; restarting it');
        await sleep(ERROR_PAUSE_MS, signal);
      }
    }
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const current = this.#resolve();
      if (current === null) return;
      const { spec, pool } = current;
      // Every target drained (maintenance, issue 7): hold the jobs instead of spending their
      // attempts on NO_TARGET_AVAILABLE. Enabling one is a new snapshot, which wakes us.
      if (pool !== undefined && pool.targets.length > 0 && pool.targets.every((t) => t.spec.drain)) {
        await sleep(IDLE_POLL_MS, AbortSignal.any([signal, this.#nudge.signal]));
        continue;
      }
      // Issue 16 item 4: with the cluster store, the route's limits are the cluster's; this
      // instance takes its share (at least one delivery at a time, so every instance drains).
      const given = this.#share();
      const share = given > 0 && given < 1 ? given : 1;
      const limiter = this.#rateLimiter(spec.ratePerSecond === null ? null : spec.ratePerSecond * share);
      const concurrency = Math.max(1, Math.floor(spec.concurrency * share));
      const free = concurrency - this.#inflight.size;
      if (free <= 0 || (this.#inflight.size > 0 && free < Math.ceil(concurrency / 4))) {
        await this.#slotFreed();
        continue;
      }
      let n = Math.min(free, CLAIM_BATCH_MAX);
      if (limiter !== null) {
        const tokens = limiter.available();
        if (tokens < 1) {
          // Capped, so that a reload raising a very low rate takes effect within IDLE_POLL_MS.
          await sleep(
            Math.min(limiter.waitMs(), IDLE_POLL_MS),
            AbortSignal.any([signal, this.#nudge.signal]),
          );
          continue;
        }
        n = Math.min(n, tokens);
      }
      let jobs: Job[];
      try {
        jobs = await this.#queue.claim(this.routeId, n, spec.leaseMs);
      } catch (err) {
        if (signal.aborted) return;
        this.#log.error({ err }, 'claim failed; retrying');
        await sleep(ERROR_PAUSE_MS, signal);
        continue;
      }
      if (signal.aborted) {
        await this.#release(jobs.map((j) => j.id));
        return;
      }
      if (jobs.length === 0) {
        await this.#waitIdle(signal);
        continue;
      }
      limiter?.take(jobs.length);
      for (const job of jobs) this.#start(job, current);
      this.#leaseMs = spec.leaseMs;
      this.#heartbeat();
    }
  }

  /** Schedules the next renewal while deliveries are in flight (one timer per deliverer). */
  #heartbeat(): void {
    if (this.#renewTimer !== undefined || this.#inflight.size === 0) return;
    const every = Math.max(1, Math.floor(this.#leaseMs / RENEW_PER_LEASE));
    this.#renewTimer = setTimeout(() => void this.#renew(), every);
  }

  /** One heartbeat: renew every running delivery's lease; drop the ones no longer ours. */
  async #renew(): Promise<void> {
    const ids: string[] = [];
    for (const [id, e] of this.#inflight) if (!e.released && !e.finished) ids.push(id);
    try {
      if (ids.length > 0) {
        const kept = new Set(await this.#queue.renew(ids, this.#leaseMs));
        for (const id of ids) {
          const e = this.#inflight.get(id);
          if (e === undefined || e.released || e.finished || kept.has(id)) continue;
          e.released = true;
          this.#log.warn(
            { job: id },
            'lease lost (another instance took the job, or it was deleted): this delivery will not be recorded',
          );
        }
      }
    } catch (err) {
      // The store is away or slow: the next heartbeat tries again; past the lease, another
      // instance may deliver the job too (at least once).
      this.#log.warn({ err, jobs: ids.length }, 'could not renew leases');
    } finally {
      this.#renewTimer = undefined;
      this.#heartbeat();
    }
  }

  #start(job: Job, current: DeliveryTarget): void {
    const { route, spec, pool } = current;
    const deadline = new Deadline().within(route.timeoutMs > 0 ? route.timeoutMs : UNTIMED_DELIVERY_MS, 'delivery');
    const entry: Inflight = { deadline, released: false, finished: false, done: Promise.resolve() };
    // Our own expired lease claimed again while the first delivery still runs (the store was
    // away for a whole lease): the new claim is the one that counts.
    const superseded = this.#inflight.get(job.id);
    if (superseded !== undefined) superseded.released = true;
    this.#inflight.set(job.id, entry);
    entry.done = (async () => {
      // The request id the job was accepted under: every line about it carries it (issue 7).
      const reqId = requestIdOf(job);
      try {
        const request = { ...job, attempt: job.attempts };
        const started = performance.now();
        const attempts: AttemptRecord[] = [];
        const outcome = await deliver(request, route, spec, pool, this.#forward, deadline, attempts, current.tracing);
        const seconds = (performance.now() - started) / 1000;
        deadline.clear();
        // Each attempt of the delivery, counted where a proxied request's are (issue 11).
        this.#metrics?.attempts(this.routeId, spec.pool, attempts);
        entry.finished = true;
        if (entry.released) return;
        if (outcome.ok) {
          await this.#queue.complete(job.id);
          this.#metrics?.delivery(this.routeId, 'delivered', seconds);
          this.#log.debug(
            { req_id: reqId, job: job.id, attempt: job.attempts, target: outcome.target },
            'delivered',
          );
          return;
        }
        const retryAt = Date.now() + backoffDelay(job.attempts, spec.backoff, undefined, this.#random);
        const state = await this.#queue.fail(job.id, outcome.error, retryAt);
        if (state === 'dead') {
          this.#metrics?.delivery(this.routeId, 'dead', seconds);
          this.#log.warn(
            {
              req_id: reqId,
              job: job.id,
              attempts: job.attempts,
              target: outcome.target,
              error: outcome.error,
            },
            'job dead-lettered',
          );
        } else if (state === 'pending') {
          this.#metrics?.delivery(this.routeId, 'retry', seconds);
          this.#rememberRetry(retryAt);
          this.#log.debug(
            { req_id: reqId, job: job.id, attempt: job.attempts, error: outcome.error, retry_at: retryAt },
            'retry',
          );
        }
      } catch (err) {
        // The lease runs out and the job is delivered again: at least once.
        this.#log.error({ err, req_id: reqId, job: job.id }, 'could not record a delivery outcome');
      } finally {
        deadline.clear();
        if (this.#inflight.get(job.id) === entry) this.#inflight.delete(job.id);
        const waiter = this.#slotWaiter;
        this.#slotWaiter = null;
        waiter?.();
      }
    })();
  }

  #slotFreed(): Promise<void> {
    return new Promise((resolve) => {
      this.#slotWaiter = resolve;
    });
  }

  #rateLimiter(perSecond: number | null): RateLimiter | null {
    if (perSecond === null) return (this.#limiter = null);
    if (this.#limiter?.perSecond !== perSecond) this.#limiter = new RateLimiter(perSecond);
    return this.#limiter;
  }

  #rememberRetry(at: number): void {
    const times = this.#retryTimes;
    if (times.length >= RETRY_TIMES_MAX) return;
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid] < at) lo = mid + 1;
      else hi = mid;
    }
    times.splice(lo, 0, at);
    // An idle wait in progress must end when this retry falls due.
    const idle = this.#idle;
    if (idle !== null && at < idle.until) {
      clearTimeout(idle.timer);
      idle.until = at;
      idle.timer = setTimeout(() => idle.controller.abort(), Math.max(0, at - Date.now()));
    }
  }

  /** Waits for new work: a wake-up from the store, the next retry this deliverer scheduled, or IDLE_POLL_MS. */
  async #waitIdle(signal: AbortSignal): Promise<void> {
    const now = Date.now();
    const times = this.#retryTimes;
    let due = 0;
    while (due < times.length && times[due] <= now) due++;
    if (due > 0) times.splice(0, due);
    const wait = Math.max(1, Math.min(IDLE_POLL_MS, (times[0] ?? Number.POSITIVE_INFINITY) - now));
    const idle: Idle = { controller: new AbortController(), until: now + wait, timer: undefined };
    this.#idle = idle;
    try {
      await this.#queue.waitForWork(this.routeId, {
        maxWaitMs: wait,
        signal: AbortSignal.any([signal, idle.controller.signal, this.#nudge.signal]),
      });
    } finally {
      clearTimeout(idle.timer);
      this.#idle = null;
    }
  }

  async #release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    try {
      await this.#queue.release(ids);
    } catch (err) {
      this.#log.error({ err, jobs: ids.length }, 'could not release leases; they expire instead');
    }
  }

  async #shutdown(graceMs: number): Promise<void> {
    try {
      await this.#finish(graceMs);
    } finally {
      clearTimeout(this.#renewTimer); // renewals ran until the last delivery ended
      this.#renewTimer = undefined;
    }
  }

  async #finish(graceMs: number): Promise<void> {
    this.#stop.abort();
    this.#slotWaiter?.();
    await this.#loop;
    if (this.#inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([Promise.all([...this.#inflight.values()].map((e) => e.done)), expired]);
      clearTimeout(timer);
    }
    if (this.#inflight.size === 0) return;
    const left = [...this.#inflight.entries()];
    for (const [, e] of left) e.released = true;
    for (const [, e] of left) e.deadline.abort(new GatewayError('SHUTTING_DOWN'));
    this.#log.warn({ jobs: left.length }, 'grace period over: deliveries aborted, leases released');
    await this.#release(left.map(([id]) => id));
    await Promise.all(left.map(([, e]) => e.done));
  }
}

/** Resolves after `ms` or when `signal` aborts, whichever is first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
