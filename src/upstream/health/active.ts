/**
 * Active health checks (issue 3, point 2): run by the primary — or by the only process with
 * `--workers 0/1` — once per target of every pool that has a `health` block, never once per
 * worker. A target starts up; `fall` consecutive failed checks mark it down, `rise` passed
 * ones mark it up again. Only a change of the down set is reported, so workers hear nothing
 * while nothing changes.
 */
import { connect, isIP } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { connectKey, connectOptions } from '../connector.ts';
import { SourceAddresses } from '../local-addresses.ts';
import type { HealthSpec, PoolSpec, TargetSpec } from '../spec.ts';
import { dict } from '../../lib/names.ts';
import type { Logger } from '../../observability/logger.ts';
import type { DownTargets } from '../registry.ts';

/** Bytes of a check's answer read before it is dropped: a status is all a check needs. */
const MAX_BODY_BYTES = 64 * 1024;

class Checker {
  readonly pool: string;
  readonly target: TargetSpec;
  spec: HealthSpec;
  /** The pool's check agent: its TLS, HTTP/2 and source addresses (connector.ts). */
  dispatcher: Dispatcher;
  up = true;
  #passed = 0;
  #failed = 0;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  readonly #owner: ActiveHealth;

  constructor(owner: ActiveHealth, pool: string, target: TargetSpec, spec: HealthSpec, dispatcher: Dispatcher) {
    this.#owner = owner;
    this.pool = pool;
    this.target = target;
    this.spec = spec;
    this.dispatcher = dispatcher;
    // The first check right away: a dead target is found after `fall` checks, not `fall` + 1.
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), ms);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const verdict = await this.#owner.probe(this.target, this.spec, this.dispatcher, this.pool);
    if (this.#stopped) return;
    if (verdict === null) {
      this.#failed = 0;
      if (!this.up && ++this.#passed >= this.spec.rise) this.#flip(true, 'passed');
    } else {
      this.#passed = 0;
      if (this.up && ++this.#failed >= this.spec.fall) this.#flip(false, verdict);
    }
    this.#schedule(this.spec.intervalMs);
  }

  #flip(up: boolean, reason: string): void {
    this.up = up;
    this.#passed = 0;
    this.#failed = 0;
    this.#owner.changed(this, reason);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
  }
}

export class ActiveHealth {
  readonly #checkers = new Map<string, Checker>();
  /**
   * One agent per distinct connection setting (connector.ts `connectKey`): checks reach an
   * https target with its pool's CA, client certificate, servername and HTTP/2 setting.
   */
  #agents = new Map<string, Agent>();
  readonly #log: Logger;
  readonly #onChange: (down: DownTargets) => void;

  /** `onChange` receives the whole down set each time it changes. */
  constructor(log: Logger, onChange: (down: DownTargets) => void) {
    this.#log = log;
    this.#onChange = onChange;
  }

  /** Starts checkers for new targets, stops those of removed ones, keeps the others' state. */
  sync(pools: readonly PoolSpec[]): void {
    const keep = new Set<string>();
    const agents = new Map<string, Agent>();
    const sources = new Map<string, SourceAddresses>();
    for (const pool of pools) {
      if (pool.health === null) continue;
      const kept = this.#sources.get(pool.name);
      const same = kept !== undefined && kept.addresses.join(',') === pool.localAddresses.join(',');
      sources.set(pool.name, same ? kept : new SourceAddresses(pool.localAddresses));
      const akey = connectKey(pool);
      let agent = agents.get(akey) ?? this.#agents.get(akey);
      agent ??= new Agent({ connections: 2, keepAliveTimeout: 10_000, ...connectOptions(pool) });
      agents.set(akey, agent);
      for (const t of pool.targets) {
        const key = `${pool.name}\u0000${t.id}\u0000${t.url}`;
        keep.add(key);
        const c = this.#checkers.get(key);
        if (c) {
          c.spec = pool.health;
          c.dispatcher = agent;
        } else this.#checkers.set(key, new Checker(this, pool.name, t, pool.health, agent));
      }
    }
    for (const [akey, agent] of this.#agents) if (!agents.has(akey)) void agent.close().catch(() => {});
    this.#agents = agents;
    this.#sources = sources;
    let removedDown = false;
    for (const [key, c] of this.#checkers) {
      if (keep.has(key)) continue;
      c.stop();
      this.#checkers.delete(key);
      if (!c.up) removedDown = true;
    }
    if (removedDown) this.#onChange(this.down());
  }

  /** Pool → ids of the targets currently down (sorted, so equal sets compare equal). */
  down(): DownTargets {
    const out = dict<string[]>();
    for (const c of this.#checkers.values()) if (!c.up) (out[c.pool] ??= []).push(c.target.id);
    for (const ids of Object.values(out)) ids.sort();
    return out;
  }

  /** Whether a target is actively checked and found up; null when its pool has no checks. */
  state(pool: string, id: string): boolean | null {
    for (const c of this.#checkers.values()) if (c.pool === pool && c.target.id === id) return c.up;
    return null;
  }

  /** Each pool's source addresses for `type: tcp` checks (HTTP checks take theirs from the agent). */
  #sources = new Map<string, SourceAddresses>();

  /** One check: null when it passed, else why it failed. */
  async probe(target: TargetSpec, spec: HealthSpec, dispatcher: Dispatcher, pool = ''): Promise<string | null> {
    if (spec.type === 'tcp') return this.#connectProbe(target, spec, this.#sources.get(pool));
    try {
      const res = await dispatcher.request({
        origin: target.origin,
        path: spec.path,
        method: spec.method as 'GET',
        headers: { host: target.host, 'user-agent': 'manifold-health-check' },
        headersTimeout: spec.timeoutMs,
        bodyTimeout: spec.timeoutMs,
        signal: AbortSignal.timeout(spec.timeoutMs),
      });
      await res.body.dump({ limit: MAX_BODY_BYTES });
      const ok = spec.expect.some(([lo, hi]) => res.statusCode >= lo && res.statusCode <= hi);
      return ok ? null : `status ${res.statusCode}`;
    } catch (err) {
      const e = err as { code?: string; name?: string; message?: string };
      return e.code ?? e.name ?? e.message ?? 'error';
    }
  }

  /** A `type: tcp` check: the target accepts a connection within the timeout; it is closed at once. */
  #connectProbe(target: TargetSpec, spec: HealthSpec, sources: SourceAddresses | undefined): Promise<string | null> {
    const u = new URL(target.origin);
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
    const localAddress = sources?.nextFor(isIP(host) as 0 | 4 | 6);
    return new Promise((resolve) => {
      const s = connect({ host, port, ...(localAddress === undefined ? {} : { localAddress }) });
      const timer = setTimeout(() => {
        s.destroy();
        resolve('connect timeout');
      }, spec.timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.destroy();
        resolve(null);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(err.code ?? err.message);
      });
    });
  }

  changed(c: Checker, reason: string): void {
    const fields = { pool: c.pool, target: c.target.id, url: c.target.url, reason };
    if (c.up) this.#log.info(fields, 'target up: health checks pass again');
    else this.#log.warn(fields, 'target down: health checks fail');
    this.#onChange(this.down());
  }

  async close(): Promise<void> {
    for (const c of this.#checkers.values()) c.stop();
    this.#checkers.clear();
    await Promise.allSettled([...this.#agents.values()].map((a) => a.destroy()));
    this.#agents.clear();
  }
}
