/**
 * Issue 14 item 4: TLS and HTTP/2 to targets. Real https and h2 servers on port 0 with a
 * private CA made by openssl at test time; the gateway trusts it through `pools.<name>.tls.ca`
 * (no NODE_EXTRA_CA_CERTS), speaks h2 with `http2: true`, sends a client certificate, and its
 * health checks, multiplex items and defer deliveries reach https targets the same way.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { after, describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { configProblems, type Gateway, scratch, startGateway, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { makeCerts, type TestCerts } from '../helpers/tls.ts';
import { startManaged } from './admin-gateway.ts';

interface Seen {
  url: string;
  httpVersion: string;
  servername: string | false;
  clientCert: string | null;
  body: string;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** Records every request (its protocol, SNI, client certificate and body) and answers JSON. */
function recorder(seen: Seen[]) {
  return (req: Req, res: Res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate?.();
      const s: Seen = {
        url: req.url ?? '',
        httpVersion: req.httpVersion,
        servername: socket.servername ?? false,
        clientCert: peer && peer.subject ? String(peer.subject.CN) : null,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(s));
    });
  };
}

async function listen<T extends HttpsServer | Http2SecureServer>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  after(() => {
    (server as HttpsServer).closeAllConnections?.();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

const certs: TestCerts = makeCerts();
const seen: Seen[] = [];
/** https, HTTP/1.1 only. */
let httpsPort = 0;
let httpsHandshakes = 0;
/** h2 only (allowHTTP1: false). */
let h2Port = 0;
/** https that requires a client certificate signed by the CA. */
let mtlsPort = 0;
/** h2 only; streams a body both ways under the test's control (see the streaming test). */
let streamPort = 0;
const stream = { got: [] as string[], release: null as (() => void) | null };

{
  const { ca, serverCert: cert, serverKey: key } = certs.pem;
  const https = createHttpsServer({ cert, key }, recorder(seen));
  https.on('secureConnection', () => httpsHandshakes++);
  httpsPort = await listen(https);
  h2Port = await listen(createSecureServer({ cert, key, allowHTTP1: false }, recorder(seen)));
  mtlsPort = await listen(createHttpsServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, recorder(seen)));
  streamPort = await listen(
    createSecureServer({ cert, key, allowHTTP1: false }, (req, res) => {
      // Echoes each request chunk as it arrives; the first answer chunk goes out at once, the
      // end only once the test saw the first chunk at the client.
      res.writeHead(200, { 'content-type': 'text/plain', 'x-http-version': req.httpVersion, 'set-cookie': ['a=1', 'b=2'] });
      res.write('start;');
      req.on('data', (c: Buffer) => {
        stream.got.push(c.toString());
        res.write(`echo:${c.toString()};`);
      });
      req.on('end', () => {
        stream.release = () => res.end('end');
      });
    }),
  );
}

function gatewayYaml(pool: string, targets: string, extraRoutes = ''): string {
  return `
workers: 0
admin: { enabled: false }
log: { level: warn, access: false }
pools:
  p:
    targets: [${targets}]
${pool
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
routes:
${extraRoutes}  - match: { path: /* }
    proxy: { pool: p }
    timeout: 10s
`;
}

async function gateway(pool: string, targets: string, extraRoutes = ''): Promise<Gateway> {
  const gw = await startGateway(gatewayYaml(pool, targets, extraRoutes));
  after(() => gw.close());
  return gw;
}

describe('TLS to targets (issue 14 item 4)', { timeout: 60_000 }, () => {
  test('an https target signed by a private CA, trusted through pools.<name>.tls.ca', async () => {
    const gw = await gateway(`tls: { ca: ${certs.ca} }`, `https://127.0.0.1:${httpsPort}`);
    const r = await send(`${gw.url}/hello`);
    assert.equal(r.status, 200, r.text);
    const s = r.json<Seen>();
    assert.equal(s.url, '/hello');
    assert.equal(s.httpVersion, '1.1', 'http2 is off by default: HTTP/1.1 only');
    // An IP literal target: no SNI, the certificate's IP SAN is what was checked.
    assert.equal(s.servername, false);
  });

  test("without the CA the handshake fails: 502 TARGET_UNREACHABLE saying it was TLS", async () => {
    const gw = await gateway('connect_timeout: 2s', `https://127.0.0.1:${httpsPort}`);
    const r = await send(`${gw.url}/hello`);
    assert.equal(r.status, 502, r.text);
    const err = r.json<{ error: { code: string; message: string } }>().error;
    assert.equal(err.code, 'TARGET_UNREACHABLE');
    assert.match(err.message, /TLS handshake with 127\.0\.0\.1:\d+ failed/);
    assert.match(err.message, /tls\.ca/, 'the message names the key that fixes it');
    assert.doesNotMatch(err.message, /use-system-ca/, "Node's advice to its own users is not ours");
  });

  test('reject_unauthorized: false accepts the unverified certificate', async () => {
    const gw = await gateway('tls: { reject_unauthorized: false }', `https://127.0.0.1:${httpsPort}`);
    const r = await send(`${gw.url}/insecure`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json<Seen>().url, '/insecure');
  });

  test('tls.servername is the SNI and the checked name, whatever Host the client sent', async () => {
    const gw = await gateway(`tls: { ca: ${certs.ca}, servername: localhost }`, `https://127.0.0.1:${httpsPort}`);
    const r = await send(`${gw.url}/sni`, { headers: { host: 'client-chosen.example' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json<Seen>().servername, 'localhost');
    // A name the certificate does not carry fails the check.
    const wrong = await gateway(`tls: { ca: ${certs.ca}, servername: other.test }`, `https://127.0.0.1:${httpsPort}`);
    const bad = await send(`${wrong.url}/sni`);
    assert.equal(bad.status, 502, bad.text);
    assert.match(bad.json<{ error: { message: string } }>().error.message, /TLS handshake/);
  });

  test('clients sending different Host headers share the kept-alive connection', async () => {
    const gw = await gateway(`tls: { ca: ${certs.ca} }`, `https://127.0.0.1:${httpsPort}`);
    const before = httpsHandshakes;
    for (const host of ['a.example', 'b.example', 'a.example', 'c.example']) {
      const r = await send(`${gw.url}/keep`, { headers: { host } });
      assert.equal(r.status, 200, r.text);
    }
    assert.equal(httpsHandshakes - before, 1, 'one TLS connection for every Host');
  });

  test('a target host name is the SNI by default, not the Host the client sent', async () => {
    const gw = await gateway(`tls: { ca: ${certs.ca} }`, `https://localhost:${httpsPort}`);
    const r = await send(`${gw.url}/name`, { headers: { host: 'client-chosen.example' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json<Seen>().servername, 'localhost');
  });

  test('a client certificate (tls.cert + tls.key) for a target that requires one', async () => {
    const mtls = await gateway(
      `tls: { ca: ${certs.ca}, cert: ${certs.clientCert}, key: ${certs.clientKey} }`,
      `https://127.0.0.1:${mtlsPort}`,
    );
    const r = await send(`${mtls.url}/mtls`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json<Seen>().clientCert, 'manifold-client');
    const none = await gateway(`tls: { ca: ${certs.ca} }`, `https://127.0.0.1:${mtlsPort}`);
    const refused = await send(`${none.url}/mtls`);
    assert.equal(refused.status, 502, refused.text);
  });
});

describe('reload (issue 14 item 4)', { timeout: 60_000 }, () => {
  test('a CA file rewritten in place is read again by the next config apply', async () => {
    const other = makeCerts('manifold-tls-other-');
    const dir = scratch('manifold-tls-reload-');
    const caFile = dir.path('pem');
    writeFileSync(caFile, other.pem.ca); // the wrong CA first
    const yaml = gatewayYaml(`tls: { ca: ${caFile} }`, `https://127.0.0.1:${httpsPort}`);
    const gw = await startGateway(yaml);
    after(() => gw.close());
    assert.equal((await send(`${gw.url}/reload`)).status, 502);
    writeFileSync(caFile, certs.pem.ca);
    gw.runtime.apply(loadConfigText(yaml, 'test.yaml', { env: {} }).config);
    const r = await send(`${gw.url}/reload`);
    assert.equal(r.status, 200, r.text);
  });
});

describe('HTTP/2 to targets (issue 14 item 4)', { timeout: 60_000 }, () => {
  test('http2: true speaks h2 to an h2-only target', async () => {
    const gw = await gateway(`http2: true\ntls: { ca: ${certs.ca} }`, `https://127.0.0.1:${h2Port}`);
    for (let i = 0; i < 3; i++) {
      const r = await send(`${gw.url}/h2/${i}`, { method: 'POST', body: `body-${i}` });
      assert.equal(r.status, 200, r.text);
      const s = r.json<Seen>();
      assert.equal(s.httpVersion, '2.0');
      assert.equal(r.headers['content-type'], 'application/json', 'the h2 answer headers are relayed');
      assert.equal(s.url, `/h2/${i}`);
      assert.equal(s.body, `body-${i}`);
    }
  });

  test('without http2 the gateway offers only HTTP/1.1, which an h2-only target refuses (502)', async () => {
    const gw = await gateway(`tls: { ca: ${certs.ca} }`, `https://127.0.0.1:${h2Port}`);
    const r = await send(`${gw.url}/h1`);
    assert.equal(r.status, 502, r.text);
    // The message says what happened and which key fixes it, without OpenSSL's source paths.
    const message = r.json<{ error: { message: string } }>().error.message;
    assert.match(message, /failed: tlsv1 alert no application protocol \(ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL\); the target speaks only HTTP\/2: set the pool's http2: true/);
    assert.doesNotMatch(message, /deps\/openssl/);
  });

  test('a body streams both ways over h2', async () => {
    const gw = await gateway(`http2: true\ntls: { ca: ${certs.ca} }`, `https://127.0.0.1:${streamPort}`);
    stream.got = [];
    stream.release = null;
    let received = '';
    let status = 0;
    let version = '';
    let headersSeen: unknown = null;
    const done = new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/stream`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        status = res.statusCode ?? 0;
        version = String(res.headers['x-http-version']);
        headersSeen = res.headers;
        res.on('data', (c: Buffer) => (received += c.toString()));
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      void (async () => {
        req.write('one');
        // The target has the first chunk while the request is still open…
        await until(() => stream.got.join('') === 'one', 'the first request chunk at the target');
        // …and the client has the echo of it while the response is still open.
        await until(() => received.includes('echo:one;'), 'the first response chunk at the client');
        req.write('two');
        await until(() => stream.got.join('') === 'onetwo', 'the second request chunk at the target');
        req.end();
        await until(() => stream.release !== null, 'the request end at the target');
        stream.release!();
      })().catch(reject);
    });
    await done;
    assert.equal(status, 200);
    // The target's headers are relayed from undici's h2 header object, lists included.
    assert.equal(version, '2.0', JSON.stringify(headersSeen));
    assert.deepEqual((headersSeen as Record<string, unknown>)['set-cookie'], ['a=1', 'b=2']);
    assert.equal(received, 'start;echo:one;echo:two;end');
  });
});

describe('health checks, multiplex and defer reach https targets (issue 14 item 4)', { timeout: 90_000 }, () => {
  test('active health checks use the pool TLS settings; reject_unauthorized: false is warned about', async () => {
    const before = seen.length;
    const gw = await startManaged(
      `
workers: 0
log: { level: info, access: false }
pools:
  trusted:
    targets: [https://127.0.0.1:${httpsPort}]
    tls: { ca: ${certs.ca} }
    health: { path: /health-trusted, interval: 50ms, timeout: 2s, fall: 1, rise: 1 }
  untrusted:
    targets: [https://127.0.0.1:${httpsPort}]
    health: { path: /health-untrusted, interval: 50ms, timeout: 2s, fall: 1, rise: 1 }
  h2:
    targets: [https://127.0.0.1:${h2Port}]
    http2: true
    tls: { ca: ${certs.ca} }
    health: { path: /health-h2, interval: 50ms, timeout: 2s, fall: 1, rise: 1 }
  insecure:
    targets: [https://127.0.0.1:${httpsPort}]
    tls: { reject_unauthorized: false }
routes:
  - match: { path: /* }
    proxy: { pool: trusted }
`,
      0,
    );
    after(() => gw.close());
    type View = { pool: string; state: string };
    const state = async (pool: string) =>
      (await gw.admin('GET', '/stats/detail')).json<View[]>().find((t) => t.pool === pool)?.state;
    await until(async () => (await state('untrusted')) === 'down', 'the untrusted pool to be down');
    assert.equal(await state('trusted'), 'up');
    assert.equal(await state('h2'), 'up');
    const checks = seen.slice(before);
    assert.ok(checks.some((s) => s.url === '/health-trusted'), 'the trusted pool was checked over TLS');
    assert.ok(checks.some((s) => s.url === '/health-h2' && s.httpVersion === '2.0'), 'the h2 pool was checked over h2');
    assert.ok(!checks.some((s) => s.url === '/health-untrusted'), 'no check passed an unverified handshake');
    const warning = gw.cli.logs().find((l) => l.level === 'warn' && l.pool === 'insecure');
    assert.ok(warning, 'a warning names the pool with reject_unauthorized: false');
    assert.equal(warning.key, 'pools.insecure.tls.reject_unauthorized');
    assert.match(String(warning.msg), /not verified/);
    assert.ok(!gw.cli.logs().some((l) => l.level === 'warn' && l.pool === 'trusted'));
  });

  test('with --workers 2 every worker reads the PEM files and speaks h2 to the target', async () => {
    const gw = await startManaged(
      `
log: { level: warn, access: false }
pools:
  h2:
    targets: [https://127.0.0.1:${h2Port}]
    http2: true
    tls: { ca: ${certs.ca} }
routes:
  - match: { path: /* }
    proxy: { pool: h2 }
`,
      2,
    );
    after(() => gw.close());
    for (let i = 0; i < 4; i++) {
      const r = await gw.get(`/workers/${i}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json<Seen>().httpVersion, '2.0');
    }
  });

  test('a multiplex item to an https target with multiplex.ca', async () => {
    const route = (ca: string) => `  - match: { path: /multiplex, methods: [POST] }
    multiplex: { allow: ["127.0.0.0/8"]${ca} }
`;
    const gw = await gateway('', `https://127.0.0.1:${httpsPort}`, route(`, ca: ${certs.ca}`));
    const body = JSON.stringify({ requests: [{ uri: `https://127.0.0.1:${httpsPort}/item` }] });
    const r = await send(`${gw.url}/multiplex`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200, r.text);
    const item = r.json<{ responses: Array<{ status?: number; body?: string; error?: { code: string } }> }>().responses[0];
    assert.equal(item.status, 200, JSON.stringify(item));
    assert.equal(JSON.parse(item.body!).url, '/item');
    // The same route without the CA: the item fails, the guard still refuses what it refused.
    const plain = await gateway('', `https://127.0.0.1:${httpsPort}`, route(''));
    const r2 = await send(`${plain.url}/multiplex`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const failed = r2.json<{ responses: Array<{ error?: { code: string } }> }>().responses[0];
    assert.ok(failed.error, JSON.stringify(failed));
    const guarded = JSON.stringify({ requests: [{ uri: `https://10.1.2.3:${httpsPort}/item` }] });
    const r3 = await send(`${gw.url}/multiplex`, { method: 'POST', body: guarded, headers: { 'content-type': 'application/json' } });
    assert.equal(r3.json<{ responses: Array<{ error?: { code: string } }> }>().responses[0].error?.code, 'FORBIDDEN_TARGET');
  });

  test('a defer delivery reaches an https h2 target through the pool TLS settings', async () => {
    const dir = scratch('manifold-defer-tls-');
    const before = seen.length;
    const gw = await startGateway(`
workers: 0
admin: { enabled: false }
log: { level: warn, access: false }
queue: { driver: sqlite, path: ${dir.path('db')} }
pools:
  hooks:
    targets: [https://127.0.0.1:${h2Port}]
    http2: true
    tls: { ca: ${certs.ca} }
routes:
  - match: { path: /hooks/* }
    defer: { pool: hooks, backoff: { base: 50ms, max: 100ms } }
`);
    after(() => gw.close());
    const r = await send(`${gw.url}/hooks/a`, { method: 'POST', body: 'deferred-body' });
    assert.equal(r.status, 202, r.text);
    const got = await until(() => seen.slice(before).find((s) => s.url === '/hooks/a'), 'the delivery');
    assert.equal(got.httpVersion, '2.0');
    assert.equal(got.body, 'deferred-body');
  });
});

describe('TLS config errors name the key and the file (issue 14 item 4)', () => {
  const pool = (tls: string) => `pools:\n  p:\n    targets: [https://127.0.0.1:1]\n    tls: ${tls}\n`;

  test('a missing CA file', () => {
    const problems = configProblems(pool('{ ca: /nonexistent/ca.pem }'));
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0].path, 'pools.p.tls.ca');
    assert.match(problems[0].source, /^test\.yaml:\d+$/);
    assert.match(problems[0].message, /\/nonexistent\/ca\.pem: cannot read \(ENOENT\)/);
  });

  test('a file that is not PEM, a cert without its key, a key that does not fit', () => {
    const notPem = configProblems(pool(`{ ca: ${certs.dir}/server.csr.missing }`));
    assert.equal(notPem[0].path, 'pools.p.tls.ca');
    const ext = configProblems(pool(`{ ca: ${certs.dir}/server.ext }`));
    assert.match(ext[0].message, /server\.ext: not a PEM certificate/);
    const alone = configProblems(pool(`{ cert: ${certs.clientCert} }`));
    assert.deepEqual(alone.map((p) => p.path), ['pools.p.tls.key']);
    const mismatch = configProblems(pool(`{ cert: ${certs.clientCert}, key: ${certs.serverKey} }`));
    assert.deepEqual(mismatch.map((p) => p.path), ['pools.p.tls.key']);
    assert.match(mismatch[0].message, /is not the key of certificate/);
  });

  test('multiplex.ca names its route key', () => {
    const problems = configProblems(`routes:\n  - match: { path: /m }\n    multiplex: { ca: /nonexistent/ca.pem }\n`);
    assert.equal(problems[0].path, 'routes[0].multiplex.ca');
    assert.match(problems[0].message, /cannot read/);
  });

  test('unknown keys in tls are refused', () => {
    const problems = configProblems(pool('{ cafile: x }'));
    assert.equal(problems[0].path, 'pools.p.tls.cafile');
    assert.equal(problems[0].message, 'unknown key');
  });
});
