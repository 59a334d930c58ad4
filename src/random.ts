/**
 * Random bytes for ids (job ids, trace and span ids), drawn from a pool refilled 4 KiB at a
 * time: one getrandom() per few hundred ids instead of one or two per id (they showed as 6%
 * of an accept's CPU time, issue 6). Cryptographically random like `randomBytes()`.
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

/** Takes `n` (≤ 4096) bytes from the pool, refilling it first when short; returns where they start. */
function take(n: number): number {
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += n;
  return offset - n;
}

/** `n` (≤ 4096) random bytes; a view valid until the next call, so copy or encode it at once. */
export function randomBytesPooled(n: number): Buffer {
  const start = take(n);
  return pool.subarray(start, start + n);
}

/** `n` (≤ 4096) random bytes as hex (trace and span ids, issue 7): encoded from the pool, no view made. */
export function randomHexPooled(n: number): string {
  const start = take(n);
  return pool.toString('hex', start, start + n);
}
