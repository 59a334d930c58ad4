/**
 * Random bytes for ids (job ids, trace and span ids), drawn from a pool refilled 4 KiB at a
 * time: one getrandom() per few hundred ids instead of one or two per id (they showed as 6%
 * of an accept's CPU time, issue 6). Cryptographically random like `randomBytes()`.
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

/** `n` (≤ 4096) random bytes; a view valid until the next call, so copy or encode it at once. */
export function randomBytesPooled(n: number): Buffer {
  if (offset + n > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += n;
  return pool.subarray(offset - n, offset);
}
