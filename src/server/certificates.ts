/**
 * A TLS listener's certificates (issue 14, item 2): the default pair and the SNI ones, each a
 * secure context made once; an SNI name is looked up exactly, then as `*.<parent>` (one label,
 * RFC 6125 §6.4.3), else the default serves. `refresh()` re-reads every file and, when the
 * contents changed and every pair is good, swaps them in: connections already open keep the
 * context they shook hands with, new ones get the new one. A bad file leaves the old pairs
 * serving and logs an error naming the file. Files are watched through their directories
 * (certbot and cert-manager replace them by a rename or a symlink swap, which a watch on the
 * file itself misses), debounced.
 */
import { createSecureContext, type SecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls';
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { TlsConfig } from '../config/schema.ts';
import { CertificateError, type LoadedPair, readCa, readPair } from '../lib/tls.ts';
import type { Logger } from '../observability/logger.ts';

/** Writes of one renewal (cert, then key, then a symlink) land within this of each other. */
const DEBOUNCE_MS = 250;

interface Loaded {
  /** Everything read, joined: an unchanged set is not rebuilt. */
  readonly contents: Buffer;
  readonly defaultOptions: SecureContextOptions;
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** `example.com` for `*.example.com`. */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
  readonly fingerprints: string[];
}

export class Certificates {
  readonly #tls: TlsConfig;
  readonly #log: Logger;
  #loaded: Loaded;
  #server: TlsServer | null = null;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The last refusal logged: a file left bad is said once, not at every event in its directory. */
  #refused = '';

  /**
   * Throws CertificateError: at start the config was checked, so this is a file changed since.
   * `log` names the listener (a child logger with `listener`).
   */
  constructor(tls: TlsConfig, log: Logger) {
    this.#tls = tls;
    this.#log = log;
    this.#loaded = this.#load();
  }

  /** The options of the listener's tls.Server: the default pair, the TLS floor, mTLS. */
  serverOptions(): SecureContextOptions & {
    SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
    requestCert: boolean;
    rejectUnauthorized: boolean;
  } {
    const mtls = this.#tls.client_ca !== null;
    return {
      ...this.#loaded.defaultOptions,
      SNICallback: this.#sni,
      requestCert: mtls,
      rejectUnauthorized: mtls && this.#tls.client_cert === 'required',
    };
  }

  /** The server whose default context `refresh()` replaces; starts watching the files. */
  attach(server: TlsServer): void {
    this.#server = server;
    const t = this.#tls;
    const files = [t.cert, t.key, ...t.certificates.flatMap((p) => [p.cert, p.key]), ...(t.client_ca ? [t.client_ca] : [])];
    const names = new Set(files.map((f) => basename(f)));
    // Events about our files (or a symlink to them), and cert-manager's `..data` swap; not the
    // other files of the directory (a log written next to the certificates would loop).
    const ours = (name: string | Buffer | null) =>
      name === null || names.has(String(name)) || String(name).startsWith('..');
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, (_event, name) => {
          if (ours(name)) this.#changed();
        });
        w.on('error', (err) => this.#log.warn({ err: err.message, dir }, 'certificate directory watch failed'));
        w.unref();
        this.#watchers.push(w);
      } catch (err) {
        // Still reloaded on SIGHUP and POST /config/reload.
        this.#log.warn({ err: (err as Error).message, dir }, 'cannot watch certificate directory');
      }
    }
  }

  #changed(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
    this.#timer.unref();
  }

  /** Re-reads the files; true when new certificates are served from now on. */
  refresh(): boolean {
    let next: Loaded;
    try {
      next = this.#load();
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
      if (err.message === this.#refused) return false;
      this.#refused = err.message;
      this.#log.error(
        { file: err.file, key: `tls.${err.field}`, err: err.message },
        'certificate reload refused; the old certificates keep serving',
      );
      return false;
    }
    this.#refused = '';
    if (next.contents.equals(this.#loaded.contents)) return false;
    this.#loaded = next;
    this.#server?.setSecureContext(next.defaultOptions);
    this.#log.info({ certificates: next.fingerprints }, 'certificates reloaded');
    return true;
  }

  close(): void {
    clearTimeout(this.#timer);
    for (const w of this.#watchers.splice(0)) w.close();
  }

  #sni = (name: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const { exact, wildcard } = this.#loaded;
    const host = name.toLowerCase();
    const dot = host.indexOf('.');
    // No context: node uses the server's default one (the default pair).
    cb(null, exact.get(host) ?? (dot > 0 ? wildcard.get(host.slice(dot + 1)) : undefined));
  };

  #load(): Loaded {
    const t = this.#tls;
    const ca = t.client_ca === null ? undefined : readCa(t.client_ca);
    const base = { minVersion: t.min_version, ...(ca === undefined ? {} : { ca }) } as const;
    const first = readPair(t);
    const pairs: LoadedPair[] = t.certificates.map((p) => readPair(p));
    const exact = new Map<string, SecureContext>();
    const wildcard = new Map<string, SecureContext>();
    for (const pair of pairs) {
      // The CA goes into every context: after SNI the chosen one verifies client certificates.
      const ctx = createSecureContext({ ...base, cert: pair.cert, key: pair.key });
      for (const n of pair.names) {
        if (n.startsWith('*.')) {
          if (!wildcard.has(n.slice(2))) wildcard.set(n.slice(2), ctx);
        } else if (!exact.has(n)) exact.set(n, ctx);
      }
    }
    return {
      contents: Buffer.concat([first.cert, first.key, ...pairs.flatMap((p) => [p.cert, p.key]), ...(ca ? [ca] : [])]),
      defaultOptions: { ...base, cert: first.cert, key: first.key },
      exact,
      wildcard,
      fingerprints: [first.fingerprint, ...pairs.map((p) => p.fingerprint)],
    };
  }
}
