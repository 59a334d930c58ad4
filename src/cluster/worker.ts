/**
 * Worker process entry: waits for its config from the primary, serves it, applies config and
 * health updates, answers stats requests, and drains on `shutdown` (or on SIGTERM sent to it
 * directly).
 */
import { parseDuration } from '../lib/units.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { textDestination } from '../server/text-log.ts';
import { Metrics } from '../observability/metrics.ts';
import { VERSION } from '../version.ts';
import type { DownTargets } from '../upstream/registry.ts';
import type { PrimaryMessage, WorkerMessage } from './messages.ts';
import { type Runtime, startRuntime } from './runtime.ts';

let runtime: Runtime | null = null;
let log: Logger | null = null;
let starting = false;
/** Health and config that arrived while the runtime was starting. */
let pendingDown: DownTargets | null = null;
let pendingConfig: Extract<PrimaryMessage, { type: 'config' }> | null = null;

const send = (m: WorkerMessage) => process.send?.(m);

async function shutdown(): Promise<void> {
  await runtime?.close();
  log?.flush();
  process.exit(0);
}

process.on('message', async (msg: PrimaryMessage) => {
  if (msg.type === 'config') {
    if (runtime) {
      try {
        runtime.apply(msg.config, msg.version);
        send({ type: 'applied', version: msg.version });
      } catch (err) {
        // The primary validated it; failing here is a bug, and the old snapshot keeps serving.
        log?.error({ err, version: msg.version }, 'could not apply config');
        send({ type: 'applied', version: msg.version, error: (err as Error).message });
      }
      return;
    }
    if (starting) {
      pendingConfig = msg;
      return;
    }
    starting = true;
    // Issue 13: `log.format: text` rewrites this worker's lines too.
    const text = textDestination(msg.config.log);
    log = createLogger(msg.config.log.level, (text ?? undefined) as NodeJS.WritableStream | undefined);
    try {
      const metrics = msg.config.metrics.enabled ? new Metrics({ version: VERSION }) : null;
      const r = await startRuntime(msg.config, log, { metrics });
      const latest = pendingConfig ?? msg;
      r.apply(latest.config, latest.version);
      if (pendingDown) r.setDown(pendingDown);
      runtime = r;
      if (text !== null) text.view = () => r.pipeline.snapshot;
      send({ type: 'ready', port: r.port });
      send({ type: 'applied', version: latest.version });
    } catch (err) {
      send({ type: 'fatal', message: (err as Error).message });
      process.exit(1);
    }
  } else if (msg.type === 'health') {
    if (runtime) runtime.setDown(msg.down);
    else pendingDown = msg.down;
  } else if (msg.type === 'stats') {
    if (runtime) send({ type: 'stats', id: msg.id, stats: runtime.stats() });
  } else if (msg.type === 'metrics') {
    if (runtime) {
      const snapshot = (await runtime.metrics?.snapshot()) ?? [];
      send({ type: 'metrics', id: msg.id, snapshot });
    }
  } else if (msg.type === 'shutdown') {
    await shutdown();
  }
});

// Signals sent to the process group are ignored from the process's first moment (worker-entry.ts).
// Without the primary there is nothing to serve for.
process.on('disconnect', () => {
  void runtime?.close(runtime ? parseDuration('5s') : 0).finally(() => process.exit(0));
});
