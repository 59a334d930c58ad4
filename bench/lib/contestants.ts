/**
 * What the proxy and TLS suites share about their contestants: the shape of one (how to start
 * it in its own process on its own port in front of the shared upstream), starting a lineup
 * one at a time (an optional one that cannot run is skipped, saying why; a required one aborts
 * the run), noticing one that died between measurements, and finding installed binaries.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Child, freePort } from './processes.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const PEERS = fileURLToPath(new URL('../peers/', import.meta.url));
export const NODE = process.execPath;

export interface StartContext {
  /** e.g. http://127.0.0.1:41234 */
  upstream: string;
  upstreamPort: number;
  /** A private temp dir for config files. */
  tmp: string;
}

export interface Started {
  port: number;
  /** null when nothing was started (direct). */
  child: Child | null;
  /** Where its stdout (the access log) goes, emptied between measurements. */
  logFile?: string;
}

export interface Contestant<Ctx extends StartContext = StartContext, S extends Started = Started> {
  id: string;
  label: string;
  /** Required contestants abort the run when they cannot start; the others are skipped. */
  required: boolean;
  /** A line for the report (configuration that matters for reading the numbers). */
  note?: string;
  /** null when it can run, otherwise why not. */
  unavailable(): string | null;
  /** A version string for the report, when there is one worth printing. */
  version?(): string | null;
  start(ctx: Ctx): Promise<S>;
}

export interface Running<C extends { id: string }, S extends Started> {
  contestant: C;
  started: S;
  /** Why its later measurements were skipped (the process died). */
  dead: string | null;
}

export interface Skipped {
  id: string;
  reason: string;
}

/** The contestants `--only` keeps (all when it is empty); an unknown id is an error. */
export function selectContestants<C extends { id: string }>(all: readonly C[], only: readonly string[]): C[] {
  const unknown = only.filter((id) => !all.some((c) => c.id === id));
  if (unknown.length > 0)
    throw new Error(`unknown contestant(s) ${unknown.join(', ')}; known: ${all.map((c) => c.id).join(', ')}`);
  return all.filter((c) => only.length === 0 || only.includes(c.id));
}

/**
 * Starts each contestant in turn (starting them together would slow each other's start) and
 * runs `check` on it, which throws when it does not answer as it should and may return a detail
 * for its "ready" line. One that cannot run or fails its check is stopped and skipped, or, when
 * required, aborts the run.
 */
export async function startContestants<Ctx extends StartContext, S extends Started, C extends Contestant<Ctx, S>>(
  selected: readonly C[],
  ctx: Ctx,
  check: (started: S, contestant: C) => Promise<string | void>,
  log: (line: string) => void,
): Promise<{ running: Array<Running<C, S>>; skipped: Skipped[]; versions: Record<string, string> }> {
  const running: Array<Running<C, S>> = [];
  const skipped: Skipped[] = [];
  const versions: Record<string, string> = {};
  const skip = (contestant: C, reason: string) => {
    skipped.push({ id: contestant.id, reason });
    log(`${contestant.id}: skipped: ${reason}`);
  };
  for (const contestant of selected) {
    const reason = contestant.unavailable();
    if (reason !== null) {
      if (contestant.required) throw new Error(`${contestant.label} cannot run: ${reason}`);
      skip(contestant, reason);
      continue;
    }
    const version = contestant.version?.();
    if (version) versions[contestant.id] = version;
    let started: S | null = null;
    try {
      started = await contestant.start(ctx);
      const detail = await check(started, contestant);
      running.push({ contestant, started, dead: null });
      const child = started.child;
      const about = [child ? `pid ${child.pid}, port ${started.port}` : '', detail ?? ''].filter(Boolean).join('; ');
      log(`ready ${contestant.id}${about ? ` (${about})` : ''}`);
    } catch (err) {
      await started?.child?.stop();
      const message = `could not start or check ${contestant.label}: ${(err as Error).message}`;
      if (contestant.required) throw new Error(message, { cause: err });
      skip(contestant, message);
    }
  }
  return { running, skipped, versions };
}

/**
 * A predicate for the measuring loops: true when the contestant's process is still there to be
 * measured; the first time it is not, says so and marks it dead. Throws when the upstream died,
 * which ends the run: nothing can be measured without it.
 */
