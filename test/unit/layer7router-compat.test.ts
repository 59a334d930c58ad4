/** Layer7Router's command line (src/compat/layer7router.ts): detection and the config it becomes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { looksLikeBrp } from '../../src/compat/balancing-reverse-proxy.ts';
import { L7R_BASE, L7R_SOURCE, looksLikeLayer7Router, parseLayer7Router } from '../../src/compat/layer7router.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { listenersOf } from '../../src/config/listeners.ts';

test("a line is the seed's when it has one of its option names, single dash", () => {
  assert.equal(looksLikeLayer7Router(['-backend_host', '10.0.0.5']), true);
  assert.equal(looksLikeLayer7Router(['-t', '4', '-listen_port', '80']), true);
  // Manifold's own -t (--terminal-responses), a double dash, or after `--`: not the seed's.
  assert.equal(looksLikeLayer7Router(['-e', 'http://a', '-t', '200']), false);
  assert.equal(looksLikeLayer7Router(['--backend_host', 'x']), false);
  assert.equal(looksLikeLayer7Router(['--config', 'x.yaml', '--', '-backend_host']), false);
  // main.ts asks Layer7Router first: balancing-reverse-proxy's test would take it too.
  assert.equal(looksLikeBrp(['-backend_host', '10.0.0.5']), true);
});

function configOf(argv: string[]) {
  const parsed = parseLayer7Router(argv);
  assert.ok(!('error' in parsed), 'error' in parsed ? parsed.error : '');
  return { ...loadConfigText(L7R_BASE, L7R_SOURCE, { env: {}, overrides: parsed.overrides }), parsed };
}

test("the seed's defaults: 0.0.0.0:7080 to 192.168.1.150:80, two workers, no source address", () => {
  const { config, compiled, parsed } = configOf([]);
  const [l] = listenersOf(config);
  assert.deepEqual([l.name, l.host, l.port, l.mode, l.tcp?.default_pool, l.tcp?.connect], ['layer7router', '0.0.0.0', 7080, 'tcp', 'backend', 'refuse']);
  assert.equal(config.workers, 2);
  assert.deepEqual(config.pools.backend.targets, ['http://192.168.1.150:80']);
  assert.deepEqual(compiled.pools[0].localAddresses, []);
  assert.deepEqual(config.routes, []);
  assert.equal(config.admin.enabled, false);
  assert.match(parsed.startLines[0], /^Options \[listen_port=7080, backend_host=192\.168\.1\.150, backend_port=80, client_base_ip=127\.0\.0, client_start_ip=1, client_end_ip=1, .*num_threads=2, .*backlog=65536\]$/);
});

test("router.sh's flags map onto the listener, the pool, its source addresses and workers", () => {
  const { config, compiled, parsed } = configOf([
    '-listen_port', '7081', '-backend_host', '::1', '-backend_port', '7180',
    '-client_base_ip', '127.0.0', '-client_start_ip', '2', '-client_end_ip', '4', '-t', '3', '-backlog', '100', '-keepalive',
  ]);
  assert.equal(listenersOf(config)[0].port, 7081);
  assert.deepEqual(config.pools.backend.targets, ['http://[::1]:7180']);
  assert.deepEqual(compiled.pools[0].localAddresses, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
  assert.equal(config.workers, 3);
  assert.deepEqual(parsed.startLines.slice(1).map((l) => l.split(':')[0]), ['-backlog is accepted and ignored', '-keepalive is accepted and ignored']);
});

test("args4j's errors", () => {
  const error = (argv: string[]) => {
    const r = parseLayer7Router(argv);
    return 'error' in r ? r.error.split('\n')[0] : null;
  };
  assert.equal(error(['-listen_port', '8080x']), '"8080x" is not a valid value for "-listen_port"');
  assert.equal(error(['-listen_port', '99999999999']), '"99999999999" is not a valid value for "-listen_port"');
  assert.equal(error(['-damping_factor', 'x']), '"x" is not a valid value for "-damping_factor"');
  assert.equal(error(['-damping_factor', '0.5']), null);
  assert.equal(error(['stray']), 'No argument is allowed: stray');
  assert.equal(error(['-client_end_ip', '256']), '"256" is not a valid value for "-client_end_ip" (an octet: 0 to 255)');
});
