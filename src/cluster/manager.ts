/**
 * The Manager: the control plane that the primary runs (or the only process, with
 * `--workers 0/1`). It holds the truth about what is served — the config file plus the
 * admin API's pool changes (membership.ts) — runs the active health checks once per
 * target, and pushes both to the data plane, which is either the local runtime or, through
 * primary.ts, every worker (re-sent to a worker that restarts). Changes are serialized, each
 * is validated by compile() before anything moves, and identical health updates are dropped.
 */
import { DEFAULT_SPECIAL_TARGETS, type SpecialClass, specialTargetProblem } from './special-targets.ts';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { type CompiledConfig, compile } from '../config/compile.ts';
import { listenersOf } from '../config/listeners.ts';
import { ConfigError, formatPath, formatProblem, type LoadedConfig, shapeProblems } from '../config/load.ts';
import { dict, NAME, NAME_PATTERN, own } from '../lib/names.ts';
import type { CompileProblem } from '../lib/problem.ts';
import type { Config } from '../config/schema.ts';
import { parseDuration } from '../lib/units.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { aggregate, type Metrics, type MetricsSnapshot } from '../observability/metrics.ts';
import type { Registry } from 'prom-client';
import type { Runtime } from './runtime.ts';
import { type ClusterStore, StaleOverlay, type StoredOverlay } from './store.ts';
import { ActiveHealth } from '../upstream/health/active.ts';
import { applyOverlay, change, emptyOverlay, findTarget, type Overlay } from './membership.ts';
import type { DownTargets } from '../upstream/registry.ts';
import { type PoolConfig, type TargetConfig, targetSpec } from '../upstream/spec.ts';
import { mergeTargetStats, type TargetTotals, type WorkerStats } from '../upstream/stats.ts';

/** Where the Manager's decisions go: the local runtime, or every worker through IPC. */
export interface DataPlane {
  /** Serve `config` from now on; resolves once every serving process does (bounded wait). */
  apply(config: Config, version: number): Promise<void>;
  /** The targets active checks found down (the whole set, sent only when it changes). */
  health(down: DownTargets): void;
  /** One report per serving process. */
  stats(): Promise<WorkerStats[]>;
  /** The metrics of every serving process other than this one (issue 7). */
  metrics(): Promise<MetricsSnapshot[]>;
  /** Processes serving traffic now. */
  workers(): number;
}

export const TARGET_STATES = Object.freeze({
  /** Available: active checks pass (or none are configured) and no worker ejected it. */
  UP: 'up',
  /** Active checks failed `fall` times in a row. */
  DOWN: 'down',
  /** Passively ejected by at least one worker (see `ejected_workers`). */
  EJECTED: 'ejected',
  /** Removed: no new attempts; shown until its in-flight attempts end. */
  DRAINING: 'draining',
} as const);
export type TargetStateName = (typeof TARGET_STATES)[keyof typeof TARGET_STATES];

export interface TargetView {
  pool: string;
  id: string;
  url: string;
  weight: number;
  state: TargetStateName;
  /** Drained by an operator: no new attempts (the state still shows its health). */
  drain: boolean;
  requests: number;
  failures: number;
  /** Attempts the downstream gave up on: neither success nor failure of the target. */
  cancelled: number;
  inflight: number;
  ejected_workers: number;
  /** Passive ejections so far, summed over workers. */
  ejections: number;
  latency_ms: { p50: number | null; p99: number | null };
}

/** What `PATCH /pools/:pool/targets/:id` may change. */
export interface TargetPatch {
  weight?: number;
  drain?: boolean;
}

export interface PoolView {
  name: string;
  selector: string;
  health_checks: boolean;
  passive: boolean;
  targets: TargetView[];
}

export interface ReloadResult {
  version: number;
  /** Keys that changed but only take effect after a restart. */
  restart_required: string[];
}

