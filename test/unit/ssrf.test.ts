import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { Agent } from 'undici';
import { DnsStorage, dnsInterceptor, shareQueries } from '../../src/lib/dns.ts';
import { cidrContains, parseCidr, parseIp } from '../../src/lib/ip.ts';
import { Limiter } from '../../src/multiplex/limiter.ts';
import {
  classifyAddress,
  compileAllowList,
  ForbiddenTargetError,
  guardedConnector,
  guardedLookup,
  guardedResolve,
  type Resolve,
  type ResolvedAddress,
  TargetDnsError,
  TargetGuard,
} from '../../src/multiplex/ssrf.ts';
import { until } from '../helpers/index.ts';

function allowList(entries: string[]) {
  const compiled = compileAllowList(entries);
  assert.ok(!('reason' in compiled), `allow list should compile: ${JSON.stringify(compiled)}`);
  return compiled;
}

describe('classifyAddress', () => {
  const cases: [string, string | null][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', null],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['100.100.100.200', 'private'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.192', 'reserved'],
    ['8.8.8.8', null],
    ['93.184.216.34', null],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['::ffff:0:10.0.0.1', 'private'],
    ['::ffff:8.8.8.8', null],
    ['::127.0.0.1', 'reserved'],
    ['64:ff9b::a9fe:a9fe', 'link-local'], // NAT64 of 169.254.169.254
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::8.8.8.8', null],
    ['64:ff9b:1::1', 'private'],
    ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
    ['2002:a9fe:a9fe::1', 'link-local'],
    ['2002:808:808::1', null],
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'loopback'], // Teredo, client 127.0.0.1 (inverted)
    ['fc00::1', 'private'],
    ['fd00:ec2::254', 'private'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved'],
    ['2606:4700:4700::1111', null],
    ['not-an-ip', 'reserved'],
  ];
  for (const [address, expected] of cases) {
    test(`${address} → ${expected ?? 'public'}`, () => assert.equal(classifyAddress(address), expected));
  }
});

describe('parseIp / parseCidr', () => {
  test('IPv6 forms expand to the same bytes', () => {
    assert.deepEqual(parseIp('::ffff:127.0.0.1'), parseIp('127.0.0.1'));
    assert.deepEqual(parseIp('0:0:0:0:0:ffff:7f00:0001'), parseIp('127.0.0.1'));
    assert.deepEqual(parseIp('2001:db8::1'), parseIp('2001:0db8:0:0:0:0:0:1'));
    assert.equal(parseIp('example.com'), null);
    assert.equal(parseIp('1.2.3'), null);
  });

  test('containment, both families, host bits masked', () => {
    const ten = parseCidr('10.0.0.0/8')!;
    assert.ok(cidrContains(ten, parseIp('10.255.0.1')!));
    assert.ok(!cidrContains(ten, parseIp('11.0.0.1')!));
    const loop = parseCidr('127.0.0.0/8')!;
    assert.ok(cidrContains(loop, parseIp('::ffff:127.0.0.9')!), 'mapped form of an IPv4 address matches');
    const odd = parseCidr('172.16.0.0/12')!;
    assert.ok(cidrContains(odd, parseIp('172.31.1.1')!));
    assert.ok(!cidrContains(odd, parseIp('172.32.0.0')!));
    const v6 = parseCidr('fd00::/8')!;
    assert.ok(cidrContains(v6, parseIp('fd12::1')!));
    assert.ok(!cidrContains(v6, parseIp('fe80::1')!));
    assert.ok(cidrContains(parseCidr('10.9.8.7/8')!, parseIp('10.1.1.1')!), 'host bits are ignored');
    assert.ok(cidrContains(parseCidr('1.2.3.4')!, parseIp('1.2.3.4')!), 'a bare address is a /32');
    assert.ok(cidrContains(parseCidr('0.0.0.0/0')!, parseIp('8.8.8.8')!));
  });

  test('invalid CIDRs', () => {
    for (const bad of [
      '10.0.0.0/33',
      '1.2.3/8',
      'fe80::/129',
      'abc/3',
      '10.0.0.0/',
      '10.0.0.0/-1',
      '::1%lo/128',
    ]) {
      assert.equal(parseCidr(bad), null, bad);
    }
  });
});

