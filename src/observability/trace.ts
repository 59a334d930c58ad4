/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/, issue 7): Manifold is one hop of
 * the trace. A request's `traceparent` keeps its trace id and flags; every attempt (and every
 * delivery of a deferred request) is a span of its own, so it goes out with a new span id;
 * `tracestate` passes through untouched. With no valid `traceparent` Manifold starts the
 * trace, and an invalid one's `tracestate` is dropped (§3.3.1: "MUST NOT attempt to parse
 * tracestate" after a traceparent it could not parse). Manifold records no spans itself: the
 * ids are for the targets' tracers and for the access log (`trace_id`).
 */
import { randomHexPooled } from '../random.ts';

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

/** The `tracing` block as validated (config/schema.ts reads the type from here). */
export interface TracingConfig {
  enabled: boolean;
  sampled: boolean;
}

/** The trace a downstream request belongs to. */
export interface TraceContext {
  readonly traceId: string;
  /** `01` sampled, `00` not (other bits are kept from a version-00 parent). */
  readonly flags: string;
  /** The downstream's span (the parent of our attempts); null when Manifold started the trace. */
  readonly parentId: string | null;
}

const HEX = /^[0-9a-f]+$/;
const ZEROS_32 = '0'.repeat(32);
const ZEROS_16 = '0'.repeat(16);

/** Parses one `traceparent` value; null when it is not valid (then a new trace starts). */
export function parseTraceparent(value: string): TraceContext | null {
  if (value.length < 55) return null;
  const version = value.slice(0, 2);
  if (!HEX.test(version) || version === 'ff') return null;
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (version === '00' ? value.length !== 55 : value.length > 55 && value[55] !== '-') return null;
  if (value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  let flags = value.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags)) return null;
  if (traceId === ZEROS_32 || parentId === ZEROS_16) return null;
  // We send version 00, which defines only the sampled bit for a parent of another version.
  if (version !== '00') flags = (Number.parseInt(flags, 16) & 1) === 1 ? '01' : '00';
  return { traceId, flags, parentId };
}

/** A new 8-byte span id (never all zeros). */
export function newSpanId(): string {
  let id = randomHexPooled(8);
  while (id === ZEROS_16) id = randomHexPooled(8);
  return id;
}

/** A new trace: 16 random bytes, the sampled flag as configured (`tracing.sampled`). */
export function newTrace(sampled: boolean): TraceContext {
  let traceId = randomHexPooled(16);
  while (traceId === ZEROS_32) traceId = randomHexPooled(16);
  return { traceId, flags: sampled ? '01' : '00', parentId: null };
}

/** The downstream's trace (its `traceparent` header, if valid) or a new one. */
export function traceOf(header: string | string[] | undefined, sampled: boolean): TraceContext {
  // Node joins repeated unknown headers with ", ": two traceparent headers fail to parse, as §3.2 wants.
  const incoming = typeof header === 'string' ? parseTraceparent(header) : null;
  return incoming ?? newTrace(sampled);
}

/** The `traceparent` of one attempt: the request's trace, a span of its own. */
export function attemptTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${newSpanId()}-${trace.flags}`;
}

