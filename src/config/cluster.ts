/**
 * `cluster:` (issue 16) compiled: where the shared control plane lives and how this gateway
 * takes part. Checked with the rest of the config (compile.ts), so a bad key fails at start
 * and names itself.
 */
import { hostname } from 'node:os';
import type { Config } from './schema.ts';
import { postgresUrl } from '../defer/pg-conn.ts';
import type { CompileProblem } from '../lib/problem.ts';
import { parseDuration } from '../lib/units.ts';

export interface ClusterSpec {
  /** `postgres://` URL (pg-conn.ts turned a libpq string into one). */
  url: string;
  schema: string;
  /** Registry id; null = derived at start (instanceId). */
  instance: string | null;
  heartbeatMs: number;
  goneAfterMs: number;
}

/** Null when `cluster.store` is off (or the config has problems, which are pushed). */
export function compileCluster(config: Config, problems: CompileProblem[]): ClusterSpec | null {
  const c = config.cluster;
  if (!c || c.store === null) return null;
  const before = problems.length;
  // Precedence would be a guess about which copy of the admin changes is the truth: refuse.
  if (config.state_file !== null)
    problems.push({
      path: ['state_file'],
      message: 'cannot be used with cluster.store (the cluster store keeps admin changes for every gateway); remove one',
    });
  const given = c.url ?? (config.queue?.driver === 'postgres' ? config.queue.url : null);
  let url = '';
  if (given === null)
    problems.push({ path: ['cluster', 'url'], message: 'is required unless queue.driver is postgres (then queue.url is used)' });
  else
    try {
      url = postgresUrl(given);
    } catch (err) {
      problems.push({ path: [...(c.url === null ? ['queue'] : ['cluster']), 'url'], message: (err as Error).message });
    }
  const heartbeatMs = parseDuration(c.heartbeat);
  const goneAfterMs = parseDuration(c.gone_after);
  if (heartbeatMs < 100 || heartbeatMs > 60_000)
    problems.push({ path: ['cluster', 'heartbeat'], message: 'must be between 100ms and 1m' });
  else if (goneAfterMs < 2 * heartbeatMs)
    problems.push({ path: ['cluster', 'gone_after'], message: 'must be at least twice cluster.heartbeat' });
  if (problems.length > before) return null;
  return { url, schema: c.schema ?? config.queue?.schema ?? 'manifold', instance: c.instance, heartbeatMs, goneAfterMs };
}

/**
 * This gateway's registry id: `cluster.instance`, else `queue.instance`, else
 * `<hostname>:<listen port>` (stable across restarts), else — port 0 — one unique to the process.
 */
export function instanceId(spec: ClusterSpec, config: Config): string {
  if (spec.instance !== null) return spec.instance;
  if (config.queue?.instance) return config.queue.instance;
  return config.listen.port > 0 ? `${hostname()}:${config.listen.port}` : `${hostname()}:pid${process.pid}`;
}
