/** The typed IPC between the primary and its workers. */
import type { Config } from '../config/schema.ts';

export type PrimaryMessage =
  /** The validated config to serve (sent at start and on every change). */
  | { type: 'config'; config: Config }
  /** Drain and exit 0 within the grace period. */
  | { type: 'shutdown' };

export type WorkerMessage =
  /** The worker's listener is bound and serving. */
  | { type: 'ready'; port: number }
  /** The worker could not start (bad listen address…); the primary stops. */
  | { type: 'fatal'; message: string };
