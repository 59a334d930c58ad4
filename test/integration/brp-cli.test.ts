/**
 * Issue 13 item 1: balancing-reverse-proxy's own command line, as its README, its
 * `dummy-http-server/multi-test.sh` and its Go flag parser (with flagnames' unique prefixes)
 * accept it. Real upstream servers, the real CLI process, real HTTP.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Cli, deadAddress, spawnCli, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';

/** Like the seed's dummy server: `Hello, world from <name><url>`, and the body it got. */
const hello = (name: string, status = 200) =>
  startUpstream((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      res.writeHead(status, { 'x-seen-body': body });
      res.end(`Hello, world from ${name}${req.url}\n`);
    });
  });

const GO_DURATION = '(?:\\d+h)?(?:\\d+m)?\\d+(?:\\.\\d+)?(?:ns|µs|ms|s)';
const REQUEST_LINE = new RegExp(`^request (\\S+) served in (${GO_DURATION}) by endpoint (-?\\d+)$`);

const dir = mkdtempSync(join(tmpdir(), 'manifold-brp-'));
const clis: Cli[] = [];
after(async () => {
  for (const c of clis) c.kill();
  await Promise.all(clis.map((c) => c.exited));
  rmSync(dir, { recursive: true, force: true });
});

function start(args: string[], env: NodeJS.ProcessEnv = {}): Cli {
  const cli = spawnCli(args, env);
  clis.push(cli);
  return cli;
}

