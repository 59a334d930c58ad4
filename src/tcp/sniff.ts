/**
 * What the first bytes of a TCP connection say (issue 17, item 2): a TLS ClientHello's server
 * name (SNI), an HTTP/1.x request line and Host, or nothing recognisable. The bytes are read
 * up to a window with a timeout and put back on the socket (`unshift`), so they reach the
 * target untouched: TLS is never terminated here.
 *
 * Why parse the ClientHello by hand: node:tls reads SNI only while terminating TLS (the
 * `SNICallback` of a TLS server), and terminating is what a TCP route must not do.
 *
 * The parsers are pure (`sniffBytes`, `parseClientHello`, `parseHttpHead`) and answer
 * `MORE` when the bytes so far are a valid beginning that more bytes could finish: the
 * caller then waits, within the window and its timeout. Anything malformed is `unknown`
 * at once (no waiting), with the reason for the log.
 */
import type { Socket } from 'node:net';
import { hostOf } from '../routing/matcher.ts';

/** What the first bytes said. */
export type Sniffed =
  /** A complete ClientHello; `sni` is null when it carries no host_name (an IP-literal client). */
  | { kind: 'tls'; sni: string | null }
  /** A complete HTTP/1.x request head; `host` is '' when there is no Host header. */
  | { kind: 'http'; method: string; target: string; host: string }
  /** Nothing recognisable; `reason` says why (for the log). */
  | { kind: 'unknown'; reason: string };

/** A valid beginning: more bytes are needed to decide. */
export const MORE = Symbol('more');
export type Parse<T> = T | typeof MORE | { invalid: string };

const invalid = (why: string) => ({ invalid: why });
const isInvalid = (v: unknown): v is { invalid: string } => typeof v === 'object' && v !== null && 'invalid' in v;

// ---- TLS (RFC 8446 §4.1.2, §5.1; RFC 5246 §7.4.1.2; RFC 6066 §3) ----

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
/** RFC 8446 §5.1: a plaintext record's fragment is at most 2^14 bytes. */
const MAX_FRAGMENT = 1 << 14;
/** A host name (RFC 1035 letters, digits, hyphens, dots; underscores tolerated as Node does). */
const HOST_NAME = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/**
 * Joins the handshake bytes of the TLS records at the start of `buf` (a ClientHello may be
 * split over several records, RFC 8446 §5.1) until `need` bytes are there. Returns the joined
 * bytes (possibly fewer than needed when the records so far end), or invalid.
 */
function handshakeBytes(buf: Buffer): { bytes: Buffer; complete: boolean } | { invalid: string } {
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let at = 0;
  while (at + 5 <= buf.length) {
    if (buf[at] !== RECORD_HANDSHAKE) return invalid(`TLS record type ${buf[at]} before the ClientHello ended`);
    if (buf[at + 1] !== 0x03) return invalid('not a TLS record version');
    const len = buf.readUInt16BE(at + 3);
    if (len === 0 || len > MAX_FRAGMENT) return invalid(`TLS record length ${len}`);
    const fragment = buf.subarray(at + 5, Math.min(at + 5 + len, buf.length));
    parts.push(fragment);
    have += fragment.length;
    if (need === -1 && have >= 4) {
      const head = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid(`TLS handshake type ${head[0]} is not a ClientHello`);
      need = 4 + head.readUIntBE(1, 3);
    }
    if (need !== -1 && have >= need) break;
    if (fragment.length < len) break; // this record is still arriving
    at += 5 + len;
  }
  const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  return { bytes, complete: need !== -1 && have >= need };
}

/**
 * The server name of the TLS ClientHello at the start of `buf`: the name, null when the
 * ClientHello has no server_name extension, `MORE`, or invalid.
 */
