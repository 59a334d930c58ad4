/**
 * Certificates made at test time with openssl (issue 14): one test CA per call, and leaf
 * certificates it signs (server names for SNI, an expired one, client certificates for mTLS).
 * EC P-256 keys: fast to make. Files live in a scratch directory removed after the tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export interface Issued {
  cert: string;
  key: string;
  /** The PEM text of the certificate. */
  pem: string;
}

export interface TestCa {
  dir: string;
  /** PEM of the CA certificate, for clients' `ca` and `tls.client_ca`. */
  pem: string;
  file: string;
  /** A leaf for `cn` with these DNS names (default: cn); `expired`: valid in January 2020 only. */
  issue(cn: string, options?: { names?: string[]; expired?: boolean; file?: string }): Issued;
  /** A key that belongs to no certificate (a wrong pairing). */
  strayKey(): string;
}

const CA_CONFIG = `[ ca ]
default_ca = d
[ d ]
dir = .
database = ./index.txt
serial = ./serial
new_certs_dir = .
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[ p ]
commonName = supplied
organizationName = optional
`;

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function testCa(name = 'Manifold Test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'manifold-pki-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '01\n');
  run(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3', '-subj', `/CN=${name}`]);
  let seq = 0;
  return {
    dir,
    file: join(dir, 'ca.pem'),
    pem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    issue(cn, options = {}) {
      const base = `leaf${++seq}`;
      const names = options.names ?? [cn];
      run([
        'req', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/O=Manifold Tests/CN=${cn}`,
        '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
      ]);
      const dates = options.expired
        ? ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z']
        : ['-days', '2'];
      run(['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', `${base}.csr`, '-out', `${base}.pem`, ...dates]);
      return { cert: join(dir, `${base}.pem`), key: join(dir, `${base}.key`), pem: readFileSync(join(dir, `${base}.pem`), 'utf8') };
    },
    strayKey() {
      const file = `stray${++seq}.key`;
      run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
      return join(dir, file);
    },
  };
}

/**
 * A self-signed P-256 certificate for `name` (CN and DNS name), key and certificate files in
 * `dir`: for a TLS target that a client must reach with its ClientHello intact.
 */
export function selfSigned(dir: string, name: string): { key: Buffer; cert: Buffer } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req', '-x509', ...EC, '-days', '1',
      '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', key, '-out', cert,
    ],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(key), cert: readFileSync(cert) };
}
