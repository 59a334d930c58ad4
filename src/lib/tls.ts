/**
 * Outbound TLS settings (issue 14, item 4): what a pool's `tls` block and a multiplex route's
 * `ca`/`cert`/`key` keys compile to. The PEM files are read at config time, so a missing or
 * unreadable file is a config error naming the key and the file (never a failure on the first
 * request), and a reload reads them again (a renewed certificate is picked up).
 *
 * Paths are relative to the working directory, like `queue.path` and `state_file`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type ConnectionOptions, createSecureContext } from 'node:tls';
import type { CompileProblem } from './problem.ts';

/** The `tls` block of a pool as validated (config/schema.ts). */
export interface TlsConfig {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  reject_unauthorized: boolean;
}

/** Compiled: the PEM texts themselves, not their paths. */
export interface TlsSpec {
  /** Trusted CA certificates (replaces Node's bundled roots, as `tls.connect({ ca })` does). */
  readonly ca: string | null;
  /** Client certificate chain and its key, for targets that ask for one (mTLS). */
  readonly cert: string | null;
  readonly key: string | null;
  /** SNI and the name the certificate is checked against; null = the target URL's host. */
  readonly servername: string | null;
  readonly rejectUnauthorized: boolean;
}

const PEM = /-----BEGIN [A-Z0-9 ]+-----/;

/**
 * Reads one PEM file named by the key at `path`; on failure pushes a problem naming the file
 * and returns null.
 */
export function readPem(
  file: string,
  path: Array<string | number>,
  problems: CompileProblem[],
): string | null {
  let text: string;
  try {
    text = readFileSync(resolve(file), 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    problems.push({ path, message: `cannot read ${JSON.stringify(file)}: ${e.code ?? e.message}` });
    return null;
  }
  if (!PEM.test(text)) {
    problems.push({ path, message: `${JSON.stringify(file)} is not a PEM file (no -----BEGIN … ----- line)` });
    return null;
  }
  return text;
}

/**
 * Compiles TLS keys found at `base` (e.g. `['pools', 'api', 'tls']`). `cert` and `key` go
 * together: one without the other is a problem.
 */
export function compileTls(
  raw: Partial<TlsConfig>,
  base: Array<string | number>,
  problems: CompileProblem[],
): TlsSpec {
  const read = (k: 'ca' | 'cert' | 'key') => (raw[k] === undefined ? null : readPem(raw[k], [...base, k], problems));
  const spec: TlsSpec = {
    ca: read('ca'),
    cert: read('cert'),
    key: read('key'),
    servername: raw.servername ?? null,
    rejectUnauthorized: raw.reject_unauthorized ?? true,
  };
  if ((raw.cert === undefined) !== (raw.key === undefined)) {
    const missing = raw.cert === undefined ? 'cert' : 'key';
    problems.push({ path: [...base, missing], message: `is required with ${missing === 'cert' ? 'key' : 'cert'}` });
  } else if (spec.cert !== null && spec.key !== null) {
    // A key that does not belong to the certificate would fail every handshake: say so now.
    try {
      createSecureContext({ cert: spec.cert, key: spec.key });
    } catch (err) {
      problems.push({
        path: [...base, 'key'],
        message: `${JSON.stringify(raw.key)} does not fit ${JSON.stringify(raw.cert)}: ${(err as Error).message}`,
      });
    }
  }
  return spec;
}

/** The `tls.connect` options of a spec (nothing for the defaults). */
export function tlsOptions(spec: TlsSpec | null): Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'servername' | 'rejectUnauthorized'> {
  if (spec === null) return {};
  return {
    ...(spec.ca !== null ? { ca: spec.ca } : {}),
    ...(spec.cert !== null ? { cert: spec.cert } : {}),
    ...(spec.key !== null ? { key: spec.key } : {}),
    ...(spec.servername !== null ? { servername: spec.servername } : {}),
    ...(spec.rejectUnauthorized ? {} : { rejectUnauthorized: false }),
  };
}
