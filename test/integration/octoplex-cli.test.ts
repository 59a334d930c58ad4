/**
 * Issue 12: `manifold --multiplex` is Octoplex. Octoplex's README request and the cases of
 * its integration test (tests/multiplexer_suite.rs) and unit tests (src/multiplexer.rs),
 * against the real CLI, read with a client that follows the serde rules of Octoplex's own
 * test client (tests/common/api.rs) strictly: an externally tagged enum with only the
 * variants Success and Failure, and exactly their fields.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  type Cli,
  cliPort,
  deadAddress,
  spawnCli,
  startGateway,
  startUpstream,
  type Upstream,
} from '../helpers/index.ts';

interface Success {
  headers: Record<string, string>;
  status: number;
  content: string | null;
  duration_msec: number;
}
interface Failure {
  error: string;
  duration_msec: number;
}
type Outcome = { Success: Success } | { Failure: Failure };

function exactKeys(v: unknown, keys: string[], what: string): Record<string, unknown> {
  assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v), `${what}: an object`);
  assert.deepEqual(Object.keys(v).sort(), [...keys].sort(), `${what}: fields`);
  return v as Record<string, unknown>;
}

const isMsec = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;

/** serde: `enum SingleOutcome { Failure(SingleHttpFailure), Success(SingleHttpResponse) }`. */
function outcome(v: unknown): Outcome {
  const o = exactKeys(v, Object.keys(v as object), 'outcome');
  const tags = Object.keys(o);
  assert.equal(tags.length, 1, 'an externally tagged enum has one key');
  if (tags[0] === 'Success') {
    const s = exactKeys(o.Success, ['headers', 'status', 'content', 'duration_msec'], 'Success');
    assert.ok(Number.isInteger(s.status) && (s.status as number) >= 100 && (s.status as number) <= 999);
    assert.ok(s.content === null || typeof s.content === 'string');
    assert.ok(isMsec(s.duration_msec));
    const h = exactKeys(s.headers, Object.keys(s.headers as object), 'headers');
    for (const value of Object.values(h)) assert.equal(typeof value, 'string', 'HashMap<String, String>');
    return o as Outcome;
  }
  assert.equal(tags[0], 'Failure', `unknown variant ${tags[0]}`);
  const f = exactKeys(o.Failure, ['error', 'duration_msec'], 'Failure');
  assert.equal(typeof f.error, 'string');
  assert.ok(isMsec(f.duration_msec));
  return o as Outcome;
}

/** serde: `OctoplexResponse { responses: Vec<SingleOutcome> }`. */
function responses(v: unknown, n: number): Outcome[] {
  const r = exactKeys(v, ['responses'], 'OctoplexResponse');
  assert.ok(Array.isArray(r.responses));
  assert.equal(r.responses.length, n, 'same order and count as requests');
  return r.responses.map(outcome);
}

function success(o: Outcome): Success {
  assert.ok('Success' in o, `expected Success, got ${JSON.stringify(o)}`);
  return o.Success;
}

function failure(o: Outcome): Failure {
  assert.ok('Failure' in o, `expected Failure, got ${JSON.stringify(o)}`);
  return o.Failure;
}

