/**
 * nginx, HAProxy and Caddy as contestants, configured alike in every suite: in the foreground,
 * one worker (thread, GOMAXPROCS), no access log, keep-alive to the shared upstream. A suite
 * gives only what its listener adds (TLS: certificate, ALPN, no session resumption).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type StartContext, type Started, findBinary } from './contestants.ts';
import { Child, freePort } from './processes.ts';

type Start = Promise<Started & { child: Child }>;

/** nginx's config; `server` are the server block's lines before `location /` (its listen). */
export function nginxConf(prefix: string, upstreamPort: number, server: string): string {
  return `# written by bench
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
${server}    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

/** Starts nginx with `nginxConf`; `server(port)` gives the server block's own lines. */
export async function startNginx(ctx: StartContext, server: (port: number) => string): Start {
  const port = await freePort();
  const prefix = join(ctx.tmp, 'nginx');
  mkdirSync(prefix, { recursive: true, mode: 0o755 });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConf(prefix, ctx.upstreamPort, server(port)));
  // -e: the error log before the config is read (the default path may not be writable).
  const child = new Child('nginx', findBinary('nginx')!, ['-p', `${prefix}/`, '-e', 'stderr', '-c', conf]);
  return { port, child };
}

/** HAProxy's config; `bind` is the frontend's bind line after the address, `global` extra lines. */
export function haproxyConf(port: number, upstreamPort: number, bind = '', global = ''): string {
  return `# written by bench
global
  nbthread 1
  maxconn 4096
${global}defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:${port}${bind}
  default_backend bench
backend bench
  http-reuse always
  server upstream 127.0.0.1:${upstreamPort}
`;
}

/** Starts HAProxy with `haproxyConf(port, upstreamPort, bind, global)`. */
export async function startHaproxy(ctx: StartContext, bind = '', global = ''): Start {
  const port = await freePort();
  const conf = join(ctx.tmp, 'haproxy.cfg');
  writeFileSync(conf, haproxyConf(port, ctx.upstreamPort, bind, global));
  // -db: stay in the foreground, no daemon.
  const child = new Child('haproxy', findBinary('haproxy')!, ['-db', '-f', conf]);
  return { port, child };
}

/** Starts Caddy with a Caddyfile of no admin and no automatic HTTPS, then `site(port)`. */
export async function startCaddy(ctx: StartContext, site: (port: number) => string): Start {
  const port = await freePort();
  const conf = join(ctx.tmp, 'Caddyfile');
  writeFileSync(conf, `{\n  admin off\n  auto_https off\n}\n${site(port)}`);
  const child = new Child(
    'caddy',
    findBinary('caddy')!,
    ['run', '--config', conf, '--adapter', 'caddyfile'],
    // One core's worth of Go threads, as the other contestants get one event loop or worker.
    { env: { ...process.env, GOMAXPROCS: '1', XDG_DATA_HOME: ctx.tmp, XDG_CONFIG_HOME: ctx.tmp } },
  );
  return { port, child };
}
