/**
 * The contestants of the TLS suite: each terminates TLS with the same certificate (made at the
 * start of the run) on its own port, offers ALPN h2 and http/1.1, and (but the node:http2 floor)
 * proxies to the shared plain upstream. Optional ones say why they cannot run instead of
 * failing the run; nginx, HAProxy and Caddy run where their binaries are installed.
 */
import {
  type Contestant as AnyContestant,
  gitDescribe,
  nodePeer,
  notInstalled,
  type StartContext,
  type Started as AnyStarted,
  startManifold,
  versionOf,
} from '../lib/contestants.ts';
import type { Child } from '../lib/processes.ts';
import { startCaddy, startHaproxy, startNginx } from '../lib/servers.ts';

export interface TlsContext extends StartContext {
  /** PEM files of the run's certificate and key, and both in one file (HAProxy's `crt`). */
  cert: string;
  key: string;
  pem: string;
}

/** Every TLS contestant is a process of its own (there is no "direct" here). */
export type Started = AnyStarted & { child: Child };

export type Contestant = AnyContestant<TlsContext, Started> & { note: string };

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
  version: () => gitDescribe(),
  start: (ctx) => startManifold(ctx, 'manifold', (port) => manifoldYaml(port, ctx)),
};

/** nginx ≥ 1.25.1 says `http2 on;`; before, `listen … http2`. */
function nginxHttp2On(): boolean {
  const v = /(\d+)\.(\d+)\.(\d+)/.exec(versionOf('nginx', ['-v'], /^nginx version: /) ?? '');
  if (v === null) return true;
  const [major, minor, patch] = v.slice(1).map(Number);
  return major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)));
}

const nginx: Contestant = {
  id: 'nginx',
  label: 'nginx',
  required: false,
  note: 'nginx: 1 worker, `listen … ssl` with http2, `ssl_protocols TLSv1.2 TLSv1.3`, proxy_pass with upstream keepalive 64, access_log off, no session cache or tickets',
  unavailable: () => notInstalled('nginx'),
  version: () => versionOf('nginx', ['-v'], /^nginx version: /),
  start: (ctx) => {
    const http2On = nginxHttp2On();
    return startNginx(ctx, (port) =>
      [
        `    listen 127.0.0.1:${port} ssl${http2On ? '' : ' http2'};`,
        ...(http2On ? ['    http2 on;'] : []),
        `    ssl_certificate ${ctx.cert};`,
        `    ssl_certificate_key ${ctx.key};`,
        // Before 1.23.4 nginx offers TLS 1.0 to 1.2 only when ssl_protocols is not set.
        '    ssl_protocols TLSv1.2 TLSv1.3;',
        '    # Full handshakes only: no server-side session cache nor tickets.',
        '    ssl_session_cache off;',
        '    ssl_session_tickets off;',
        '',
      ].join('\n'),
    );
  },
};

const haproxy: Contestant = {
  id: 'haproxy',
  label: 'HAProxy',
  required: false,
  note: 'HAProxy: 1 thread, `bind … ssl crt … alpn h2,http/1.1`, mode http, http-reuse always, no log, no session cache or tickets',
  unavailable: () => notInstalled('haproxy'),
  version: () => versionOf('haproxy', ['-v'], /^HA-?Proxy version /i),
  start: (ctx) => startHaproxy(ctx, ` ssl crt ${ctx.pem} alpn h2,http/1.1 no-tls-tickets`, '  tune.ssl.cachesize 0\n'),
};

const caddy: Contestant = {
  id: 'caddy',
  label: 'Caddy',
  required: false,
  note: 'Caddy: `tls cert key` and reverse_proxy, admin and automatic HTTPS off, no access log, GOMAXPROCS=1',
  unavailable: () => notInstalled('caddy'),
  version: () => versionOf('caddy', ['version'], /^v/),
  start: (ctx) =>
    startCaddy(
      ctx,
      (port) =>
        `https://:${port} {\n  bind 127.0.0.1\n  tls ${ctx.cert} ${ctx.key}\n  reverse_proxy 127.0.0.1:${ctx.upstreamPort}\n}\n`,
    ),
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
