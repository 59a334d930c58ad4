/**
 * The contestants of the proxy suite: how to start each one in its own process on its own
 * port in front of the shared upstream. Optional ones say why they cannot run instead of
 * failing the run.
 */
import { createRequire } from 'node:module';
import { type Contestant, gitDescribe, nodePeer, notInstalled, startManifold, versionOf } from '../lib/contestants.ts';
import { startCaddy, startHaproxy, startNginx } from '../lib/servers.ts';

function resolvable(pkg: string): string | null {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return null;
  } catch {
    return `not installed (the ${pkg} package; add it: npm install -D ${pkg})`;
  }
}

/**
 * What a Manifold contestant runs with: its defaults (access log on, metrics and trace context
 * on), `bare` (the access log off), `noobs` (the access log, metrics and tracing off).
 */
type Variant = 'default' | 'bare' | 'noobs';

function manifoldYaml(port: number, upstream: string, variant: Variant): string {
  return [
    '# written by bench/proxy: one route to one pool of one target',
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'workers: 1',
    // The admin API (and /metrics) is not measured; port 0 keeps the contestants apart.
    'admin: { port: 0 }',
    'pools:',
    `  bench: { targets: ['${upstream}'] }`,
    'routes:',
    '  - id: bench',
    '    match: { path: /* }',
    '    proxy: { pool: bench }',
    ...(variant === 'default' ? [] : ['log: { access: false }']),
    ...(variant === 'noobs' ? ['metrics: { enabled: false }', 'tracing: { enabled: false }'] : []),
    '',
  ].join('\n');
}

const VARIANTS: Record<Variant, { id: string; label: string; note: string }> = {
  default: {
    id: 'manifold',
    label: 'Manifold (defaults)',
    note: 'Manifold (defaults): `--workers 1`, access log on (level info, one line per request, stdout appended to a file), metrics and trace context on',
  },
  bare: {
    id: 'manifold-bare',
    label: 'Manifold, access log off',
    note: 'Manifold, access log off: as the defaults but `log: {access: false}`',
  },
  noobs: {
    id: 'manifold-noobs',
    label: 'Manifold, no log/metrics/tracing',
    note: 'Manifold, no log/metrics/tracing: `log: {access: false}`, `metrics: {enabled: false}`, `tracing: {enabled: false}`',
  },
};

/**
 * A Manifold contestant; `tree` (another checkout, `--baseline DIR`) runs that tree's
 * src/main.ts with its defaults instead of this one's, to measure a change in the same run.
 */
export function manifold(variant: Variant, tree?: string): Contestant {
  const base = VARIANTS[variant];
  const { id, label, note } =
    tree === undefined
      ? base
      : {
          id: 'manifold@base',
          label: 'Manifold (defaults), baseline',
          note: `Manifold (defaults), baseline: ${tree} (${gitDescribe(tree) ?? 'not a git tree'})`,
        };
  return {
    id,
    label,
    required: true,
    note,
    unavailable: () => null,
    // Once is enough: every variant runs the same tree.
    version: variant === 'default' ? () => gitDescribe(tree) : undefined,
    start: (ctx) => startManifold(ctx, id, (port) => manifoldYaml(port, ctx.upstream, variant), tree),
  };
}

const nginx: Contestant = {
  id: 'nginx',
  label: 'nginx proxy_pass',
  required: false,
  note: 'nginx: 1 worker, proxy_pass with upstream keepalive 64, access_log off',
  unavailable: () => notInstalled('nginx'),
  version: () => versionOf('nginx', ['-v'], /^nginx version: /),
  start: (ctx) => startNginx(ctx, (port) => `    listen 127.0.0.1:${port};\n`),
};

const haproxy: Contestant = {
  id: 'haproxy',
  label: 'HAProxy',
  required: false,
  note: 'HAProxy: 1 thread, mode http, http-reuse always, no log',
  unavailable: () => notInstalled('haproxy'),
  version: () => versionOf('haproxy', ['-v'], /^HA-?Proxy version /i),
  start: (ctx) => startHaproxy(ctx),
};

const caddy: Contestant = {
  id: 'caddy',
  label: 'Caddy reverse_proxy',
  required: false,
  note: 'Caddy: reverse_proxy, admin endpoint and automatic HTTPS off, no access log, GOMAXPROCS=1',
  unavailable: () => notInstalled('caddy'),
  version: () => versionOf('caddy', ['version'], /^v/),
  start: (ctx) =>
    startCaddy(ctx, (port) => `http://127.0.0.1:${port} {\n  reverse_proxy 127.0.0.1:${ctx.upstreamPort}\n}\n`),
};

export const CONTESTANTS: readonly Contestant[] = [
  {
    id: 'direct',
    label: 'direct (no proxy)',
    required: true,
    note: 'direct: the load generator talks to the upstream itself',
    unavailable: () => null,
    start: async (ctx) => ({ port: ctx.upstreamPort, child: null }),
  },
  manifold('default'),
  manifold('bare'),
  manifold('noobs'),
  {
    id: 'undici',
    label: 'undici minimal',
    required: false,
    note: 'undici minimal: bench/peers/undici-proxy.ts, node:http + undici Pool.stream (the naive Node ceiling)',
    unavailable: () => resolvable('undici'),
    start: nodePeer('undici', 'undici-proxy.ts', (ctx) => [ctx.upstream]),
  },
  {
    id: 'dispatch',
    label: 'undici dispatch, no features',
    required: false,
    note: 'undici dispatch, no features: bench/peers/undici-dispatch.ts, node:http + undici Pool.dispatch with a bare handler, raw header lists, nothing added (the floor of a node:http + undici proxy)',
    unavailable: () => resolvable('undici'),
    start: nodePeer('dispatch', 'undici-dispatch.ts', (ctx) => [ctx.upstream]),
  },
  {
    id: 'fastify',
    label: '@fastify/http-proxy',
    required: false,
    note: '@fastify/http-proxy: bench/peers/fastify-proxy.ts, fastify with @fastify/http-proxy (undici underneath), logger off',
    unavailable: () => resolvable('@fastify/http-proxy'),
    start: nodePeer('fastify', 'fastify-proxy.ts', (ctx) => [ctx.upstream]),
  },
  {
    id: 'http-proxy',
    label: 'node-http-proxy',
    required: false,
    note: 'node-http-proxy: bench/peers/node-http-proxy.ts, http-proxy with a keep-alive http.Agent',
    unavailable: () => resolvable('http-proxy'),
    start: nodePeer('http-proxy', 'node-http-proxy.ts', (ctx) => [ctx.upstream]),
  },
  nginx,
  haproxy,
  caddy,
];
