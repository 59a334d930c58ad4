/**
 * `forward` on its own: a response that arrives whole before its consumer is attached, into a
 * sink that is full at once, must still be ended (regression: the early-buffer path used to
 * return on the first `false` and never end such a response).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { type BodySink, forward } from '../../src/proxy/forward.ts';
import { Registry } from '../../src/upstream/registry.ts';
import type { Target } from '../../src/upstream/target.ts';
import { startUpstream, type Upstream, until } from '../helpers/index.ts';

let up: Upstream;
let registry: Registry;
let target: Target;
before(async () => {
  up = await startUpstream((_req, res) => res.end('x'.repeat(1000)));
  const { compiled } = loadConfigText(`pools: { p: { targets: [${up.url}] } }`, 'test.yaml', { env: {} });
  registry = new Registry();
  target = registry.provision(compiled.pools).get('p')!.targets[0];
});
after(async () => {
  await registry.destroy();
  await up.close();
});

test('a body that ended before pipeTo reaches a sink that reports full at once', async () => {
  const result = await forward(
    target,
    {
      method: 'GET',
      path: '/',
      headers: ['host', 'x'],
      body: null,
      headersTimeoutMs: 5000,
      idleTimeoutMs: 5000,
    },
    new AbortController().signal,
  );
  await until(() => target.inflight === 0, 'the response to end before a consumer is attached');
  let received = 0;
  let ended = false;
  const sink: BodySink = {
    write(chunk) {
      received += chunk.length;
      return false; // always "full"
    },
    end() {
      ended = true;
    },
    error(err) {
      throw err;
    },
    onDrain() {},
  };
  result.pipeTo(sink);
  assert.equal(received, 1000);
  assert.equal(ended, true);
});
