/**
 * Issue 17 item 3: `pools.<name>.local_addresses` spreads new connections to targets over
 * several local source addresses, round robin (Layer7Router's -client_start_ip/-client_end_ip).
 * The targets are real servers that report the peer address they saw; every 127.0.0.0/8
 * address is local on Linux's loopback, so 127.0.0.2 and 127.0.0.3 need no setup.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { configProblems, startGateway, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { compileLocalAddresses, isLocalAddress, SourceAddresses } from '../../src/upstream/local-addresses.ts';
import type { CompileProblem } from '../../src/lib/problem.ts';

const linux = process.platform === 'linux';

describe('local_addresses (issue 17 item 3)', { skip: !linux && 'needs Linux loopback (all of 127.0.0.0/8 local)' }, () => {
  test('new connections take the source addresses in turn (the target closes each one)', async () => {
    const target = await startUpstream((req, res) => {
      res.setHeader('connection', 'close');
      res.end(req.socket.remoteAddress);
    });
    after(() => target.close());
    const gw = await startGateway(`
workers: 0
admin: { enabled: false }
log: { level: warn, access: false }
pools:
  p:
    targets: [${target.url}]
    local_addresses: 127.0.0.2-127.0.0.3
routes:
  - match: { path: /* }
    proxy: { pool: p }
`);
    after(() => gw.close());
    const sources: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await send(`${gw.url}/${i}`);
      assert.equal(r.status, 200, r.text);
      sources.push(r.text);
    }
    // One new connection per request, each from the next address.
    assert.equal(target.connections, 6);
    assert.deepEqual(new Set(sources), new Set(['127.0.0.2', '127.0.0.3']));
    for (let i = 1; i < sources.length; i++) assert.notEqual(sources[i], sources[i - 1], `turns: ${sources.join(' ')}`);
  });

  test('concurrent requests open connections from every address; a list spreads over two targets', async () => {
    const seen: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      seen.push(req.socket.remoteAddress!);
      void gate.then(() => res.end('ok'));
    };
    const a = await startUpstream(handler);
    const b = await startUpstream(handler);
    after(() => Promise.all([a.close(), b.close()]));
    const gw = await startGateway(`
workers: 0
admin: { enabled: false }
log: { level: warn, access: false }
pools:
  p:
    targets: [${a.url}, ${b.url}]
    local_addresses: [127.0.0.2, 127.0.0.3, 127.0.0.4]
routes:
  - match: { path: /* }
    proxy: { pool: p }
`);
    after(() => gw.close());
    const replies = Array.from({ length: 6 }, (_, i) => send(`${gw.url}/c${i}`));
    // Six requests in flight at once: six connections (three per target).
    await until(() => seen.length === 6, () => `six requests at the targets (${seen.length})`);
    release();
    for (const r of await Promise.all(replies)) assert.equal(r.status, 200);
    assert.equal(a.connections + b.connections, 6);
    const count = (ip: string) => seen.filter((s) => s === ip).length;
    assert.deepEqual([count('127.0.0.2'), count('127.0.0.3'), count('127.0.0.4')], [2, 2, 2], seen.join(' '));
  });
});

describe('local_addresses config (issue 17 item 3)', () => {
  const pool = (value: string) =>
    `pools:\n  p:\n    targets: [http://127.0.0.1:1]\n    local_addresses: ${value}\n`;

  test('an address this host does not have is a config error naming the key and the file', () => {
    const problems = configProblems(pool('[127.0.0.2, 192.0.2.200]'));
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0].path, 'pools.p.local_addresses[1]');
    assert.match(problems[0].source, /^test\.yaml:\d+$/);
    assert.match(problems[0].message, /192\.0\.2\.200 is not an address of this host/);
  });

  test('a range with a foreign address, a reversed range, and a bad entry', () => {
    assert.match(configProblems(pool('10.255.255.1-10.255.255.3'))[0].message, /10\.255\.255\.1, 10\.255\.255\.2, 10\.255\.255\.3 are not/);
    assert.equal(configProblems(pool('10.255.255.1-10.255.255.3'))[0].path, 'pools.p.local_addresses');
    assert.match(configProblems(pool('127.0.0.9-127.0.0.2'))[0].message, /ends before it starts/);
    assert.match(configProblems(pool('[not-an-ip]'))[0].message, /is not an IP address or an IPv4 range/);
    assert.match(configProblems(pool('127.0.0.0-127.0.255.255'))[0].message, /more than 4096/);
    assert.equal(configProblems(pool('42'))[0].path, 'pools.p.local_addresses');
  });

  test('every address of this host is accepted: interface addresses, ::1, and on Linux all of 127/8', () => {
    assert.deepEqual(configProblems(pool('[127.0.0.1, "::1"]')), []);
    if (linux) {
      assert.deepEqual(configProblems(pool('127.0.0.2-127.0.0.5')), []);
      assert.equal(isLocalAddress('127.255.255.254'), true);
    }
    assert.equal(isLocalAddress('192.0.2.200'), false);
    assert.equal(isLocalAddress('::2'), false, 'only ::1 is local in ::1/128');
  });

  test('compileLocalAddresses expands ranges in order, drops duplicates; SourceAddresses takes turns per family', () => {
    const problems: CompileProblem[] = [];
    const list = compileLocalAddresses(['127.0.0.3', '127.0.0.2-127.0.0.4', '::1'], ['x'], problems);
    assert.deepEqual(problems, []);
    assert.deepEqual(list, ['127.0.0.3', '127.0.0.2', '127.0.0.4', '::1']);
    const s = new SourceAddresses(list);
    assert.deepEqual([s.next(), s.next(), s.next(), s.next(), s.next()], ['127.0.0.3', '127.0.0.2', '127.0.0.4', '::1', '127.0.0.3']);
    assert.equal(s.nextFor(6), '::1');
    assert.equal(s.nextFor(4), '127.0.0.3');
    assert.equal(new SourceAddresses([]).next(), undefined);
  });
});
