/**
 * Loaded into a gateway with `node --allow-natives-syntax --import` (startup-maps.test.ts):
 * watches the objects `process.nextTick` makes from the start of the process, and on SIGUSR2
 * writes to stderr how many there were and how often one had another map than the one before.
 * Node builds every tick object from the same literal, so in a healthy process they share one
 * map; a map per tick is V8's shared object map out of room for transitions (src/lib/ajv.ts).
 */
import { createHook } from 'node:async_hooks';

// V8's own comparison, only with --allow-natives-syntax (not TypeScript syntax: built at run time).
const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
let last: object | null = null;
let ticks = 0;
let changes = 0;
createHook({
  init(_id, type, _trigger, resource) {
    if (type !== 'TickObject') return;
    ticks++;
    if (last !== null && !sameMap(last, resource as object)) changes++;
    last = resource as object;
  },
}).enable();
process.on('SIGUSR2', () => process.stderr.write(`${JSON.stringify({ probe: 'tick-maps', ticks, changes })}\n`));
