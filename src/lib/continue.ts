/**
 * `100 Continue` answers a target sends without being asked (issue 15 item 12).
 *
 * RFC 9110 §15.2: "A client MUST be able to parse one or more 1xx responses received prior to
 * a final response, even if the client does not expect one." undici 8's HTTP/1.1 client
 * passes over 102 and 103 but destroys the connection on a 100 (it never sends
 * `Expect: 100-continue` over HTTP/1.1, so it takes one as a broken server). Servers that
 * answer every upload with `100 Continue` first (IIS, some Java containers) would then be a
 * 502 for every POST. HAProxy and nginx pass the 100 over and relay the final answer; so does
 * Manifold, here, on the connections it opens to targets.
 *
 * How: every HTTP/1.1 connection to a target gets a filter in front of its readable side
 * (`socket.push`, the one door the socket's bytes come in by). It is armed when undici has
 * written a request head on that socket (its public diagnostics channel
 * `undici:client:sendHeaders`): with undici's default of one request at a time per connection
 * (no pipelining, which Manifold never turns on), the next bytes are the start of that
 * request's answer. While armed, whole `HTTP/1.x 100` answers at the front are dropped; the
 * first byte of anything else disarms it and everything from there goes to undici untouched.
 * Disarmed, the filter costs one property check per read; body bytes are never looked at.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { buildConnector } from 'undici';

/** The most bytes held while deciding: a 100 answer with more header than this is left to undici. */
const MAX_HELD = 8192;
const PREFIX = Buffer.from('HTTP/1.');
const FILTER: unique symbol = Symbol('manifold.continueFilter');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const SP100 = Buffer.from(' 100');
/** `HTTP/1.1 100 `: the bytes that tell a 100 answer from any other. */
const STATUS_LINE_START = 13;

interface Filter {
  armed: boolean;
  held: Buffer | null;
}

type Filtered = Socket & { [FILTER]?: Filter };

let subscribed = false;

function onSendHeaders(message: unknown): void {
  const socket = (message as { socket?: Filtered }).socket;
  const filter = socket?.[FILTER];
  if (filter !== undefined) filter.armed = true;
}

/**
 * What the held bytes start with: 'continue' with the end of a whole 100 answer, 'more' when
 * they could still become one, 'other' when they cannot (a final answer, a 101, garbage).
 */
type Verdict = { readonly kind: 'continue'; readonly end: number } | { readonly kind: 'more' | 'other' };
/** The verdicts without an offset, made once: judged on every answer's first read. */
const OTHER: Verdict = Object.freeze({ kind: 'other' });
const MORE: Verdict = Object.freeze({ kind: 'more' });

function judge(held: Buffer): Verdict {
  // `HTTP/1.x 100` then SP (a reason phrase follows) or CR (none): 13 bytes decide.
  const n = Math.min(held.length, STATUS_LINE_START);
  for (let i = 0; i < n; i++) {
    const b = held[i];
    const ok =
      i < 7 ? b === PREFIX[i] : i === 7 ? b >= 0x30 && b <= 0x39 : i < 12 ? b === SP100[i - 8] : b === 0x20 || b === 0x0d;
    if (!ok) return OTHER;
  }
  if (held.length < STATUS_LINE_START) return MORE;
  const at = held.indexOf(CRLFCRLF, STATUS_LINE_START);
  if (at === -1) return held.length > MAX_HELD ? OTHER : MORE;
  return { kind: 'continue', end: at + CRLFCRLF.length };
}

/**
 * Puts the filter on a connection undici will speak HTTP/1.1 on. Sockets that negotiated h2
 * are left alone (HTTP/2 frames 1xx as HEADERS, which undici handles).
 */
function passOverUnaskedContinue(socket: Socket): void {
  const s = socket as Filtered;
  if (s[FILTER] !== undefined || (s as { alpnProtocol?: string | false }).alpnProtocol === 'h2') return;
  if (!subscribed) {
    diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);
    subscribed = true;
  }
  const filter: Filter = { armed: false, held: null };
  s[FILTER] = filter;
  const push = s.push;
  s.push = function filteredPush(this: Filtered, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (!filter.armed) return push.call(this, chunk, encoding);
    if (chunk === null) {
      // The target closed while we held the start of an answer: undici sees what there was.
      filter.armed = false;
      const held = filter.held;
      filter.held = null;
      if (held !== null && held.length > 0) push.call(this, held);
      return push.call(this, null);
    }
    let held = filter.held === null ? (chunk as Buffer) : Buffer.concat([filter.held, chunk as Buffer]);
    filter.held = null;
    for (;;) {
      if (held.length === 0) return true;
      const verdict = judge(held);
      if (verdict.kind === 'continue') {
        held = held.subarray(verdict.end);
        continue;
      }
      if (verdict.kind === 'more') {
        filter.held = held;
        return true;
      }
      filter.armed = false;
      return push.call(this, held);
    }
  } as typeof s.push;
}

/** An undici connector whose HTTP/1.1 connections pass over unasked 100 answers. */
export function passingOverContinue(connect: buildConnector.connector): buildConnector.connector {
  return (opts, callback) => {
    connect(opts, (err, socket) => {
      if (err === null) passOverUnaskedContinue(socket as Socket);
      (callback as (e: Error | null, s: unknown) => void)(err, socket);
    });
  };
}
