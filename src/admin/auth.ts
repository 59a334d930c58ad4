/**
 * Who is calling the admin API (issue 7): a client sends `Authorization: Bearer <admin.token>`;
 * the dashboard in a browser, which cannot add that header to a page load, sends the
 * `manifold_admin` cookie set by `POST /dashboard/login`. Both compare timing-safe, and the
 * token is read per call so a reload rotates it (and signs every browser out).
 *
 * The cookie is not the token: browsers send cookies to every port of a host, so a cookie set
 * by the admin port also reaches the data plane on the same host and would be proxied to its
 * targets. It is therefore an HMAC of the token (useless anywhere but here, dead at the next
 * rotation), scoped to `Path=/dashboard`, and accepted only by the routes under /dashboard —
 * the page, its data, and the pool and queue calls it makes under /dashboard/api.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const COOKIE = 'manifold_admin';
/** Sent by the dashboard's own fetch calls; see `CSRF_SAFE` below. */
export const DASHBOARD_HEADER = 'x-manifold-dashboard';

/**
 * Methods a cookie alone may call. Anything else also needs `DASHBOARD_HEADER: 1`: another
 * site can make a browser send the cookie (SameSite=Strict already stops most of that), but
 * it cannot add a custom header without a CORS preflight, which the admin API never answers.
 */
export const CSRF_SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD']);

export type Credential = 'bearer' | 'cookie';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Timing-safe, and hashing first keeps the token's length out of the timing too. */
export function sameToken(given: string, token: string): boolean {
  return timingSafeEqual(digest(given), digest(token));
}

function bearer(header: string | undefined): string | undefined {
  return header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
}

/** The first `manifold_admin` cookie's value, percent-decoded (undefined when malformed). */
export function cookieToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== COOKIE) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** The cookie path; the only routes that take the cookie are under it. */
export const COOKIE_PATH = '/dashboard';

/** What the cookie holds for `token`: derived from it, never it. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('manifold dashboard session v1').digest('base64url');
}

/**
 * How the request proved it holds `token`, or null when it did not. The cookie counts only
 * with `cookieAllowed` (a route under COOKIE_PATH).
 */
export function credential(
  headers: IncomingHttpHeaders,
  token: string,
  cookieAllowed = true,
): Credential | null {
  const b = bearer(headers.authorization);
  if (b !== undefined && sameToken(b, token)) return 'bearer';
  if (!cookieAllowed) return null;
  const c = cookieToken(headers.cookie);
  if (c !== undefined && sameToken(c, sessionValue(token))) return 'cookie';
  return null;
}

/** The `set-cookie` value that signs a browser in; no Max-Age: it lasts the browser session. */
export function sessionCookie(token: string): string {
  return `${COOKIE}=${sessionValue(token)}; HttpOnly; SameSite=Strict; Path=${COOKIE_PATH}`;
}

// ---- Host and Origin (issue 15, item 2) ----

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || host.startsWith('127.');

/** `::1` → `[::1]`: an address as it is spelled in a Host header. */
const hostForm = (address: string) => (address.includes(':') ? `[${address}]` : address);

export interface HostRule {
  /** `admin.host` (the bind address). */
  bind: string;
  /** `admin.allowed_hosts`. */
  allowed: readonly string[];
}

/**
 * Whether `host` (a Host header, or an Origin's host) names this admin API, as Caddy's admin
 * endpoint checks: its own address and port (the socket's; `localhost`/`127.0.0.1`/`[::1]`
 * for a loopback bind), or an `admin.allowed_hosts` entry (`name` for any port, `name:port`).
 * A DNS-rebinding page reaches the port under its own name, which is none of these.
 */
export function hostAllowed(
  host: string | undefined,
  rule: HostRule,
  local: { address?: string; port?: number },
): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(h);
  if (!m) return false;
  const [, name, port] = m;
  for (const a of rule.allowed) {
    const e = a.toLowerCase();
    if (e === h || e === name) return true;
  }
  if (port === undefined || Number(port) !== local.port) return false;
  if (local.address !== undefined && name === hostForm(local.address.replace(/^::ffff:/, ''))) return true;
  if (name === hostForm(rule.bind.toLowerCase())) return true;
  return isLoopback(rule.bind) && LOOPBACK_NAMES.includes(name);
}

/** Whether an `Origin` header is this admin API's own origin (an http(s) origin with an allowed host). */
export function originAllowed(
  origin: string,
  rule: HostRule,
  local: { address?: string; port?: number },
): boolean {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  const port = u.port || (u.protocol === 'http:' ? '80' : '443');
  return hostAllowed(`${u.hostname}:${port}`, rule, local);
}
