/**
 * balancing-reverse-proxy's command line (issue 13), translated into Manifold config. The seed
 * (KarelKubat/balancing-reverse-proxy, `balancing-reverse-proxy.go`) parses Go `flag`s after
 * KarelKubat/flagnames has rewritten unique prefixes of their names, so all of these work:
 * `-endpoints=a,b`, `--endpoints a,b`, `-e a,b`, `-e=a,b`, `-f`, `-fanout false`,
 * `-log-f FILE`, `---stop-after=5s`. This file reproduces that grammar (and its error texts:
 * usage and exit 1 for anything wrong) and maps every flag onto Manifold's keys; the proxying
 * is Manifold's own machinery.
 *
 * The contract of quick mode, shared with Manifold's own `--endpoints` (quickOverrides): one
 * pool `endpoints` and one catch-all route; one after another (failover, listed order) or all
 * at once (`-fanout`); `-terminal-responses` is the route's `terminal`; no accepted answer →
 * 500 with an empty body (`proxy.exhausted`); in sequence a POST moves on to the next endpoint
 * after an answer that is not accepted (`retry_non_idempotent`: choosing quick mode is that
 * consent, as the seed does it), its body replayed intact (the seed loses it on the way).
 */
import { parseGoBool, parseGoDuration } from '../lib/go.ts';
import { targetSpec } from '../upstream/spec.ts';
import type { Override } from '../config/load.ts';
import { goDuration } from '../server/text-log.ts';

export const BRP_SOURCE = 'balancing-reverse-proxy command line';

/** One process, no admin API, the seed's log prefix; env `MANIFOLD_*` can change any of it. */
export const BRP_BASE = `workers: 0
admin: { enabled: false }
log: { text: { prefix: balancing-reverse-proxy } }
`;

type Kind = 'string' | 'bool' | 'duration';

interface FlagDef {
  readonly name: string;
  readonly kind: Kind;
  /** Go's `(default …)` text in the usage; empty = the zero value, not shown. */
  readonly shown: string;
  /** The word after the flag in the usage (Go: the type, or a back-quoted word of the text). */
  readonly arg: string;
  readonly usage: string;
}

/** The seed's flags, in Go's usage order (sorted by name). */
export const BRP_FLAGS: readonly FlagDef[] = Object.freeze([
  { name: 'address', kind: 'string', shown: '":8080"', arg: 'string', usage: 'host:port to listen on (":8080": every IPv4 address)' },
  { name: 'endpoints', kind: 'string', shown: '', arg: 'string', usage: "comma-separated endpoint URLs, e.g. 'https://one.example/apis,https://two.example/public-apis'" },
  { name: 'fanout', kind: 'bool', shown: '', arg: '', usage: 'send each request to every endpoint at once (else: one after another)' },
  { name: 'log-date', kind: 'bool', shown: 'true', arg: '', usage: 'write the date on log lines' },
  { name: 'log-file', kind: 'string', shown: '"stdout"', arg: 'stdout', usage: 'where log lines go: stdout, stderr, or a file appended to' },
  { name: 'log-msec', kind: 'bool', shown: '', arg: '', usage: 'write microseconds after the time on log lines (implies -log-time)' },
  { name: 'log-prefix', kind: 'string', shown: '"balancing-reverse-proxy"', arg: 'string', usage: 'first word of every log line' },
  { name: 'log-time', kind: 'bool', shown: 'true', arg: '', usage: 'write the time on log lines' },
  { name: 'log-utc', kind: 'bool', shown: '', arg: '', usage: 'date and time in UTC instead of local time' },
  { name: 'stop-after', kind: 'duration', shown: '', arg: 'duration', usage: 'stop after this long, e.g. 5s (0: run until stopped)' },
  { name: 'terminal-responses', kind: 'string', shown: '"100,200,300,400"', arg: 'string', usage: "statuses whose answer is taken: hundreds (400 = 400-499), and Manifold's codes (429) and ranges (500-503)" },
] as const);

