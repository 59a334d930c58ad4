/**
 * @fastify/http-proxy as its README deploys it: fastify (logger off) with the plugin on every
 * path, @fastify/reply-from's undici pool underneath. Usage: node fastify-proxy.ts PORT UPSTREAM_ORIGIN
 * The package is optional: without it this prints "skipped: not installed" and exits 3.
 */
import fastify from 'fastify';

const port = Number(process.argv[2]);
// A variable specifier: the package is optional, and not a dependency tsc should resolve.
const name = '@fastify/http-proxy';
let plugin: unknown;
try {
  plugin = ((await import(name)) as { default: unknown }).default;
} catch {
  process.stderr.write('skipped: not installed (npm install -D @fastify/http-proxy)\n');
  process.exit(3);
}

const app = fastify({ logger: false });
await app.register(plugin as Parameters<typeof app.register>[0], { upstream: process.argv[3] });
await app.listen({ port, host: '127.0.0.1' });
process.on('disconnect', () => process.exit(0));
