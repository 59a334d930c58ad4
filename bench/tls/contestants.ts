/**
 * The contestants of the TLS suite: each terminates TLS with the same certificate (made at the
 * start of the run) on its own port, offers ALPN h2 and http/1.1, and (but the node:http2 floor)
 * proxies to the shared plain upstream. Optional ones say why they cannot run instead of
 * failing the run; nginx, HAProxy and Caddy run where their binaries are installed.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePort } from '../lib/processes.ts';
import { findBinary, REPO } from '../proxy/contestants.ts';

const PEERS = fileURLToPath(new URL('../peers/', import.meta.url));
const node = process.execPath;

export interface TlsContext {
  upstream: string;
  upstreamPort: number;
  tmp: string;
  /** PEM files of the run's certificate and key, and both in one file (HAProxy's `crt`). */
  cert: string;
  key: string;
  pem: string;
}

export interface Started {
  port: number;
  child: Child;
  /** Where its stdout (the access log) goes, emptied between measurements. */
  logFile?: string;
}

export interface Contestant {
  id: string;
  label: string;
  /** Required contestants abort the run when they cannot start; the others are skipped. */
  required: boolean;
  note: string;
  /** null when it can run, otherwise why not. */
  unavailable(): string | null;
  version?(): string | null;
  start(ctx: TlsContext): Promise<Started>;
}

function notInstalled(name: string, apt: string): string | null {
  return findBinary(name) === null ? `not installed (apt-get install ${apt})` : null;
}

function versionOf(name: string, args: string[], strip: RegExp): string | null {
  const bin = findBinary(name);
  if (bin === null) return null;
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim().split('\n')[0].replace(strip, '') || null;
}

function manifoldYaml(port: number, ctx: TlsContext): string {
  return [
    '# written by bench/tls: one TLS listener (h2 and http/1.1), one route to one pool of one target',
    'listeners:',
    `  - { name: tls, host: 127.0.0.1, port: ${port}, http2: true, tls: { cert: '${ctx.cert}', key: '${ctx.key}' } }`,
    'workers: 1',
    'admin: { port: 0 }',
    'pools:',
    `  bench: { targets: ['${ctx.upstream}'] }`,
    'routes:',
    '  - id: bench',
    '    match: { path: /* }',
    '    proxy: { pool: bench }',
    '',
  ].join('\n');
}

const manifold: Contestant = {
  id: 'manifold',
  label: 'Manifold (defaults)',
  required: true,
  note: 'Manifold (defaults): `--workers 1`, one listener with `tls` and `http2: true`, access log on (stdout appended to a file), metrics and trace context on',
  unavailable: () => null,
  version: () => {
    const r = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: REPO, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  },
  async start(ctx) {
    const port = await freePort();
    const file = join(ctx.tmp, 'manifold.yaml');
    writeFileSync(file, manifoldYaml(port, ctx));
    const logFile = join(ctx.tmp, 'manifold.log');
    const child = new Child('manifold', node, [join(REPO, 'src/main.ts'), '--config', file, '--workers', '1'], {
      cwd: REPO,
      stdout: { file: logFile },
    });
    return { port, child, logFile };
  },
};

function nodePeer(id: string, script: string, args: (ctx: TlsContext) => string[]) {
  return async (ctx: TlsContext): Promise<Started> => {
    const port = await freePort();
    const child = new Child(id, node, [join(PEERS, script), String(port), ...args(ctx)], { ipc: true, cwd: REPO });
    return { port, child };
  };
}

/** nginx ≥ 1.25.1 says `http2 on;`; before, `listen … http2`. */
function nginxHttp2On(): boolean {
  const v = /(\d+)\.(\d+)\.(\d+)/.exec(versionOf('nginx', ['-v'], /^nginx version: /) ?? '');
  if (v === null) return true;
  const [major, minor, patch] = v.slice(1).map(Number);
  return major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)));
}

