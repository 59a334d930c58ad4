/**
 * `manifold --pool-api` (issue 12): Weldr's no-file start, translated into Manifold's config.
 * Weldr (hjr3/weldr `src/weldr.rs`, `src/config.rs`) starts with an empty pool, proxies every
 * request on :8080, takes `POST /servers` / `DELETE /servers/:ip/:port` on :8687, always
 * health-checks the servers it was given and sends them their own Host. Here that is one
 * pool, one catch-all proxy route and the admin API; the machinery is Manifold's own.
 *
 * Deliberate differences (README "Coming from Weldr"): the admin API binds 127.0.0.1, not
 * 0.0.0.0, because it changes where traffic goes; off loopback it needs a token
 * (`--admin-token` or MANIFOLD_ADMIN_TOKEN), which compile() enforces.
 */

/** Weldr's `HealthCheck::default()`: its README says every 30 s, its code runs every 10 s (the binary's value wins). */
export const WELDR_HEALTH = { type: 'http', path: '/', interval: '10s', timeout: '2s', fall: 3, rise: 2, expect: ['2xx'] } as const;

/**
 * The in-memory config. It is text, not overrides, so `MANIFOLD_*` env reaches every key as
 * for a file (e.g. `MANIFOLD_POOLS__DEFAULT__HEALTH__INTERVAL=500ms`); flags win over both.
 */
export const WELDR_BASE = `workers: auto
listen: { host: 0.0.0.0, port: 8080 }
admin:
  host: 127.0.0.1
  port: 8687
  token: "\${MANIFOLD_ADMIN_TOKEN:-}"
  default_pool: default
pools:
  default:
    targets: []
    health: ${JSON.stringify(WELDR_HEALTH)}
routes:
  - id: weldr
    match: {}
    proxy: { pool: default, host: target }
`;

export const WELDR_SOURCE = 'quick mode (--pool-api)';