describe('compileAllowList', () => {
  test('names, wildcards, CIDRs and bare IPs', () => {
    const list = allowList(['API.example.com.', '*.example.org', '127.0.0.0/8', '::1', '203.0.113.7']);
    assert.deepEqual([...list.names], ['api.example.com']);
    assert.deepEqual(list.suffixes, ['.example.org']);
    assert.equal(list.cidrs.length, 3);
  });

  test('invalid entries name their index', () => {
    assert.deepEqual(compileAllowList(['ok.example', '10.0.0.0/40']), {
      index: 1,
      reason: 'not a valid CIDR: "10.0.0.0/40"',
    });
    for (const bad of ['exa mple.com', 'a.*.example.com', '*.', '-bad.example', 'http://x.example']) {
      const out = compileAllowList([bad]);
      assert.ok('reason' in out && out.index === 0, bad);
    }
  });
});

describe('TargetGuard', () => {
  test('issue 12: "*" allows any public name; special-use addresses still need a CIDR', () => {
    const list = compileAllowList(['*', '127.0.0.0/8']);
    assert.ok(!('reason' in list));
    const guard = new TargetGuard(list);
    assert.equal(guard.refuseName('any.example'), null);
    assert.equal(guard.refuseAddress('any.example', '93.184.215.14'), null);
    assert.equal(guard.refuseAddress('127.0.0.1', '127.0.0.1'), null);
    assert.match(guard.refuseAddress('internal.example', '10.0.0.1') ?? '', /private address/);
  });

  test('without an allow list: public yes, special-use no', () => {
    const guard = new TargetGuard(null);
    assert.equal(guard.refuseName('anything.example'), null);
    assert.equal(guard.refuseAddress('anything.example', '93.184.216.34'), null);
    assert.equal(guard.refuseAddress('127.0.0.1', '127.0.0.1'), '127.0.0.1 is a loopback address');
    assert.equal(guard.refuseAddress('localhost', '127.0.0.1'), 'localhost resolves to a loopback address');
    assert.equal(guard.refuseAddress('meta', '169.254.169.254'), 'meta resolves to a link-local address');
    assert.match(guard.refuseAddress('x', '::ffff:127.0.0.1')!, /loopback/);
  });

  test('host patterns restrict names and never open special-use space', () => {
    const guard = new TargetGuard(allowList(['*.example.com', 'exact.example.net']));
    assert.equal(guard.refuseAddress('api.example.com', '93.184.216.34'), null);
    assert.equal(guard.refuseAddress('a.b.example.com', '93.184.216.34'), null);
    assert.equal(guard.refuseAddress('exact.example.net.', '93.184.216.34'), null);
    assert.equal(guard.refuseAddress('EXACT.example.net', '93.184.216.34'), null);
    assert.match(guard.refuseAddress('example.com', '93.184.216.34')!, /not in the allow list/);
    assert.match(guard.refuseAddress('evilexample.com', '93.184.216.34')!, /not in the allow list/);
    assert.match(guard.refuseAddress('api.example.com', '10.0.0.1')!, /private/);
    assert.equal(guard.refuseName('other.example'), 'other.example is not in the allow list');
    assert.equal(guard.refuseName('api.example.com'), null);
    assert.match(guard.refuseAddress('93.184.216.34', '93.184.216.34')!, /not in the allow list/);
  });

  test('allowed CIDRs open special-use addresses, whatever the name', () => {
    const guard = new TargetGuard(allowList(['127.0.0.0/8', 'fd00::/8']));
    assert.equal(guard.refuseName('whatever.test'), null, 'a name could resolve into an allowed CIDR');
    assert.equal(guard.refuseAddress('127.0.0.1', '127.0.0.1'), null);
    assert.equal(guard.refuseAddress('localhost', '::ffff:127.0.0.1'), null);
    assert.equal(guard.refuseAddress('svc', 'fd00::5'), null);
    assert.match(guard.refuseAddress('svc', '10.0.0.1')!, /private/);
    assert.match(guard.refuseAddress('svc', '::1')!, /loopback/);
    assert.match(guard.refuseAddress('svc', '93.184.216.34')!, /not in the allow list/);
  });
});

