/**
 * Random bytes for ids (request, job, trace and span ids), drawn from a pool refilled 4 KiB at a
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

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where a UUID's text is spelled before it becomes a string (36 bytes, reused). */
const uuidChars = Buffer.allocUnsafe(36);

/**
 * The 16 bytes of `bytes` from `start` as a UUID's text (8-4-4-4-12 lowercase hex digits),
 * spelled into a reused buffer and read out as one flat string: request ids and job ids
 * (defer/queue.ts). Building it from hex slices and a template makes a string per piece.
 */
export function uuidText(bytes: Uint8Array, start = 0): string {
  let at = 0;
  for (let i = 0; i < 16; i++) {
    const byte = bytes[start + i]!;
    uuidChars[at++] = HEX_DIGITS[byte >> 4]!;
    uuidChars[at++] = HEX_DIGITS[byte & 0x0f]!;
    if (i === 3 || i === 5 || i === 7 || i === 9) uuidChars[at++] = 0x2d; // '-'
  }
  return uuidChars.toString('latin1', 0, 36);
}

/**
 * A random (version 4) UUID, as `crypto.randomUUID()` makes, from the pool. randomUUID()
 * builds its string from 20 concatenated pieces, some 600 bytes of garbage per call (issue 11
 * item 4: one per request without an `x-request-id`).
 */
export function randomUuidPooled(): string {
  const start = take(16);
  // RFC 9562 §5.4: the version (4) in byte 6's high nibble, the variant (0b10) in byte 8's top
  // bits; set in the pool itself, whose taken bytes are never handed out again.
  pool[start + 6] = (pool[start + 6]! & 0x0f) | 0x40;
  pool[start + 8] = (pool[start + 8]! & 0x3f) | 0x80;
  return uuidText(pool, start);
}