const NAMES = ['help', ...BRP_FLAGS.map((f) => f.name)].sort();
const FLAG = new Map(BRP_FLAGS.map((f) => [f.name, f]));
const isBool = (name: string) => name === 'help' || FLAG.get(name)?.kind === 'bool';

/** Long flags of Manifold's own command line (src/main.ts): spelled so, they stay Manifold's. */
const MANIFOLD_LONG = new Set([
  'config', 'port', 'host', 'workers', 'log-level', 'log-file', 'endpoints', 'fanout',
  'terminal-responses', 'defer-to', 'multiplex', 'allow', 'pool-api', 'admin-host',
  'admin-port', 'admin-token', 'help', 'version',
]);
const MANIFOLD_SHORT = new Set(['c', 'p', 'w', 'e', 'f', 't', 'h', 'v']);

const candidates = (given: string) => NAMES.filter((n) => n.startsWith(given));

/**
 * Whether `argv` is written in balancing-reverse-proxy's style rather than Manifold's: some
 * flag (before `--`) is one only the seed's grammar reads — a
 * single-dash long name or `-x=value` (`-endpoints`, `-e=URL`, `-log-file`), three dashes, a
 * shortened long name (`--end`), a seed-only flag (`-s`, `--stop-after`, `--log-msec`), or a
 * single-dash word Manifold cannot read (`-nope`). Manifold's own spellings (`--endpoints`,
 * `-e URL`, `--log-file`, `-p8080`) stay Manifold's.
 */
export function looksLikeBrp(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (!arg.startsWith('-') || arg === '-') continue;
    const eq = arg.indexOf('=');
    const head = eq === -1 ? arg : arg.slice(0, eq);
    const dashes = head.length - head.replace(/^-+/, '').length;
    const name = head.slice(dashes);
    if (name === '') continue;
    // `-nope`: Manifold's parser reads it as short flags and fails; the seed's names it.
    if (dashes === 1 && name.length > 1 && !MANIFOLD_SHORT.has(name[0]!)) return true;
    if (candidates(name).length === 0) continue;
    if (dashes >= 3) return true;
    if (dashes === 2 && !MANIFOLD_LONG.has(name)) return true;
    if (dashes === 1 && (name.length > 1 || eq !== -1 || !MANIFOLD_SHORT.has(name))) return true;
  }
  return false;
}

/**
 * flagnames' rewriting: each flag that is a unique prefix of a known name (any number of
 * dashes) becomes `--name` or `--name=value`, taking the next argument as its value unless it
 * starts with `-` (or, for a boolean, is not `true`/`false`). An ambiguous prefix is reported
 * and left as it is, for the parser to refuse.
 */
function rewrite(argv: readonly string[], errors: string[]): string[] {
  const out: string[] = [];
  let flags = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (flags && (!arg.startsWith('-') || arg === '--')) flags = false;
    if (!flags) {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const given = (eq === -1 ? arg : arg.slice(0, eq)).replace(/^-+/, '');
    const found = candidates(given);
    if (found.length === 0) {
      out.push(arg);
      continue;
    }
    if (found.length > 1) {
      out.push(arg);
      errors.push(`flag parsing error: ${arg} can mean multiple flags ${found.map((n) => `-${n}`).join(',')}`);
      flags = false;
      continue;
    }
    const flag = `--${found[0]}`;
    const next = argv[i + 1];
    if (eq !== -1) out.push(`${flag}=${arg.slice(eq + 1)}`);
    else if (next === undefined || next.startsWith('-') || (isBool(found[0]!) && next !== 'true' && next !== 'false'))
      out.push(flag);
    else {
      out.push(`${flag}=${next}`);
      i++;
    }
  }
  return out;
}

