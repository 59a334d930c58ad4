/** The response bodies every benchmark upstream serves, and the paths that serve them. */

/** 16 KiB of a repeating a-z pattern, so a truncated or shifted body is noticed. */
const large = Buffer.alloc(16 * 1024);
for (let i = 0; i < large.length; i++) large[i] = 97 + (i % 26);

export interface BodySpec {
  id: string;
  label: string;
  path: string;
  bytes: Buffer;
}

export const BODIES: readonly BodySpec[] = [
  { id: 'small', label: 'small (2 B)', path: '/small', bytes: Buffer.from('ok') },
  { id: '16k', label: '16 KiB', path: '/16k', bytes: large },
];
