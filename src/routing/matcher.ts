/**
 * Route matchers, compiled once at config load (STYLE.md §5): host, path, method and header
 * predicates become one closure per route; nothing is parsed per request.
 */
/** A route's `match` block as validated (config/schema.ts reads the type from here). */
export interface MatchConfig {
  host?: string | string[];
  path?: string;
  methods?: string[];
  headers?: Record<string, string | string[]>;
  /** Listener name(s) the request came in on (issue 14). */
  listener?: string | string[];
}

/** What a matcher reads from a request: already split and lower-cased by the pipeline. */
export interface MatchInput {
  method: string;
  /** Host without port, lower case ('' when absent). */
  host: string;
  /** Path without the query string. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Name of the listener the request came in on. */
  listener: string;
}

export type Matcher = (input: MatchInput) => boolean;

/** Exact names, `*.domain` (names below it, not the apex), or `*` alone (any host, as in `sni` and `connect.allow`). */
export function hostMatcher(patterns: string[]): (host: string) => boolean {
  if (patterns.includes('*')) return () => true;
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const p of patterns.map((s) => s.toLowerCase())) {
    if (p.startsWith('*.')) suffixes.push(p.slice(1));
    else exact.add(p);
  }
  if (suffixes.length === 0) return (host) => exact.has(host);
  return (host) => exact.has(host) || suffixes.some((s) => host.length > s.length && host.endsWith(s));
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * `/health` exact; `/v1/*` the prefix and everything under it (`/v1`, `/v1/`, `/v1/x/y`);
 * `/users/:id` one non-empty segment per parameter (combinable with a trailing `/*`).
 */
export function pathMatcher(pattern: string): (path: string) => boolean {
  const wildcard = pattern.endsWith('/*');
  const base = wildcard ? pattern.slice(0, -2) : pattern;
  if (!base.includes(':')) {
    if (!wildcard) return (path) => path === pattern;
    const withSlash = `${base}/`;
    return (path) => path === base || path.startsWith(withSlash) || (base === '' && path.startsWith('/'));
  }
  const body = base
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : escapeRegex(seg)))
    .join('/');
  const re = new RegExp(`^${body}${wildcard ? '(?:/.*)?' : ''}$`);
  return (path) => re.test(path);
}

function headerMatcher(name: string, expected: string | string[]): (h: MatchInput['headers']) => boolean {
  const key = name.toLowerCase();
  const values = Array.isArray(expected) ? expected : [expected];
  if (values.includes('*')) return (h) => h[key] !== undefined;
  const wanted = new Set(values);
  return (h) => {
    const v = h[key];
    if (v === undefined) return false;
    return Array.isArray(v) ? v.some((x) => wanted.has(x)) : wanted.has(v);
  };
}

export function compileMatch(match: MatchConfig): Matcher {
  const checks: Matcher[] = [];
  if (match.methods) {
    const methods = new Set(match.methods);
    checks.push((i) => methods.has(i.method));
  }
  if (match.listener !== undefined) {
    const names = new Set(Array.isArray(match.listener) ? match.listener : [match.listener]);
    checks.push((i) => names.has(i.listener));
  }
  if (match.host !== undefined) {
    const host = hostMatcher(Array.isArray(match.host) ? match.host : [match.host]);
    checks.push((i) => host(i.host));
  }
  if (match.path !== undefined) {
    const path = pathMatcher(match.path);
    checks.push((i) => path(i.path));
  }
  for (const [name, expected] of Object.entries(match.headers ?? {})) {
    const header = headerMatcher(name, expected);
    checks.push((i) => header(i.headers));
  }
  switch (checks.length) {
    case 0:
      return () => true;
    case 1:
      return checks[0];
    case 2: {
      const [a, b] = checks;
      return (i) => a(i) && b(i);
    }
    default:
      return (i) => checks.every((c) => c(i));
  }
}

/** The host of a Host header (or `:authority`), lower-cased, without its port; '' when absent. */
export function hostOf(header: string | undefined): string {
  if (!header) return '';
  const h = header.toLowerCase();
  if (h[0] === '[') {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}
