/**
 * The contestants of the proxy suite: how to start each one in its own process on its own
 * port in front of the shared upstream. Optional ones say why they cannot run instead of
 * failing the run.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePort } from '../lib/processes.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PEERS = fileURLToPath(new URL('../peers/', import.meta.url));

export interface StartContext {
  /** e.g. http://127.0.0.1:41234 */
  upstream: string;
  upstreamPort: number;
  /** A private temp dir for config files. */
  tmp: string;
}

export interface Started {
  port: number;
  /** null when nothing was started (direct). */
  child: Child | null;
  /** Where its stdout (the access log) goes, emptied between measurements. */
  logFile?: string;
}

export interface Contestant {
  id: string;
  label: string;
  /** Required contestants abort the run when they cannot start; the others are skipped. */
  required: boolean;
  /** A line for the report (configuration that matters for reading the numbers). */
  note?: string;
  /** null when it can run, otherwise why not. */
  unavailable(): string | null;
  /** A version string for the report, when there is one worth printing. */
  version?(): string | null;
  start(ctx: StartContext): Promise<Started>;
}

const node = process.execPath;

function nodePeer(name: string, script: string, extraArgs: (ctx: StartContext) => string[]) {
  return async (ctx: StartContext): Promise<Started> => {
    const port = await freePort();
    const child = new Child(name, node, [join(PEERS, script), String(port), ...extraArgs(ctx)], {
      ipc: true,
      cwd: REPO,
    });
    return { port, child };
  };
}

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
          note: `Manifold (defaults), baseline: ${tree} (${git(['describe', '--always', '--dirty'], tree) ?? 'not a git tree'})`,
        };
  return {
    id,
    label,
    required: true,
    note,
    unavailable: () => null,
    // Once is enough: every variant runs the same tree.
    version: variant === 'default' ? () => git(['describe', '--always', '--dirty'], tree) : undefined,
    async start(ctx) {
      const port = await freePort();
      const file = join(ctx.tmp, `${id}.yaml`);
      writeFileSync(file, manifoldYaml(port, ctx.upstream, variant));
      // The access log goes to a file, as in a deployment: the cost measured is Manifold's, not
      // that of a pipe read by this busy process. The suite empties it between measurements.
      const logFile = join(ctx.tmp, `${id}.log`);
      const child = new Child(
        id,
        node,
        [join(tree ?? REPO, 'src/main.ts'), '--config', file, '--workers', '1'],
        { cwd: tree ?? REPO, stdout: { file: logFile } },
      );
      return { port, child, logFile };
    },
  };
}

function git(args: string[], cwd = REPO): string | null {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The executable `name` on PATH or in the usual sbin folders; null when not installed. */
export function findBinary(name: string): string | null {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/bin',
    `/usr/local/${name}/sbin`,
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** "not installed" when `name` is not found, else null. */
function missing(name: string): string | null {
  return findBinary(name) === null ? `not installed (no ${name} on PATH nor in /usr/sbin, /usr/local/sbin)` : null;
}

/** The first line `bin args` prints (on stdout or stderr), without `strip`. */
function versionOf(name: string, args: string[], strip: RegExp): string | null {
  const bin = findBinary(name);
  if (bin === null) return null;
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim().split('\n')[0].replace(strip, '') || null;
}

function nginxConf(prefix: string, port: number, upstreamPort: number): string {
  return `# written by bench/proxy
daemon off;
master_process on;
worker_processes 1;
pid ${join(prefix, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${join(prefix, 'client_body')};
  proxy_temp_path ${join(prefix, 'proxy')};
  fastcgi_temp_path ${join(prefix, 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'uwsgi')};
  scgi_temp_path ${join(prefix, 'scgi')};
  upstream bench {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

const nginx: Contestant = {
  id: 'nginx',
  label: 'nginx proxy_pass',
  required: false,
  note: 'nginx: 1 worker, proxy_pass with upstream keepalive 64, access_log off',
  unavailable: () => missing('nginx'),
  version: () => versionOf('nginx', ['-v'], /^nginx version: /),
  async start(ctx) {
    const port = await freePort();
    const prefix = join(ctx.tmp, 'nginx');
    mkdirSync(prefix, { recursive: true, mode: 0o755 });
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(conf, nginxConf(prefix, port, ctx.upstreamPort));
    // -e: the error log before the config is read (the default path may not be writable).
    const child = new Child('nginx', findBinary('nginx')!, ['-p', `${prefix}/`, '-e', 'stderr', '-c', conf]);
    return { port, child };
  },
};

function haproxyConf(port: number, upstreamPort: number): string {
  return `# written by bench/proxy
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:${port}
  default_backend bench
backend bench
  http-reuse always
  server upstream 127.0.0.1:${upstreamPort}
`;
}

const haproxy: Contestant = {
  id: 'haproxy',
  label: 'HAProxy',
  required: false,
  note: 'HAProxy: 1 thread, mode http, http-reuse always, no log',
  unavailable: () => missing('haproxy'),
  version: () => versionOf('haproxy', ['-v'], /^HA-?Proxy version /i),
  async start(ctx) {
    const port = await freePort();
    const conf = join(ctx.tmp, 'haproxy.cfg');
    writeFileSync(conf, haproxyConf(port, ctx.upstreamPort));
    // -db: stay in the foreground, no daemon.
    const child = new Child('haproxy', findBinary('haproxy')!, ['-db', '-f', conf]);
    return { port, child };
  },
};

const caddy: Contestant = {
  id: 'caddy',
  label: 'Caddy reverse_proxy',
  required: false,
  note: 'Caddy: reverse_proxy, admin endpoint and automatic HTTPS off, no access log, GOMAXPROCS=1',
  unavailable: () => missing('caddy'),
  version: () => versionOf('caddy', ['version'], /^v/),
  async start(ctx) {
    const port = await freePort();
    const conf = join(ctx.tmp, 'Caddyfile');
    writeFileSync(
      conf,
      `{\n  admin off\n  auto_https off\n}\nhttp://127.0.0.1:${port} {\n  reverse_proxy 127.0.0.1:${ctx.upstreamPort}\n}\n`,
    );
    const child = new Child(
      'caddy',
      findBinary('caddy')!,
      ['run', '--config', conf, '--adapter', 'caddyfile'],
      // One core's worth of Go threads, as the other contestants get one event loop or worker.
      { env: { ...process.env, GOMAXPROCS: '1', XDG_DATA_HOME: ctx.tmp, XDG_CONFIG_HOME: ctx.tmp } },
    );
    return { port, child };
  },
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

/** Starts the upstream of every contestant. */
export async function startUpstream(): Promise<Started> {
  const port = await freePort();
  const child = new Child('upstream', node, [join(PEERS, 'upstream.ts'), String(port)], {
    ipc: true,
    cwd: REPO,
  });
  return { port, child };
}
