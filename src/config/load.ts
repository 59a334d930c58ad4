/**
 * Loading: YAML file → `${VAR}` interpolation → MANIFOLD_* env overrides → flag overrides →
 * schema validation with defaults → compile (cross-references). Every problem is reported,
 * not just the first, and each names where the bad value came from: `file:line: key.path: …`,
 * `env MANIFOLD_X: key.path: …` or `flag --x: key.path: …`.
 */
import { AJV_CODE } from '../lib/ajv.ts';
import { isTargetUrl } from '../upstream/target-url.ts';
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { type CompiledConfig, compile } from './compile.ts';
import { certificateProblems } from './listeners.ts';
import { type Config, configSchema } from './schema.ts';

export type KeyPath = Array<string | number>;

export interface ConfigProblem {
  /** Where the value came from: a file (with line), an env variable or a flag. */
  source: string;
  /** `routes[2].proxy.pool` style. */
  path: string;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(`invalid configuration:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.source}: ${p.path || '(root)'}: ${p.message}`;
}

export function formatPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}

/** An override applied on top of the file, with the name of where it came from. */
export interface Override {
  path: KeyPath;
  value: unknown;
  source: string;
}

export interface LoadOptions {
  /** Process environment used for `${VAR}` and MANIFOLD_* overrides. */
  env?: NodeJS.ProcessEnv;
  /** Overrides from command-line flags, applied last. */
  overrides?: Override[];
}

export interface LoadedConfig {
  file: string;
  config: Config;
  compiled: CompiledConfig;
}

const TOP_LEVEL_KEYS = new Set(Object.keys((configSchema as { properties: object }).properties));
const INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** MANIFOLD_LISTEN__PORT=8081 → listen.port = 8081. Only top-level config keys count, so
 * MANIFOLD_CONFIG or MANIFOLD_ADMIN_TOKEN (used by `${…}`) are not overrides. */
export function envOverrides(env: NodeJS.ProcessEnv): Override[] {
  const out: Override[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('MANIFOLD_') || raw === undefined) continue;
    const path: KeyPath = name
      .slice('MANIFOLD_'.length)
      .toLowerCase()
      .split('__')
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    if (!TOP_LEVEL_KEYS.has(String(path[0]))) continue;
    out.push({ path, value: scalar(raw), source: `env ${name}` });
  }
  return out;
}

/** Env and flag values are read as YAML scalars, so `8081` is a number and `[a, b]` a list. */
export function scalar(raw: string): unknown {
  try {
    return parseDocument(raw).toJS();
  } catch {
    return raw;
  }
}

function setIn(target: Record<string, unknown>, path: KeyPath, value: unknown): void {
  let cur: Record<string | number, unknown> = target;
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i];
    let next = cur[seg];
    if (next === null || typeof next !== 'object') {
      next = typeof path[i + 1] === 'number' ? [] : {};
      cur[seg] = next;
    }
    cur = next as Record<string | number, unknown>;
  }
  cur[path[path.length - 1]] = value;
}

function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: KeyPath, missing: KeyPath[]): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    return value.replace(INTERPOLATION, (_m, name: string, dflt: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (dflt !== undefined) return dflt;
      missing.push([...path, `\${${name}}`]);
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], missing));
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own keys: a `__proto__` key stays a key (refused by the name
    // pattern, issue 15) instead of becoming the object's prototype.
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, env, [...path, k], missing)]),
    );
  }
  return value;
}

const ajv = new Ajv({
  allErrors: true,
  useDefaults: true,
  strict: true,
  verbose: true,
  allowUnionTypes: true,
  strictRequired: false,
  code: AJV_CODE,
});
ajv.addKeyword({ keyword: 'errorMessage', schemaType: 'string' });
ajv.addFormat('target-url', isTargetUrl);
const validate = ajv.compile(configSchema);

/**
 * Schema problems of a config built in memory rather than read from a file (the Manager's
 * config with a `state_file` entry applied), `key.path: message` each; fills in defaults.
 */
export function shapeProblems(config: unknown): string[] {
  if (validate(config)) return [];
  return schemaProblems(validate.errors ?? []).map((p) => `${formatPath(p.path)}: ${p.message}`);
}

