/**
 * Certificate files (issue 14), read and checked in one place for both directions: a PEM
 * certificate and its key read and checked together, so a missing, unreadable, expired or
 * mismatched pair is refused naming the file, at config load (config/listeners.ts) and at every
 * reload (server/certificates.ts keeps the old pair then); and what a pool's `tls` block and a
 * multiplex route's `ca`/`cert`/`key` keys compile to (item 4), from the same readers. Paths are
 * relative to the working directory, like `queue.path` and `state_file`.
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import type { CompileProblem } from './problem.ts';

/** Which file of a pair is at fault; the config key of the same name. */
export type PairField = 'cert' | 'key';

export class CertificateError extends Error {
  readonly field: PairField | 'client_ca';
  readonly file: string;
  constructor(field: PairField | 'client_ca', file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'CertificateError';
    this.field = field;
    this.file = file;
  }
}

export interface PairFiles {
  cert: string;
  key: string;
  /** SNI names; default: the certificate's DNS subject alternative names, else its CN. */
  names?: string[];
}

export interface LoadedPair {
  cert: Buffer;
  key: Buffer;
  /** Lower-case SNI names (`a.example.com`, `*.example.com`). */
  names: string[];
  /** The leaf's SHA-256 fingerprint, for logs. */
  fingerprint: string;
}

function read(field: PairField | 'client_ca', file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CertificateError(field, file, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function parseCertificate(field: PairField | 'client_ca', file: string, pem: Buffer, now: number): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (err) {
    throw new CertificateError(field, file, `not a PEM certificate (${(err as Error).message})`);
  }
  // An expired (or not yet valid) certificate fails every handshake: refusing it keeps the old
  // one serving on reload, and says why at start.
  if (Date.parse(x509.validTo) < now) throw new CertificateError(field, file, `certificate expired on ${x509.validTo}`);
  if (Date.parse(x509.validFrom) > now)
    throw new CertificateError(field, file, `certificate is not valid before ${x509.validFrom}`);
  return x509;
}

/** The DNS names a certificate is for: its subject alternative names, else its CN. */
function namesOf(x509: X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san) {
    const dns = san
      .split(', ')
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
    if (dns.length > 0) return dns;
  }
  const cn = /^CN=(.*)$/m.exec(x509.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** Reads and checks one pair; throws CertificateError naming the file at fault. */
export function readPair(files: PairFiles, now = Date.now()): LoadedPair {
  const cert = read('cert', files.cert);
  const x509 = parseCertificate('cert', files.cert, cert, now);
  const key = read('key', files.key);
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new CertificateError('key', files.key, `not a PEM private key (${(err as Error).message})`);
  }
  if (!x509.checkPrivateKey(privateKey))
    throw new CertificateError('key', files.key, `is not the key of certificate ${files.cert}`);
  return {
    cert,
    key,
    names: files.names?.map((n) => n.toLowerCase()) ?? namesOf(x509),
    fingerprint: x509.fingerprint256,
  };
}

/** A CA bundle for client certificates (mTLS). */
export function readCa(file: string, now = Date.now()): Buffer {
  const pem = read('client_ca', file);
  parseCertificate('client_ca', file, pem, now);
  return pem;
}

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
  readonly ca: Buffer | null;
  /** Client certificate chain and its key, for targets that ask for one (mTLS). */
  readonly cert: Buffer | null;
  readonly key: Buffer | null;
  /** SNI and the name the certificate is checked against; null = the target URL's host. */
  readonly servername: string | null;
  readonly rejectUnauthorized: boolean;
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
  const check = <T>(read: () => T): T | null => {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
      problems.push({ path: [...base, err.field === 'client_ca' ? 'ca' : err.field], message: err.message });
      return null;
    }
  };
  let pair: LoadedPair | null = null;
  if ((raw.cert === undefined) !== (raw.key === undefined)) {
    const missing = raw.cert === undefined ? 'cert' : 'key';
    problems.push({ path: [...base, missing], message: `is required with ${missing === 'cert' ? 'key' : 'cert'}` });
  } else if (raw.cert !== undefined && raw.key !== undefined) {
    pair = check(() => readPair({ cert: raw.cert!, key: raw.key! }));
  }
  return {
    ca: raw.ca === undefined ? null : check(() => readCa(raw.ca!)),
    cert: pair?.cert ?? null,
    key: pair?.key ?? null,
    servername: raw.servername ?? null,
    rejectUnauthorized: raw.reject_unauthorized ?? true,
  };
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
