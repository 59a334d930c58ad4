/**
 * The benchmark upstream: a plain node:http server in its own process, answering the bodies
 * of bodies.ts with Content-Length and keep-alive. Usage: node upstream.ts PORT
 */
import { createServer } from 'node:http';
import { answerBody } from './bodies.ts';

const port = Number(process.argv[2]);
const server = createServer({ keepAliveTimeout: 120_000 }, answerBody);
server.listen(port, '127.0.0.1');
// The parent is gone (even killed with SIGKILL): go too.
process.on('disconnect', () => process.exit(0));