function schemaProblems(errors: ErrorObject[]): Array<{ path: KeyPath; message: string }> {
  const out: Array<{ path: KeyPath; message: string }> = [];
  // An anyOf/oneOf with its own errorMessage speaks for every error under the same value.
  const summarized = new Set<string>();
  for (const e of errors) {
    const custom = (e.parentSchema as { errorMessage?: string } | undefined)?.errorMessage;
    if ((e.keyword === 'anyOf' || e.keyword === 'oneOf') && custom) summarized.add(e.instancePath);
  }
  const seen = new Set<string>();
  for (const e of errors) {
    const path: KeyPath = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    let message: string;
    // An unknown key of the very object whose anyOf is summarized is still named: `snis:` is a
    // typo of `sni`, not only a route without `sni` (errors inside the anyOf's branches stay quiet).
    const ownUnknownKey =
      e.keyword === 'additionalProperties' && (e.parentSchema as { errorMessage?: string } | undefined)?.errorMessage !== undefined;
    if (summarized.has(e.instancePath) && !ownUnknownKey) {
      if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf') continue;
      message = (e.parentSchema as { errorMessage: string }).errorMessage;
    } else if ([...summarized].some((p) => e.instancePath.startsWith(`${p}/`))) {
      continue;
    } else if (e.keyword === 'additionalProperties') {
      path.push((e.params as { additionalProperty: string }).additionalProperty);
      message = 'unknown key';
    } else if (e.keyword === 'required') {
      path.push((e.params as { missingProperty: string }).missingProperty);
      message = 'is required';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    } else if (e.keyword === 'propertyNames') {
      message = 'invalid name (letters, digits, . _ - only)';
    } else if (e.keyword === 'format') {
      message = 'must be an http(s) URL without query, fragment or credentials';
    } else if (e.keyword === 'if' || e.keyword === 'pattern' || e.keyword === 'const') {
      message =
        e.keyword === 'pattern' ? `must match ${(e.params as { pattern: string }).pattern}` : `${e.message}`;
    } else {
      message = e.message ?? 'is invalid';
    }
    const key = `${formatPath(path)}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path, message });
  }
  return out;
}

/** Locates a key path in the YAML document for a `file:line` source. */
function lineOf(doc: Document, counter: LineCounter, path: KeyPath): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
      if (!pair) break;
      offset = (pair.key as YamlNode).range?.[0];
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0];
      node = item;
    } else break;
  }
  if (offset === undefined) offset = (doc.contents as YamlNode | null)?.range?.[0];
  return offset === undefined ? undefined : counter.linePos(offset).line;
}

/** Builds a config from YAML text. Throws ConfigError listing every problem. */
export function loadConfigText(text: string, file: string, options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        source: `${file}:${e.linePos?.[0]?.line ?? '?'}`,
        path: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
      })),
    );
  }
  const fileSource = (path: KeyPath) => {
    const line = lineOf(doc, counter, path);
    return line === undefined ? file : `${file}:${line}`;
  };

  let raw: unknown = doc.toJS() ?? {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ source: file, path: '', message: 'must be a mapping of keys' }]);
  }
  const missing: KeyPath[] = [];
  raw = interpolate(raw, env, [], missing);
  const problems: ConfigProblem[] = missing.map((p) => ({
    source: fileSource(p.slice(0, -1)),
    path: formatPath(p.slice(0, -1)),
    message: `environment variable ${String(p[p.length - 1])} is not set (use \${NAME:-default} for a default)`,
  }));

  const overrides = [...envOverrides(env), ...(options.overrides ?? [])];
  const fileHasListen = (raw as Record<string, unknown> | null)?.listen !== undefined;
  for (const o of overrides) setIn(raw as Record<string, unknown>, o.path, o.value);
  const sourceOf = (path: KeyPath): string => {
    const p = formatPath(path);
    // The last override that covers this path (or a parent of it) is where the value came from.
    for (let i = overrides.length - 1; i >= 0; i--) {
      const o = formatPath(overrides[i].path);
      if (p === o || p.startsWith(`${o}.`) || p.startsWith(`${o}[`)) return overrides[i].source;
    }
    return fileSource(path);
  };

  // Issue 14: `listen` is the one-listener shorthand of `listeners`; both would be two answers.
  const top = raw as Record<string, unknown>;
  if (top.listen !== undefined && top.listeners !== undefined) {
    // `listen` that only a flag or env variable brought (`--port`, `--host`): name that, not the file.
    const brought = fileHasListen ? undefined : overrides.findLast((o) => o.path[0] === 'listen');
    problems.push(
      brought === undefined
        ? { source: sourceOf(['listen']), path: 'listen', message: 'give either listen (one listener) or listeners, not both' }
        : {
            source: brought.source,
            path: formatPath(brought.path),
            message: `sets the one-listener shorthand, but this config has listeners: set listeners[N].${String(brought.path[1] ?? 'port')} in the file instead`,
          },
    );
  }
  if (!validate(raw)) {
    for (const p of schemaProblems(validate.errors ?? [])) {
      problems.push({ source: sourceOf(p.path), path: formatPath(p.path), message: p.message });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const config = raw as Config;
  // `listen` mirrors the first listener, for what names the gateway by its port (queue.instance).
  if (config.listeners !== undefined) config.listen = { host: config.listeners[0].host, port: config.listeners[0].port };
  const result = compile(config);
  // Certificate files are read only once the shape is right (issue 14).
  if (result.problems.length === 0) result.problems.push(...certificateProblems(config));
  if (result.problems.length > 0) {
    throw new ConfigError(
      result.problems.map((p) => ({
        source: sourceOf(p.path),
        path: formatPath(p.path),
        message: p.message,
      })),
    );
  }
  return { file, config, compiled: result.compiled! };
}

export function loadConfigFile(file: string, options: LoadOptions = {}): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ source: file, path: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  return loadConfigText(text, file, options);
}
