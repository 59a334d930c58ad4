/** Durations ("250ms", "5s", "2m", "1h", or a bare number of milliseconds) and sizes ("16KiB", "10MB"). */

/** A duration as written in the config: a string with a unit, or milliseconds. */
export type Duration = string | number;
/** A size as written in the config: a string with a unit, or bytes. */
export type Size = string | number;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

export const DURATION_PATTERN = '^\\d+(\\.\\d+)?(ms|s|m|h)$';

/** Milliseconds from a duration string or a number (taken as ms). Throws on anything else. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = DURATION.exec(value);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(value)} (use e.g. 250ms, 5s, 2m)`);
  return Math.round(Number(m[1]) * DURATION_MS[m[2] as keyof typeof DURATION_MS]);
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)?$/;
const SIZE_BYTES = { B: 1, kB: 1e3, KB: 1e3, KiB: 1024, MB: 1e6, MiB: 1024 ** 2, GB: 1e9, GiB: 1024 ** 3 } as const;

export const SIZE_PATTERN = '^\\d+(\\.\\d+)?\\s*(B|KB|KiB|MB|MiB|GB|GiB)?$';

/** Bytes from a size string ("64KiB", "10MB") or a number (taken as bytes). */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = SIZE.exec(value);
  if (!m) throw new Error(`not a size: ${JSON.stringify(value)} (use e.g. 64KiB, 10MB)`);
  return Math.round(Number(m[1]) * SIZE_BYTES[(m[2] ?? 'B') as keyof typeof SIZE_BYTES]);
}

const GRPC_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * A `grpc-timeout` header value (gRPC over HTTP/2: at most 8 digits and a unit, H M S m u n) in
 * milliseconds, rounded up so a sub-millisecond timeout still ends; null when malformed.
 */
export function parseGrpcTimeout(value: string): number | null {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return null;
  return Math.max(1, Math.ceil(Number(m[1]) * GRPC_UNITS[m[2]]));
}
