/** The response bodies every benchmark upstream serves, and the paths that serve them. */
import type { OutgoingHttpHeaders } from 'node:http';

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

const EMPTY = Buffer.alloc(0);
const ROUTES = new Map(
  BODIES.map((b) => [
    b.path,
    { body: b.bytes, headers: { 'content-type': 'text/plain', 'content-length': b.bytes.length } },
  ]),
);

/**
 * A request handler answering each body's path with that body (Content-Length), anything else
 * 404: for node:http and node:http2's compatibility API alike.
 */
export function answerBody(
  req: { url?: string },
  res: { writeHead(status: number, headers: OutgoingHttpHeaders): unknown; end(body: Buffer): unknown },
): void {
  const route = ROUTES.get(req.url ?? '');
  if (route === undefined) {
    res.writeHead(404, { 'content-length': 0 });
    res.end(EMPTY);
    return;
  }
  res.writeHead(200, route.headers);
  res.end(route.body);
}