export function parseClientHello(buf: Buffer): Parse<string | null> {
  if (buf.length === 0) return MORE;
  if (buf[0] !== RECORD_HANDSHAKE) return invalid('not a TLS handshake record');
  if (buf.length >= 2 && buf[1] !== 0x03) return invalid('not a TLS record version');
  const hs = handshakeBytes(buf);
  if (isInvalid(hs)) return hs;
  if (!hs.complete) return MORE;
  const b = hs.bytes;
  const end = 4 + b.readUIntBE(1, 3);
  // client_version(2) random(32)
  let at = 4 + 2 + 32;
  if (at + 1 > end) return invalid('ClientHello too short');
  at += 1 + b[at]; // legacy_session_id
  if (at + 2 > end) return invalid('ClientHello truncated at cipher_suites');
  at += 2 + b.readUInt16BE(at);
  if (at + 1 > end) return invalid('ClientHello truncated at compression_methods');
  at += 1 + b[at];
  if (at > end) return invalid('ClientHello truncated at compression_methods');
  if (at === end) return null; // no extensions at all (TLS 1.0-1.2 may omit them)
  if (at + 2 > end) return invalid('ClientHello truncated at extensions');
  const extEnd = at + 2 + b.readUInt16BE(at);
  if (extEnd > end) return invalid('ClientHello extensions overrun');
  at += 2;
  while (at + 4 <= extEnd) {
    const type = b.readUInt16BE(at);
    const len = b.readUInt16BE(at + 2);
    at += 4;
    if (at + len > extEnd) return invalid('ClientHello extension overruns');
    if (type === EXT_SERVER_NAME) return serverName(b.subarray(at, at + len));
    at += len;
  }
  return null;
}

/** The host_name of a server_name extension body (RFC 6066 §3). */
function serverName(ext: Buffer): Parse<string | null> {
  if (ext.length < 2) return invalid('server_name extension too short');
  const listEnd = 2 + ext.readUInt16BE(0);
  if (listEnd > ext.length) return invalid('server_name list overruns');
  let at = 2;
  while (at + 3 <= listEnd) {
    const type = ext[at];
    const len = ext.readUInt16BE(at + 1);
    at += 3;
    if (at + len > listEnd) return invalid('server_name entry overruns');
    if (type === NAME_TYPE_HOST) {
      // RFC 6066: ASCII, no trailing dot; compared case-insensitively.
      const name = ext.toString('latin1', at, at + len).toLowerCase();
      if (name.length === 0 || name.length > 253 || !HOST_NAME.test(name)) return invalid('server_name is not a host name');
      return name;
    }
    at += len;
  }
  return null;
}

// ---- HTTP/1.x (RFC 9112 §3, §5) ----

/** `token` characters (RFC 9110 §5.6.2), upper case only for a method as sent in practice. */
const METHOD = /^[A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}$/;
const REQUEST_LINE = /^([A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}) ([!-~]+) HTTP\/1\.[01]$/;
/** A field name and its colon; the value is trimmed by hand (a regex around it can backtrack quadratically). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:/;

/**
 * The request line and Host of the HTTP/1.x request head at the start of `buf`, `MORE` until
 * the head's blank line has arrived, or invalid. An absolute-form target's authority wins over
 * the Host header (RFC 9112 §3.2.2). Two Host headers are invalid (RFC 9112 §3.2).
 */
