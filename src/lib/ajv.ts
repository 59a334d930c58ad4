/**
 * Ajv's `code` options for every schema compiled in a gateway process: the config file's,
 * the admin API's (fastify's Ajv) and multiplex's (issue 11 item 4).
 *
 * `optimize: false`, because of what Ajv's optimizer leaves behind. To optimize generated code
 * it counts the names each code node uses in a plain object per node, keyed by the name
 * (`err12`, `_errs5`, `data190`, …): thousands of objects whose first property is a name no
 * other object has. In V8 each is a new transition from the one map every `{}` starts from, and
 * a map holds at most 1536 of them. Compiling the config schema filled it. From then until a
 * full GC cleared the dead ones, every object built from `{}` with a first property not already
 * in the table got a map of its own: Node's `process.nextTick` (a literal starting with a
 * symbol key) made a new map per call, and the inline caches that saw those maps (nextTick's
 * own, the tick loop's) went megamorphic for the life of the process. Measured on the proxy
 * bench: nextTick at 300 ns a call instead of 60, and 15 to 20% fewer requests per core.
 * The code Ajv emits without the optimizer checks the same things; it has some redundant
 * assignments, and schemas are compiled once, at start or reload.
 *
 * test/integration/startup-maps.test.ts watches it: the maps of Node's tick objects during a
 * real start.
 */
export const AJV_CODE = { optimize: false } as const;
