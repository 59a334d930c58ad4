/**
 * Issue 3 test helper (used by pools/health/admin/reload tests): the real CLI with the admin
 * API on port 0, in one process (`workers: 0`) or with `--workers 2`, plus a tiny client for
 * both ports. Lives here, not in test/helpers, until it is worth sharing.
 */
import { writeFileSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Cli, cliPorts, spawnCli } from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';

/** Both process models every issue 3 test runs in. */
export const MODES = [
  { name: 'one process', workers: 0 },
  { name: '--workers 2', workers: 2 },
] as const;

export interface ManagedGateway {
  cli: Cli;
  file: string;
  url: string;
  adminUrl: string;
  /** An admin call; `body` is sent as JSON. */
  admin(method: string, path: string, body?: unknown, headers?: OutgoingHttpHeaders): Promise<Reply>;
  /** A data-plane GET. */
  get(path: string, headers?: OutgoingHttpHeaders): Promise<Reply>;
  /** Rewrites the config file (for reloads). */
  write(yaml: string): void;
  close(): Promise<void>;
}

let seq = 0;

export async function startManaged(
  yaml: string,
  workers: number,
  env: NodeJS.ProcessEnv = {},
): Promise<ManagedGateway> {
  const file = join(tmpdir(), `manifold-pools-${process.pid}-${++seq}.yaml`);
  writeFileSync(file, yaml);
  const cli = spawnCli(
    // The start lines waited for below are logged at info, whatever the config's level.
    [
      '--config',
      file,
      '--workers',
      String(workers),
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--log-level',
      'info',
    ],
    {
      MANIFOLD_ADMIN__PORT: '0',
      ...env,
    },
  );
  const { port, adminPort } = await cliPorts(cli);
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  return {
    cli,
    file,
    url,
    adminUrl,
    admin: (method, path, body, headers = {}) =>
      send(`${adminUrl}${path}`, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    get: (path, headers) => send(`${url}${path}`, { headers }),
    write: (text) => writeFileSync(file, text),
    async close() {
      cli.kill('SIGTERM');
      const timer = setTimeout(() => cli.kill('SIGKILL'), 10_000);
      await cli.exited;
      clearTimeout(timer);
    },
  };
}

/** The `x-upstream` names of `n` sequential GETs, counted. */
export async function spread(gw: ManagedGateway, n: number, path = '/', headers?: OutgoingHttpHeaders) {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await gw.get(path, headers);
    const name = r.status === 200 ? r.text : `status ${r.status}`;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}