/** Keys read once at start; a reload that changes them says so instead of pretending. */
const RESTART_KEYS: ReadonlyArray<readonly string[]> = [
  ['listen'],
  // Issue 14: sockets are bound once; certificate files are re-read on every reload regardless.
  ['listeners'],
  ['workers'],
  ['limits'],
  ['shutdown'],
  ['state_file'],
  // Issue 16: the store connection and this instance's id are made once, at start.
  ['cluster'],
  // Issue 6: each process opens its store once (defer/service.ts).
  ['queue'],
  ['log', 'level'],
  ['admin', 'enabled'],
  ['admin', 'host'],
  ['admin', 'port'],
  // Issue 7: the metrics registry and its listener are made once, at start.
  ['metrics'],
];

const STATE_FILE_VERSION = 1;

/**
 * A change that kept meeting a newer stored overlay gives up after this many rounds. Every
 * round lost is another gateway's change committed, so this is only reached when more than this
 * many changes land during one call (12 at once through two gateways lost 5 rounds under load).
 */
const MAX_STALE_ROUNDS = 32;

/** An overlay as read back (state file, cluster store): its entries not yet checked. */
interface OverlayParts {
  created: Record<string, unknown>;
  deleted: unknown[];
  targets: Record<string, unknown>;
}

interface Draining {
  pool: string;
  id: string;
  url: string;
  weight: number;
  drain?: boolean;
  /** Config version without the target: once every worker serves it, nothing new starts. */
  version: number;
}

export interface ManagerOptions {
  loaded: LoadedConfig;
  /** Re-reads the config file with the same env and flag overrides; throws ConfigError. */
  reload: () => LoadedConfig;
  log: Logger;
  /** This process's metrics: the control plane's gauges are read from the Manager at scrape time. */
  metrics?: Metrics | null;
}

/** The data plane of `--workers 0/1`: the runtime in this very process. */
export function localPlane(runtime: Runtime): DataPlane {
  return {
    apply: async (config, version) => runtime.apply(config, version),
    health: (down) => runtime.setDown(down),
    stats: async () => [runtime.stats()],
    // The runtime counts into this process's Metrics, which the Manager reads itself.
    metrics: async () => [],
    workers: () => 1,
  };
}

/** Until `start()`: nothing to push to yet. */
const NO_PLANE: DataPlane = {
  apply: async () => {},
  health: () => {},
  stats: async () => [],
  metrics: async () => [],
  workers: () => 0,
};

function problemsText(problems: readonly CompileProblem[]): string {
  return problems.map((p) => `${formatPath(p.path)}: ${p.message}`).join('; ');
}

export class Manager {
  #file: Config;
  #overlay: Overlay = emptyOverlay();
  #config: Config;
  #compiled: CompiledConfig;
  #version = 1;
  #lastDown = '{}';
  readonly #reload: () => LoadedConfig;
  #plane: DataPlane = NO_PLANE;
  readonly #log: Logger;
  readonly #metrics: Metrics | null;
  readonly #health: ActiveHealth;
  readonly #draining = new Map<string, Draining>();
  #store: ClusterStore | null = null;
  /** The stored overlay version served (issue 16); writes are based on it. */
  #storeVersion = 0;
  /** The overlay as stored at that version, unchecked (null: unreadable, or none yet). */
  #storedOverlay: Overlay | null = null;
  /** Changes run one after another: each is validated against the result of the previous. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: ManagerOptions) {
    this.#file = options.loaded.config;
    this.#config = options.loaded.config;
    this.#compiled = options.loaded.compiled;
    this.#reload = options.reload;
    this.#log = options.log;
    this.#health = new ActiveHealth(options.log, (down) => this.#publishHealth(down));
    this.#metrics = options.metrics ?? null;
    this.#metrics?.setControl({
      configVersion: () => this.#version,
      workers: () => this.#plane.workers(),
      cluster: () =>
        this.#store === null ? null : { available: this.#store.available, instances: this.#store.peers },
      pools: () => this.#compiled.pools.map((p) => ({ name: p.name, targets: p.targets.length })),
      targets: () =>
        this.#compiled.pools.flatMap((p) =>
          p.targets.map((t) => ({
            pool: p.name,
            id: t.id,
            up: this.#health.state(p.name, t.id) !== false,
            drain: t.drain,
          })),
        ),
    });
  }

  /** The compiled config served now (routes and pools), for views. */
  get compiled(): CompiledConfig {
    return this.#compiled;
  }

