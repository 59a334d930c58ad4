/**
 * A route's `connect:` block (issue 17): the raw shape config/schema.ts validates, the compiled
 * action, and the compiler between them, called by config/compile.ts. Pure but for reading
 * `auth.file` once: allow list, ports, credentials and timeouts are all parsed here, never per
 * request (STYLE.md §5).
 *
 * Safety (issue 17): Layer7Router dials whatever a request names, an open forward proxy. A
 * `connect` route dials only what its `allow` list names, on its `ports`, through the same
 * after-DNS address guard as multiplex (multiplex/ssrf.ts `TargetGuard`): loopback, private,
 * link-local and metadata addresses are refused unless a CIDR of the list holds them. Or it
 * names a `pool`, a fixed destination, and the requested authority only selects the route.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type CompileProblem, unknownPool } from '../lib/problem.ts';
import { type Duration, parseDuration } from '../lib/units.ts';
import { type AllowList, compileAllowList, TargetGuard } from '../multiplex/ssrf.ts';

// ---- as validated (config/schema.ts `connectSchema`, defaults applied) ----

export interface ConnectUserConfig {
  user: string;
  password: string;
}

export interface ConnectConfig {
  allow?: string[];
  ports: Array<number | string>;
  pool?: string;
  auth?: { realm: string; users?: ConnectUserConfig[]; file?: string };
  connect_timeout: Duration;
  max_duration: Duration;
}

// ---- compiled ----

/** Inclusive port ranges. */
export type PortRanges = ReadonlyArray<readonly [number, number]>;

export interface ConnectAuth {
  /** `Proxy-Authenticate: Basic realm="…"` of a 407. */
  readonly challenge: string;
  /** SHA-256 of each `user:password`: compared in constant time (tunnel/connect.ts). */
  readonly digests: readonly Buffer[];
}

export interface ConnectAction {
  readonly kind: 'connect';
  /** Where a tunnel may go: the guard over `allow` (null with a pool). */
  readonly guard: TargetGuard | null;
  readonly allow: AllowList | null;
  readonly ports: PortRanges;
  /** A fixed destination: a picked target of this pool (null with `allow`). */
  readonly pool: string | null;
  readonly auth: ConnectAuth | null;
  readonly connectTimeoutMs: number;
  /** A tunnel's longest life; 0 = none. */
  readonly maxDurationMs: number;
}

/** SHA-256 of a `user:password` pair, as the `Proxy-Authorization` Basic credentials decode. */
export function credentialDigest(pair: string): Buffer {
  return createHash('sha256').update(pair, 'utf8').digest();
}

const RANGE = /^(\d{1,5})(?:-(\d{1,5}))?$/;

function compilePorts(raw: ConnectConfig['ports'], path: Array<string | number>, problems: CompileProblem[]): PortRanges {
  const out: Array<readonly [number, number]> = [];
  raw.forEach((p, i) => {
    const m = RANGE.exec(String(p));
    const lo = m ? Number(m[1]) : Number.NaN;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!(lo >= 1 && hi <= 65535 && lo <= hi)) {
      problems.push({ path: [...path, i], message: `must be a port (443) or a range (8000-8999) within 1-65535` });
      return;
    }
    out.push([lo, hi]);
  });
  return out;
}

/** `user:password` lines; blank lines and `#` comments skipped. */
function readUsers(file: string, path: Array<string | number>, problems: CompileProblem[]): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push({ path, message: `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
    return [];
  }
  const pairs: string[] = [];
  text.split(/\r?\n/).forEach((line, n) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const colon = l.indexOf(':');
    if (colon < 1) {
      problems.push({ path, message: `${file} line ${n + 1}: expected user:password` });
      return;
    }
    pairs.push(l);
  });
  return pairs;
}

export function compileConnect(
  raw: ConnectConfig,
  path: Array<string | number>,
  pools: ReadonlySet<string>,
  problems: CompileProblem[],
): ConnectAction {
  let allow: AllowList | null = null;
  if (raw.allow !== undefined && raw.pool !== undefined)
    problems.push({ path, message: 'give either allow (destinations the request names) or pool (a fixed destination), not both' });
  else if (raw.allow === undefined && raw.pool === undefined)
    problems.push({ path, message: 'needs allow (the destinations a tunnel may go to) or pool (a fixed destination)' });
  if (raw.allow !== undefined) {
    const compiled = compileAllowList(raw.allow);
    if ('reason' in compiled) problems.push({ path: [...path, 'allow', compiled.index], message: compiled.reason });
    else allow = compiled;
  }
  if (raw.pool !== undefined && !pools.has(raw.pool)) {
    problems.push({ path: [...path, 'pool'], message: unknownPool(raw.pool, pools) });
  }
  let auth: ConnectAuth | null = null;
  if (raw.auth !== undefined) {
    const pairs = (raw.auth.users ?? []).map((u) => `${u.user}:${u.password}`);
    if (raw.auth.file !== undefined) pairs.push(...readUsers(raw.auth.file, [...path, 'auth', 'file'], problems));
    if (pairs.length === 0 && raw.auth.file === undefined)
      problems.push({ path: [...path, 'auth'], message: 'needs users or file (no credentials would ever pass)' });
    auth = {
      challenge: `Basic realm="${raw.auth.realm}", charset="UTF-8"`,
      digests: pairs.map(credentialDigest),
    };
  }
  return {
    kind: 'connect',
    guard: allow === null ? null : new TargetGuard(allow),
    allow,
    ports: compilePorts(raw.ports, [...path, 'ports'], problems),
    pool: raw.pool ?? null,
    auth,
    connectTimeoutMs: parseDuration(raw.connect_timeout),
    maxDurationMs: parseDuration(raw.max_duration),
  };
}