/** The usage the seed prints (Go's flag.PrintDefaults layout), naming Manifold. */
export function brpUsage(): string {
  let out =
    '\nUsage: manifold -endpoints=URLs [flags]   (balancing-reverse-proxy\'s command line; Manifold\'s own: manifold --help)\n' +
    'Flags may be shortened to a unique prefix, e.g. "-e" for "-endpoints" ("-log" could mean several, "-log-f" is one),\n' +
    'with one dash or two, as -flag=value or -flag value; booleans: -flag, -flag=false, -flag false.\n' +
    'Available flags are:\n\n';
  for (const f of BRP_FLAGS) {
    out += `  -${f.name}${f.arg ? ` ${f.arg}` : ''}\n    \t${f.usage}`;
    out += f.shown ? ` (default ${f.shown})\n` : '\n';
  }
  return out;
}

export type BrpValues = Partial<Record<string, string | boolean | number>>;

/** Go `flag.Parse` over the rewritten arguments: the values set (durations in ns), or the error. */
function goParse(args: readonly string[]): { values: BrpValues; positionals: string[] } | { error: string | null } {
  const values: BrpValues = {};
  let i = 0;
  while (i < args.length) {
    const arg = args[i]!;
    if (arg.length < 2 || arg[0] !== '-') break;
    const dashes = arg[1] === '-' ? 2 : 1;
    i++;
    if (arg === '--') break;
    let name = arg.slice(dashes);
    if (name === '' || name[0] === '-' || name[0] === '=') return { error: `bad flag syntax: ${arg}` };
    const eq = name.indexOf('=');
    let value = eq === -1 ? undefined : name.slice(eq + 1);
    if (eq !== -1) name = name.slice(0, eq);
    const def = FLAG.get(name);
    if (def === undefined) {
      if (name === 'help' || name === 'h') return { error: null };
      return { error: `flag provided but not defined: -${name}` };
    }
    if (def.kind === 'bool') {
      const b = value === undefined ? true : parseGoBool(value);
      if (b === null) return { error: `invalid boolean value "${value}" for -${name}: parse error` };
      values[name] = b;
      continue;
    }
    if (value === undefined) {
      if (i >= args.length) return { error: `flag needs an argument: -${name}` };
      value = args[i++]!;
    }
    if (def.kind === 'duration') {
      const ns = parseGoDuration(value);
      if (ns === null) return { error: `invalid value "${value}" for flag -${name}: parse error` };
      values[name] = ns;
    } else values[name] = value;
  }
  return { values, positionals: args.slice(i) };
}

/** Where `-log-file` sends the log. */
export type LogTarget = { kind: 'stdout' } | { kind: 'stderr' } | { kind: 'file'; path: string };

export interface BrpStart {
  readonly overrides: Override[];
  readonly logTo: LogTarget;
  /** Printed on stdout when `-stop-after` ends the process (the seed's words), null without it. */
  readonly stopLine: string | null;
  /** The seed's start-up log lines: `configuring endpoint N: "URL"`, `starting on: ":8080"`. */
  readonly startLines: string[];
}

