/**
 * Issue 11 item 4: starting the gateway leaves V8's shared object map with room for
 * transitions (src/lib/ajv.ts). The real CLI starts with its config schema, the admin API's
 * schemas and a proxied request; Node's tick objects, all made by one literal, must keep one
 * map. Before the fix, every tick object of the start had a map of its own (198 of 199).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliPorts, scratch, spawnCli, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const PROBE = fileURLToPath(new URL('../helpers/tick-map-probe.ts', import.meta.url));

test("a started gateway's tick objects share one map: Ajv's compiles leave V8's object map its transitions", async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const file = scratch('startup-maps-').configFile(
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'pools:',
      `  web: { targets: ['${up.url}'] }`,
      'routes:',
      '  - id: web',
      '    match: { path: /* }',
      '    proxy: { pool: web }',
      '',
    ].join('\n'),
  );
  const cli = spawnCli(['--config', file, '--workers', '0'], {}, ['--allow-natives-syntax', '--import', PROBE]);
  t.after(async () => {
    cli.kill('SIGKILL');
    await cli.exited;
  });
  const { port } = await cliPorts(cli);
  assert.equal((await send(`http://127.0.0.1:${port}/`)).status, 200);
  cli.kill('SIGUSR2');
  const line = await until(
    () => cli.stderr.split('\n').find((l) => l.includes('"probe":"tick-maps"')),
    () => `the probe's line; stderr: ${cli.stderr}`,
  );
  const { ticks, changes } = JSON.parse(line) as { ticks: number; changes: number };
  assert.ok(ticks > 50, `the probe saw the start's tick objects (${ticks})`);
  // A field generalized once or twice is a new map too; a map per tick is the fault.
  assert.ok(changes <= 5, `${changes} of ${ticks} tick objects had another map than the one before`);
});
