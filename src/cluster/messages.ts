/** The typed IPC between the primary and its workers. */
import type { Config } from '../config/schema.ts';
import type { MetricsSnapshot } from '../observability/metrics.ts';
import type { DownTargets } from '../upstream/registry.ts';
import type { WorkerStats } from '../upstream/stats.ts';

export type PrimaryMessage =
  /**
   * The validated config to serve: the file's plus admin API changes. Sent at start, to each
   * new worker, and on every change; `version` grows by one per change.
   */
  | { type: 'config'; config: Config; version: number }
  /** The targets active health checks found down; sent to new workers and on change only. */
  | { type: 'health'; down: DownTargets }
  /** Asks for the worker's counters; answered by a `stats` message with the same id. */
  | { type: 'stats'; id: number }
  /** Asks for the worker's Prometheus metrics; answered by a `metrics` message with the same id. */
  | { type: 'metrics'; id: number }
  /** Drain and exit 0 within the grace period. */
  | { type: 'shutdown' };

export type WorkerMessage =
  /** The worker's listener is bound and serving. */
  | { type: 'ready'; port: number }
  /** The worker could not start (bad listen address…); the primary stops. */
  | { type: 'fatal'; message: string }
  /** The worker serves config `version` now (or could not build it: `error`). */
  | { type: 'applied'; version: number; error?: string }
  | { type: 'stats'; id: number; stats: WorkerStats }
  /** `snapshot` is empty with `metrics.enabled: false`. */
  | { type: 'metrics'; id: number; snapshot: MetricsSnapshot };