describe('guardedLookup', () => {
  const records = (...addresses: string[]): ResolvedAddress[] =>
    addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4, ttl: 60 }));

  function lookup(guard: TargetGuard, resolve: Resolve, host: string, options: object) {
    return new Promise<{
      err: NodeJS.ErrnoException | null;
      address: string | LookupAddress[];
      family?: number;
    }>((done) =>
      guardedLookup(guard, resolve)(host, options, (err, address, family) => done({ err, address, family })),
    );
  }

  test('hands the socket only allowed addresses', async () => {
    const resolve: Resolve = async () => records('127.0.0.1', '93.184.216.34', '2606:4700::1');
    const guard = new TargetGuard(null);
    const all = await lookup(guard, resolve, 'mixed.test', { all: true });
    assert.equal(all.err, null);
    assert.deepEqual(all.address, [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:4700::1', family: 6 },
    ]);
    const one = await lookup(guard, resolve, 'mixed.test', { family: 6 });
    assert.deepEqual([one.address, one.family], ['2606:4700::1', 6]);
  });

  test('a name resolving only to loopback is refused', async () => {
    const out = await lookup(new TargetGuard(null), async () => records('127.0.0.1'), 'rebind.test', {
      all: true,
    });
    assert.ok(out.err instanceof ForbiddenTargetError);
    assert.equal(out.err.code, 'MANIFOLD_FORBIDDEN_TARGET');
    assert.equal(out.err.message, 'rebind.test resolves to a loopback address');
  });

  test('names outside a CIDR-less allow list are refused before any DNS query', async () => {
    let queries = 0;
    const resolve: Resolve = async () => {
      queries++;
      return records('93.184.216.34');
    };
    const out = await lookup(new TargetGuard(allowList(['*.example.com'])), resolve, 'other.test', {});
    assert.ok(out.err instanceof ForbiddenTargetError);
    assert.equal(queries, 0);
  });

  test('resolver failures become DNS errors', async () => {
    const resolve: Resolve = async () => {
      throw Object.assign(new Error('queryA ENOTFOUND nope.test'), { code: 'ENOTFOUND' });
    };
    const out = await lookup(new TargetGuard(null), resolve, 'nope.test', {});
    assert.ok(out.err instanceof TargetDnsError);
    assert.equal(out.err.message, 'could not resolve nope.test (ENOTFOUND)');
  });
});

