/**
 * The primary (manager): forks one worker per core, hands each the validated config,
 * replaces workers that die, and coordinates graceful shutdown.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';
import { parseDuration } from '../config/units.ts';
import type { Logger } from '../observability/logger.ts';
import type { PrimaryMessage, WorkerMessage } from './messages.ts';

export interface Primary {
  /** Resolves when every worker has reported ready. */
  ready: Promise<number>;
  apply(config: Config): void;
  shutdown(): Promise<void>;
}

/** A worker dying this soon after start counts as a crash loop and delays the next fork. */
const EARLY_DEATH_MS = 2000;
const MAX_RESTART_DELAY_MS = 10_000;

export function startPrimary(initial: Config, workers: number, log: Logger): Primary {
  let config = initial;
  let stopping = false;
  let restartDelay = 0;
  const started = new Map<Worker, number>();
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('./worker.ts', import.meta.url)),
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

  const fork = () => {
    const w = cluster.fork();
    started.set(w, Date.now());
    w.on('online', () => send(w, { type: 'config', config }));
    w.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') {
        restartDelay = 0;
        if (++readyCount === workers) resolveReady(m.port);
      } else if (m.type === 'fatal') {
        log.fatal({ worker: w.id, message: m.message }, 'worker could not start');
        rejectReady(new Error(m.message));
        stopping = true;
      }
    });
  };

  cluster.on('exit', (w, code, signal) => {
    const lived = Date.now() - (started.get(w) ?? 0);
    started.delete(w);
    if (stopping) return;
    restartDelay =
      lived < EARLY_DEATH_MS ? Math.min(MAX_RESTART_DELAY_MS, Math.max(250, restartDelay * 2)) : 0;
    log.error(
      { worker: w.id, pid: w.process.pid, code, signal, restart_in_ms: restartDelay },
      'worker died; replacing it',
    );
    setTimeout(fork, restartDelay).unref();
  });

  for (let i = 0; i < workers; i++) fork();

  return {
    ready,
    apply(next: Config) {
      config = next;
      for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, { type: 'config', config });
    },
    async shutdown() {
      stopping = true;
      const alive = Object.values(cluster.workers ?? {}).filter(
        (w): w is Worker => w !== undefined && !w.isDead(),
      );
      const exits = alive.map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
      for (const w of alive) send(w, { type: 'shutdown' });
      // Workers enforce the grace period themselves; this only guards against a stuck one.
      const hard = setTimeout(() => {
        for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL');
      }, parseDuration(config.shutdown.grace) + 5000);
      await Promise.all(exits);
      clearTimeout(hard);
    },
  };
}
