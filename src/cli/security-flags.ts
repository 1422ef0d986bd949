// The flags that say how `memshift source` and `memshift dest` secure their channels, shared by both.
// Exactly one choice is required: mutual TLS (--tls-cert, --tls-key, --tls-ca), a pre-shared key
// (--psk-file), or plaintext (--insecure). None, two, or half of the TLS set is a usage error (exit 2),
// checked before any guest, connection or listener exists.

import { loadPskFile, loadTlsFiles, type Security } from '../index.js';
import { optionalString, usageError, type Flags, type Parsed } from './args.js';

export const securityFlags: Flags = {
  'tls-cert': { type: 'string', value: 'FILE', help: 'TLS 1.3, mutual certificates: this host\'s certificate (PEM)' },
  'tls-key': { type: 'string', value: 'FILE', help: 'TLS 1.3, mutual certificates: its private key (PEM)' },
  'tls-ca': { type: 'string', value: 'FILE', help: 'TLS 1.3, mutual certificates: the CA the peer\'s certificate must be signed by (PEM)' },
  'psk-file': { type: 'string', value: 'FILE', help: 'TLS 1.3 with a pre-shared key: a file holding IDENTITY:HEXKEY (key ≥ 32 bytes)' },
  insecure: { type: 'boolean', help: 'plaintext and unauthenticated: anyone who reaches the port can migrate (both sides must say it)' },
};

/** Source only: how the destination's certificate is checked. */
export const serverNameFlag: Flags = {
  'tls-name': { type: 'string', value: 'NAME', help: 'name the destination\'s certificate must carry (default: the --connect host; an IP matches IP SANs)' },
};

const CHOICES = '--tls-cert FILE --tls-key FILE --tls-ca FILE (mutual TLS), --psk-file FILE (pre-shared key) or --insecure (plaintext)';

/** The Security the flags choose; a usage error naming the flags when they choose none, or several. */
export function securityFrom(a: Parsed): Security {
  const tls = (['tls-cert', 'tls-key', 'tls-ca'] as const).filter((f) => optionalString(a, f) !== undefined);
  const psk = optionalString(a, 'psk-file');
  const insecure = a.insecure === true;
  const chosen = [tls.length > 0 ? '--tls-*' : null, psk !== undefined ? '--psk-file' : null, insecure ? '--insecure' : null].filter((c) => c !== null);
  if (chosen.length === 0) throw usageError('security', `must be chosen: one of ${CHOICES}`);
  if (chosen.length > 1) throw usageError(chosen.join(' and '), `exclude each other: choose one of ${CHOICES}`);
  const name = optionalString(a, 'tls-name');
  if (name !== undefined && tls.length === 0) throw usageError('--tls-name', 'applies only with --tls-cert, --tls-key and --tls-ca');
  if (insecure) return 'insecure';
  if (psk !== undefined) return loadPskFile(psk, '--psk-file');
  for (const f of ['tls-cert', 'tls-key', 'tls-ca'] as const) {
    if (!tls.includes(f)) throw usageError(`--${f}`, 'is required with the other --tls-* flags (--tls-cert, --tls-key and --tls-ca go together)');
  }
  return loadTlsFiles(
    { cert: optionalString(a, 'tls-cert')!, key: optionalString(a, 'tls-key')!, ca: optionalString(a, 'tls-ca')!, ...(name === undefined ? {} : { serverName: name }) },
    { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' },
  );
}