export function parseHttpHead(buf: Buffer): Parse<{ method: string; target: string; host: string }> {
  const text = buf.toString('latin1');
  const lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) {
    // Still a plausible beginning? Judge the method so far, so garbage is not waited on.
    const sp = text.indexOf(' ');
    const method = sp === -1 ? text : text.slice(0, sp);
    if (method.length > 0 && !METHOD.test(method)) return invalid('not an HTTP method');
    if (!printable(buf)) return invalid('not an HTTP request line');
    return MORE;
  }
  const m = REQUEST_LINE.exec(text.slice(0, lineEnd));
  if (m === null) return invalid('not an HTTP/1.x request line');
  const headEnd = text.indexOf('\r\n\r\n', lineEnd);
  if (headEnd === -1) return MORE;
  let host: string | null = null;
  const fields = headEnd === lineEnd ? [] : text.slice(lineEnd + 2, headEnd).split('\r\n');
  for (const line of fields) {
    const name = FIELD_NAME.exec(line);
    if (name === null) return invalid('malformed HTTP header line');
    if (name[0].length !== 5 || name[0].toLowerCase() !== 'host:') continue;
    if (host !== null) return invalid('two Host headers');
    host = hostOf(line.slice(5).trim());
  }
  const target = m[2];
  if (/^https?:\/\//i.test(target)) {
    const rest = target.slice(target.indexOf('//') + 2);
    const slash = rest.search(/[/?#]/);
    host = hostOf(slash === -1 ? rest : rest.slice(0, slash));
  }
  return { method: m[1], target, host: host ?? '' };
}

/** Only visible ASCII, spaces, tabs and a CR (a request line's characters, RFC 9112 §3). */
function printable(buf: Buffer): boolean {
  for (const c of buf) if ((c < 0x20 && c !== 0x09 && c !== 0x0d) || c > 0x7e) return false;
  return true;
}

// ---- both ----

/**
 * What `buf` says, or `MORE`. `final`: no more bytes will come (the window is full, the timeout
 * passed or the client half-closed), so a valid beginning is `unknown` instead of `MORE`.
 */
export function sniffBytes(buf: Buffer, final: boolean): Sniffed | typeof MORE {
  if (buf.length === 0) return final ? { kind: 'unknown', reason: 'nothing was sent' } : MORE;
  if (buf[0] === RECORD_HANDSHAKE) {
    const r = parseClientHello(buf);
    if (r === MORE) return final ? { kind: 'unknown', reason: 'incomplete TLS ClientHello' } : MORE;
    if (isInvalid(r)) return { kind: 'unknown', reason: r.invalid };
    return { kind: 'tls', sni: r };
  }
  if (buf[0] >= 0x41 && buf[0] <= 0x5a) {
    const r = parseHttpHead(buf);
    if (r === MORE) return final ? { kind: 'unknown', reason: 'incomplete HTTP request head' } : MORE;
    if (isInvalid(r)) return { kind: 'unknown', reason: r.invalid };
    return { kind: 'http', ...r };
  }
  return { kind: 'unknown', reason: 'neither TLS nor HTTP/1.x' };
}

export interface SniffOptions {
  /** Most bytes read before deciding (default 32 KiB, as Layer7Router). */
  windowBytes: number;
  /** Longest wait for the bytes that decide; then what has come is judged as final. */
  timeoutMs: number;
}

export interface SniffResult {
  sniffed: Sniffed;
  /** The bytes read, for the caller to send to the target before anything else. */
  head: Buffer;
  /** The decision came from the timeout. */
  timedOut: boolean;
  /** The client half-closed (sent FIN) while being read: nothing more will come from it. */
  ended: boolean;
}

/**
 * Reads the first bytes of `socket` until they decide (or the window fills, the timeout
 * passes, the client half-closes) and leaves the socket paused, the bytes read handed back as
 * `head` for the caller to write to the target first. Rejects when the socket fails or closes
 * first. Takes at most one chunk past the window (the kernel's read size), never more.
 */
export function sniff(socket: Socket, opts: SniffOptions): Promise<SniffResult> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => decide(true, true, false), opts.timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const decide = (final: boolean, timedOut: boolean, ended: boolean) => {
      const window = buf.length > opts.windowBytes ? buf.subarray(0, opts.windowBytes) : buf;
      const r = sniffBytes(window, final);
      if (r === MORE) return;
      cleanup();
      resolve({ sniffed: r, head: buf, timedOut, ended });
    };
    const onData = (chunk: Buffer) => {
      // Bounded by the window, so copying on each read costs at most window² / read size.
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      decide(buf.length >= opts.windowBytes, false, false);
    };
    const onEnd = () => decide(true, false, true);
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the client closed the connection before it could be routed'));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
