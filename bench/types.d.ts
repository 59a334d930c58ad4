/**
 * The little of `autocannon` and `http-proxy` the benchmarks use. Neither ships types, and
 * these few lines are cheaper than two @types packages.
 */

declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  export interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    pipelining?: number;
    /** Seconds before a request counts as a timeout (and an error). */
    timeout?: number;
    /** Requests cycled through by every connection; `path` overrides the URL's. */
    requests?: Array<{ method?: string; path?: string }>;
    /** SNI for https URLs (autocannon always connects with rejectUnauthorized: false). */
    servername?: string;
  }

  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p99: number;
  }

  export interface Result {
    /** Seconds, rounded to 10 ms. */
    duration: number;
    errors: number;
    timeouts: number;
    mismatches: number;
    non2xx: number;
    resets: number;
    '2xx': number;
    statusCodeStats: Record<string, { count: number }>;
    latency: Histogram;
    requests: Histogram & { sent: number };
    throughput: Histogram;
  }

  export interface Instance extends EventEmitter, PromiseLike<Result> {
    stop(): void;
  }

  export default function autocannon(options: Options): Instance;
}

declare module 'http-proxy' {
  import type { EventEmitter } from 'node:events';
  import type { Agent, IncomingMessage, ServerResponse } from 'node:http';
  import type { Socket } from 'node:net';

  export interface ServerOptions {
    target?: string;
    agent?: Agent;
    xfwd?: boolean;
  }

  export interface ProxyServer extends EventEmitter {
    web(req: IncomingMessage, res: ServerResponse): void;
    on(
      event: 'error',
      listener: (err: Error, req: IncomingMessage, res: ServerResponse | Socket) => void,
    ): this;
  }

  const httpProxy: { createProxyServer(options: ServerOptions): ProxyServer };
  export default httpProxy;
}
