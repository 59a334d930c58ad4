/**
 * Listeners (issue 14, item 1): `listeners:` as served, or the one listener of the `listen`
 * shorthand, each with its name; and the checks that need more than one listener's shape
 * (names, ports, `match.listener`) or the certificate files (lib/tls.ts).
 */
import type { CompileProblem } from '../lib/problem.ts';
import { CertificateError, readCa, readPair } from '../lib/tls.ts';
import type { Config, ListenerConfig } from './schema.ts';

export interface NamedListener extends ListenerConfig {
  name: string;
}

/** The name of the `listen` shorthand's listener, for `match.listener`. */
export const DEFAULT_LISTENER = 'default';

/** Every listener to bind, in config order, each named. */
export function listenersOf(config: Pick<Config, 'listen' | 'listeners'>): NamedListener[] {
  if (config.listeners === undefined)
    return [{ name: DEFAULT_LISTENER, host: config.listen.host, port: config.listen.port, mode: 'http', http2: false }];
  return config.listeners.map((l, i) => ({ ...l, name: l.name ?? `listener-${i}` }));
}

/** Duplicate names and ports, and `match.listener` naming no listener. */
export function checkListeners(config: Config, problems: CompileProblem[]): void {
  const listeners = listenersOf(config);
  const names = new Map<string, number>();
  const ports = new Map<string, number>();
  listeners.forEach((l, i) => {
    const first = names.get(l.name);
    if (first !== undefined)
      problems.push({ path: ['listeners', i, 'name'], message: `duplicate listener name "${l.name}" (also listeners[${first}])` });
    else names.set(l.name, i);
    const address = `${l.host}:${l.port}`;
    const taken = ports.get(address);
    if (l.port !== 0 && taken !== undefined)
      problems.push({ path: ['listeners', i, 'port'], message: `${address} is listeners[${taken}] already` });
    else ports.set(address, i);
    if (l.redirect_https !== undefined && l.tls !== undefined)
      problems.push({ path: ['listeners', i, 'redirect_https'], message: 'a TLS listener cannot redirect to https' });
    // Issue 17: a tcp listener never terminates TLS nor speaks HTTP; its `tcp` block routes.
    if (l.mode === 'tcp') {
      if (l.tls !== undefined)
        problems.push({ path: ['listeners', i, 'tls'], message: 'a tcp listener does not terminate TLS (it routes TLS by SNI as is); use mode: http for tls' });
      if (l.http2)
        problems.push({ path: ['listeners', i, 'http2'], message: 'a tcp listener does not speak HTTP/2 (it pipes bytes); use mode: http for http2' });
      if (l.redirect_https !== undefined)
        problems.push({ path: ['listeners', i, 'redirect_https'], message: 'a tcp listener answers no request; use mode: http for redirect_https' });
      if (l.tcp === undefined)
        problems.push({ path: ['listeners', i, 'tcp'], message: 'a tcp listener needs a `tcp` block (routes and/or default_pool)' });
    } else if (l.tcp !== undefined) {
      problems.push({ path: ['listeners', i, 'tcp'], message: 'only a `mode: tcp` listener takes a `tcp` block' });
    }
  });
  config.routes.forEach((r, i) => {
    const wanted = r.match.listener;
    if (wanted === undefined) return;
    for (const name of Array.isArray(wanted) ? wanted : [wanted]) {
      const at = names.get(name);
      if (at === undefined)
        problems.push({
          path: ['routes', i, 'match', 'listener'],
          message: `unknown listener "${name}" (listeners: ${[...names.keys()].join(', ')})`,
        });
      else if (listeners[at].mode === 'tcp')
        problems.push({
          path: ['routes', i, 'match', 'listener'],
          message: `listener "${name}" is a tcp listener: its connections are routed by listeners[${at}].tcp.routes, never by routes`,
        });
    }
  });
}

/**
 * The certificate files of every TLS listener, read and checked: each problem names the key
 * (`listeners[1].tls.certificates[0].key`) and, in its message, the file. File IO, so it runs
 * in load.ts after the pure compile.
 */
export function certificateProblems(config: Config): CompileProblem[] {
  const problems: CompileProblem[] = [];
  listenersOf(config).forEach((l, i) => {
    const tls = l.tls;
    if (tls === undefined) return;
    const base = ['listeners', i, 'tls'];
    const check = (path: Array<string | number>, fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        if (!(err instanceof CertificateError)) throw err;
        problems.push({ path: [...path, err.field], message: err.message });
      }
    };
    check(base, () => readPair(tls));
    tls.certificates.forEach((pair, j) => check([...base, 'certificates', j], () => readPair(pair)));
    if (tls.client_ca !== null) check(base, () => readCa(tls.client_ca!));
    if (tls.client_subject_header !== null && tls.client_ca === null)
      problems.push({ path: [...base, 'client_subject_header'], message: 'needs tls.client_ca (no client certificate is asked for)' });
  });
  return problems;
}