  /** Processes serving traffic now. */
  get workers(): number {
    return this.#plane.workers();
  }

  /**
   * Every process's metrics summed into one registry (`.metrics()` is the exposition text);
   * null with `metrics.enabled: false`.
   */
  async metrics(): Promise<Registry | null> {
    if (this.#metrics === null) return null;
    const [own, others] = await Promise.all([this.#metrics.snapshot(), this.#plane.metrics()]);
    return aggregate([own, ...others]);
  }

  /** The config served now (file + admin changes). */
  get config(): Config {
    return this.#config;
  }

  get version(): number {
    return this.#version;
  }

  /**
   * Reads `state_file` (when set): afterwards `config` is what to start the data plane with,
   * so admin changes kept from the last run are served from the first request on. Entries are
   * applied one by one (issue 15): one that cannot be (a bad name, a shape the schema refuses,
   * a pool the config no longer has, a change compile() refuses) is logged and skipped, and the
   * rest is kept; a state file never stops a start.
   */
  async restore(): Promise<void> {
    const file = this.#file.state_file;
    if (file === null) return;
    const saved = await this.#readState(file);
    if (saved === null) return;
    const { overlay, skipped } = this.#sanitize(saved, { state_file: file }, 'state file entry skipped');
    const next = applyOverlay(this.#file, overlay);
    const { compiled } = compile(next);
    if (!compiled) return; // every entry was checked on its own; this is only for the types
    this.#overlay = overlay;
    this.#config = next;
    this.#compiled = compiled;
    this.#log.info({ state_file: file, skipped }, 'pool changes restored from the state file');
  }

  /**
   * An overlay read back (state file, cluster store), applied entry by entry (issue 15): one
   * that cannot be (a bad name, a shape the schema refuses, a pool the config no longer has, a
   * change compile() refuses) is logged with `where` and skipped, and the rest is kept.
   */
  #sanitize(saved: OverlayParts, where: Record<string, unknown>, msg: string): { overlay: Overlay; skipped: number } {
    let overlay = emptyOverlay();
    let skipped = 0;
    const skip = (entry: string, reason: string) => {
      skipped++;
      this.#log.error({ ...where, entry, reason }, msg);
    };
    const attempt = (entry: string, next: () => Overlay) => {
      try {
        const candidate = next();
        const config = applyOverlay(this.#file, candidate);
        const shape = shapeProblems(config);
        if (shape.length > 0) return skip(entry, shape.join('; '));
        const { compiled, problems } = compile(config);
        if (!compiled) return skip(entry, problemsText(problems));
        overlay = candidate;
      } catch (err) {
        skip(entry, (err as Error).message);
      }
    };
    const isObject = (v: unknown): v is Record<string, unknown> =>
      typeof v === 'object' && v !== null && !Array.isArray(v);
    for (const name of saved.deleted) {
      const entry = `deleted ${JSON.stringify(name)}`;
      if (typeof name !== 'string' || !Object.hasOwn(this.#file.pools, name))
        skip(entry, 'not a pool of the config file');
      else attempt(entry, () => ({ ...overlay, deleted: [...overlay.deleted, name] }));
    }
    for (const [name, pool] of Object.entries(saved.created)) {
      const entry = `created.${name}`;
      if (!NAME.test(name)) skip(entry, `not a valid pool name (${NAME_PATTERN})`);
      else if (!isObject(pool)) skip(entry, 'not a pool definition');
      else attempt(entry, () => change.createPool(overlay, name, structuredClone(pool) as unknown as PoolConfig));
    }
    for (const [pool, patch] of Object.entries(saved.targets)) {
      if (!Object.hasOwn(this.#file.pools, pool)) {
        skip(`targets.${pool}`, 'not a pool of the config file');
        continue;
      }
      if (!isObject(patch)) {
        skip(`targets.${pool}`, 'not a map of target ids');
        continue;
      }
      for (const [id, t] of Object.entries(patch)) {
        const entry = `targets.${pool}.${id}`;
        if (t !== null && !isObject(t)) skip(entry, 'not a target definition or null');
        else
          attempt(entry, () => {
            const ids = dict([...Object.entries(own(overlay.targets, pool) ?? {}), [id, structuredClone(t) as TargetConfig | null]]);
            return { ...overlay, targets: dict([...Object.entries(overlay.targets), [pool, ids]]) } as Overlay;
          });
      }
    }
    return { overlay, skipped };
  }

  // ---- the cluster store (issue 16) ----

  /**
   * Joins the cluster store: serves its overlay (on top of this instance's config file) from
   * now on, and writes every admin change there first. Resolves after the first contact, or
   * after it failed (then the file's config serves until the store is back).
   */
  async join(store: ClusterStore): Promise<void> {
    this.#store = store;
    await store.start();
  }

  /** The stored overlay version served now (0 before any or without a store). */
  get storeVersion(): number {
    return this.#storeVersion;
  }

  /** The cluster store, when `cluster.store` is on. */
  get store(): ClusterStore | null {
    return this.#store;
  }

  /** A newer stored overlay (another instance's change, or catching up): served once valid. */
  adopt(stored: StoredOverlay): Promise<void> {
    return this.#serial(() => this.#adoptNow(stored));
  }

  async #adoptNow(stored: StoredOverlay): Promise<void> {
    // Read before a change of ours that has been stored since (this runs after it, serialized).
    if (this.#store?.superseded(stored)) return;
    if (stored.version === this.#storeVersion || (stored.version < this.#storeVersion && !stored.reset)) return;
    this.#storeVersion = stored.version;
    const parts = this.#overlayParts(stored.overlay, { cluster_version: stored.version }, 'cluster change entry skipped');
    this.#storedOverlay = parts as Overlay | null;
    const { overlay, skipped } = this.#sanitize(
      parts ?? { created: dict(), deleted: [], targets: dict() },
      { cluster_version: stored.version },
      'cluster change entry skipped',
    );
    if (JSON.stringify(overlay) === JSON.stringify(this.#overlay)) return;
    const next = applyOverlay(this.#file, overlay);
    const { compiled } = compile(next);
    if (!compiled) return; // every entry was checked on its own
    this.#overlay = overlay;
    await this.#publish(next, compiled);
    this.#log.info({ cluster_version: stored.version, version: this.#version, skipped }, 'cluster change applied');
  }

  /**
   * A change to the overlay, serialized; with the cluster store, a change based on a stored
   * version another instance has moved past catches up and runs again (bounded).
   */
  #change<T>(fn: () => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      for (let round = 1; ; round++) {
        try {
          return await fn();
        } catch (err) {
          if (!(err instanceof StaleOverlay) || this.#store === null) throw err;
          if (round === MAX_STALE_ROUNDS)
            throw new GatewayError('CONFLICT', `the cluster's pools changed ${round} times during this call; try again`);
          const stored = await this.#store.read();
          // Behind, or the store was reset (its version is lower than ours): take it, then retry.
          await this.#adoptNow({ ...stored, reset: stored.version < this.#storeVersion });
        }
      }
    });
  }

  /** Attaches the data plane (serving `config` already) and starts the health checks. */
  async start(plane: DataPlane): Promise<void> {
    this.#plane = plane;
    this.#version++;
    await plane.apply(this.#config, this.#version);
    this.#health.sync(this.#compiled.pools);
    this.#warnInsecure();
  }

  /** Issue 14 item 4: an unverified TLS pool is a choice someone must see, at start and on reload. */
  #warnInsecure(): void {
    for (const p of this.#compiled.pools)
      if (p.tls !== null && !p.tls.rejectUnauthorized)
        this.#log.warn(
          { pool: p.name, key: `pools.${p.name}.tls.reject_unauthorized` },
          'TLS certificates of this pool are not verified (reject_unauthorized: false): anyone on the path can read and change its traffic',
        );
  }

  async close(): Promise<void> {
    await this.#queue.catch(() => {});
    await this.#health.close();
  }

  // ---- changes ----

  addTarget(pool: string, body: TargetConfig): Promise<TargetView> {
    return this.#change(async () => {
      const p = this.#pool(pool);
      const id = targetSpec(body).id;
      if (findTarget(this.#config, pool, id))
        throw new GatewayError('CONFLICT', `pool "${pool}" already has a target "${id}"`);
      await refuseSpecial([body.url], p.allow_special_targets ?? DEFAULT_SPECIAL_TARGETS, pool);
      await this.#commit((o) => change.addTarget(o, pool, body), `adding target "${id}"`);
      this.#draining.delete(`${pool}\u0000${id}`);
      this.#log.info({ pool, target: id, url: body.url }, 'target added');
      return this.#view(pool, id);
    });
  }

  /**
   * Re-weights, drains or enables a target. Drained (issue 7): no new attempt or delivery picks
   * it from the next snapshot on, attempts in flight finish, health checks go on; kept like
   * any admin change (overlay, state file) until `drain: false`.
   */
  updateTarget(pool: string, id: string, patch: TargetPatch): Promise<TargetView> {
    return this.#change(async () => {
      const t = this.#target(pool, id);
      const next: TargetConfig = { ...t, ...patch };
      if (next.drain === false) delete next.drain;
      const [what, done] =
        patch.drain === undefined
          ? ['re-weighting', 'target weight changed']
          : patch.drain
            ? ['draining', 'target drained']
            : ['enabling', 'target enabled'];
      await this.#commit((o) => change.setTarget(o, pool, next), `${what} "${id}"`);
      this.#log.info({ pool, target: id, ...patch }, done);
      return this.#view(pool, id);
    });
  }

  /**
   * Removes a target: from the next snapshot on no attempt starts on it; attempts in flight
   * finish (its dispatcher closes gracefully). With `wait`, resolves once none is left in any
   * worker or `admin.drain_timeout` passed.
   */
  async removeTarget(
    pool: string,
    id: string,
    wait: boolean,
  ): Promise<{ target: TargetView; drained: boolean }> {
    const entry = await this.#change(async () => {
      const t = this.#target(pool, id);
      await this.#commit((o) => change.removeTarget(o, pool, id), `removing target "${id}"`);
      const d: Draining = {
        pool,
        id,
        url: t.url,
        weight: t.weight ?? 1,
        drain: t.drain,
        version: this.#version,
      };
      this.#draining.set(`${pool}\u0000${id}`, d);
      this.#log.info({ pool, target: id }, 'target removed; draining');
      return d;
    });
    let drained = false;
    if (wait) {
      const deadline = Date.now() + parseDuration(this.#config.admin.drain_timeout);
      while (!(drained = await this.#drained(entry)) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const totals = mergeTargetStats(await this.#plane.stats()).get(`${pool}\u0000${id}`);
    return { target: this.#targetView(entry, totals, TARGET_STATES.DRAINING), drained };
  }

  createPool(name: string, pool: PoolConfig): Promise<PoolView> {
    return this.#change(async () => {
      if (Object.hasOwn(this.#config.pools, name))
        throw new GatewayError('CONFLICT', `pool "${name}" already exists`);
      await refuseSpecial(
        pool.targets.map((t) => (typeof t === 'string' ? t : t.url)),
        pool.allow_special_targets ?? DEFAULT_SPECIAL_TARGETS,
        name,
      );
      await this.#commit((o) => change.createPool(o, name, pool), `creating pool "${name}"`);
      this.#log.info({ pool: name, targets: pool.targets.length }, 'pool created');
      return (await this.pools(name))[0];
    });
  }

  deletePool(name: string): Promise<void> {
    return this.#change(async () => {
      this.#pool(name);
      await this.#commit((o) => change.deletePool(o, name, this.#file), `deleting pool "${name}"`);
      this.#log.info({ pool: name }, 'pool deleted');
    });
  }

  /**
   * Re-reads the config file. Valid (with the admin changes on top) → served, without
   * dropping a connection; invalid → refused with every problem, and the old config serves on.
   */
  reload(): Promise<ReloadResult> {
    return this.#serial(async () => {
      let loaded: LoadedConfig;
      try {
        loaded = this.#reload();
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        const problems = err.problems.map(formatProblem);
        this.#log.error({ problems }, 'config reload refused; the old config keeps serving');
        throw new GatewayError('CONFIG_INVALID', `config reload refused: ${problems.join('; ')}`, {
          details: { problems },
        });
      }
      const restart = restartKeys(this.#file, loaded.config);
      const file = keepRunning(this.#file, loaded.config);
      const next = applyOverlay(file, this.#overlay);
      const { compiled, problems } = compile(next);
      if (!compiled) {
        const text = problems.map(
          (p) => `${formatPath(p.path)}: ${p.message} (with the admin API's pool changes)`,
        );
        this.#log.error({ problems: text }, 'config reload refused; the old config keeps serving');
        throw new GatewayError('CONFIG_INVALID', `config reload refused: ${text.join('; ')}`, {
          details: { problems: text },
        });
      }
      if (restart.length > 0)
        this.#log.warn({ keys: restart }, 'config reloaded; these keys take effect only after a restart');
      this.#file = file;
      await this.#publish(next, compiled);
      this.#log.info({ version: this.#version }, 'config reloaded');
      this.#warnInsecure();
      return { version: this.#version, restart_required: restart };
    });
  }

  // ---- views ----

  /** Pools with their targets' state and counters (all pools, or the one named). */
  async pools(only?: string): Promise<PoolView[]> {
    if (only !== undefined) this.#pool(only);
    const totals = mergeTargetStats(await this.#plane.stats());
    const out: PoolView[] = [];
    for (const spec of this.#compiled.pools) {
      if (only !== undefined && spec.name !== only) continue;
      const targets = spec.targets.map((t) =>
        this.#targetView(
          { pool: spec.name, id: t.id, url: t.url, weight: t.weight, drain: t.drain, version: 0 },
          totals.get(`${spec.name}\u0000${t.id}`),
          null,
        ),
      );
      for (const d of this.#draining.values()) {
        if (d.pool !== spec.name) continue;
        const tot = totals.get(`${d.pool}\u0000${d.id}`);
        if (targets.some((t) => t.id === d.id)) continue;
        targets.push(this.#targetView(d, tot, TARGET_STATES.DRAINING));
      }
      out.push({
        name: spec.name,
        selector: spec.selector,
        health_checks: spec.health !== null,
        passive: spec.passive !== null,
        targets,
      });
    }
    await this.#forgetDrained();
    return out;
  }

  /** `GET /stats`: totals across workers. */
  async stats(): Promise<Record<string, unknown>> {
    const reports = await this.#plane.stats();
    const downstream = { success: 0, failed: 0 };
    const upstream = { success: 0, failed: 0 };
    for (const r of reports) {
      downstream.success += r.downstream.success;
      downstream.failed += r.downstream.failed;
      for (const t of r.targets) {
        upstream.success += t.requests - t.failures - t.cancelled;
        upstream.failed += t.failures;
      }
    }
    return { downstream, upstream, workers: reports.length, config_version: this.#version };
  }

  /** `GET /stats/detail`: one entry per target, draining ones included. */
  async statsDetail(): Promise<TargetView[]> {
    return (await this.pools()).flatMap((p) => p.targets);
  }

  // ---- internals ----

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #pool(name: string): PoolConfig {
    const p = own(this.#config.pools, name);
    if (!p)
      throw new GatewayError('NOT_FOUND', `no pool "${name}"`, { details: { pool: name } });
    return p;
  }

  #target(pool: string, id: string): TargetConfig {
    this.#pool(pool);
    const t = findTarget(this.#config, pool, id);
    if (!t)
      throw new GatewayError('NOT_FOUND', `pool "${pool}" has no target "${id}"`, { details: { pool, id } });
    return t;
  }

  /**
   * Validates the edited overlay's result; refuses (nothing changes) or publishes and persists
   * it. With the cluster store the same edit is applied to the overlay as stored, not to this
   * instance's checked copy: entries this instance's file cannot take (and skipped) stay
   * stored for the instances that can.
   */
  async #commit(edit: (o: Overlay) => Overlay, what: string): Promise<void> {
    const overlay = edit(this.#overlay);
    const next = applyOverlay(this.#file, overlay);
    const { compiled, problems } = compile(next);
    if (!compiled)
      throw new GatewayError(
        'CONFLICT',
        `${what} would leave the config invalid: ${problemsText(problems)}`,
        {
          details: { problems: problems.map((p) => ({ path: formatPath(p.path), message: p.message })) },
        },
      );
    // Issue 16: the store first; refused (503, or behind: caught up and run again) = no change here.
    if (this.#store !== null) {
      let stored: Overlay;
      try {
        stored = edit(this.#storedOverlay ?? this.#overlay);
      } catch {
        stored = overlay; // a stored overlay of a shape no gateway writes: replaced by this one's
      }
      this.#storeVersion = await this.#store.write(stored, this.#storeVersion, what);
      this.#storedOverlay = stored;
    }
    this.#overlay = overlay;
    await this.#publish(next, compiled);
    await this.#persist();
  }

  async #publish(config: Config, compiled: CompiledConfig): Promise<void> {
    this.#config = config;
    this.#compiled = compiled;
    this.#version++;
    this.#health.sync(compiled.pools);
    await this.#plane.apply(config, this.#version);
  }

  #publishHealth(down: DownTargets): void {
    const key = JSON.stringify(down);
    if (key === this.#lastDown) return;
    this.#lastDown = key;
    this.#plane.health(down);
  }

  async #persist(): Promise<void> {
    const file = this.#file.state_file;
    if (file === null) return;
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await writeFile(
        tmp,
        `${JSON.stringify({ version: STATE_FILE_VERSION, overlay: this.#overlay }, null, 2)}\n`,
      );
      await rename(tmp, file);
    } catch (err) {
      // The change is served already; losing it at the next restart is the lesser harm.
      this.#log.error({ err, state_file: file }, 'could not write the state file');
    }
  }

  /** The state file's overlay, its parts unchecked (restore() checks them entry by entry). */
  async #readState(file: string): Promise<OverlayParts | null> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      this.#log.error({ err, state_file: file }, 'cannot read the state file; starting from the config file');
      return null;
    }
    let parsed: { version?: number; overlay?: unknown };
    try {
      // JSON.parse makes every key, `__proto__` too, an own key; dict() keeps it that way.
      parsed = JSON.parse(text) as { version?: number; overlay?: unknown };
      if (parsed?.version !== STATE_FILE_VERSION || typeof parsed.overlay !== 'object' || parsed.overlay === null)
        throw new Error(`not a version ${STATE_FILE_VERSION} state file`);
    } catch (err) {
      this.#log.error({ err, state_file: file }, 'state file is not valid; starting from the config file');
      return null;
    }
    return this.#overlayParts(parsed.overlay, { state_file: file }, 'state file entry skipped');
  }

  /** An overlay's parts as read (JSON), each checked only for being a map or list. */
  #overlayParts(o: unknown, where: Record<string, unknown>, msg: string): OverlayParts | null {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) {
      this.#log.error({ ...where, entry: 'overlay', reason: 'not a map' }, msg);
      return null;
    }
    const obj = o as Record<string, unknown>;
    const record = (v: unknown, key: string): Record<string, unknown> => {
      if (v === undefined) return dict();
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return dict(Object.entries(v));
      this.#log.error({ ...where, entry: key, reason: 'not a map' }, msg);
      return dict();
    };
    let deleted: unknown[] = [];
    if (Array.isArray(obj.deleted)) deleted = obj.deleted;
    else if (obj.deleted !== undefined) this.#log.error({ ...where, entry: 'deleted', reason: 'not a list' }, msg);
    return { created: record(obj.created, 'created'), deleted, targets: record(obj.targets, 'targets') };
  }

  async #drained(d: Draining): Promise<boolean> {
    const reports = await this.#plane.stats();
    return reports.every(
      (r) =>
        r.version >= d.version &&
        !r.targets.some((t) => t.pool === d.pool && t.id === d.id && t.inflight > 0),
    );
  }

  async #forgetDrained(): Promise<void> {
    for (const [key, d] of this.#draining) if (await this.#drained(d)) this.#draining.delete(key);
  }

  async #view(pool: string, id: string): Promise<TargetView> {
    const view = (await this.pools(pool))[0].targets.find((t) => t.id === id);
    if (!view) throw new GatewayError('NOT_FOUND', `pool "${pool}" has no target "${id}"`);
    return view;
  }

  #targetView(t: Draining, totals: TargetTotals | undefined, forced: TargetStateName | null): TargetView {
    let state: TargetStateName = forced ?? TARGET_STATES.UP;
    if (forced === null) {
      if (this.#health.state(t.pool, t.id) === false) state = TARGET_STATES.DOWN;
      else if ((totals?.ejected ?? 0) > 0) state = TARGET_STATES.EJECTED;
    }
    return {
      pool: t.pool,
      id: t.id,
      url: t.url,
      weight: t.weight,
      state,
      drain: t.drain ?? false,
      requests: totals?.requests ?? 0,
      failures: totals?.failures ?? 0,
      cancelled: totals?.cancelled ?? 0,
      inflight: totals?.inflight ?? 0,
      ejected_workers: totals?.ejected ?? 0,
      ejections: totals?.ejections ?? 0,
      latency_ms: { p50: totals?.latency.quantile(0.5) ?? null, p99: totals?.latency.quantile(0.99) ?? null },
    };
  }
}

type Tree = Record<string, unknown>;
const getIn = (o: Tree, path: readonly string[]) => path.reduce<unknown>((v, k) => (v as Tree)?.[k], o);

/**
 * The reloaded config with the keys read only at start kept at their running values: a worker
 * forked after the reload must bind what the others bound.
 */
function keepRunning(running: Config, next: Config): Config {
  const out = structuredClone(next) as unknown as Tree;
  for (const path of RESTART_KEYS) {
    const parent = getIn(out, path.slice(0, -1)) as Tree;
    parent[path[path.length - 1]] = structuredClone(getIn(running as unknown as Tree, path));
  }
  // Issue 17: a tcp listener's socket stays, but its `tcp` block (routes, timeouts, PROXY
  // protocol) is taken at once (runtime.ts setSpec), for the listener of the same name.
  const kept = (out as unknown as Config).listeners;
  if (kept !== undefined && next.listeners !== undefined) {
    const keptNames = listenersOf(out as unknown as Config);
    const named = listenersOf(next);
    kept.forEach((l, i) => {
      const now = named.find((n) => n.name === keptNames[i].name && n.mode === 'tcp');
      if (l.mode === 'tcp' && now !== undefined) l.tcp = structuredClone(now.tcp);
    });
  }
  return out as unknown as Config;
}

/** What of a key needs a restart: for `listeners`, all but the tcp blocks keepRunning takes. */
function restartPart(config: Config, path: readonly string[]): unknown {
  const value = getIn(config as unknown as Tree, path);
  if (path.length !== 1 || path[0] !== 'listeners' || !Array.isArray(value)) return value;
  return (value as Config['listeners'] & object).map((l) => (l.mode === 'tcp' ? { ...l, tcp: undefined } : l));
}

function restartKeys(before: Config, after: Config): string[] {
  return RESTART_KEYS.filter(
    (path) => JSON.stringify(restartPart(before, path)) !== JSON.stringify(restartPart(after, path)),
  ).map((path) => path.join('.'));
}

/** Issue 15: an admin-added target at a special-use address its pool does not allow is a 400. */
async function refuseSpecial(urls: readonly string[], allowed: readonly SpecialClass[], pool: string): Promise<void> {
  for (const url of urls) {
    const problem = await specialTargetProblem(url, allowed);
    if (problem !== null) throw new GatewayError('INVALID_BODY', `pool "${pool}": ${problem}`);
  }
}
