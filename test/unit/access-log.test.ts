/**
 * Issue 11 item 4: the access log's hand-built line (src/observability/access-log.ts) must be
 * the line pino wrote before for the same fields — same keys, order and escaping — and lines
 * still pending when the process exits must reach the destination.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type AccessFields, AccessLog } from '../../src/observability/access-log.ts';
import { createLogger } from '../../src/observability/logger.ts';

class Raw extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** What the pipeline logged with pino before (its old #finish). */
function pinoLine(log: ReturnType<typeof createLogger>, f: AccessFields): void {
  log.info(
    {
      req_id: f.reqId,
      ...(f.traceId !== null ? { trace_id: f.traceId } : {}),
      method: f.method,
      url: f.url,
      route: f.route,
      target: f.target,
      status: f.status,
      bytes: f.bytes,
      duration_ms: Math.round(f.durationMs * 1000) / 1000,
      ...(f.error ? { error: f.error } : {}),
      ...(f.attempts !== null && f.attempts.length > 1 ? { attempts: f.attempts } : {}),
    },
    'request',
  );
}

const CASES: AccessFields[] = [
  {
    reqId: 'abc-1',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    method: 'GET',
    url: '/small?q=1',
    route: 'bench',
    target: '127.0.0.1:8080',
    status: 200,
    bytes: 2,
    durationMs: 3.7461234,
    error: null,
    attempts: [{ target: 'a', status: 200, duration_ms: 1, outcome: 'accepted' }],
  },
  {
    reqId: 'r2',
    traceId: null,
    method: 'POST',
    url: '/odd/"quoted"\\back\u00e9\u0001',
    route: null,
    target: null,
    status: 502,
    bytes: 0,
    durationMs: 0,
    error: 'TARGET_UNREACHABLE',
    attempts: [
      { target: 'a', error: 'TARGET_UNREACHABLE', message: 'cannot reach "a"', duration_ms: 1.5, outcome: 'failed' },
      { target: 'b', status: 503, duration_ms: 2, outcome: 'relayed', hedge: true },
    ],
  },
  {
    // Every string field with something JSON must escape: a quote, a backslash, control
    // characters; lone surrogates in the url (pino escapes those only in longer strings).
    reqId: 'r3\u0000',
    traceId: 'tr"ace',
    method: 'GE\tT',
    url: '/lone\udc00/tab\there/\u007f/\ud83d\ude00',
    route: 'route "r"',
    target: 'tar\\get',
    status: 404,
    bytes: 17,
    durationMs: 12.0005,
    error: 'ROUTE_\u001fNOT_FOUND',
    attempts: null,
  },
];

const withoutTime = (text: string) => text.replace(/"time":"[^"]+"/g, '"time":"T"');

test('the access line is byte for byte the line pino wrote for the same fields', async () => {
  const ours = new Raw();
  const theirs = new Raw();
  const access = new AccessLog(createLogger('info', ours));
  const log = createLogger('info', theirs);
  for (const f of CASES) {
    access.write(f);
    pinoLine(log, f);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(ours.text.split('\n').length, CASES.length + 1);
  assert.equal(withoutTime(ours.text), withoutTime(theirs.text));
  for (const line of ours.text.trim().split('\n')) assert.match(JSON.parse(line).time, /^\d{4}-\d\d-\d\dT.*Z$/);
});

test('a stream destination (not a file descriptor) gets each line at once', () => {
  const out = new Raw();
  new AccessLog(createLogger('info', out)).write(CASES[0]);
  assert.equal(JSON.parse(out.text).req_id, 'abc-1');
});

test('no access line below level info', async () => {
  const out = new Raw();
  new AccessLog(createLogger('warn', out)).write(CASES[0]);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(out.text, '');
});

test('lines pending when the process exits are written out (stdout, pino.destination)', () => {
  const module = fileURLToPath(new URL('../../src/observability/', import.meta.url));
  const script = `
    import { AccessLog } from '${module}access-log.ts';
    import { createLogger } from '${module}logger.ts';
    const access = new AccessLog(createLogger('info'));
    for (let i = 0; i < 3; i++) access.write({ reqId: 'exit-' + i, traceId: null, method: 'GET', url: '/',
      route: null, target: null, status: 200, bytes: 0, durationMs: 1, error: null, attempts: null });
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const ids = r.stdout.trim().split('\n').map((l) => JSON.parse(l).req_id);
  assert.deepEqual(ids, ['exit-0', 'exit-1', 'exit-2']);
});
