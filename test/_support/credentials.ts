// Throwaway credentials for the security tests, made at test time with the openssl CLI (P-256 keys,
// valid two days) in a private temporary directory that is removed by `remove()` and, at the latest,
// when the process exits:
//
//   ca ──┬── dest    (SAN DNS:memshift-dest, IP:127.0.0.1; serverAuth + clientAuth)
//        └── source  (SAN DNS:memshift-source)
//   rogue-ca ── rogue (the same names as source, signed by a CA nobody trusts)
//
// and PSK files in the format of src/transport/security.ts: `good` and `other` (same identity,
// different random 32-byte keys) and `short` (a 16-byte key, to be refused).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Security } from '../../src/index.js';

export interface KeyPair {
  cert: string;
  key: string;
}

export interface Credentials {
  dir: string;
  ca: string;
  rogueCa: string;
  dest: KeyPair;
  source: KeyPair;
  rogue: KeyPair;
  psk: { good: string; other: string; short: string; identity: string };
  /** CLI flags for mutual TLS with `pair`, trusting `ca` (default: the real CA). */
  tlsArgs(pair: KeyPair, ca?: string): string[];
  /** The library's Security for `pair`. */
  tls(pair: KeyPair, ca?: string, serverName?: string): Security;
  /** The library's Security for a PSK file. */
  pskOf(file: string): Security;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-days', '2', '-subj', `/CN=memshift test ${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], dir);
}

function makeLeaf(dir: string, name: string, ca: string, san: string): KeyPair {
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=memshift test ${name}`], dir);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

const made: string[] = [];
process.on('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** Makes a fresh set (a few hundred ms: six openssl runs). */
export function makeCredentials(): Credentials {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-pki-'));
  made.push(dir);
  makeCa(dir, 'ca');
  makeCa(dir, 'rogue-ca');
  const dest = makeLeaf(dir, 'dest', 'ca', 'DNS:memshift-dest,IP:127.0.0.1');
  const source = makeLeaf(dir, 'source', 'ca', 'DNS:memshift-source');
  const rogue = makeLeaf(dir, 'rogue', 'rogue-ca', 'DNS:memshift-source');
  const identity = 'memshift-test';
  const pskFile = (name: string, bytes: number): string => {
    const file = join(dir, `${name}.psk`);
    writeFileSync(file, `# test key\n${identity}:${randomBytes(bytes).toString('hex')}\n`, { mode: 0o600 });
    return file;
  };
  const ca = join(dir, 'ca.crt');
  return {
    dir, ca, rogueCa: join(dir, 'rogue-ca.crt'), dest, source, rogue,
    psk: { good: pskFile('good', 32), other: pskFile('other', 32), short: pskFile('short', 16), identity },
    tlsArgs: (pair, trust = ca) => ['--tls-cert', pair.cert, '--tls-key', pair.key, '--tls-ca', trust],
    tls: (pair, trust = ca, serverName) => ({
      tls: { cert: readFileSync(pair.cert, 'utf8'), key: readFileSync(pair.key, 'utf8'), ca: readFileSync(trust, 'utf8'), ...(serverName === undefined ? {} : { serverName }) },
    }),
    pskOf: (file) => {
      const [id, hex] = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'))[0].split(':');
      return { psk: { identity: id, key: new Uint8Array(Buffer.from(hex, 'hex')) } };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