describe('manifold --multiplex (Octoplex)', () => {
  let cli: Cli;
  let base: string;
  let up: Upstream;
  const seen: Array<{ url: string; headers: IncomingMessage['headers']; body: string }> = [];

  before(async () => {
    up = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        if (req.url === '/hello') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('Hello world!');
        } else if (req.url === '/stall') {
          // never answers: the batch deadline must end it
        } else if (req.url === '/repeated') {
          res.setHeader('set-cookie', ['a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT', 'b=2']);
          res.setHeader('x-list', ['one', 'two']);
          res.end(Buffer.from([0x68, 0x69, 0xff]));
        } else {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ method: req.method, body }));
        }
      });
    });
    cli = spawnCli(['--multiplex', '--allow', '127.0.0.0/8', '-p', '0']);
    base = `http://127.0.0.1:${await cliPort(cli)}`;
  });
  after(async () => {
    cli.kill();
    await cli.exited;
    await up.close();
  });

  const multiplex = async (batch: unknown) => {
    const res = await fetch(`${base}/multiplex`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof batch === 'string' ? batch : JSON.stringify(batch),
    });
    return { status: res.status, json: (await res.json()) as unknown };
  };
  /** serde: `OctoplexError { error: String }`, status 400. */
  const batchError = async (batch: unknown): Promise<string> => {
    const { status, json } = await multiplex(batch);
    assert.equal(status, 400);
    return exactKeys(json, ['error'], 'OctoplexError').error as string;
  };
  /** What Octoplex's client serializes: every field, `body: null`, `method` always present. */
  const request = (uri: string, extra: Record<string, unknown> = {}) => ({
    method: 'GET',
    uri,
    headers: {},
    body: null,
    ...extra,
  });

  test('GET / and GET /healthz answer {"healthy":true}; other paths 404', async () => {
    for (const path of ['/', '/healthz']) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(exactKeys(await res.json(), ['healthy'], 'HealthResponse'), { healthy: true });
    }
    const res = await fetch(`${base}/nope`);
    assert.equal(res.status, 404);
    assert.equal(await res.text(), 'not found\n');
  });

  test('handles_single_ok_request: /hello → Success 200 "Hello world!"', async () => {
    const { status, json } = await multiplex({ timeout_msec: 500, requests: [request(`${up.url}/hello`)] });
    assert.equal(status, 200);
    const s = success(responses(json, 1)[0]);
    assert.equal(s.status, 200);
    assert.equal(s.content, 'Hello world!');
    assert.equal(s.headers['content-type'], 'text/plain');
    // Octoplex sends no Accept-Encoding of its own.
    assert.equal(seen.find((r) => r.url === '/hello')?.headers['accept-encoding'], undefined);
  });

  test("the README's request shape: a header, and a POST with a JSON body", async () => {
    const { status, json } = await multiplex({
      timeout_msec: 250,
      requests: [
        { uri: `${up.url}/readme-get`, headers: { 'X-Some-Header': 'some value' } },
        {
          method: 'POST',
          uri: `${up.url}/api/users`,
          headers: { 'Content-Type': 'application/json' },
          body: '{"name":"Bruce Campbell","job":"Fake Shemp"}',
        },
      ],
    });
    assert.equal(status, 200);
    const [get, post] = responses(json, 2).map(success);
    assert.equal(get.status, 201);
    assert.equal(seen.find((r) => r.url === '/readme-get')?.headers['x-some-header'], 'some value');
    assert.equal(post.status, 201);
    assert.deepEqual(JSON.parse(post.content ?? ''), {
      method: 'POST',
      body: '{"name":"Bruce Campbell","job":"Fake Shemp"}',
    });
  });

  test("the README's request as written: public targets, each a Success or a Failure", async () => {
    // No network is needed: without one both items are Failures, still in Octoplex's shape.
    const { status, json } = await multiplex(`{
       "timeout_msec": 250,
       "requests": [
         { "uri": "https://www.google.com/", "headers": { "X-Some-Header": "some value" } },
         { "method": "POST", "uri": "https://reqres.in/api/users",
           "headers": { "Content-Type": "application/json" },
           "body": "{\\"name\\":\\"Bruce Campbell\\",\\"job\\":\\"Fake Shemp\\"}" }
       ]
     }`);
    assert.equal(status, 200);
    responses(json, 2);
  });

  test('handles_timeout: no answer before timeout_msec → Failure', async () => {
    const { json } = await multiplex({
      timeout_msec: 100,
      requests: [request(`${up.url}/stall`), request(`${up.url}/hello`)],
    });
    const [stalled, hello] = responses(json, 2);
    assert.ok(failure(stalled).duration_msec >= 0);
    assert.equal(success(hello).content, 'Hello world!');
  });

  test('handles_http_error: connection refused → Failure', async () => {
    const { json } = await multiplex({ timeout_msec: 2000, requests: [request(`${await deadAddress()}/`)] });
    assert.match(failure(responses(json, 1)[0]).error, /ECONNREFUSED/);
  });

  test('rejects_empty_batch, rejects_oversized_batch, rejects_excessive_timeout: 400 {"error"}', async () => {
    assert.equal(
      await batchError({ timeout_msec: 500, requests: [] }),
      'there must be at least one request in the batch',
    );
    const many = Array.from({ length: 75 }, () => request(`${up.url}/hello`));
    assert.equal(
      await batchError({ timeout_msec: 500, requests: many }),
      'there may not be more than 50 requests in the batch',
    );
    assert.equal(
      await batchError({ timeout_msec: 5_000_000, requests: [request(`${up.url}/hello`)] }),
      'timeout may not be more than 1h',
    );
    // 50 is allowed, and 1 h is.
    const { json } = await multiplex({ timeout_msec: 3_600_000, requests: many.slice(0, 50) });
    assert.ok(responses(json, 50).every((o) => success(o).status === 200));
  });

  test('deny_unknown_fields, required fields, wrong types: 400 {"error"}', async () => {
    assert.match(
      await batchError({ timeout_msec: 500, requests: [request(`${up.url}/hello`)], extra: 1 }),
      /unknown field `extra`/,
    );
    assert.match(
      await batchError({ timeout_msec: 500, requests: [request(`${up.url}/hello`, { url: 'x' })] }),
      /unknown field `url`/,
    );
    assert.match(await batchError({ requests: [request(`${up.url}/hello`)] }), /missing field `timeout_msec`/);
    assert.match(await batchError({ timeout_msec: 500 }), /missing field `requests`/);
    assert.match(await batchError({ timeout_msec: 500, requests: [{}] }), /missing field `uri`/);
    assert.match(await batchError({ timeout_msec: '500', requests: [] }), /invalid type/);
    assert.match(await batchError('{"timeout_msec": 5'), /invalid JSON/);
  });

  test('an item that cannot be sent fails alone; the SSRF guard refuses what --allow did not open', async () => {
    const { json } = await multiplex({
      timeout_msec: 1000,
      requests: [
        request('not a uri'),
        request(`${up.url}/hello`, { headers: { Host: 'elsewhere.example' } }),
        request(`${up.url}/hello`, { headers: { 'Content-Length': '3' } }),
        request('http://169.254.169.254/latest/meta-data/'),
        request(`${up.url}/hello`),
      ],
    });
    const r = responses(json, 5);
    assert.match(failure(r[0]).error, /invalid uri/);
    assert.match(failure(r[1]).error, /Host is set by the gateway/);
    assert.match(failure(r[2]).error, /Content-Length is set by the gateway/);
    assert.match(failure(r[3]).error, /link-local/);
    assert.equal(success(r[4]).content, 'Hello world!');
  });

  test('headers are name → string; set-cookie values one per line; content is lossy UTF-8', async () => {
    const { json } = await multiplex({ timeout_msec: 1000, requests: [request(`${up.url}/repeated`)] });
    const s = success(responses(json, 1)[0]);
    assert.equal(s.headers['x-list'], 'one, two');
    assert.equal(s.headers['set-cookie'], 'a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\nb=2');
    assert.equal(s.content, 'hi\uFFFD');
  });
});

