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
    return `the ${pkg} package is not installed (npm install -D ${pkg})`;
  }
}

/** What a Manifold contestant runs with: the default, the access log on, or observability off. */
type Variant = 'default' | 'access' | 'bare';

function manifoldYaml(port: number, upstream: string, variant: Variant): string {
  const access = variant === 'access';
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
    `log: { level: ${access ? 'info' : 'warn'}, access: ${access} }`,
    ...(variant === 'bare' ? ['metrics: { enabled: false }', 'tracing: { enabled: false }'] : []),
    '',
  ].join('\n');
}

const VARIANTS: Record<Variant, { id: string; label: string; note: string }> = {
  default: {
    id: 'manifold',
    label: 'Manifold',
    note: 'Manifold with `--workers 1 --log-level warn` and `log: {access: false}` (no access log; metrics and trace context on, as by default)',
  },
  access: {
    id: 'manifold+access',
    label: 'Manifold, access log on',
    note: 'Manifold with `log: {access: true, level: info}`: one pino line per request, stdout to /dev/null',
  },
  bare: {
    id: 'manifold-bare',
    label: 'Manifold, metrics and tracing off',
    note: 'Manifold as the default but `metrics: {enabled: false}` and `tracing: {enabled: false}`: what observability costs',
  },
};

function manifold(variant: Variant): Contestant {
  const { id, label, note } = VARIANTS[variant];
  const access = variant === 'access';
  return {
    id,
    label,
    required: true,
    note,
    unavailable: () => null,
    // Once is enough: every variant runs the same tree.
    version: variant === 'default' ? () => git(['describe', '--always', '--dirty']) : undefined,
    async start(ctx) {
      const port = await freePort();
      const file = join(ctx.tmp, `${id}.yaml`);
      writeFileSync(file, manifoldYaml(port, ctx.upstream, variant));
      const level = access ? 'info' : 'warn';
      const child = new Child(
        id,
        node,
        [join(REPO, 'src/main.ts'), '--config', file, '--workers', '1', '--log-level', level],
        // With access logs on, stdout is /dev/null: the cost measured is pino's, not a pipe's.
        { cwd: REPO, stdout: access ? 'ignore' : 'capture' },
      );
      return { port, child };
    },
  };
}

function git(args: string[]): string | null {
  const r = spawnSync('git', args, { cwd: REPO, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export function findNginx(): string | null {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/nginx/sbin',
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, 'nginx');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
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
  unavailable: () => (findNginx() === null ? 'nginx is not on PATH (nor in /usr/sbin)' : null),
  version() {
    const bin = findNginx();
    if (bin === null) return null;
    const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
    return (r.stderr || r.stdout).trim().replace(/^nginx version: /, '') || null;
  },
  async start(ctx) {
    const port = await freePort();
    const prefix = join(ctx.tmp, 'nginx');
    mkdirSync(prefix, { recursive: true, mode: 0o755 });
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(conf, nginxConf(prefix, port, ctx.upstreamPort));
    // -e: the error log before the config is read (the default path may not be writable).
    const child = new Child('nginx', findNginx()!, ['-p', `${prefix}/`, '-e', 'stderr', '-c', conf]);
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
  manifold('access'),
  manifold('bare'),
  {
    id: 'undici',
    label: 'undici minimal',
    required: false,
    note: 'undici minimal: bench/peers/undici-proxy.ts, node:http + undici Pool.stream (the naive Node ceiling)',
    unavailable: () => resolvable('undici'),
    start: nodePeer('undici', 'undici-proxy.ts', (ctx) => [ctx.upstream]),
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
