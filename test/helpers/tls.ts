/**
 * Certificates made at test time with openssl (issue 14): a private CA, a server certificate
 * it signs for `localhost` and 127.0.0.1, and a client certificate for mTLS. Files in a
 * scratch directory removed after the test file.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export interface TestCerts {
  dir: string;
  /** Paths of the PEM files. */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** The PEM texts, for servers. */
  pem: { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string };
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function signed(dir: string, name: string, subject: string, ext: string): void {
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, `${ext}\n`);
  openssl(['req', ...EC, '-subj', subject, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`)]);
  openssl([
    'x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', extFile, '-out', join(dir, `${name}.pem`),
  ]);
}

export function makeCerts(prefix = 'manifold-tls-'): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  openssl([
    'req', '-x509', ...EC, '-days', '1', '-subj', '/CN=Manifold Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'),
  ]);
  signed(dir, 'server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth');
  signed(dir, 'client', '/CN=manifold-client', 'extendedKeyUsage=clientAuth');
  const files = {
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
  };
  const read = (f: string) => readFileSync(f, 'utf8');
  return {
    dir,
    ...files,
    pem: {
      ca: read(files.ca),
      serverCert: read(files.serverCert),
      serverKey: read(files.serverKey),
      clientCert: read(files.clientCert),
      clientKey: read(files.clientKey),
    },
  };
}
