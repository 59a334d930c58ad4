/**
 * Issue 5: the `multiplex:` route action through the config loader (schema, compile) — every
 * problem names file, line and key path — and the handler registry's reuse rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfigText } from '../../src/config/load.ts';
import { MultiplexRegistry } from '../../src/multiplex/registry.ts';
import { until } from '../helpers/index.ts';

function problems(multiplex: string, extra = ''): string[] {
  const yaml = `${extra}routes:\n  - match: { path: /multiplex }\n    multiplex: ${multiplex}\n`;
  try {
    loadConfigText(yaml, 'm.yaml', { env: {} });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((p) => `${p.source}: ${p.path}: ${p.message}`);
  }
  return [];
}

test('a multiplex route compiles once, with the engine defaults', () => {
  const { compiled } = loadConfigText(
    'routes:\n  - match: { path: /multiplex }\n    multiplex: {}\n',
    'm.yaml',
    {
      env: {},
    },
  );
  const action = compiled.routes[0].action;
  assert.equal(action.kind, 'multiplex');
  if (action.kind !== 'multiplex') return;
  assert.equal(action.options.maxRequests, 100);
  assert.equal(action.options.maxTimeoutMs, 10_000);
  assert.equal(action.options.allow, null);
  assert.ok(Object.isFrozen(action.options));
});

test('config problems name file, line and key path', () => {
  assert.deepEqual(problems('{ allow: [ok.example, 10.0.0.0/33] }'), [
    'm.yaml:3: routes[0].multiplex.allow[1]: not a valid CIDR: "10.0.0.0/33"',
  ]);
  assert.deepEqual(problems('{ max_timeout: 10 parsecs, max_item_bytes: lots, nope: 1, max_requests: 0 }'), [
    'm.yaml:3: routes[0].multiplex.nope: unknown key',
    'm.yaml:3: routes[0].multiplex.max_requests: must be >= 1',
    'm.yaml:3: routes[0].multiplex.max_timeout: must be a duration like "250ms", "10s", "1m" or integer milliseconds',
    'm.yaml:3: routes[0].multiplex.max_item_bytes: must be a size like 1048576 (bytes), "512KiB" or "1MiB"',
  ]);
  assert.deepEqual(problems('\n      max_item_bytes: 2MiB\n      max_total_bytes: 1MiB'), [
    'm.yaml:5: routes[0].multiplex.max_total_bytes: must not be smaller than max_item_bytes',
  ]);
  assert.deepEqual(problems('{}\n    respond: {}'), [
    'm.yaml:2: routes[0]: has several actions (respond, multiplex); give exactly one',
  ]);
});

test('the registry keeps a handler while its route and options stay, and closes it after', async () => {
  const load = (multiplex: string, id = 'm') =>
    loadConfigText(`routes:\n  - { id: ${id}, match: { path: /m }, multiplex: ${multiplex} }\n`, 'm.yaml', {
      env: {},
    }).compiled.routes;
  const registry = new MultiplexRegistry();
  const first = registry.provision(load('{ max_requests: 5 }')).get('m');
  assert.ok(first);
  assert.equal(registry.provision(load('{ max_requests: 5 }')).get('m'), first, 'same options: kept');
  assert.deepEqual(registry.size, { live: 1, retiring: 0 });

  // A batch holding the old handler keeps it open across the reload that retires it.
  let finish = () => {};
  const holding = first.use(() => new Promise<void>((resolve) => (finish = resolve)));
  const second = registry.provision(load('{ max_requests: 6 }')).get('m');
  assert.notEqual(second, first, 'changed options: a new handler');
  assert.deepEqual(registry.size, { live: 1, retiring: 1 });
  finish();
  await holding;
  await until(() => registry.size.retiring === 0, 'the retired handler to close');

  assert.notEqual(registry.provision(load('{ max_requests: 6 }', 'other')).get('other'), second, 'per route');
  await registry.close();
  assert.deepEqual(registry.size, { live: 0, retiring: 0 });
});
