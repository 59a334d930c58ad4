/**
 * Issue 14, item 2: TLS termination. Certificates made at test time (helpers/certs.ts): SNI
 * picks the certificate (exact, wildcard, default), TLS below the floor is refused, bad files
 * are config errors naming key and file, a certificate replaced on disk is served to new
 * connections while open ones finish (no request fails meanwhile), a bad replacement keeps the
 * old one, and client certificates (mTLS) pass their subject on in a header no client can forge.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { after, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { testCa } from '../helpers/certs.ts';
import { closeAfter, configProblems, proxyAll, startGateway, startUpstream, until } from '../helpers/index.ts';

const ca = testCa();
const fallback = ca.issue('default.test');
const alpha = ca.issue('alpha.test');
const wild = ca.issue('wild.test', { names: ['*.wild.test'] });

/** The certificate a new connection gets for `servername` (undefined: no SNI), and the socket. */
async function peer(port: number, servername?: string, extra: Record<string, unknown> = {}): Promise<PeerCertificate> {
  // The subject is what is checked: a name the certificate does not cover must still connect.
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.pem, servername, checkServerIdentity: () => undefined, ...extra });
  await once(socket, 'secureConnect');
  const cert = socket.getPeerCertificate();
  socket.destroy();
  return cert;
}

const echo = () =>
  startUpstream((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers, url: req.url }));
  });

