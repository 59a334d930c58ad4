/**
 * The folder layering of src/ (issue 11 item 3, DESIGN.md "Module layout"): no import circle
 * across folders, and config/ sits above the features — a feature folder never imports
 * config/, nor anything built on it (server/, cluster/, admin/, compat/). Type imports count:
 * a type import is still a dependency.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/**
 * The layers, bottom first (README "Layout"): a folder imports only folders before it. config/
 * comes after every feature it compiles, server/ after config/, the process wiring on top.
 */
const LAYERS = [
  'lib',
  'observability',
  'upstream',
  'proxy',
  'strategy',
  'routing',
  'defer',
  'multiplex',
  'tunnel',
  'tcp',
  'config',
  'server',
  'cluster',
  'compat',
  'admin',
];

const IMPORT = /^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gm;

type Graph = Map<string, Map<string, string[]>>;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** `src/defer/accept.ts` → `defer`; files at the top of src/ (errors.ts, main.ts) have none. */
const folderOf = (file: string): string | null => {
  const parts = relative(SRC, file).split(sep);
  return parts.length > 1 ? parts[0] : null;
};

/** Every relative import of a file, resolved. */
const importsOf = (file: string): string[] =>
  [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => resolve(dirname(file), m[1]));

/** folder → imported folder → the file-level edges that make it. */
function folderGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of tsFiles(SRC)) {
    const from = folderOf(file);
    for (const target of importsOf(file)) {
      const to = folderOf(target);
      if (from === null || to === null || from === to) continue;
      const out = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, out);
      const edges = out.get(to) ?? [];
      out.set(to, edges);
      edges.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
    }
  }
  return graph;
}

/** Strongly connected components with more than one folder (Tarjan). */
function circles(graph: ReadonlyMap<string, ReadonlyMap<string, unknown>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

test('the circle finder finds a circle, and none in a layered graph', () => {
  const g = (edges: Record<string, string[]>) =>
    new Map(Object.entries(edges).map(([k, v]) => [k, new Map(v.map((t) => [t, []]))]));
  assert.deepEqual(circles(g({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] })), [['a', 'b', 'c']]);
  assert.deepEqual(circles(g({ a: ['b', 'c'], b: ['c'], d: ['a'] })), []);
});

test('no import circle across src/ folders', () => {
  const graph = folderGraph();
  assert.ok(graph.size >= 8, 'the walk found the folders and their imports');
  const found = circles(graph);
  const evidence = found.flatMap((c) =>
    c.flatMap((a) => c.flatMap((b) => graph.get(a)?.get(b)?.map((e) => `  ${e}`) ?? [])),
  );
  assert.deepEqual(found, [], `folders import each other in a circle:\n${evidence.join('\n')}`);
});

test('each folder imports only the layers below it: config/ above the features, server/ above config/', () => {
  const graph = folderGraph();
  const unknown = [...graph.keys(), ...[...graph.values()].flatMap((m) => [...m.keys()])].filter(
    (f) => !LAYERS.includes(f),
  );
  assert.deepEqual([...new Set(unknown)], [], 'every folder of src/ has its place in LAYERS');
  const upward = [...graph].flatMap(([from, out]) =>
    [...out].filter(([to]) => LAYERS.indexOf(to) > LAYERS.indexOf(from)).flatMap(([, edges]) => edges),
  );
  assert.deepEqual(upward, [], 'imports of a higher layer');
});

test('the files at the top of src/ are leaves (errors.ts, deadline.ts …): they import no folder; main.ts is the top', () => {
  const wrong = tsFiles(SRC)
    .filter((f) => folderOf(f) === null && !f.endsWith(`${sep}main.ts`))
    .flatMap((f) => importsOf(f).filter((t) => folderOf(t) !== null).map((t) => `${relative(SRC, f)} -> ${relative(SRC, t)}`));
  assert.deepEqual(wrong, []);
});
