/**
 * Layer7Router's command line (issue 17), translated into Manifold config. The seed
 * (boxymoron/Layer7Router, `Layer7Router.java` with its options in `Common.java`) parses args4j
 * options, single dash and `-name value` (`bin/router.sh`: `-backend_host 127.0.0.1
 * -backend_port 7180 -client_base_ip 192.168.1 -client_start_ip 215 -client_end_ip 255`). This
 * file reads that grammar with args4j's error texts and maps the flags onto one `mode: tcp`
 * listener; the proxying is Manifold's own machinery (src/tcp/, README "Coming from
 * Layer7Router"):
 *
 * - `-listen_port` (7080) → a tcp listener on 0.0.0.0 whose `default_pool` takes everything;
 * - `-backend_host` (192.168.1.150), `-backend_port` (80) → that pool's one target;
 * - `-client_base_ip` (127.0.0), `-client_start_ip`, `-client_end_ip` (1) → the pool's
 *   `local_addresses`, base.start-base.end — when one of the three is given (the seed binds
 *   127.0.0.1 by default, which no non-loopback backend can be reached from);
 * - `-num_threads` / `-t` (2) → `workers`; the live line every 2 s, as the seed prints it.
 *
 * Deliberately not the seed's: its Host-named dialling (an open forward proxy) and its
 * `CONNECT` tunnels to anywhere. Every connection goes to the backend; a `CONNECT` is refused
 * (`tcp.connect: refuse`, 405).
 *
 * A bad command line is what args4j's `parseArgument` throws in the seed's `main` (which
 * declares `throws Exception`: the JVM prints it and exits 1): the same message, then the
 * usage, and exit 1.
 */
import type { Override } from '../config/load.ts';

export const L7R_SOURCE = 'Layer7Router command line';

/** The seed's live line comes every 2 s (`Thread.sleep(2000)` in its main loop). */
export const L7R_STATS_INTERVAL_MS = 2000;

/** What the flags fill in: the seed's defaults, one tcp listener, its backend as the default pool. */
export const L7R_BASE = `admin: { enabled: false }
log: { level: info, access: false }
workers: 2
pools:
  backend: { targets: ["http://192.168.1.150:80"] }
listeners:
  - name: layer7router
    host: 0.0.0.0
    port: 7080
    mode: tcp
    tcp: { default_pool: backend, connect: refuse }
routes: []
`;

type Kind = 'int' | 'string' | 'double' | 'boolean';

interface FlagDef {
  readonly name: string;
  readonly kind: Kind;
  readonly usage: string;
  /** Why Manifold takes it and does nothing with it; absent = mapped. */
  readonly ignored?: string;
}

const LOADGEN = "a load generator's option (Layer7RouterFrontend), not the router's";

/** The seed's options (Common.java `Options`), in its order. */
export const L7R_FLAGS: readonly FlagDef[] = Object.freeze([
  { name: 'listen_port', kind: 'int', usage: 'port' },
  { name: 'backend_host', kind: 'string', usage: 'host' },
  { name: 'backend_port', kind: 'int', usage: 'port' },
  { name: 'client_base_ip', kind: 'string', usage: 'first three octets of ip address' },
  { name: 'client_start_ip', kind: 'int', usage: 'last ip address octet (int between 1 and 255)' },
  { name: 'client_end_ip', kind: 'int', usage: 'last ip address octet (int between 1 and 255)' },
  { name: 'sleep_ms', kind: 'int', usage: 'sleep ms', ignored: LOADGEN },
  { name: 'connections_per_ip', kind: 'int', usage: 'connections per ip (int)', ignored: LOADGEN },
  { name: 'damping_factor', kind: 'double', usage: 'damping factor  (double between 0.01 and 1.0)', ignored: LOADGEN },
  { name: 'target_util', kind: 'double', usage: 'target utilization  (double between 0.01 and 1.0)', ignored: LOADGEN },
  { name: 'keepalive', kind: 'boolean', usage: 'use keep-alive  (boolean)', ignored: LOADGEN },
  {
    name: 'buffer_size',
    kind: 'int',
    usage: 'use powers of two (default 1024)',
    ignored: 'Node sizes its socket buffers; backpressure bounds what each connection holds',
  },
  { name: 'request_bytes', kind: 'int', usage: 'request size in bytes (int) (defaults to -buffer_size)', ignored: LOADGEN },
  { name: 'num_threads', kind: 'int', usage: 'number of worker threads (default 2)' },
  { name: 'regulate', kind: 'boolean', usage: 'regulate front-end throughput (boolean default false)', ignored: LOADGEN },
  { name: 'disableStacktraces', kind: 'boolean', usage: 'disable stracktraces (boolean default false)', ignored: LOADGEN },
  { name: 'flush', kind: 'boolean', usage: 'flush writes (boolean default false)', ignored: 'every write is sent at once already (no Nagle delay)' },
  { name: 'backlog', kind: 'int', usage: 'backlog (default 64K)', ignored: "the accept queue is Node's (511), capped by the kernel's somaxconn" },
] as const);

const ALIASES: Readonly<Record<string, string>> = { t: 'num_threads' };
const FLAG = new Map(L7R_FLAGS.map((f) => [f.name, f]));

/**
 * Whether `argv` is Layer7Router's: one of its option names, single dash, before `--`.
 * Its alias `-t` alone is not enough (Manifold's `-t` is `--terminal-responses`).
 */
