/**
 * The TLS suite's floor: node:http2's secure server with `allowHTTP1` (ALPN h2 and http/1.1)
 * answering the bodies of bodies.ts itself, no proxying. What it costs per request is what
 * terminating TLS and speaking HTTP costs in Node, before any proxy work.
 * Usage: node tls-server.ts PORT CERT KEY
 */
import { readFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { answerBody } from './bodies.ts';

const [, , portArg, certFile, keyFile] = process.argv;
const server = createSecureServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: true },
  answerBody,
);
server.listen(Number(portArg), '127.0.0.1');
process.on('disconnect', () => process.exit(0));
