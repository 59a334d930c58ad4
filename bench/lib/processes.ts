/**
 * The child processes of a benchmark run. Every child is tracked from spawn to exit and
 * stopped when the run ends, fails or is interrupted (Ctrl-C), so no upstream or proxy is left
 * holding a port; our own peers are also started with an IPC channel and exit when it closes,
 * which covers a parent killed with SIGKILL.
 */
import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const TAIL_CHARS = 8192;
const STOP_GRACE_MS = 5000;

export interface ChildOptions {
  /** Open an IPC channel (our own peers exit when it closes). */
  ipc?: boolean;
  /**
   * `ignore` sends stdout to /dev/null; `capture` keeps its tail for error reports; `{file}`
   * appends it to that file, as a deployment writing its logs to disk would.
   */
  stdout?: 'ignore' | 'capture' | { file: string };
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<Child>();
const exitHooks: Array<() => void> = [];

let reaper: ChildProcess | null = null;

/** Tells the reaper (started on first use) which pids to stop should this process vanish. */
function reap(message: { add?: number; forget?: number; remove?: string }): void {
  if (reaper === null) {
    reaper = spawn(process.execPath, [fileURLToPath(new URL('./reaper.ts', import.meta.url))], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    reaper.on('error', () => {});
    // It must not keep this process alive: it is only for when this process dies abruptly.
    reaper.unref();
    reaper.channel?.unref();
  }
  if (reaper.connected) reaper.send(message);
}

export class Child {
  readonly name: string;
  readonly process: ChildProcess;
  exit: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;
  #tail = '';

  constructor(name: string, command: string, args: readonly string[], options: ChildOptions = {}) {
    this.name = name;
    const out = options.stdout;
    const fd = typeof out === 'object' ? openSync(out.file, 'a') : null;
    const stdio: StdioOptions = [
      'ignore',
      fd ?? (out === 'capture' ? 'pipe' : 'ignore'),
      'pipe',
      ...(options.ipc ? (['ipc'] as const) : []),
    ];
    try {
      this.process = spawn(command, args, { stdio, cwd: options.cwd, env: options.env ?? process.env });
    } finally {
      // The child holds its own copy of the descriptor.
      if (fd !== null) closeSync(fd);
    }
    live.add(this);
    // A child with an IPC channel exits by itself when this process dies; the others need the reaper.
    const reaped = !options.ipc && this.process.pid !== undefined;
    if (reaped) reap({ add: this.process.pid });
    const keep = (chunk: Buffer) => {
      this.#tail = (this.#tail + chunk.toString('utf8')).slice(-TAIL_CHARS);
    };
    this.process.stdout?.on('data', keep);
    this.process.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo) => {
        if (this.exit !== null) return;
        this.exit = info;
        live.delete(this);
        if (reaped) reap({ forget: this.process.pid });
        resolve(info);
      };
      this.process.once('exit', (code, signal) => done({ code, signal }));
      // spawn failures (ENOENT) emit 'error' and maybe never 'exit'
      this.process.once('error', (err) => {
        keep(Buffer.from(`spawn error: ${err.message}\n`));
        done({ code: -1, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** The last few KiB of what the child wrote (stderr, and stdout when captured). */
  tail(): string {
    return this.#tail.trimEnd();
  }

  describeExit(): string {
    if (this.exit === null) return `${this.name} is running`;
    const how = this.exit.signal ? `signal ${this.exit.signal}` : `code ${this.exit.code}`;
    const tail = this.tail();
    return `${this.name} exited (${how})${tail ? `; its last output:\n${indent(tail)}` : ' without output'}`;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exit !== null) return;
    try {
      this.process.kill(sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (this.exit !== null) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** Stops every child still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

/** A synchronous function run when the process exits, however it exits (temp dir removal). */
export function atExit(hook: () => void): void {
  exitHooks.push(hook);
}

/** A temp dir removed at exit, by the reaper too when this process is killed with SIGKILL. */
export function removeAtExit(dir: string): void {
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  reap({ remove: dir });
}

/**
 * Runs a suite's body with a fresh temp dir (prefix `prefix`): children die with the run, every
 * child it started is stopped when it ends, and the dir is removed at exit.
 */
export async function inTempDir<T>(prefix: string, body: (tmp: string) => Promise<T>): Promise<T> {
  installCleanup();
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  removeAtExit(tmp);
  try {
    return await body(tmp);
  } finally {
    await stopAll();
  }
}

let installed = false;

/**
 * Makes sure children die with the run: on normal exit, on SIGINT/SIGTERM/SIGHUP (a second
 * Ctrl-C kills at once) and on an uncaught error.
 */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    // Only synchronous work is possible here: signal whatever is left, run the hooks.
    for (const c of live) c.signal('SIGTERM');
    for (const hook of exitHooks) {
      try {
        hook();
      } catch {
        // best effort
      }
    }
  });
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals, code: number) => {
    if (stopping) {
      for (const c of live) c.signal('SIGKILL');
      process.exit(code);
    }
    stopping = true;
    process.stderr.write(`\n${sig}: stopping ${live.size} child process(es)…\n`);
    void stopAll().finally(() => process.exit(code));
  };
  process.on('SIGINT', () => onSignal('SIGINT', 130));
  process.on('SIGTERM', () => onSignal('SIGTERM', 143));
  process.on('SIGHUP', () => onSignal('SIGHUP', 129));
  const onError = (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    void stopAll().finally(() => process.exit(1));
  };
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
}

/** A port that was free a moment ago on 127.0.0.1 (the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Fetched {
  status: number;
  body: Buffer;
}

/** One GET on a fresh connection (no agent, so nothing stays open in this process). */
export function httpGet(url: string, timeoutMs = 2000): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls `url` until it answers 200. Fails early, with the child's output, when the child
 * exits first; fails after `timeoutMs` otherwise.
 */
export async function waitReady(child: Child | null, url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child !== null && !child.alive) throw new Error(child.describeExit());
    try {
      const res = await httpGet(url, 1000);
      if (res.status === 200) return;
      last = `status ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  const output = child?.tail();
  throw new Error(
    `${child?.name ?? url} not ready after ${timeoutMs} ms (last: ${last})` +
      (output ? `; its last output:\n${indent(output)}` : ''),
  );
}
