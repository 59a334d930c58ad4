/**
 * `npm start`: two demo upstreams on 127.0.0.1:9001 and :9002, then the gateway on
 * examples/manifold.yaml (extra arguments are passed to it: `npm start -- --port 9090`).
 */
import { fileURLToPath } from 'node:url';
import { main } from '../src/main.ts';
import { startDemoUpstream } from './demo-upstream.ts';

await startDemoUpstream(9001, 'demo-9001');
await startDemoUpstream(9002, 'demo-9002');
const config = fileURLToPath(new URL('./manifold.yaml', import.meta.url));
await main(['--config', config, ...process.argv.slice(2)]);
