/**
 * Deliveries in the primary (cluster mode, issue 6): workers accept and enqueue, the primary
 * delivers (DESIGN.md "Processes"). The primary serves no traffic, so it keeps its own
 * upstream Registry with just the pools that defer routes name: the same selectors, target
 * states and passive health as a worker's, and the active-health verdicts the Manager pushes.
 * With `--workers 0` the runtime's own DeferService delivers instead (cluster/runtime.ts).
 */
import { compile } from '../config/compile.ts';
import type { Config } from '../config/schema.ts';
import { DeferService, type DeferView, deferRoutes } from '../defer/service.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { forward as baseForward } from '../proxy/forward.ts';
import { recordOutcomes } from '../proxy/outcomes.ts';
import { strategyStats } from '../strategy/stats.ts';
import { type DownTargets, Registry } from '../upstream/registry.ts';
import type { DataPlane } from './manager.ts';

export interface DeliveryHost {
  readonly service: DeferService;
  /** A new served config (the Manager validated it). */
  apply(config: Config): void;
  health(down: DownTargets): void;
  /** Stop claiming, finish or release within `graceMs`, close the store and connections. */
  close(graceMs: number): Promise<void>;
}

export async function startDeliveryHost(
  config: Config,
  log: Logger,
  metrics: Metrics | null = null,
  share?: () => number,
): Promise<DeliveryHost> {
  const registry = new Registry();
  // Its attempts are in flight to the same targets as the workers': the sum is the truth.
  // Its strategy counters are the deliveries' connect retries (issue 11: deliveries run through the strategy runner).
  const unwatch = metrics?.addData({ inflight: () => 0, targets: () => registry.liveStats(), strategies: strategyStats });
  let view: DeferView = { routes: [], pools: new Map(), tracing: null };
  const build = (c: Config) => {
    const { compiled, problems } = compile(c);
    if (!compiled) throw new Error(`invalid config: ${problems.map((p) => p.message).join('; ')}`);
    const routes = deferRoutes(compiled.routes);
    const names = new Set(routes.map((r) => (r.action.kind === 'defer' ? r.action.spec.pool : '')));
    view = Object.freeze({
      routes,
      pools: registry.provision(compiled.pools.filter((p) => names.has(p.name))),
      tracing: c.tracing.enabled ? c.tracing : null,
    });
  };
  const service = new DeferService({
    log,
    forward: recordOutcomes(baseForward),
    view: () => view,
    deliver: true,
    metrics,
    share,
  });
  build(config);
  try {
    await service.apply(config);
  } catch (err) {
    await registry.destroy();
    unwatch?.();
    throw err;
  }
  return {
    service,
    apply(c) {
      build(c);
      service.apply(c).catch((err) => log.error({ err }, 'deliveries: could not apply the new config'));
    },
    health: (down) => registry.setDown(down),
    async close(graceMs) {
      await service.stopDelivering(graceMs);
      await service.close();
      await registry.close();
      unwatch?.();
    },
  };
}

/** The Manager's data plane plus the primary's deliverers: config and health reach both. */
export function withDeliveries(plane: DataPlane, host: DeliveryHost): DataPlane {
  return {
    apply: async (config, version) => {
      host.apply(config);
      await plane.apply(config, version);
    },
    health: (down) => {
      host.health(down);
      plane.health(down);
    },
    stats: () => plane.stats(),
    metrics: () => plane.metrics(),
    workers: () => plane.workers(),
  };
}
