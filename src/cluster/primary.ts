/**
 * The primary (manager) side of `node:cluster`: forks one worker per core, hands each the
 * served config and the health verdicts, replaces workers that die (re-sending both, so a
 * restarted worker loses no admin change), collects stats and metrics, and coordinates graceful
 * shutdown.
 * What to serve is decided by the Manager (manager.ts); this file only moves it.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';
import { parseDuration } from '../lib/units.ts';
import type { Logger } from '../observability/logger.ts';
import type { MetricsSnapshot } from '../observability/metrics.ts';
import type { DownTargets } from '../upstream/registry.ts';
import type { WorkerStats } from '../upstream/stats.ts';
import type { DataPlane } from './manager.ts';
import type { PrimaryMessage, WorkerMessage } from './messages.ts';

export interface Primary extends DataPlane {
  /** Resolves when every worker has reported ready. */
  ready: Promise<number>;
  shutdown(): Promise<void>;
}

/** The start was cut short by a stop signal (main stops gracefully instead of failing). */
export class StartInterrupted extends Error {
  override name = 'StartInterrupted';
  constructor(signal: string) {
    super(`${signal} during start`);
  }
}

/** How long a worker's death by SIGTERM/SIGINT waits for this process to hear the same signal. */
const SIGNAL_RACE_MS = 200;

/** A worker dying this soon after start counts as a crash loop and delays the next fork. */
const EARLY_DEATH_MS = 2000;
const MAX_RESTART_DELAY_MS = 10_000;
/** Longest wait for every worker to confirm a config (the bound is one second). */
const APPLY_WAIT_MS = 1000;
/** Longest wait for a stats or metrics answer; a stuck worker's counters are left out. */
const STATS_WAIT_MS = 1000;