describe('issue 14: SNI, the TLS floor, x-forwarded-proto', async () => {
  const upstream = await echo();
  const gw = await startGateway(`
listeners:
  - name: tls
    host: 127.0.0.1
    port: 0
    tls:
      cert: ${fallback.cert}
      key: ${fallback.key}
      certificates:
        - { cert: ${alpha.cert}, key: ${alpha.key} }
        - { cert: ${wild.cert}, key: ${wild.key} }
  - name: strict
    host: 127.0.0.1
    port: 0
    tls: { cert: ${fallback.cert}, key: ${fallback.key}, min_version: TLSv1.3 }
${proxyAll(upstream.url)}`);
  closeAfter(gw, upstream);

  test('SNI picks the certificate: exact name, wildcard, default for unknown names and none', async () => {
    assert.equal((await peer(gw.ports.tls, 'alpha.test')).subject.CN, 'alpha.test');
    assert.equal((await peer(gw.ports.tls, 'ALPHA.test')).subject.CN, 'alpha.test');
    assert.equal((await peer(gw.ports.tls, 'api.wild.test')).subject.CN, 'wild.test');
    // A wildcard covers one label only (RFC 6125 §6.4.3).
    assert.equal((await peer(gw.ports.tls, 'a.b.wild.test')).subject.CN, 'default.test');
    assert.equal((await peer(gw.ports.tls, 'unknown.test')).subject.CN, 'default.test');
    assert.equal((await peer(gw.ports.tls)).subject.CN, 'default.test');
  });

  test('TLS 1.1 is refused; min_version TLSv1.3 refuses TLS 1.2', async () => {
    const old = tlsConnect({
      host: '127.0.0.1',
      port: gw.ports.tls,
      ca: ca.pem,
      servername: 'alpha.test',
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    const [err] = (await once(old, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    assert.match(String(err.code ?? err.message), /PROTOCOL|VERSION|ALERT/i);
    const tls12 = tlsConnect({ host: '127.0.0.1', port: gw.ports.strict, ca: ca.pem, servername: 'default.test', maxVersion: 'TLSv1.2' });
    const [err2] = (await once(tls12, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    assert.match(String(err2.code ?? err2.message), /PROTOCOL_VERSION|VERSION/i);
    // The default floor lets TLS 1.2 in.
    const ok = tlsConnect({ host: '127.0.0.1', port: gw.ports.tls, ca: ca.pem, servername: 'alpha.test', maxVersion: 'TLSv1.2' });
    await once(ok, 'secureConnect');
    assert.equal(ok.getProtocol(), 'TLSv1.2');
    ok.destroy();
  });

  test('x-forwarded-proto is https on a TLS listener (undici with a private CA)', async () => {
    const agent = new Agent({ connect: { ca: ca.pem, servername: 'alpha.test' } });
    after(() => agent.close());
    const r = await request(`https://127.0.0.1:${gw.ports.tls}/p?q=1`, {
      dispatcher: agent,
      headers: { host: 'alpha.test', 'x-forwarded-proto': 'http' },
    });
    assert.equal(r.statusCode, 200);
    const seen = (await r.body.json()) as { headers: Record<string, string>; url: string };
    assert.equal(seen.url, '/p?q=1');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers.host, 'alpha.test');
  });
});

describe('issue 14: bad certificate files are config errors naming the key and the file', () => {
  const listener = (tls: string) => `listeners:\n  - port: 0\n    tls: ${tls}\n`;

  test('a missing file', () => {
    const problems = configProblems(listener(`{ cert: /nonexistent/c.pem, key: ${alpha.key} }`));
    assert.deepEqual(problems.map((p) => p.path), ['listeners[0].tls.cert']);
    assert.match(problems[0].message, /\/nonexistent\/c\.pem: cannot read \(ENOENT\)/);
    assert.match(problems[0].source, /^test\.yaml:\d+$/);
  });

  test('a key that is not the certificate\'s', () => {
    const stray = ca.strayKey();
    const problems = configProblems(
      listener(`{ cert: ${fallback.cert}, key: ${fallback.key}, certificates: [{ cert: ${alpha.cert}, key: ${stray} }] }`),
    );
    assert.deepEqual(problems.map((p) => p.path), ['listeners[0].tls.certificates[0].key']);
    assert.ok(problems[0].message.includes(stray), problems[0].message);
    assert.ok(problems[0].message.includes(`is not the key of certificate ${alpha.cert}`), problems[0].message);
  });

  test('an expired certificate, and a file that is not PEM', () => {
    const expired = ca.issue('old.test', { expired: true });
    const problems = configProblems(listener(`{ cert: ${expired.cert}, key: ${expired.key} }`));
    assert.deepEqual(problems.map((p) => p.path), ['listeners[0].tls.cert']);
    assert.match(problems[0].message, /certificate expired on Feb {1,2}1 00:00:00 2020 GMT/);
    const junk = join(ca.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const second = configProblems(listener(`{ cert: ${alpha.cert}, key: ${junk} }`));
    assert.deepEqual(second.map((p) => p.path), ['listeners[0].tls.key']);
    assert.match(second[0].message, /junk\.pem: not a PEM private key/);
  });
});

describe('issue 14: certificates replaced on disk', async () => {
  const live = testCa('unused').dir;
  const first = ca.issue('swap.test');
  const second = ca.issue('swap.test');
  const certFile = join(live, 'fullchain.pem');
  const keyFile = join(live, 'privkey.pem');
  /** As certbot does: a new file next to the old one, renamed over it. */
  const replace = (file: string, text: string | Buffer) => {
    writeFileSync(`${file}.new`, text);
    renameSync(`${file}.new`, file);
  };
  replace(certFile, readFileSync(first.cert));
  replace(keyFile, readFileSync(first.key));
  const upstream = await startUpstream((req, res) => {
    if (req.url !== '/slow') return res.end('ok');
    // A stream that spans the swap: a chunk now, the rest once the test says so.
    res.write('first;');
    const timer = setInterval(() => {
      if (!release) return;
      clearInterval(timer);
      res.end('last');
    }, 10);
  });
  let release = false;
  const yaml = `
listeners:
  - { name: tls, host: 127.0.0.1, port: 0, tls: { cert: ${certFile}, key: ${keyFile} } }
${proxyAll(upstream.url)}`;
  const gw = await startGateway(yaml);
  closeAfter(gw, upstream);

  test('a new connection sees the new certificate, an open stream finishes, no request fails', async () => {
    const { X509Certificate } = await import('node:crypto');
    const fp1 = new X509Certificate(first.pem).fingerprint256;
    const fp2 = new X509Certificate(second.pem).fingerprint256;
    assert.equal((await peer(gw.ports.tls, 'swap.test')).fingerprint256, fp1);
    // A response stream in progress on a connection made with the old certificate.
    const slow = httpsRequest({ host: '127.0.0.1', port: gw.ports.tls, path: '/slow', ca: ca.pem, servername: 'swap.test', agent: false });
    slow.end();
    const [res] = (await once(slow, 'response')) as [import('node:http').IncomingMessage];
    let body = '';
    res.on('data', (c: Buffer) => (body += c));
    await until(() => body.startsWith('first;'), 'the first chunk');
    const oldSocket = res.socket as TLSSocket;
    assert.equal(oldSocket.getPeerCertificate().fingerprint256, fp1);
    // Requests in a loop, each on a new connection, while the files are replaced.
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const loop = (async () => {
      while (!stop) {
        const agent = new Agent({ connect: { ca: ca.pem, servername: 'swap.test' } });
        try {
          const r = await request(`https://127.0.0.1:${gw.ports.tls}/`, { dispatcher: agent });
          if ((await r.body.text()) === 'ok' && r.statusCode === 200) ok++;
          else failures.push(String(r.statusCode));
        } catch (err) {
          failures.push((err as Error).message);
        } finally {
          await agent.close();
        }
      }
    })();
    await until(() => ok >= 3, 'requests before the swap');
    replace(certFile, readFileSync(second.cert));
    replace(keyFile, readFileSync(second.key));
    await until(async () => (await peer(gw.ports.tls, 'swap.test')).fingerprint256 === fp2, 'the new certificate', 10_000);
    const afterSwap = ok;
    await until(() => ok >= afterSwap + 3, 'requests after the swap');
    stop = true;
    await loop;
    assert.deepEqual(failures, []);
    release = true;
    await once(res, 'end');
    assert.equal(body, 'first;last');
    assert.ok(gw.logs.lines.some((l) => l.msg === 'certificates reloaded'));
  });

  test('a bad replacement keeps the old certificate serving and logs an error naming the file', async () => {
    const { X509Certificate } = await import('node:crypto');
    const fp2 = new X509Certificate(second.pem).fingerprint256;
    const stray = readFileSync(ca.strayKey());
    replace(keyFile, stray);
    const line = await until(() => gw.logs.lines.find((l) => l.msg === 'certificate reload refused; the old certificates keep serving'), 'the refusal');
    assert.equal(line.file, keyFile);
    assert.equal(line.key, 'tls.key');
    assert.equal(line.listener, 'tls', 'from the listener logger, once');
    assert.equal((await peer(gw.ports.tls, 'swap.test')).fingerprint256, fp2);
    // The reload path (SIGHUP, POST /config/reload: the runtime's apply) refuses it the same way.
    const { loadConfigText } = await import('../../src/config/load.ts');
    replace(keyFile, readFileSync(second.key));
    gw.runtime.apply(loadConfigText(yaml, 'test.yaml', { env: {} }).config);
    assert.equal((await peer(gw.ports.tls, 'swap.test')).fingerprint256, fp2);
  });

  test('a reload applies a replaced certificate at once (no wait for the watch)', async () => {
    const { X509Certificate } = await import('node:crypto');
    const third = ca.issue('swap.test');
    const fp3 = new X509Certificate(third.pem).fingerprint256;
    replace(certFile, readFileSync(third.cert));
    replace(keyFile, readFileSync(third.key));
    const { loadConfigText } = await import('../../src/config/load.ts');
    gw.runtime.apply(loadConfigText(yaml, 'test.yaml', { env: {} }).config);
    assert.equal((await peer(gw.ports.tls, 'swap.test')).fingerprint256, fp3);
  });
});

describe('issue 14: client certificates (mTLS)', async () => {
  const upstream = await echo();
  const client = ca.issue('client-one');
  const admin = ca.issue('admin');
  const other = testCa('Other CA');
  const stranger = other.issue('client-one');
  const gw = await startGateway(`
listeners:
  - name: mtls
    host: 127.0.0.1
    port: 0
    tls: { cert: ${alpha.cert}, key: ${alpha.key}, client_ca: ${ca.file}, client_subject_header: x-client-subject }
  - name: optional
    host: 127.0.0.1
    port: 0
    tls: { cert: ${alpha.cert}, key: ${alpha.key}, client_ca: ${ca.file}, client_cert: optional, client_subject_header: x-client-subject }
  - { name: plain, host: 127.0.0.1, port: 0 }
pools:
  app: { targets: ["${upstream.url}"] }
routes:
  - id: admins
    match: { path: /admin, headers: { x-client-subject: "CN=admin, O=Manifold Tests" } }
    respond: { status: 200, body: "hello admin" }
  - match: {}
    proxy: { pool: app }
`);
  closeAfter(gw, upstream);
  const get = async (listener: string, path: string, who?: { cert: string; key: string }, headers: Record<string, string> = {}) => {
    const agent = new Agent({
      connect: { ca: ca.pem, servername: 'alpha.test', ...(who ? { cert: readFileSync(who.cert), key: readFileSync(who.key) } : {}) },
    });
    try {
      const r = await request(`https://127.0.0.1:${gw.ports[listener]}${path}`, { dispatcher: agent, headers: { host: 'alpha.test', ...headers } });
      return { status: r.statusCode, text: await r.body.text() };
    } finally {
      await agent.close();
    }
  };

  test('required: a verified certificate passes its subject on; no or a foreign certificate fails the handshake', async () => {
    const r = await get('mtls', '/who', client, { 'x-client-subject': 'CN=admin, O=Manifold Tests' });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.text) as { headers: Record<string, string> };
    // The forged copy is gone; the verified subject is the only one.
    assert.equal(seen.headers['x-client-subject'], 'CN=client-one, O=Manifold Tests');
    await assert.rejects(get('mtls', '/who'), (err: Error) => /certificate|handshake|socket|alert|closed/i.test(`${err.message} ${String((err as { code?: string }).code)}`));
    await assert.rejects(get('mtls', '/who', stranger));
  });

  test('the subject is matchable like any header: only the admin certificate reaches the admin route', async () => {
    assert.deepEqual(await get('mtls', '/admin', admin), { status: 200, text: 'hello admin' });
    const notAdmin = await get('mtls', '/admin', client);
    assert.equal(JSON.parse(notAdmin.text).url, '/admin', 'proxied: the admins route did not match');
  });

  test('optional: without a certificate the request is served with no subject, and a forged one is removed', async () => {
    const r = await get('optional', '/who', undefined, { 'x-client-subject': 'CN=admin, O=Manifold Tests' });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.text) as { headers: Record<string, string> }).headers['x-client-subject'], undefined);
    const forged = await get('optional', '/admin', undefined, { 'X-Client-Subject': 'CN=admin, O=Manifold Tests' });
    assert.notEqual(forged.text, 'hello admin');
    const withCert = await get('optional', '/who', client);
    assert.equal((JSON.parse(withCert.text) as { headers: Record<string, string> }).headers['x-client-subject'], 'CN=client-one, O=Manifold Tests');
  });

  test('a plain listener of the same gateway strips the header too', async () => {
    const { send } = await import('../helpers/http.ts');
    const r = await send(`http://127.0.0.1:${gw.ports.plain}/who`, { headers: { 'x-client-subject': 'CN=admin, O=Manifold Tests' } });
    assert.equal(r.json<{ headers: Record<string, string> }>().headers['x-client-subject'], undefined);
    assert.notEqual((await send(`http://127.0.0.1:${gw.ports.plain}/admin`, { headers: { 'x-client-subject': 'CN=admin, O=Manifold Tests' } })).text, 'hello admin');
  });
});

describe('issue 14: TLS in worker processes', () => {
  test('every worker serves TLS, and replaced files reach them all (POST /config/reload, or their watch)', async () => {
    const { spawnCli, scratch } = await import('../helpers/index.ts');
    const { createServer } = await import('node:net');
    const { X509Certificate } = await import('node:crypto');
    const freePort = async () => {
      const s = createServer();
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      const { port } = s.address() as { port: number };
      await new Promise((resolve) => s.close(resolve));
      return port;
    };
    const [port, adminPort] = [await freePort(), await freePort()];
    const dir = scratch('manifold-tls-workers-');
    const v1 = ca.issue('workers.test');
    const v2 = ca.issue('workers.test');
    const certFile = join(dir.dir, 'cert.pem');
    const keyFile = join(dir.dir, 'key.pem');
    writeFileSync(certFile, readFileSync(v1.cert));
    writeFileSync(keyFile, readFileSync(v1.key));
    const file = dir.configFile(`workers: 2
admin: { host: 127.0.0.1, port: ${adminPort} }
listeners:
  - { name: tls, host: 127.0.0.1, port: ${port}, http2: true, tls: { cert: ${certFile}, key: ${keyFile} } }
routes:
  - match: {}
    respond: { status: 200, body: "hi" }
`);
    const cli = spawnCli(['--config', file]);
    after(() => cli.kill('SIGKILL'));
    await until(() => cli.logs().find((l) => l.msg === 'admin API listening'), () => `listening: ${cli.stderr}`, 30_000);
    const fp = async () => (await peer(port, 'workers.test')).fingerprint256;
    const fp1 = new X509Certificate(v1.pem).fingerprint256;
    const fp2 = new X509Certificate(v2.pem).fingerprint256;
    assert.equal(await fp(), fp1);
    // Written in place; each worker's watch or the reload's config push makes it read them.
    writeFileSync(certFile, readFileSync(v2.cert));
    writeFileSync(keyFile, readFileSync(v2.key));
    const r = await fetch(`http://127.0.0.1:${adminPort}/config/reload`, { method: 'POST' });
    assert.equal(r.status, 200);
    await until(async () => {
      for (let i = 0; i < 12; i++) if ((await fp()) !== fp2) return false;
      return true;
    }, 'every worker serving the new certificate');
    cli.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
  });
});

describe('issue 14: slow clients on a TLS listener', async () => {
  const gw = await startGateway(`
listeners:
  - { name: tls, host: 127.0.0.1, port: 0, tls: { cert: ${alpha.cert}, key: ${alpha.key} } }
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
limits: { headers_timeout: 300ms }
routes:
  - match: {}
    respond: { status: 200 }
`);
  after(() => gw.close());

  test('a request head not sent within limits.headers_timeout gets 408, as on a plain listener', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.ports.tls, ca: ca.pem, servername: 'alpha.test' });
    await once(socket, 'secureConnect');
    socket.write('GET / HTTP/1.1\r\nHost: alpha.test\r\n');
    let got = '';
    socket.on('data', (c: Buffer) => (got += c));
    await once(socket, 'close');
    assert.match(got, /^HTTP\/1\.1 408 /);
  });

  test('a TLS handshake or an h2c connection that never starts is closed', async () => {
    const { connect } = await import('node:net');
    for (const port of [gw.ports.tls, gw.ports.h2c]) {
      const raw = connect(port, '127.0.0.1');
      raw.on('error', () => {});
      await once(raw, 'connect');
      await once(raw, 'close');
    }
  });
});
