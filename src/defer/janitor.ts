/**
 * The Janitor: purges delivered jobs older than `queue.retention`, every `janitor_interval`.
 * Done jobs are kept that long because they remember their `Idempotency-Key`; without a
 * janitor the queue file (or table) would only grow. Dead letters are left alone: an operator
 * retries or deletes them. Runs where the deliverers run (the primary, or the only process);
 * several gateways on one PostgreSQL each run one, harmlessly.
 */
import type { Logger } from '../observability/logger.ts';
import type { Queue } from './queue.ts';

/** Rows deleted per statement: short transactions, so enqueues are never held up for long. */
const PURGE_BATCH = 1000;

export interface JanitorOptions {
  queue: Queue;
  log: Logger;
  /** Delivered jobs older than this are purged; null = never. */
  retentionMs: number | null;
  intervalMs: number;
  now?: () => number;
}

export class Janitor {
  readonly #options: JanitorOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | null = null;
  #closed = false;

  constructor(options: JanitorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    if (this.#options.retentionMs === null || this.#closed) return;
    this.#timer = setInterval(() => {
      this.#round ??= this.purge()
        .then(() => {})
        .catch((err) => this.#options.log.error({ err }, 'janitor: purge failed'))
        .finally(() => {
          this.#round = null;
        });
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  /** One round: deletes every delivered job older than the retention; returns how many. */
  async purge(): Promise<number> {
    const { retentionMs, queue, log } = this.#options;
    if (retentionMs === null) return 0;
    const before = this.#now() - retentionMs;
    let total = 0;
    for (;;) {
      if (this.#closed) break;
      const n = await queue.purge(before, PURGE_BATCH);
      total += n;
      if (n < PURGE_BATCH) break;
      // Let accepts and deliveries in between the batches.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (total > 0) log.info({ purged: total }, 'janitor: delivered jobs purged');
    return total;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#round;
  }
}
