/**
 * Test helpers: real servers on port 0, a gateway started in-process from YAML, a port sure
 * to refuse, and polling instead of sleeping (STYLE.md §15).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Runtime, startRuntime } from '../../src/cluster/runtime.ts';
import { ConfigError, type ConfigProblem, loadConfigText } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE = process.execPath;

export interface Upstream {
  server: Server;
  port: number;
  url: string;
  /** Every request seen, in order. */
  requests: IncomingMessage[];
  /** Sockets currently open to this upstream. */
  sockets: Set<Socket>;
  /** Connections ever accepted. */
  connections: number;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * What a file started and has not closed yet. A test that fails between starting a server or
 * a CLI and registering its cleanup would leave the handle open, and the file would never
 * exit (CI then waits out its whole bound): after the file's last test, this root hook kills
 * what is left. Tests still close their own; this is the net under them.
 */
const leftOpen = { clis: new Set<Cli>(), upstreams: new Set<Upstream>() };
after(async () => {
  for (const cli of leftOpen.clis) cli.kill('SIGKILL');
  await Promise.all([...leftOpen.clis].map((c) => c.exited));
  await Promise.all([...leftOpen.upstreams].map((u) => u.close()));
});

export async function startUpstream(handler: Handler = (_req, res) => res.end('ok')): Promise<Upstream> {
  const requests: IncomingMessage[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  const up: Upstream = {
    server,
    port: 0,
    url: '',
    requests,
    sockets,
    connections: 0,
    async close() {
      if (!leftOpen.upstreams.delete(up)) return;
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('connection', (s: Socket) => {
    up.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  up.port = (server.address() as { port: number }).port;
  up.url = `http://127.0.0.1:${up.port}`;
  leftOpen.upstreams.add(up);
  return up;
}

/**
 * A loopback port that was free a moment ago, for a gateway that must know its port before it
 * starts (a spawned CLI with several workers, each of which would bind its own port 0).
 */
export async function freePort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Cleanups for a test file, pushed from its `before` hooks and tests, run once after all its
 * tests, the last pushed first.
 */
export function cleanupsAfter(): Array<() => unknown> {
  const cleanups: Array<() => unknown> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  return cleanups;
}

/** `server` listening on 127.0.0.1 (`port`, or any); returns the port and pushes its close. */
export async function listenLocal(server: NetServer, cleanups: Array<() => unknown>, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((r) => server.close(r)));
  return (server.address() as { port: number }).port;
}

/** A loopback port with nothing listening: connecting to it is refused at once. */
let deadPort = 0;
export async function deadAddress(): Promise<string> {
  // A port below the ephemeral range (so no port-0 bind can get it) that nothing here listens on,
  // a new one per call (targets need distinct ids).
  // A port freed from an ephemeral bind could be handed to a later listener — even the
  // gateway's own, which then looped requests back into itself (508 LOOP_DETECTED, a flake).
  deadPort = (deadPort % 1000) + 1;
  return `http://127.0.0.1:${29000 + deadPort}`;
}

/** Polls `fn` until it returns a truthy value (which is returned) or the time is up. */
export async function until<T>(
  fn: () => T | Promise<T>,
  what: string | (() => string) = 'condition',
  timeoutMs = 10_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects pino lines as parsed objects. */
export class LogCapture extends Writable {
  lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line.trim()) this.lines.push(JSON.parse(line));
    cb();
  }
  access(): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l.msg === 'request');
  }
}

export interface Gateway {
  runtime: Runtime;
  url: string;
  /** The first listener's port. */
  port: number;
  /** Every listener's port by name (issue 14). */
  ports: Readonly<Record<string, number>>;
  logs: LogCapture;
  close(): Promise<void>;
}

/**
 * Starts the data plane in this process from YAML text (listen port forced to 0; a YAML with
 * `listeners:` names its own, port 0 and 127.0.0.1 in tests).
 */
export async function startGateway(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<Gateway> {
  const { config } = loadConfigText(yaml, 'test.yaml', {
    env,
    overrides: /^listeners:/m.test(yaml)
      ? []
      : [
          { path: ['listen', 'port'], value: 0, source: 'test' },
          { path: ['listen', 'host'], value: '127.0.0.1', source: 'test' },
        ],
  });
  const logs = new LogCapture();
  const runtime = await startRuntime(config, createLogger(config.log.level, logs));
  return {
    runtime,
    logs,
    port: runtime.port,
    ports: runtime.ports,
    url: `http://127.0.0.1:${runtime.port}`,
    // No accept grace: a test's idle keep-alive connections would only make every close wait.
    close: () => runtime.close(1000, 0),
  };
}

/**
 * The YAML of one pool `app` of `target` and one route sending every request there: what a test
 * about listeners, TLS or protocols puts behind them.
 */
export function proxyAll(target: string): string {
  return `pools:
  app: { targets: ["${target}"] }
routes:
  - match: {}
    proxy: { pool: app }
`;
}

/** Closes each of `things` (a gateway, then its upstreams), in order, after the file's tests. */
export function closeAfter(...things: Array<{ close(): unknown }>): void {
  after(async () => {
    for (const thing of things) await thing.close();
  });
}

export interface Cli {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Parsed JSON log lines from stdout. */
  logs(): Array<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
}

/** Runs the real CLI (`src/main.ts`) with Node 24; `nodeArgs` go to node, before the script. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Cli {
  const child = spawn(NODE, [...nodeArgs, `${ROOT}src/main.ts`, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const cli: Cli = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    logs() {
      return cli.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l));
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
    },
  };
  leftOpen.clis.add(cli);
  child.once('exit', () => leftOpen.clis.delete(cli));
  child.stdout!.on('data', (c: Buffer) => (cli.stdout += c));
  child.stderr!.on('data', (c: Buffer) => (cli.stderr += c));
  return cli;
}

/**
 * A list for the CLIs a test spawns (push each one): when the test ends they are killed with
 * SIGKILL and waited for, then `cleanup` runs, one step after the other (targets, schemas).
 */
export function cliGroup(t: TestContext, ...cleanup: Array<() => unknown>): Cli[] {
  const clis: Cli[] = [];
  t.after(async () => {
    for (const c of clis) c.kill('SIGKILL');
    await Promise.all(clis.map((c) => c.exited));
    for (const step of cleanup) await step();
  });
  return clis;
}

/**
 * Waits for the CLI's log line `msg` and returns it. Fails at once, with the CLI's output,
 * when the CLI exits first or logs `failure` (a port taken, say) instead of waiting out the time.
 */
async function cliLine(cli: Cli, msg: string, failure?: string): Promise<Record<string, unknown>> {
  const output = () => `stderr: ${cli.stderr}\nstdout: ${cli.stdout.slice(-2000)}`;
  // `until` retries on a throw, so a failure is returned as a value and thrown here.
  const seen = await until(
    () => {
      const lines = cli.logs();
      const line = lines.find((l) => l.msg === msg);
      if (line !== undefined) return { line };
      const bad = failure === undefined ? undefined : lines.find((l) => l.msg === failure);
      if (bad !== undefined) return { failed: JSON.stringify(bad) };
      if (cli.child.exitCode !== null) return { failed: `the CLI exited (${cli.child.exitCode})` };
      return null;
    },
    () => `'${msg}'\n${output()}`,
    30_000,
  );
  if (seen.line !== undefined) return seen.line;
  throw new Error(`waiting for '${msg}': ${seen.failed}\n${output()}`);
}

/** Waits for the CLI's "manifold listening" line and returns its port. */
export async function cliPort(cli: Cli): Promise<number> {
  return (await cliLine(cli, 'manifold listening')).port as number;
}

/** Waits for the CLI's "admin API listening" line and returns the admin port. */
export async function cliAdminPort(cli: Cli): Promise<number> {
  return (await cliLine(cli, 'admin API listening', 'admin API could not start; serving without it')).port as number;
}

/**
 * Both ports of a CLI started with its admin API: the data port, then the admin port. On a
 * failure the CLI is killed and the error (which carries its output) thrown as it is.
 */
export async function cliPorts(cli: Cli): Promise<{ port: number; adminPort: number }> {
  try {
    return { port: await cliPort(cli), adminPort: await cliAdminPort(cli) };
  } catch (err) {
    cli.kill('SIGKILL');
    throw err;
  }
}

/**
 * Starts a CLI on ports picked with freePort(), where port 0 will not do (the workers of a
 * cluster bind one fixed port each with SO_REUSEPORT): another test file may take a picked port
 * between the pick and the bind, so a start that fails with "the address is in use" is tried
 * again, with ports picked afresh by `start`, up to `tries` times. `start` picks the ports,
 * writes the config, spawns the CLI and waits for it to listen.
 */
export async function startOnFreePorts<T>(start: () => Promise<T>, tries = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= tries || !/the address is in use/.test((err as Error).message)) throw err;
    }
  }
}