export function nginxConf(prefix: string, port: number, ctx: TlsContext, http2On: boolean): string {
  return `# written by bench/tls
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
    server 127.0.0.1:${ctx.upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} ssl${http2On ? '' : ' http2'};
${http2On ? '    http2 on;\n' : ''}    ssl_certificate ${ctx.cert};
    ssl_certificate_key ${ctx.key};
    # Full handshakes only: no server-side session cache nor tickets.
    ssl_session_cache off;
    ssl_session_tickets off;
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
  label: 'nginx',
  required: false,
  note: 'nginx: 1 worker, `listen … ssl` with http2, proxy_pass with upstream keepalive 64, access_log off, no session cache or tickets',
  unavailable: () => notInstalled('nginx', 'nginx'),
  version: () => versionOf('nginx', ['-v'], /^nginx version: /),
  async start(ctx) {
    const port = await freePort();
    const prefix = join(ctx.tmp, 'nginx');
    mkdirSync(prefix, { recursive: true, mode: 0o755 });
    const conf = join(prefix, 'nginx.conf');
    writeFileSync(conf, nginxConf(prefix, port, ctx, nginxHttp2On()));
    const child = new Child('nginx', findBinary('nginx')!, ['-p', `${prefix}/`, '-e', 'stderr', '-c', conf]);
    return { port, child };
  },
};

export function haproxyConf(port: number, ctx: TlsContext): string {
  return `# written by bench/tls
global
  nbthread 1
  maxconn 4096
  tune.ssl.cachesize 0
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:${port} ssl crt ${ctx.pem} alpn h2,http/1.1 no-tls-tickets
  default_backend bench
backend bench
  http-reuse always
  server upstream 127.0.0.1:${ctx.upstreamPort}
`;
}

const haproxy: Contestant = {
  id: 'haproxy',
  label: 'HAProxy',
  required: false,
  note: 'HAProxy: 1 thread, `bind … ssl crt … alpn h2,http/1.1`, mode http, http-reuse always, no log, no session cache or tickets',
  unavailable: () => notInstalled('haproxy', 'haproxy'),
  version: () => versionOf('haproxy', ['-v'], /^HA-?Proxy version /i),
  async start(ctx) {
    const port = await freePort();
    const conf = join(ctx.tmp, 'haproxy.cfg');
    writeFileSync(conf, haproxyConf(port, ctx));
    const child = new Child('haproxy', findBinary('haproxy')!, ['-db', '-f', conf]);
    return { port, child };
  },
};

const caddy: Contestant = {
  id: 'caddy',
  label: 'Caddy',
  required: false,
  note: 'Caddy: `tls cert key` and reverse_proxy, admin and automatic HTTPS off, no access log, GOMAXPROCS=1',
  unavailable: () => notInstalled('caddy', 'caddy'),
  version: () => versionOf('caddy', ['version'], /^v/),
  async start(ctx) {
    const port = await freePort();
    const conf = join(ctx.tmp, 'Caddyfile');
    writeFileSync(
      conf,
      `{\n  admin off\n  auto_https off\n}\nhttps://:${port} {\n  bind 127.0.0.1\n  tls ${ctx.cert} ${ctx.key}\n  reverse_proxy 127.0.0.1:${ctx.upstreamPort}\n}\n`,
    );
    const child = new Child('caddy', findBinary('caddy')!, ['run', '--config', conf, '--adapter', 'caddyfile'], {
      env: { ...process.env, GOMAXPROCS: '1', XDG_DATA_HOME: ctx.tmp, XDG_CONFIG_HOME: ctx.tmp },
    });
    return { port, child };
  },
};

export const CONTESTANTS: readonly Contestant[] = [
  {
    id: 'node-tls',
    label: 'node:http2 TLS, no proxy',
    required: false,
    note: 'node:http2 TLS, no proxy: bench/peers/tls-server.ts, createSecureServer with allowHTTP1 answering the body itself (the cost of TLS + HTTP in Node)',
    unavailable: () => null,
    start: nodePeer('node-tls', 'tls-server.ts', (ctx) => [ctx.cert, ctx.key]),
  },
  manifold,
  {
    id: 'undici-tls',
    label: 'undici minimal, TLS',
    required: false,
    note: 'undici minimal, TLS: bench/peers/undici-proxy.ts with CERT KEY, node:http2 createSecureServer (allowHTTP1) + undici Pool.stream',
    unavailable: () => null,
    start: nodePeer('undici-tls', 'undici-proxy.ts', (ctx) => [ctx.upstream, ctx.cert, ctx.key]),
  },
  nginx,
  haproxy,
  caddy,
];