export function liveness(upstream: Child, log: (line: string) => void): (r: Running<{ id: string }, Started>) => boolean {
  return (r) => {
    if (!upstream.alive) throw new Error(`the upstream died: ${upstream.describeExit()}`);
    const child = r.started.child;
    if (r.dead === null && child !== null && !child.alive) {
      r.dead = child.describeExit();
      log(`${r.contestant.id} died; its remaining measurements are skipped: ${r.dead}`);
    }
    return r.dead === null;
  };
}

/**
 * The measuring rounds: each visits every load in turn and, under each, every contestant still
 * `usable`, starting one further along the lineup each round (so no contestant always follows
 * the same one), pausing `settleMs` after each visit so closing connections settle.
 */
export async function interleavedRounds<R, L>(
  running: readonly R[],
  rounds: number,
  loads: readonly L[],
  usable: (r: R) => boolean,
  settleMs: number,
  visit: (r: R, load: L, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++) await oneRound(running, round, loads, usable, settleMs, visit);
}

/** Round number `round` of interleavedRounds, alone (for a suite that starts fresh processes each round). */
export async function oneRound<R, L>(
  running: readonly R[],
  round: number,
  loads: readonly L[],
  usable: (r: R) => boolean,
  settleMs: number,
  visit: (r: R, load: L, round: number) => Promise<void>,
): Promise<void> {
  const order = running.map((_, i) => running[(i + round) % running.length]!);
  for (const load of loads)
    for (const r of order) {
      if (!usable(r)) continue;
      await visit(r, load, round);
      await sleep(settleMs);
    }
}

/** A start() for a Node script of bench/peers: `node peers/SCRIPT PORT ...args(ctx)`. */
export function nodePeer<Ctx extends StartContext>(name: string, script: string, args: (ctx: Ctx) => string[]) {
  return async (ctx: Ctx): Promise<Started & { child: Child }> => {
    const port = await freePort();
    const child = new Child(name, NODE, [join(PEERS, script), String(port), ...args(ctx)], { ipc: true, cwd: REPO });
    return { port, child };
  };
}

/**
 * Starts Manifold (`src/main.ts` of `tree`, this checkout by default) with `--workers 1` and
 * the config `yaml(port)`. Its stdout, the access log, goes to a file, as in a deployment: the
 * cost measured is Manifold's, not that of a pipe read by this busy process. The suites empty
 * it between measurements.
 */
export async function startManifold(
  ctx: StartContext,
  id: string,
  yaml: (port: number) => string,
  tree = REPO,
): Promise<Started & { child: Child; logFile: string }> {
  const port = await freePort();
  const file = join(ctx.tmp, `${id}.yaml`);
  writeFileSync(file, yaml(port));
  const logFile = join(ctx.tmp, `${id}.log`);
  const child = new Child(id, NODE, [join(tree, 'src/main.ts'), '--config', file, '--workers', '1'], {
    cwd: tree,
    stdout: { file: logFile },
  });
  return { port, child, logFile };
}

/** Starts the upstream of every contestant: bench/peers/upstream.ts, plain HTTP. */
export async function startUpstream(): Promise<{ port: number; child: Child }> {
  const port = await freePort();
  const child = new Child('upstream', NODE, [join(PEERS, 'upstream.ts'), String(port)], { ipc: true, cwd: REPO });
  return { port, child };
}

/** `git describe --always --dirty` of the tree at `cwd`; null when it is not a git tree. */
export function gitDescribe(cwd = REPO): string | null {
  const r = spawnSync('git', ['describe', '--always', '--dirty'], { cwd, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The executable `name` on PATH or in the usual sbin folders; null when not installed. */
export function findBinary(name: string): string | null {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/bin',
    `/usr/local/${name}/sbin`,
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** Why the binary `name` cannot run ("not installed …"), or null when it is found. */
export function notInstalled(name: string, apt = name): string | null {
  return findBinary(name) === null
    ? `not installed (no ${name} on PATH nor in /usr/sbin, /usr/local/sbin; apt-get install ${apt})`
    : null;
}

/** The first line `name args` prints (on stdout or stderr), without `strip`. */
export function versionOf(name: string, args: string[], strip: RegExp): string | null {
  const bin = findBinary(name);
  if (bin === null) return null;
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim().split('\n')[0].replace(strip, '') || null;
}
