import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BackoffPolicy, backoffDelay } from '../../src/defer/backoff.ts';

const low = () => 0;
const high = () => 0.999_999_999;

describe('backoffDelay', () => {
  it('none: doubles from baseMs and stops at maxMs', () => {
    const policy: BackoffPolicy = { baseMs: 100, maxMs: 1000, jitter: 'none' };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy)),
      [100, 200, 400, 800, 1000, 1000],
    );
  });

  it('treats attempt < 1 as the first attempt and never overflows for huge attempts', () => {
    const policy: BackoffPolicy = { baseMs: 100, maxMs: 60_000, jitter: 'none' };
    assert.equal(backoffDelay(0, policy), 100);
    assert.equal(backoffDelay(-3, policy), 100);
    assert.equal(backoffDelay(10_000, policy), 60_000);
    assert.equal(
      backoffDelay(Number.MAX_SAFE_INTEGER, { ...policy, jitter: 'full' }, undefined, high),
      60_000,
    );
  });

  it('full: spans [0, exponential ceiling], inclusive, as integers', () => {
    const policy: BackoffPolicy = { baseMs: 100, maxMs: 1000, jitter: 'full' };
    assert.equal(backoffDelay(3, policy, undefined, low), 0);
    assert.equal(backoffDelay(3, policy, undefined, high), 400);
    assert.equal(
      backoffDelay(3, policy, undefined, () => 0.5),
      200,
    );
    assert.equal(backoffDelay(20, policy, undefined, high), 1000);
  });

  it('decorrelated: spans [baseMs, 3 × previous], capped at maxMs', () => {
    const policy: BackoffPolicy = { baseMs: 100, maxMs: 10_000, jitter: 'decorrelated' };
    assert.equal(backoffDelay(5, policy, 500, low), 100);
    assert.equal(backoffDelay(5, policy, 500, high), 1500);
    assert.equal(backoffDelay(5, policy, 9000, high), 10_000);
  });

  it('decorrelated without previousMs stands in the previous exponential delay', () => {
    const policy: BackoffPolicy = { baseMs: 100, maxMs: 10_000, jitter: 'decorrelated' };
    assert.equal(backoffDelay(1, policy, undefined, high), 300); // previous = base
    assert.equal(backoffDelay(4, policy, undefined, high), 1200); // previous = 100 · 2^2
    assert.equal(backoffDelay(4, policy, undefined, low), 100);
  });

  it('stays within bounds for random inputs (property check)', () => {
    const policies: BackoffPolicy[] = [
      { baseMs: 1, maxMs: 1, jitter: 'full' },
      { baseMs: 250, maxMs: 30_000, jitter: 'full' },
      { baseMs: 250, maxMs: 30_000, jitter: 'decorrelated' },
      { baseMs: 7, maxMs: 1_000, jitter: 'decorrelated' },
    ];
    for (const policy of policies) {
      let previous: number | undefined;
      for (let attempt = 1; attempt < 200; attempt++) {
        const delay = backoffDelay(attempt, policy, previous);
        assert.ok(Number.isInteger(delay), `integer: ${delay}`);
        assert.ok(delay <= policy.maxMs, `${delay} <= maxMs`);
        assert.ok(delay >= (policy.jitter === 'decorrelated' ? policy.baseMs : 0), `${delay} >= floor`);
        previous = delay;
      }
    }
  });
});
