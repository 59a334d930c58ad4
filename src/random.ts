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
const uuidText = Buffer.allocUnsafe(36);

/**
 * A random (version 4) UUID, as `crypto.randomUUID()` makes, from the pool: spelled into a
 * reused buffer and read out as one flat string. randomUUID() builds its string from 20
 * concatenated pieces, some 600 bytes of garbage per call (issue 11 item 4: one per request
 * without an `x-request-id`).
 */
export function randomUuidPooled(): string {
  const start = take(16);
  let at = 0;
  for (let i = 0; i < 16; i++) {
    let byte = pool[start + i]!;
    // RFC 9562 §5.4: the version (4) in byte 6's high nibble, the variant (0b10) in byte 8's top bits.
    if (i === 6) byte = (byte & 0x0f) | 0x40;
    else if (i === 8) byte = (byte & 0x3f) | 0x80;
    uuidText[at++] = HEX_DIGITS[byte >> 4]!;
    uuidText[at++] = HEX_DIGITS[byte & 0x0f]!;
    if (i === 3 || i === 5 || i === 7 || i === 9) uuidText[at++] = 0x2d; // '-'
  }
  return uuidText.toString('latin1', 0, 36);
}