export function startPrimary(initial: Config, workers: number, log: Logger): Primary {
  let config = initial;
  let version = 0;
  let down: DownTargets = {};
  let stopping = false;
  let restartDelay = 0;
  const started = new Map<Worker, number>();
  /** Config version each serving worker confirmed. */
  const applied = new Map<Worker, number>();
  let appliedWaiters: Array<{ version: number; resolve: () => void }> = [];
  let statsId = 0;
  const statsWaiters = new Map<number, { pending: Set<Worker>; reports: unknown[]; done: () => void }>();
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('./worker-entry.ts', import.meta.url)),
    args: [],
    silent: false,
  });

  let readyCount = 0;
  let resolveReady: (port: number) => void = () => {};
  let rejectReady: (e: Error) => void = () => {};
  const ready = new Promise<number>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });

  const send = (w: Worker, m: PrimaryMessage) => {
    if (w.isConnected()) w.send(m);
  };
  const live = () =>
    Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  /** Live workers that serve (confirmed a config). */
  const serving = () => live().filter((w) => applied.has(w));

  const settleApplied = () => {
    const current = serving();
    appliedWaiters = appliedWaiters.filter((waiter) => {
      if (current.some((w) => (applied.get(w) ?? 0) < waiter.version)) return true;
      waiter.resolve();
      return false;
    });
  };

  /** A worker that died answers no stats request. */
  const settleStats = (w: Worker) => {
    for (const s of statsWaiters.values()) if (s.pending.delete(w) && s.pending.size === 0) s.done();
  };

  const fork = () => {
    const w = cluster.fork();
    started.set(w, Date.now());
    // A message to a worker that is dying (its IPC pipe already broken, isConnected() not yet
    // false) fails with EPIPE, emitted here: the worker's exit is handled on 'exit'.
    w.on('error', (err) => log.debug({ worker: w.id, err: err.message }, 'message to a worker that is going failed'));
    w.on('online', () => {
      send(w, { type: 'config', config, version });
      send(w, { type: 'health', down });
    });
    w.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') {
        restartDelay = 0;
        if (++readyCount === workers) resolveReady(m.port);
      } else if (m.type === 'applied') {
        applied.set(w, Math.max(applied.get(w) ?? 0, m.version));
        settleApplied();
      } else if (m.type === 'stats' || m.type === 'metrics') {
        const s = statsWaiters.get(m.id);
        if (s?.pending.delete(w)) {
          s.reports.push(m.type === 'stats' ? m.stats : m.snapshot);
          if (s.pending.size === 0) s.done();
        }
      } else if (m.type === 'fatal') {
        log.fatal({ worker: w.id, message: m.message }, 'worker could not start');
        rejectReady(new Error(m.message));
        stopping = true;
      }
    });
  };

  // A stop signal sent to the whole process group reaches the workers too; one still loading
  // its modules (before worker-entry.ts could ignore it) dies of it. That is the stop the
  // operator asked for, not a crash: no error, no replacement. This process may hear the
  // signal a moment after it hears of the death, so a death by SIGTERM/SIGINT is judged a
  // little later.
  let signalled = false;
  for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => (signalled = true));

  cluster.on('exit', (w, code, signal) => {
    const lived = Date.now() - (started.get(w) ?? 0);
    started.delete(w);
    applied.delete(w);
    settleApplied();
    settleStats(w);
    if (stopping) return;
    const byStopSignal = signal === 'SIGTERM' || signal === 'SIGINT';
    const judge = () => {
      if (stopping) return;
      if (signalled && byStopSignal) {
        // Before every worker was ready the start cannot complete: main stops instead.
        if (readyCount < workers) rejectReady(new StartInterrupted(signal));
        return;
      }
      restartDelay =
        lived < EARLY_DEATH_MS ? Math.min(MAX_RESTART_DELAY_MS, Math.max(250, restartDelay * 2)) : 0;
      log.error(
        { worker: w.id, pid: w.process.pid, code, signal, restart_in_ms: restartDelay },
        'worker died; replacing it',
      );
      const again = setTimeout(() => {
        if (!stopping) fork();
      }, restartDelay);
      // Once serving, other handles keep this process alive; while starting, this one must.
      if (readyCount >= workers) again.unref();
    };
    if (byStopSignal && !signalled) setTimeout(judge, SIGNAL_RACE_MS);
    else judge();
  });

  /** One answer per serving worker, or fewer once STATS_WAIT_MS passed. */
  const ask = <T>(type: 'stats' | 'metrics'): Promise<T[]> => {
    const id = ++statsId;
    const pending = new Set(serving());
    const reports: T[] = [];
    if (pending.size === 0) return Promise.resolve(reports);
    return new Promise<T[]>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        statsWaiters.delete(id);
        resolve(reports);
      };
      const timer = setTimeout(done, STATS_WAIT_MS);
      statsWaiters.set(id, { pending, reports: reports as unknown[], done });
      for (const w of pending) send(w, { type, id });
    });
  };

  for (let i = 0; i < workers; i++) fork();

  return {
    ready,
    apply(next: Config, v: number) {
      config = next;
      version = v;
      for (const w of live()) send(w, { type: 'config', config, version });
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ version: v }, 'not every worker confirmed the new config within 1 s');
          resolve();
        }, APPLY_WAIT_MS);
        appliedWaiters.push({
          version: v,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        settleApplied();
      });
    },
    health(next: DownTargets) {
      down = next;
      for (const w of live()) send(w, { type: 'health', down });
    },
    stats: () => ask<WorkerStats>('stats'),
    metrics: () => ask<MetricsSnapshot>('metrics'),
    workers: () => serving().length,
    async shutdown() {
      stopping = true;
      const alive = Object.values(cluster.workers ?? {}).filter(
        (w): w is Worker => w !== undefined && !w.isDead(),
      );
      const exits = alive.map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
      for (const w of alive) send(w, { type: 'shutdown' });
      // Workers enforce the grace period themselves; this only guards against a stuck one.
      const hard = setTimeout(
        () => {
          for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL');
        },
        parseDuration(config.shutdown.grace) + 5000,
      );
      await Promise.all(exits);
      clearTimeout(hard);
    },
  };
}
