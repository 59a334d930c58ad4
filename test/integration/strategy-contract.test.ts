/**
 * The Strategy contract (STYLE.md §15): every strategy registered by name is run through the
 * same cases over a fake `Forward`, so what all of them promise is checked in one place and a
 * new strategy gets the checks for free. No sockets: targets are scripted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AbortHook } from '../../src/deadline.ts';
import { GatewayError, isGatewayError } from '../../src/errors.ts';
import {
  AttemptError,
  type AttemptResult,
  type Forward,
  type OutboundRequest,
} from '../../src/proxy/forward.ts';
import { DEFAULT_TERMINAL, Verdicts } from '../../src/strategy/acceptance.ts';
import { runStrategy, STRATEGIES } from '../../src/strategy/index.ts';
import type { AttemptRecord, StrategyName, StrategyRun, StrategySpec } from '../../src/strategy/types.ts';
import type { Pool } from '../../src/upstream/pool.ts';

/** What a scripted target does with an attempt. */
type Script = 'ok' | 'refuse' | 'stall' | number;

interface FakeTarget {
  id: string;
  script: Script;
  available(): boolean;
  /** Signals of the attempts it received. */
  signals: AbortHook[];
  /** Results it answered that were then aborted. */
  aborted: number;
}

function fakeTarget(id: string, script: Script, up = true): FakeTarget {
  return { id, script, available: () => up, signals: [], aborted: 0 };
}

function fakePool(targets: FakeTarget[]): Pool {
  return {
    name: 'fake',
    targets,
    pick(tried: ReadonlySet<unknown> | null) {
      return targets.find((t) => t.available() && !tried?.has(t));
    },
  } as unknown as Pool;
}

const fakeForward: Forward = (target, _request, signal) => {
  const t = target as unknown as FakeTarget;
  t.signals.push(signal);
  const failure = () => {
    const reason = signal.reason as GatewayError;
    return new AttemptError(reason.code, target, 'headers', reason.message);
  };
  if (signal.aborted) return Promise.reject(failure());
  if (t.script === 'refuse')
    return Promise.reject(new AttemptError('TARGET_UNREACHABLE', target, 'connect', `cannot reach ${t.id}`));
  if (t.script === 'stall')
    return new Promise((_, reject) =>
      signal.addEventListener('abort', () => reject(failure()), { once: true }),
    );
  const status = t.script === 'ok' ? 200 : t.script;
  const result: AttemptResult = {
    target,
    status,
    headers: {},
    pipeTo: () => {},
    abort: () => {
      t.aborted++;
    },
  };
  return new Promise((resolve) => setImmediate(() => resolve(result)));
};

function spec(name: StrategyName, overrides: Partial<StrategySpec> = {}): StrategySpec {
  return {
    name,
    maxAttempts: 3,
    width: 0,
    order: 'listed',
    hedgeAfter: { kind: 'fixed', ms: 5 },
    hedgeBudget: 1,
    hedgeBudgetWindowMs: 10_000,
    verdicts: Verdicts.compile(DEFAULT_TERMINAL),
    maxReplayBytes: 1024,
    retryNonIdempotent: false,
    ...overrides,
  };
}

let routeN = 0;

function run(
  name: StrategyName,
  targets: FakeTarget[],
  extra: { signal?: AbortSignal; replayable?: boolean; method?: string } = {},
): { promise: Promise<AttemptResult>; attempts: AttemptRecord[] } {
  const attempts: AttemptRecord[] = [];
  const request: OutboundRequest = {
    method: extra.method ?? 'GET',
    path: '/',
    headers: [],
    body: null,
    headersTimeoutMs: 0,
    idleTimeoutMs: 0,
  };
  const r: StrategyRun = {
    routeId: `contract-${routeN++}`,
    pool: fakePool(targets),
    pickContext: null,
    spec: spec(name),
    request,
    forward: fakeForward,
    signal: extra.signal ?? new AbortController().signal,
    replayable: extra.replayable ?? true,
    idempotent: (extra.method ?? 'GET') === 'GET',
    attempts,
  };
  return { promise: runStrategy(r), attempts };
}

const code = (err: unknown) => (isGatewayError(err) ? err.code : String(err));

for (const name of Object.keys(STRATEGIES) as StrategyName[]) {
  describe(`strategy contract: ${name}`, () => {
    test('answers with an accepted response and records the attempt', async () => {
      const a = fakeTarget('a', 'ok');
      const { promise, attempts } = run(name, [a, fakeTarget('b', 'ok')]);
      const result = await promise;
      assert.equal(result.status, 200);
      assert.ok(attempts.some((x) => x.outcome === 'accepted' && x.status === 200));
      assert.ok(attempts.every((x) => x.outcome !== 'pending'));
    });

    test('no available target: NO_TARGET_AVAILABLE, nothing sent', async () => {
      const a = fakeTarget('a', 'ok', false);
      await assert.rejects(run(name, [a]).promise, (err) => code(err) === 'NO_TARGET_AVAILABLE');
      assert.equal(a.signals.length, 0);
    });

    test('a refused connection is tried again on another target', async () => {
      const b = fakeTarget('b', 'ok');
      const result = await run(name, [fakeTarget('a', 'refuse'), b]).promise;
      assert.equal((result.target as unknown as FakeTarget).id, 'b');
    });

    test('every attempt failing: the last failure, every attempt listed', async () => {
      const { promise } = run(name, [fakeTarget('a', 'refuse'), fakeTarget('b', 'refuse')]);
      await assert.rejects(promise, (err) => {
        assert.equal(code(err), 'TARGET_UNREACHABLE');
        const attempts = (err as GatewayError).details?.attempts as AttemptRecord[];
        assert.deepEqual(attempts.map((x) => x.target).sort(), ['a', 'b']);
        return true;
      });
    });

    test('the client going away ends it with CLIENT_CLOSED and aborts every attempt', async () => {
      const controller = new AbortController();
      const a = fakeTarget('a', 'stall');
      const b = fakeTarget('b', 'stall');
      const { promise } = run(name, [a, b], { signal: controller.signal });
      await new Promise((r) => setTimeout(r, 20)); // lets a hedge fire (5 ms)
      controller.abort(new GatewayError('CLIENT_CLOSED'));
      await assert.rejects(promise, (err) => code(err) === 'CLIENT_CLOSED');
      for (const s of [...a.signals, ...b.signals]) assert.equal(s.aborted, true);
    });

    test('a body that cannot be replayed gets one attempt, whatever the answer', async () => {
      const a = fakeTarget('a', 503);
      const b = fakeTarget('b', 'ok');
      const result = await run(name, [a, b], { replayable: false, method: 'POST' }).promise;
      assert.equal(result.status, 503);
      assert.equal(b.signals.length, 0);
    });
  });
}

test('a cancelled loser is never blamed: its error is ATTEMPT_CANCELLED', async () => {
  const slow = fakeTarget('slow', 'stall');
  const { promise, attempts } = run('fanout', [slow, fakeTarget('fast', 'ok')]);
  await promise;
  assert.equal(slow.signals[0].aborted, true);
  assert.equal(code(slow.signals[0].reason), 'ATTEMPT_CANCELLED');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    attempts.map((x) => [x.target, x.outcome]),
    [
      ['slow', 'cancelled'],
      ['fast', 'accepted'],
    ],
  );
});
