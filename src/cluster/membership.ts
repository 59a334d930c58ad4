/**
 * Pool changes made through the admin API, kept apart from the config file as an overlay, so
 * that a reload re-reads the file and keeps them, and `state_file` can persist just them.
 * Pure functions; the Manager (cluster/manager.ts) validates every result with compile()
 * before it is used, so a change that would leave the config invalid changes nothing.
 *
 * Merge rule on reload: targets the file adds appear; a target the admin API removed, added
 * or re-weighted stays as the API left it (keyed by target id); a pool created through the API
 * is taken whole and wins over a file pool of the same name; a file pool deleted through the
 * API stays deleted.
 */
import type { Config } from '../config/schema.ts';
import { dict, own } from '../lib/names.ts';
import { type PoolConfig, type TargetConfig, targetSpec } from '../upstream/spec.ts';

export interface Overlay {
  /** Pools created through the admin API, whole. */
  created: Record<string, PoolConfig>;
  /** File pools deleted through the admin API. */
  deleted: string[];
  /** Per file pool: target id → its definition now, or null when removed. */
  targets: Record<string, Record<string, TargetConfig | null>>;
}

/** Every record of an overlay is a `dict()` (lib/names.ts): a pool may be named `constructor`. */
export const emptyOverlay = (): Overlay => ({ created: dict(), deleted: [], targets: dict() });

const idOf = (t: string | TargetConfig) => targetSpec(t).id;
const asObject = (t: string | TargetConfig): TargetConfig => (typeof t === 'string' ? { url: t } : t);

/** The config to serve: the file's with the overlay applied (the inputs are not modified). */
export function applyOverlay(file: Config, o: Overlay): Config {
  const pools = dict<PoolConfig>();
  for (const [name, pool] of Object.entries(file.pools)) {
    if (o.deleted.includes(name) || Object.hasOwn(o.created, name)) continue;
    const patch = own(o.targets, name);
    if (!patch) {
      pools[name] = pool;
      continue;
    }
    const seen = new Set<string>();
    const targets: Array<string | TargetConfig> = [];
    for (const t of pool.targets) {
      const id = idOf(t);
      seen.add(id);
      if (!Object.hasOwn(patch, id)) targets.push(t);
      else if (patch[id] !== null) targets.push(patch[id]);
    }
    for (const [id, t] of Object.entries(patch)) if (t !== null && !seen.has(id)) targets.push(t);
    pools[name] = { ...pool, targets };
  }
  for (const [name, pool] of Object.entries(o.created)) pools[name] = pool;
  return { ...file, pools };
}

/** The overlay after one change. */
export const change = {
  addTarget(o: Overlay, pool: string, t: TargetConfig): Overlay {
    return editTargets(o, pool, (targets) => [...targets, t], { [idOf(t)]: t });
  },
  removeTarget(o: Overlay, pool: string, id: string): Overlay {
    return editTargets(o, pool, (targets) => targets.filter((x) => idOf(x) !== id), { [id]: null });
  },
  setTarget(o: Overlay, pool: string, t: TargetConfig): Overlay {
    const id = idOf(t);
    return editTargets(o, pool, (targets) => targets.map((x) => (idOf(x) === id ? t : x)), { [id]: t });
  },
  createPool(o: Overlay, name: string, pool: PoolConfig): Overlay {
    return { ...o, created: dict([...Object.entries(o.created), [name, pool]]) };
  },
  deletePool(o: Overlay, name: string, file: Config): Overlay {
    const created = dict(Object.entries(o.created).filter(([k]) => k !== name));
    const targets = dict(Object.entries(o.targets).filter(([k]) => k !== name));
    const deleted =
      Object.hasOwn(file.pools, name) && !o.deleted.includes(name) ? [...o.deleted, name] : o.deleted;
    return { created, deleted, targets };
  },
};

function editTargets(
  o: Overlay,
  pool: string,
  edit: (targets: Array<string | TargetConfig>) => Array<string | TargetConfig>,
  patch: Record<string, TargetConfig | null>,
): Overlay {
  const p = own(o.created, pool);
  if (p !== undefined) {
    return { ...o, created: dict([...Object.entries(o.created), [pool, { ...p, targets: edit(p.targets) }]]) };
  }
  const ids = dict([...Object.entries(own(o.targets, pool) ?? {}), ...Object.entries(patch)]);
  return { ...o, targets: dict([...Object.entries(o.targets), [pool, ids]]) };
}

/** A target of a served pool, as an object (`"http://a"` → `{url: "http://a"}`). */
export function findTarget(config: Config, pool: string, id: string): TargetConfig | undefined {
  const t = own(config.pools, pool)?.targets.find((x) => idOf(x) === id);
  return t === undefined ? undefined : asObject(t);
}
