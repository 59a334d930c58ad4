/**
 * Worker process entry: waits for its config from the primary, serves it, and drains on
 * `shutdown` (or on SIGTERM sent to it directly).
 */
import { parseDuration } from '../config/units.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import type { PrimaryMessage, WorkerMessage } from './messages.ts';
import { type Runtime, startRuntime } from './runtime.ts';

let runtime: Runtime | null = null;
let log: Logger | null = null;
let starting = false;

const send = (m: WorkerMessage) => process.send?.(m);

async function shutdown(): Promise<void> {
  await runtime?.close();
  log?.flush();
  process.exit(0);
}

process.on('message', async (msg: PrimaryMessage) => {
  if (msg.type === 'config') {
    if (runtime) {
      runtime.apply(msg.config);
      return;
    }
    if (starting) return;
    starting = true;
    log = createLogger(msg.config.log.level);
    try {
      runtime = await startRuntime(msg.config, log);
      send({ type: 'ready', port: runtime.port });
    } catch (err) {
      send({ type: 'fatal', message: (err as Error).message });
      process.exit(1);
    }
  } else if (msg.type === 'shutdown') {
    await shutdown();
  }
});

// The primary coordinates shutdown; a signal sent to the whole process group is ignored here
// so that the primary's grace period is the one that counts.
process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
// Without the primary there is nothing to serve for.
process.on('disconnect', () => {
  void runtime?.close(runtime ? parseDuration('5s') : 0).finally(() => process.exit(0));
});
