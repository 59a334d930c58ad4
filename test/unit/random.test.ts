import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomHexPooled, randomUuidPooled, uuidText } from '../../src/random.ts';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('randomUuidPooled: version 4 UUIDs, all different, across pool refills', () => {
  // 4096-byte pool, 16 bytes an id: 3000 ids refill it ten times over.
  const seen = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    const id = randomUuidPooled();
    assert.match(id, V4);
    seen.add(id);
  }
  assert.equal(seen.size, 3000);
});

test('randomUuidPooled: each id is its own string, not a view of a reused buffer', () => {
  const a = randomUuidPooled();
  const copy = `${a}`;
  randomUuidPooled();
  assert.equal(a, copy);
});

test('randomUuidPooled: every hex digit shows up in every free position', () => {
  // A stuck nibble (a wrong mask or table) would leave some digit missing in a position.
  const digits = Array.from({ length: 36 }, () => new Set<string>());
  for (let i = 0; i < 2000; i++) {
    const id = randomUuidPooled();
    for (let p = 0; p < 36; p++) digits[p]!.add(id[p]!);
  }
  for (let p = 0; p < 36; p++) {
    if ([8, 13, 18, 23].includes(p)) assert.deepEqual([...digits[p]!], ['-']);
    else if (p === 14) assert.deepEqual([...digits[p]!], ['4']);
    else if (p === 19) assert.deepEqual([...digits[p]!].sort(), ['8', '9', 'a', 'b']);
    else assert.equal(digits[p]!.size, 16, `position ${p}`);
  }
});

test('randomHexPooled: n bytes as 2n hex digits', () => {
  assert.match(randomHexPooled(16), /^[0-9a-f]{32}$/);
  assert.match(randomHexPooled(8), /^[0-9a-f]{16}$/);
});

test('uuidText: 16 bytes from an offset as 8-4-4-4-12 lowercase hex', () => {
  const bytes = Buffer.from([0xff, ...Array.from({ length: 16 }, (_, i) => i * 17)]);
  assert.equal(uuidText(bytes, 1), '00112233-4455-6677-8899-aabbccddeeff');
  assert.equal(uuidText(bytes.subarray(1)), '00112233-4455-6677-8899-aabbccddeeff');
});