/** The port from the "manifold listening" line, JSON or text (`manifold listening port=N`). */
async function portOf(cli: Cli, file?: string): Promise<number> {
  const m = await until(() => {
    const text = file === undefined ? cli.stdout : readText(file);
    return /"port":(\d+),[^\n]*"msg":"manifold listening"|manifold listening port=(\d+)/.exec(text);
    // A loaded machine (the whole suite, benchmarks) can take many seconds to start a process.
  }, 'the listening line', 60_000);
  return Number(m[1] ?? m[2]);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** One request, or null once nothing listens any more (curl's exit in multi-test.sh). */
async function get(port: number, path = '/'): Promise<Reply | null> {
  try {
    return await send(`http://127.0.0.1:${port}${path}`);
  } catch (err) {
    // Refused, or reset while the listener closes: the balancer has stopped.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET') return null;
    throw err;
  }
}

/**
 * multi-test.sh (its 5s is 10s here: the phases must fit in it on a loaded machine): three
 * servers that stop one after another while a client loops; the answers
 * come from whoever is alive, then 500 with an empty body, then the balancer stops by itself.
 */
async function multiTest(form: (list: string, logFile: string) => string[], sequential: boolean) {
  const servers: Upstream[] = await Promise.all(['localhost:8000', 'localhost:8001', 'localhost:8002'].map((n) => hello(n)));
  const names = ['localhost:8000', 'localhost:8001', 'localhost:8002'];
  const list = servers.map((s) => s.url).join(',');
  const logFile = join(dir, `multi-${Math.random().toString(36).slice(2)}.log`);
  const args = form(list, logFile);
  const cli = start(args);
  const port = await portOf(cli, args.some((a) => a.startsWith('-log')) ? logFile : undefined);
  /** The next few answers all come from one of `alive` (sequential: the first of them). */
  const answersFrom = async (alive: number[]) => {
    for (let i = 0; i < 4; i++) {
      const r = (await get(port, `/round-${alive.length}`))!;
      assert.equal(r.status, 200, `a live server answers (alive: ${alive.join(',')})`);
      const from = names.findIndex((n) => r.text === `Hello, world from ${n}/round-${alive.length}\n`);
      assert.ok(alive.includes(from), `answer from a live server, got ${JSON.stringify(r.text)}`);
      if (sequential) assert.equal(from, alive[0], 'in sequence the first live endpoint answers');
    }
  };
  await answersFrom([0, 1, 2]);
  await servers[0]!.close();
  await answersFrom([1, 2]);
  await servers[2]!.close();
  await answersFrom([1]);
  await servers[1]!.close();
  let refused = false;
  let fivehundreds = 0;
  while (!refused) {
    const r = await get(port, '/last');
    if (r === null) refused = true;
    else {
      assert.equal(r.status, 500);
      assert.equal(r.body.length, 0, 'the 500 has an empty body');
      fivehundreds++;
    }
  }
  assert.ok(fivehundreds > 0, 'answered 500 once no endpoint was left');
  assert.equal(await cli.exited, 0);
  assert.match(cli.stdout, /^stopping balancing-reverse-proxy after 10s$/m);
  return { cli, logFile };
}

// Each run lasts its -stop-after: run them side by side.
describe("balancing-reverse-proxy's multi-test.sh, with its command lines", { concurrency: 2 }, () => {
  test('-fanout --endpoints a,b,c -stop-after D (README, fan-out)', async () => {
    const { cli } = await multiTest((list) => ['-fanout', '--endpoints', list, '-stop-after', '10s', '-address', '127.0.0.1:0'], false);
    // Without -log-* flags the log is Manifold's JSON, with the seed's start-up lines in it.
    const msgs = cli.logs().map((l) => l.msg);
    assert.ok(msgs.includes('starting on: "127.0.0.1:0"'));
  });

  test('multi-test.sh as written: -f -e a,b,c -s D -log-file FILE', async () => {
    const { cli, logFile } = await multiTest((list, file) => ['-f', '-e', list, '-s', '10s', '-log-file', file, '-a', '127.0.0.1:0'], false);
    const lines = readText(logFile).trim().split('\n');
    const body = lines.map((l) => l.replace(/^balancing-reverse-proxy \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, ''));
    assert.equal(body.length, lines.length);
    const [a, b, c] = [0, 1, 2].map((i) => /configuring endpoint \d: "(.*)"/.exec(body[i]!)?.[1]);
    assert.ok(a && b && c, 'configuring endpoint 0..2 lines');
    assert.equal(body[3], 'starting on: "127.0.0.1:0"');
    const served = body.map((l) => REQUEST_LINE.exec(l)).filter((m) => m !== null);
    assert.ok(served.some((m) => m[3] === '0') && served.some((m) => m[3] === '1'), 'served by endpoint 0 and 1');
    assert.ok(served.some((m) => m[1] === '/last' && m[3] === '-1'), 'the 500s are served by endpoint -1');
    assert.ok(body.includes('endpoints failed to return a valid answer, returning 500'));
    assert.doesNotMatch(cli.stdout, /"msg"/, 'nothing else on stdout but the stop line');
  });

  test('sequential, prefix forms: -e=a,b,c -t 100,200,300,400 -stop-after=D -address=HOST:PORT', async () => {
    await multiTest((list) => [`-e=${list}`, '-t', '100,200,300,400', '-stop-after=10s', '-address=127.0.0.1:0'], true);
  });

  test('single-dash long names: -endpoints a,b,c -terminal-responses 100,200 -address :PORT -stop-after D', async () => {
    await multiTest((list) => ['-endpoints', list, '-terminal-responses', '100,200', '-address', ':0', '-stop-after', '10s'], true);
  });
});

describe('sequential mode', () => {
  let failing: Upstream;
  let good: Upstream;
  before(async () => {
    [failing, good] = await Promise.all([hello('failing', 503), hello('good')]);
  });
  after(async () => {
    await Promise.all([failing.close(), good.close()]);
  });

  for (const spelling of [['-endpoints'], ['--endpoints']]) {
    test(`a POST moves on after an answer that is not terminal, its body intact (${spelling[0]})`, async () => {
      const cli = start([...spelling, `${failing.url},${good.url}`, ...(spelling[0] === '-endpoints' ? ['-a', '127.0.0.1:0'] : ['--port', '0'])]);
      const port = await portOf(cli);
      const seenBefore = failing.requests.length;
      const body = `payload ${'x'.repeat(2000)} end`;
      const r = await send(`http://127.0.0.1:${port}/orders?id=7`, { method: 'POST', body });
      assert.equal(r.status, 200);
      assert.equal(r.text, 'Hello, world from good/orders?id=7\n');
      assert.equal(r.headers['x-seen-body'], body, 'the second endpoint got the whole body');
      assert.equal(failing.requests.length, seenBefore + 1, 'the first endpoint was asked first');
      assert.equal(failing.requests.at(-1)!.method, 'POST');
    });
  }

  test('no usable answer: 500 with an empty body, not the last 503 (and -fanout false stays sequential)', async () => {
    const cli = start(['-e', `${failing.url},${failing.url}/again`, '-fanout', 'false', '-address', '127.0.0.1:0']);
    const port = await portOf(cli);
    const before = failing.requests.length;
    const r = (await get(port, '/x'))!;
    assert.equal(r.status, 500);
    assert.equal(r.body.length, 0);
    assert.equal(r.headers['content-length'], '0');
    assert.deepEqual(
      failing.requests.slice(before).map((q) => q.url),
      ['/x', '/again/x'],
      'one after another, not at once',
    );
  });
});

describe('log lines in the seed format (-log-* flags)', () => {
  let up: Upstream;
  before(async () => {
    up = await hello('up');
  });
  after(() => up.close());

  /** Starts with `flags` and TZ=Asia/Kolkata (UTC+5:30), sends GET /p?q=1; returns the log lines. */
  async function logged(flags: string[]): Promise<string[]> {
    const file = join(dir, `log-${Math.random().toString(36).slice(2)}.log`);
    const cli = start(['-e', up.url, '-address', '127.0.0.1:0', '-log-file', file, ...flags], { TZ: 'Asia/Kolkata' });
    const port = await portOf(cli, file);
    assert.equal((await get(port, '/p?q=1'))!.status, 200);
    const lines = await until(() => {
      const all = readText(file).trim().split('\n');
      return all.some((l) => l.includes('request /p?q=1 served')) ? all : null;
    }, 'the request line', 30_000);
    cli.kill();
    return lines;
  }

  const HEADER = /^(\S*) ?(?:(\d{4})\/(\d\d)\/(\d\d) )?(?:(\d\d):(\d\d):(\d\d)(?:\.(\d{6}))? )?(.*)$/;
  const near = (y: string, mo: string, d: string, h: string, mi: string, s: string, offsetMin: number) => {
    const at = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) - offsetMin * 60_000;
    return Math.abs(at - Date.now()) < 10 * 60_000;
  };

  test('-log-msec -log-utc -log-prefix: prefix, UTC date and time with microseconds', async () => {
    const lines = await logged(['-log-msec', '-log-utc', '-log-prefix=brp-test']);
    for (const line of lines) {
      const m = HEADER.exec(line)!;
      assert.equal(m[1], 'brp-test', line);
      assert.ok(m[8] !== undefined, `microseconds in ${line}`);
      assert.ok(near(m[2]!, m[3]!, m[4]!, m[5]!, m[6]!, m[7]!, 0), `UTC time in ${line}`);
    }
    const request = lines.map((l) => REQUEST_LINE.exec(HEADER.exec(l)![9]!)).find((m) => m !== null)!;
    assert.equal(request[1], '/p?q=1');
    assert.equal(request[3], '0');
  });

  test('defaults: the seed prefix, local date and time, no microseconds', async () => {
    const lines = await logged([]);
    const m = HEADER.exec(lines.find((l) => l.includes('served in'))!)!;
    assert.equal(m[1], 'balancing-reverse-proxy');
    assert.equal(m[8], undefined, 'no microseconds');
    assert.ok(near(m[2]!, m[3]!, m[4]!, m[5]!, m[6]!, m[7]!, 330), `local time (UTC+5:30) in ${lines[0]}`);
    assert.match(lines[0]!, / configuring endpoint 0: "http:\/\/127\.0\.0\.1:\d+"$/);
  });

  test('-log-date=false -log-time false -log-prefix "": the bare message', async () => {
    const lines = await logged(['-log-date=false', '-log-time', 'false', '-log-prefix', '']);
    assert.match(lines[0]!, /^configuring endpoint 0: "/);
    assert.ok(lines.some((l) => REQUEST_LINE.test(l)), lines.join('\n'));
  });
});

describe('usage and exit 1', { concurrency: 4 }, () => {
  const cases: Array<[string, string[], RegExp | null]> = [
    ['no endpoints', ['-fanout'], null],
    ['empty endpoints', ['-endpoints='], null],
    ['empty terminal responses', ['-e', 'http://127.0.0.1:1', '-t='], null],
    ['a positional argument', ['-endpoints', 'http://127.0.0.1:1', 'extra'], null],
    ['an unknown flag', ['-e', 'http://127.0.0.1:1', '-nope'], /^flag provided but not defined: -nope$/m],
    ['-h', ['-endpoints', 'http://127.0.0.1:1', '-h'], null],
    ['-help', ['-help'], null],
    ['an ambiguous prefix', ['-e', 'http://127.0.0.1:1', '-l', 'x'], /^flag parsing error: -l can mean multiple flags -log-date,-log-file,-log-msec,-log-prefix,-log-time,-log-utc$/m],
    ['a bad boolean', ['-e', 'http://127.0.0.1:1', '-fanout=maybe'], /^invalid boolean value "maybe" for -fanout: parse error$/m],
    ['a bad duration', ['-e', 'http://127.0.0.1:1', '-stop-after', '5'], /^invalid value "5" for flag -stop-after: parse error$/m],
    ['a flag without its value', ['-endpoints'], /^flag needs an argument: -endpoints$/m],
  ];
  for (const [what, args, message] of cases) {
    test(what, async () => {
      const cli = start(args);
      assert.equal(await cli.exited, 1);
      assert.match(cli.stderr, /Usage: manifold -endpoints=URLs/);
      assert.match(cli.stderr, /^ {2}-terminal-responses string$/m);
      if (message !== null) assert.match(cli.stderr, message);
      assert.equal(cli.stdout, '');
    });
  }

  test('a bad endpoint or status names the flag, exit 1', async () => {
    const cli = start(['-e=http://127.0.0.1:1,nope', '-t', '200,abc']);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr, /flag -endpoints: pools\.endpoints\.targets\[1\]/);
    assert.match(cli.stderr, /flag -terminal-responses: routes\[0\]\.proxy\.terminal\[1\]/);
  });

  test("Manifold's own spellings stay Manifold's: -h and --help exit 0, -e URL extra is its unknown command", async () => {
    for (const flag of ['-h', '--help']) {
      const help = start([flag]);
      assert.equal(await help.exited, 0);
      assert.match(help.stdout, /^Usage:\n {2}manifold/);
    }
    const extra = start(['-e', 'http://127.0.0.1:1', 'extra']);
    assert.equal(await extra.exited, 2);
    assert.match(extra.stderr, /unknown command "extra"/);
  });
});

describe('routes[].proxy.exhausted in a config file', () => {
  test('absent: the last answer is relayed (503 with its body) or a JSON 502; set: its status and body', async () => {
    const failing = await hello('failing', 503);
    const dead = await deadAddress();
    const yaml = (exhausted: string) => `
pools:
  answers: { targets: [${failing.url}, ${failing.url}/b] }
  dead: { targets: [${dead}] }
routes:
  - { id: answers, match: { path: /answers/* }, proxy: { pool: answers, strategy: failover${exhausted} } }
  - { id: dead, match: {}, proxy: { pool: dead, strategy: failover${exhausted} } }
`;
    const plain = await startGateway(yaml(''));
    const own = await startGateway(yaml(', exhausted: { status: 599, body: "none usable" }'));
    try {
      const relayed = await send(`${plain.url}/answers/x`);
      assert.equal(relayed.status, 503);
      assert.equal(relayed.text, 'Hello, world from failing/b/answers/x\n');
      const unreachable = await send(`${plain.url}/x`);
      assert.equal(unreachable.status, 502);
      assert.equal(unreachable.json<{ error: { code: string } }>().error.code, 'TARGET_UNREACHABLE');
      for (const path of ['/answers/x', '/x']) {
        const r = await send(`${own.url}${path}`);
        assert.equal(r.status, 599, path);
        assert.equal(r.text, 'none usable');
        assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      }
      const line = await until(() => own.logs.lines.find((l) => l.msg === 'request' && l.url === '/x'), 'access line');
      assert.equal(line.error, 'NO_ACCEPTED_ANSWER');
      assert.equal(line.status, 599);
    } finally {
      await Promise.all([plain.close(), own.close(), failing.close()]);
    }
  });
});