describe('dns for multiplex targets: undici dns interceptor over the guard (issue 11)', () => {
  function counting(ttl: number, ...addresses: string[]) {
    const calls: string[] = [];
    let fail = false;
    const resolve: Resolve = async (host) => {
      calls.push(host);
      if (fail) throw Object.assign(new Error(`queryA ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return addresses.map((address) => ({ address, family: 4 as const, ttl }));
    };
    return { calls, resolve, failNext: (on: boolean) => (fail = on) };
  }

  /** A local server, and an Agent with the interceptor in front, as the multiplex handler builds it. */
  async function client(resolve: Resolve, maxTtlMs = 60_000, allow = ['127.0.0.0/8']) {
    const server = createServer((req, res) => res.end(`${req.headers.host} via ${req.socket.localAddress}`));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const agent = new Agent();
    const guard = new TargetGuard(allowList(allow));
    const dispatcher = agent.compose(
      dnsInterceptor(guardedResolve(guard, shareQueries(resolve)), { maxTtlMs, maxEntries: 10 }),
    );
    after(async () => {
      await agent.close();
      server.close();
    });
    const get = async (host: string) => {
      const res = await dispatcher.request({ origin: `http://${host}:${port}`, path: '/', method: 'GET' });
      return res.body.text();
    };
    return { get, port };
  }

  test('sends to the resolved address with the name as Host; reuses the answer within its TTL', async () => {
    const { calls, resolve } = counting(60, '127.0.0.1');
    const { get, port } = await client(resolve);
    for (let i = 0; i < 3; i++) assert.equal(await get('Host.test'), `host.test:${port} via 127.0.0.1`);
    assert.deepEqual(calls, ['host.test']);
  });

  test('an answer past its TTL cap is asked for again', async () => {
    const { calls, resolve } = counting(3600, '127.0.0.1');
    const { get } = await client(resolve, 1);
    await get('a.test');
    const started = Date.now();
    await until(() => Date.now() > started + 2, 'the cap to pass');
    await get('a.test');
    assert.equal(calls.length, 2);
  });

  test('concurrent lookups share one query', async () => {
    const { calls, resolve } = counting(60, '127.0.0.1');
    const { get } = await client(resolve);
    await Promise.all([get('a.test'), get('a.test'), get('a.test')]);
    assert.equal(calls.length, 1);
  });

  test('failures are not cached; refusals reach the caller as the guard words them', async () => {
    const { calls, resolve, failNext } = counting(60, '127.0.0.1');
    const { get } = await client(resolve);
    failNext(true);
    await assert.rejects(get('a.test'), (err: Error) => err instanceof TargetDnsError);
    failNext(false);
    await get('a.test');
    assert.equal(calls.length, 2);
    const refused = await client(resolve, 60_000, ['10.0.0.0/8']);
    await assert.rejects(refused.get('b.test'), {
      name: 'ForbiddenTargetError',
      message: 'b.test resolves to a loopback address',
    });
  });

  test('the record store is bounded, oldest first, and keeps the first of concurrent answers', () => {
    const storage = new DnsStorage(2);
    const records = (ip: string) => ({ records: { 4: { ips: [{ address: ip, family: 4 as const, ttl: 1 }] }, 6: null } });
    storage.set('a.test', records('1.1.1.1'));
    storage.set('a.test', records('9.9.9.9'));
    assert.equal(storage.get('a.test')?.records[4]?.ips[0].address, '1.1.1.1');
    storage.set('b.test', records('2.2.2.2'));
    storage.set('c.test', records('3.3.3.3'));
    assert.equal(storage.size, 2);
    assert.equal(storage.get('a.test'), null, 'the oldest entry was dropped');
    assert.equal(storage.full(), false);
  });
});

describe('guardedConnector: addresses the dns interceptor pinned are checked as their name', () => {
  const connect = (allow: string[] | null, opts: { hostname: string; servername?: string }) =>
    new Promise<Error | null>((done) =>
      guardedConnector(new TargetGuard(allow ? allowList(allow) : null), async () => [], {})(
        { protocol: 'http:', port: '9', host: opts.hostname, ...opts } as never,
        (err, socket) => {
          socket?.destroy();
          done(err);
        },
      ),
    );

  test('a pinned loopback address is refused in the name of the host', async () => {
    const err = await connect(['*.example.com'], { hostname: '127.0.0.1', servername: 'a.example.com' });
    assert.ok(err instanceof ForbiddenTargetError);
    assert.equal(err.message, 'a.example.com resolves to a loopback address');
  });

  test('a pinned public address of a name outside the allow list is refused before dialing', async () => {
    const err = await connect(['*.example.com'], { hostname: '93.184.216.34', servername: 'evil.test' });
    assert.ok(err instanceof ForbiddenTargetError);
    assert.equal(err.message, 'evil.test is not in the allow list');
  });
});

describe('Limiter', () => {
  test('FIFO hand-over, and an aborted waiter leaves the queue', async () => {
    const limiter = new Limiter(1);
    const first = await limiter.acquire(new AbortController().signal);
    const order: string[] = [];
    const gone = new AbortController();
    const b = limiter.acquire(gone.signal).then(
      () => order.push('b'),
      () => order.push('b aborted'),
    );
    const c = limiter
      .acquire(AbortSignal.abort(new Error('late')))
      .catch(() => order.push('c rejected at once'));
    const d = limiter.acquire(new AbortController().signal).then((release) => {
      order.push('d');
      release();
    });
    await c;
    assert.equal(limiter.waiting, 2);
    gone.abort();
    await b;
    first();
    first(); // releasing twice is harmless
    await d;
    assert.deepEqual(order, ['c rejected at once', 'b aborted', 'd']);
    assert.equal(limiter.active, 0);
  });
});