/**
 * A loopback address whose connects hang (SYN dropped): a listener with a full backlog that
 * never accepts. node:net always accepts, so a tiny python3 process holds the socket.
 */
export async function blackholeAddress(): Promise<{ url: string; close(): void }> {
  const script = [
    'import socket, sys, time',
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    'port = s.getsockname()[1]; fill = []',
    'for i in range(4):',
    '    c = socket.socket(); c.setblocking(False)',
    '    try: c.connect(("127.0.0.1", port))',
    '    except BlockingIOError: pass',
    '    fill.append(c)',
    'time.sleep(0.2); print(port, flush=True); sys.stdin.read()',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { url: `http://127.0.0.1:${Number(line.toString().trim())}`, close: () => child.kill() };
}

/** Every problem `loadConfigText` finds in `yaml` (file `test.yaml`, no env); [] when valid. */
export function configProblems(yaml: string): ConfigProblem[] {
  try {
    loadConfigText(yaml, 'test.yaml', { env: {} });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems;
  }
}

/**
 * A temporary directory for one test file, removed after its tests: `path(ext)` names a new
 * file in it, `configFile(yaml)` writes a config there and returns its path.
 */
export function scratch(prefix: string): { dir: string; path: (ext: string) => string; configFile: (yaml: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let seq = 0;
  const path = (ext: string) => join(dir, `f${++seq}.${ext}`);
  return {
    dir,
    path,
    configFile(yaml: string) {
      const file = path('yaml');
      writeFileSync(file, yaml);
      return file;
    },
  };
}