/** The seed's command line → Manifold overrides; `{error}` is what to print before exiting 1. */
export function parseBrp(argv: readonly string[]): BrpStart | { error: string } {
  const errors: string[] = [];
  const parsed = goParse(rewrite(argv, errors));
  const fail = (message: string | null) => ({
    error: [...errors, ...(message === null ? [] : [message])].map((l) => `${l}\n`).join('') + brpUsage(),
  });
  if ('error' in parsed) return fail(parsed.error);
  const v = parsed.values;
  const endpoints = (v.endpoints as string | undefined) ?? '';
  const terminal = (v['terminal-responses'] as string | undefined) ?? '100,200,300,400';
  if (endpoints === '' || terminal === '' || parsed.positionals.length > 0) return fail(null);
  const overrides = quickOverrides(endpoints, v.fanout === true, v['terminal-responses'] as string | undefined, '-');
  const address = (v.address as string | undefined) ?? ':8080';
  if (v.address !== undefined) {
    const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(address);
    if (m === null) return { error: `manifold: flag -address: "${address}" is not host:port (e.g. :8080, 127.0.0.1:8080, [::1]:8080)\n` };
    const port = /^\d+$/.test(m[3]!) ? Number(m[3]) : m[3];
    overrides.push(
      { path: ['listen', 'host'], value: m[1] ?? (m[2] || '0.0.0.0'), source: 'flag -address' },
      { path: ['listen', 'port'], value: port, source: 'flag -address' },
    );
  }
  const logKeys: Array<[string, string]> = [
    ['log-prefix', 'prefix'],
    ['log-date', 'date'],
    ['log-time', 'time'],
    ['log-msec', 'microseconds'],
    ['log-utc', 'utc'],
  ];
  for (const [flag, key] of logKeys)
    if (v[flag] !== undefined) overrides.push({ path: ['log', 'text', key], value: v[flag], source: `flag -${flag}` });
  const logFlags = [...logKeys.map(([flag]) => flag), 'log-file'].filter((f) => v[f] !== undefined);
  if (logFlags.length > 0) overrides.push({ path: ['log', 'format'], value: 'text', source: `flag -${logFlags[0]}` });
  const file = (v['log-file'] as string | undefined) ?? 'stdout';
  const logTo: LogTarget =
    file === '' || file === 'stdout' ? { kind: 'stdout' } : file === 'stderr' ? { kind: 'stderr' } : { kind: 'file', path: file };
  const stopNs = (v['stop-after'] as number | undefined) ?? 0;
  if (stopNs > 0)
    overrides.push({ path: ['shutdown', 'after'], value: Math.max(1, Math.round(stopNs / 1e6)), source: 'flag -stop-after' });
  return {
    overrides,
    logTo,
    stopLine: stopNs > 0 ? `stopping balancing-reverse-proxy after ${goDuration(stopNs)}` : null,
    startLines: [
      ...endpoints.split(',').map((url, i) => `configuring endpoint ${i}: ${JSON.stringify(url)}`),
      `starting on: ${JSON.stringify(address)}`,
    ],
  };
}

/**
 * Quick mode's pool and route (issue 4), for both command lines: Manifold's `--endpoints`
 * (`dash` `--`) and the seed's (`-`); every problem names the flag it came from.
 */
export function quickOverrides(endpointList: string, fanout: boolean, terminal: string | undefined, dash: '-' | '--'): Override[] {
  const endpoints = endpointList
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const source = `flag ${dash}endpoints`;
  // The seed's README names one server several times (more tries at a flaky one): a repeat is a
  // target of its own, `endpoint-<index>`, where a config file would refuse the duplicate.
  const seen = new Set<string>();
  const targets = endpoints.map((url, i) => {
    let id: string;
    try {
      id = targetSpec(url).id;
    } catch {
      return url; // not a URL: the config check names it
    }
    if (!seen.has(id)) {
      seen.add(id);
      return url;
    }
    return { url, id: `endpoint-${i}` };
  });
  const overrides: Override[] = [
    { path: ['pools', 'endpoints', 'targets'], value: targets, source },
    {
      path: ['routes'],
      value: [
        {
          id: 'quick',
          match: {},
          proxy: {
            pool: 'endpoints',
            host: 'target',
            strategy: fanout ? 'fanout' : 'failover',
            order: 'listed',
            // The seed's answer when no endpoint gives a usable one (issue 13).
            exhausted: { status: 500, body: '' },
            ...(fanout
              ? {}
              : { max_attempts: Math.max(1, Math.min(10, endpoints.length)), retry_non_idempotent: true }),
          },
        },
      ],
      source,
    },
  ];
  if (terminal !== undefined) {
    overrides.push({
      path: ['routes', 0, 'proxy', 'terminal'],
      value: terminal.split(',').map((s) => (/^\s*\d+\s*$/.test(s) ? Number(s) : s.trim())),
      source: `flag ${dash}terminal-responses`,
    });
  }
  return overrides;
}
