/**
 * Certificate files (issue 14): a PEM certificate and its key read and checked together, so a
 * missing, unreadable, expired or mismatched pair is refused naming the file, at config load
 * (config/listeners.ts) and at every reload (server/certificates.ts keeps the old pair then).
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';

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
