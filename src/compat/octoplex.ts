/**
 * `manifold --multiplex` (issue 12): Octoplex with no file. Octoplex listens on 0.0.0.0:8080
 * and serves `POST /multiplex` (timeout_msec up to 1 h, at most 50 requests), `GET /` and
 * `GET /healthz` → `{"healthy":true}`, anything else 404 `not found`. This translates that
 * into Manifold config: three `respond` routes and one `multiplex` route in Octoplex format.
 *
 * Deliberate difference (README "Coming from Octoplex"): the SSRF guard stays on. Octoplex
 * sends anywhere, so anyone who can reach it can reach the cloud metadata service and every
 * internal address; here only public addresses are allowed unless `--allow` opens more.
 */
import type { Override } from '../config/load.ts';

export const OCTOPLEX_SOURCE = 'quick mode (--multiplex)';

const JSON_TYPE = { 'content-type': 'application/json; charset=utf-8' };
const healthy = (id: string, path: string) => ({
  id,
  match: { path, methods: ['GET'] },
  respond: { status: 200, body: '{"healthy":true}', headers: JSON_TYPE },
});

/** The in-memory "file" (JSON is YAML); env and flags override it like a file. */
export const OCTOPLEX_BASE = JSON.stringify({
  workers: 0,
  admin: { enabled: false },
  listen: { host: '0.0.0.0', port: 8080 },
  routes: [
    {
      id: 'multiplex',
      match: { path: '/multiplex', methods: ['POST'] },
      // The batch deadline is the only one (route timeout 0): Octoplex allows up to 1 h.
      timeout: 0,
      multiplex: {
        format: 'octoplex',
        max_requests: 50,
        max_timeout: '1h',
        // "*": any public name; special-use addresses only through --allow CIDRs.
        allow: ['*'],
        // Octoplex has no size limits; these are generous bounds, not its numbers.
        max_body_bytes: '16MiB',
        max_item_bytes: '16MiB',
        max_total_bytes: '64MiB',
      },
    },
    healthy('health', '/'),
    healthy('healthz', '/healthz'),
    {
      id: 'not-found',
      match: {},
      respond: { status: 404, body: 'not found\n', headers: { 'content-type': 'text/plain; charset=utf-8' } },
    },
  ],
});

/** `--allow LIST`: CIDRs and names added to the route's allow list, beside "*". */
export function octoplexOverrides(allow: string | undefined): Override[] {
  if (allow === undefined) return [];
  const extra = allow
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return [{ path: ['routes', 0, 'multiplex', 'allow'], value: ['*', ...extra], source: 'flag --allow' }];
}