export function looksLikeLayer7Router(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (arg.startsWith('-') && !arg.startsWith('--') && FLAG.has(arg.slice(1))) return true;
  }
  return false;
}

/** args4j's `printUsage` shape: ` -name VAL : text`, the colons aligned. */
export function l7rUsage(): string {
  const meta = (f: FlagDef) => (f.kind === 'boolean' ? '' : f.kind === 'string' ? ' VAL' : ' N');
  const heads = L7R_FLAGS.map((f) => (f.name === 'num_threads' ? ` -num_threads (-t)${meta(f)}` : ` -${f.name}${meta(f)}`));
  const width = Math.max(...heads.map((h) => h.length));
  return `${L7R_FLAGS.map((f, i) => `${heads[i].padEnd(width)} : ${f.usage}`).join('\n')}\n`;
}

export interface L7rStart {
  overrides: Override[];
  /** Logged first: the seed's `Options [...]` line, then a note per flag taken and ignored. */
  startLines: string[];
}

/** Java's Integer.parseInt: an optional sign, decimal digits, within 32 bits. */
function javaInt(text: string): number | null {
  if (!/^[+-]?\d+$/.test(text)) return null;
  const n = Number(text);
  return n >= -2147483648 && n <= 2147483647 ? n : null;
}

/** Parses the seed's command line; `error` is the whole text to print (message and usage). */
export function parseLayer7Router(argv: readonly string[]): L7rStart | { error: string } {
  const values = new Map<string, string | number | boolean>();
  const given: string[] = [];
  const failWith = (message: string) => ({ error: `${message}\n${l7rUsage()}` });
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const name = arg.startsWith('-') ? (ALIASES[arg.slice(1)] ?? arg.slice(1)) : null;
    const flag = name === null ? undefined : FLAG.get(name);
    // args4j: an argument that is no option, with no arguments declared, is refused.
    if (name === null) return failWith(`No argument is allowed: ${arg}`);
    if (flag === undefined) return failWith(`"${arg}" is not a valid option`);
    given.push(flag.name);
    if (flag.kind === 'boolean') {
      values.set(flag.name, true);
      continue;
    }
    const operand = argv[++i];
    if (operand === undefined) return failWith(`Option "${arg}" takes an operand`);
    if (flag.kind === 'string') {
      values.set(flag.name, operand);
      continue;
    }
    const n = flag.kind === 'int' ? javaInt(operand) : /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(operand) ? Number(operand) : null;
    if (n === null) return failWith(`"${operand}" is not a valid value for "${arg}"`);
    values.set(flag.name, n);
  }
  const get = <T extends string | number>(name: string, dflt: T): T => (values.get(name) as T | undefined) ?? dflt;
  const source = (name: string) => `flag -${name}`;
  const overrides: Override[] = [];
  if (values.has('listen_port'))
    overrides.push({ path: ['listeners', 0, 'port'], value: get('listen_port', 7080), source: source('listen_port') });
  if (values.has('backend_host') || values.has('backend_port')) {
    const host = get('backend_host', '192.168.1.150');
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${get('backend_port', 80)}`;
    overrides.push({
      path: ['pools', 'backend', 'targets'],
      value: [url],
      source: values.has('backend_host') ? source('backend_host') : source('backend_port'),
    });
  }
  const clientFlags = ['client_base_ip', 'client_start_ip', 'client_end_ip'].filter((f) => values.has(f));
  if (clientFlags.length > 0) {
    const base = get('client_base_ip', '127.0.0');
    const start = get('client_start_ip', 1);
    const end = get('client_end_ip', 1);
    for (const [name, v] of [['client_start_ip', start], ['client_end_ip', end]] as const)
      if (v < 0 || v > 255) return failWith(`"${v}" is not a valid value for "-${name}" (an octet: 0 to 255)`);
    if (end < start) return failWith(`"-client_end_ip ${end}" is below "-client_start_ip ${start}": no source address`);
    overrides.push({
      path: ['pools', 'backend', 'local_addresses'],
      value: start === end ? `${base}.${start}` : `${base}.${start}-${base}.${end}`,
      source: `flags ${clientFlags.map((f) => `-${f}`).join(' ')}`,
    });
  }
  if (values.has('num_threads'))
    overrides.push({ path: ['workers'], value: get('num_threads', 2), source: source('num_threads') });
  // The seed's first line, with the values it runs with (Common.java `Options.toString`).
  const opt = (name: string, dflt: string | number | boolean | null) => `${name}=${values.has(name) ? values.get(name) : dflt}`;
  const bufferSize = get('buffer_size', 1024);
  const startLines = [
    `Options [${[
      opt('listen_port', 7080), opt('backend_host', '192.168.1.150'), opt('backend_port', 80),
      opt('client_base_ip', '127.0.0'), opt('client_start_ip', 1), opt('client_end_ip', 1),
      opt('sleep_ms', null), opt('connections_per_ip', 20000), opt('request_bytes', bufferSize),
      opt('damping_factor', 0.1), opt('target_util', 0.1), opt('keepalive', false), opt('buffer_size', 1024),
      opt('num_threads', 2), opt('regulate', false), opt('disableStacktraces', false), opt('flush', false),
      opt('backlog', 65536),
    ].join(', ')}]`,
  ];
  for (const name of new Set(given)) {
    const why = FLAG.get(name)?.ignored;
    if (why !== undefined) startLines.push(`-${name} is accepted and ignored: ${why}`);
  }
  return { overrides, startLines };
}