test('without --allow, loopback targets are refused (public addresses only)', async () => {
  const up = await startUpstream();
  const cli = spawnCli(['--multiplex', '-p', '0']);
  try {
    const port = await cliPort(cli);
    const res = await fetch(`http://127.0.0.1:${port}/multiplex`, {
      method: 'POST',
      body: JSON.stringify({ timeout_msec: 1000, requests: [{ uri: up.url }] }),
    });
    assert.equal(res.status, 200);
    assert.match(failure(responses(await res.json(), 1)[0]).error, /^FORBIDDEN_TARGET: .*loopback/);
  } finally {
    cli.kill();
    await cli.exited;
    await up.close();
  }
});

test('a bad --allow entry names the flag; --multiplex excludes the other quick modes', async () => {
  const bad = spawnCli(['--multiplex', '--allow', '10.0.0.0/99', '-p', '0']);
  assert.equal(await bad.exited, 1);
  assert.match(bad.stderr, /flag --allow: .*not a valid CIDR: "10\.0\.0\.0\/99"/);
  const mixed = spawnCli(['--multiplex', '--endpoints', 'http://127.0.0.1:1']);
  assert.equal(await mixed.exited, 2);
  assert.match(mixed.stderr, /--multiplex \(quick mode\) excludes/);
});

test('Manifold format: "body": null means no body', async () => {
  const up = await startUpstream((req, res) => {
    res.end(`${req.method} ${req.headers['content-length'] ?? '-'}`);
  });
  const gw = await startGateway(`
routes:
  - match: { path: /multiplex }
    multiplex: { allow: [127.0.0.0/8] }
`);
  try {
    const res = await fetch(`${gw.url}/multiplex`, {
      method: 'POST',
      body: JSON.stringify({ requests: [{ uri: up.url, body: null, method: 'POST' }] }),
    });
    assert.equal(res.status, 200);
    const { responses: r } = (await res.json()) as { responses: Array<{ status: number; body: string }> };
    assert.equal(r[0].status, 200);
    assert.match(r[0].body, /^POST (0|-)$/);
  } finally {
    await gw.close();
    await up.close();
  }
});
