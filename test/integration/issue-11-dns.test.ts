/**
 * Issue 11 item 2: proxy targets named by host name get undici's dns interceptor, the cache
 * multiplex routes use (`pools.<name>.dns_max_ttl`). A target named `localhost` is resolved
 * once for many connections (counted on the real resolver's getaddrinfo fallback, which
 * `localhost` takes: no DNS server knows it), and the cache composes with TLS (SNI and the
 * certificate check stay the name), HTTP/2 and `local_addresses`.
 */
import assert from 'node:assert/strict';
import { promises as dns } from 'node:dns';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startGateway } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { testCa } from '../helpers/certs.ts';

/** Counts getaddrinfo lookups of `localhost` made through node:dns's promise API (lib/dns.ts). */
const lookups = { localhost: 0 };
const realLookup = dns.lookup;
(dns as { lookup: typeof dns.lookup }).lookup = ((hostname: string, options: object) => {
  if (hostname === 'localhost') lookups.localhost++;
  return realLookup(hostname, options as never);
}) as typeof dns.lookup;
after(() => ((dns as { lookup: typeof dns.lookup }).lookup = realLookup));

async function listen<T extends Server | Http2SecureServer>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

describe('issue 11: a DNS cache for targets named by host name', () => {
  let port = 0;
  const peers = new Set<number>();
  let server: Server;
  after(() => server.close());
  before(async () => {
    // Closes every connection after its answer: each request needs a new connection, so a
    // resolve per connection would show as one lookup per request.
    server = createServer((req, res) => {
      peers.add(req.socket.remotePort!);
      res.setHeader('connection', 'close');
      res.end(`host=${req.headers.host}`);
    });
    port = await listen(server);
  });

  test('a target named localhost works, and its name is resolved once for many connections', async () => {
    const gw = await startGateway(`
pools: { named: { targets: ["http://localhost:${port}"] } }
routes: [{ match: { path: /* }, proxy: { pool: named } }]
`);
    after(() => gw.close());
    lookups.localhost = 0;
    peers.clear();
    for (let i = 0; i < 5; i++) {
      const r = await send(`${gw.url}/n${i}`);
      assert.equal(r.status, 200, r.text);
      // The client's Host is passed on as without the cache (`host: preserve`, the default).
      assert.equal(r.text, `host=${new URL(gw.url).host}`);
    }
    assert.equal(peers.size, 5, 'five connections');
    assert.equal(lookups.localhost, 1, 'one lookup');
  });

  test('dns_max_ttl: 0 turns the cache off: the system resolves at each connection', async () => {
    const gw = await startGateway(`
pools: { named: { targets: ["http://localhost:${port}"], dns_max_ttl: 0 } }
routes: [{ match: { path: /* }, proxy: { pool: named } }]
`);
    after(() => gw.close());
    lookups.localhost = 0;
    for (let i = 0; i < 3; i++) assert.equal((await send(`${gw.url}/x`)).status, 200);
    assert.equal(lookups.localhost, 0, 'net.connect resolved by itself (callback getaddrinfo), not the cache');
  });

  test('with TLS, HTTP/2 and local_addresses: SNI and the certificate are the name, the source is the pool address', async () => {
    const ca = testCa();
    const site = ca.issue('localhost');
    const h2 = createSecureServer({ cert: site.pem, key: readFileSync(site.key) }, (req, res) => {
      const socket = req.socket as TLSSocket;
      res.end(JSON.stringify({ version: req.httpVersion, sni: socket.servername, from: socket.remoteAddress }));
    });
    const tlsPort = await listen(h2);
    after(() => h2.close());
    const gw = await startGateway(`
pools:
  secure:
    targets: ["https://localhost:${tlsPort}"]
    http2: true
    tls: { ca: ${ca.file} }
    local_addresses: 127.0.0.2
routes: [{ match: { path: /* }, proxy: { pool: secure } }]
`);
    after(() => gw.close());
    lookups.localhost = 0;
    const r = await send(`${gw.url}/`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json(), { version: '2.0', sni: 'localhost', from: '127.0.0.2' });
    assert.equal(lookups.localhost, 1);
  });

  test('a config error names the key', async () => {
    await assert.rejects(
      startGateway(`
pools: { p: { targets: ["http://localhost:1"], dns_max_ttl: soon } }
routes: [{ match: { path: /* }, proxy: { pool: p } }]
`),
      /pools\.p\.dns_max_ttl/,
    );
  });
});
