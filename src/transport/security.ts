// How a session's channels are secured, and where the credentials come from. Every channel of a
// session (bulk and urgent) uses the same choice; plaintext is a choice that must be spelled out.
//
//   Security (public, what an integrator passes)     LinkSecurity (internal, plain data)
//   { tls: { cert, key, ca, serverName? } }     ─►   { kind: 'tls', cert, key, ca, serverName }  PEM text
//   { psk: { identity, key } }                  ─►   { kind: 'psk', identity, key }              bytes
//   'insecure'                                  ─►   { kind: 'insecure' }
//
// LinkSecurity is plain data (strings and a Uint8Array, no prototypes to lose) because it crosses to
// the fault threads in workerData, where each end of the urgent channel builds its own TLS context.
//
// PSK file format (after stunnel's PSKsecrets): one line `IDENTITY:HEXKEY`; blank lines and lines
// starting with '#' are ignored. IDENTITY is 1..128 printable ASCII characters without ':'; HEXKEY is
// at least 64 hex digits (32 bytes: the key is the whole secret, so it must be at least a 256-bit one).

import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { invalidArgument, type MemshiftError } from '../errors.js';

/** Mutual TLS: our certificate and key, and the CA the peer's certificate must chain to (all PEM). */
export interface TlsCredentials {
  cert: string | Uint8Array;
  key: string | Uint8Array;
  ca: string | Uint8Array;
  /**
   * Source only: the name the destination's certificate must carry (default: the host it connects to,
   * or the remote address of a socket the caller opened; an IP address is matched against the
   * certificate's IP subject alternative names). Set it when connecting by IP to a certificate that
   * carries DNS names, or through a tunnel.
   */
  serverName?: string;
}

/** TLS 1.3 with an external pre-shared key instead of certificates. */
export interface PskCredentials {
  identity: string;
  key: Uint8Array;
}

export type Security = { tls: TlsCredentials } | { psk: PskCredentials } | 'insecure';

export type LinkSecurity =
  | { kind: 'insecure' }
  | { kind: 'tls'; cert: string; key: string; ca: string; serverName: string | null }
  | { kind: 'psk'; identity: string; key: Uint8Array };

export const INSECURE: LinkSecurity = { kind: 'insecure' };

/** Shortest key accepted: 256 bits. */
export const MIN_PSK_BYTES = 32;
/** Longest key OpenSSL takes (PSK_MAX_PSK_LEN is 512; stay well inside it). */
export const MAX_PSK_BYTES = 256;
const MAX_IDENTITY_CHARS = 128;
const IDENTITY = /^[\x21-\x39\x3b-\x7e]{1,128}$/; // printable ASCII, no space, no ':'

function pem(value: unknown, field: string): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  throw invalidArgument(field, 'must be PEM text (string or bytes)');
}

function checkPsk(identity: unknown, key: unknown, field: string): LinkSecurity {
  if (typeof identity !== 'string' || !IDENTITY.test(identity)) {
    throw invalidArgument(`${field}.identity`, `must be 1..${MAX_IDENTITY_CHARS} printable ASCII characters without spaces or ':'`, identity);
  }
  if (!(key instanceof Uint8Array)) throw invalidArgument(`${field}.key`, 'must be a Uint8Array');
  if (key.length < MIN_PSK_BYTES) throw invalidArgument(`${field}.key`, `must be at least ${MIN_PSK_BYTES} bytes (${MIN_PSK_BYTES * 8} bits), got ${key.length}`);
  if (key.length > MAX_PSK_BYTES) throw invalidArgument(`${field}.key`, `must be at most ${MAX_PSK_BYTES} bytes, got ${key.length}`);
  return { kind: 'psk', identity, key: new Uint8Array(key) };
}

/**
 * Checks a Security option and turns it into plain data. Certificates and keys are parsed now, so a
 * bad file is an error naming the option before anything connects or listens.
 */
export function resolveSecurity(value: unknown, field = 'options.security'): LinkSecurity {
  if (value === 'insecure') return INSECURE;
  if (value === null || typeof value !== 'object') {
    throw invalidArgument(field, "is required: { tls: { cert, key, ca } }, { psk: { identity, key } } or 'insecure'", value);
  }
  const v = value as { tls?: TlsCredentials; psk?: PskCredentials };
  if ((v.tls === undefined) === (v.psk === undefined)) throw invalidArgument(field, 'needs exactly one of tls and psk');
  if (v.psk !== undefined) return checkPsk(v.psk.identity, v.psk.key, `${field}.psk`);
  const t = v.tls!;
  const f = `${field}.tls`;
  const cert = pem(t.cert, `${f}.cert`);
  const key = pem(t.key, `${f}.key`);
  const ca = pem(t.ca, `${f}.ca`);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (cause) {
    throw invalidArgument(`${f}.cert`, `must be a PEM certificate (${(cause as Error).message})`);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('it does not belong to the certificate');
  } catch (cause) {
    throw invalidArgument(`${f}.key`, `must be the PEM private key of ${f}.cert (${(cause as Error).message})`);
  }
  try {
    new X509Certificate(ca);
  } catch (cause) {
    throw invalidArgument(`${f}.ca`, `must be a PEM certificate (${(cause as Error).message})`);
  }
  if (t.serverName !== undefined && (typeof t.serverName !== 'string' || t.serverName.length === 0)) {
    throw invalidArgument(`${f}.serverName`, 'must be a non-empty string', t.serverName);
  }
  return { kind: 'tls', cert, key, ca, serverName: t.serverName ?? null };
}

function readText(file: string, field: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw invalidArgument(field, `must name a readable file (${(cause as Error).message})`, file);
  }
}

/** Reads certificate, key and CA files (PEM) for mutual TLS. `fields` name them in errors (the CLI's flags). */
export function loadTlsFiles(
  files: { cert: string; key: string; ca: string; serverName?: string },
  fields = { cert: 'cert', key: 'key', ca: 'ca' },
): Security {
  const tls: TlsCredentials = { cert: readText(files.cert, fields.cert), key: readText(files.key, fields.key), ca: readText(files.ca, fields.ca) };
  if (files.serverName !== undefined) tls.serverName = files.serverName;
  // Checked here so that an error names the file's flag rather than options.security.
  try {
    resolveSecurity({ tls });
  } catch (err) {
    const which = (err as MemshiftError).details?.field?.split('.').pop() as 'cert' | 'key' | 'ca' | undefined;
    const field = which !== undefined && which in fields ? fields[which] : fields.cert;
    throw invalidArgument(field, (err as Error).message.replace(/^\S+ /, ''), files[which ?? 'cert']);
  }
  return { tls };
}

/** Parses the text of a PSK file (format in this file's header). `field` names the file in errors. */
export function parsePskFile(text: string, field = 'psk file'): Security {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'));
  if (lines.length !== 1) throw invalidArgument(field, `must hold exactly one IDENTITY:HEXKEY line, found ${lines.length}`);
  const colon = lines[0].lastIndexOf(':');
  if (colon <= 0) throw invalidArgument(field, 'must hold a line IDENTITY:HEXKEY');
  const identity = lines[0].slice(0, colon);
  const hex = lines[0].slice(colon + 1);
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw invalidArgument(field, 'must hold the key as an even number of hex digits after the ":"');
  const key = new Uint8Array(Buffer.from(hex, 'hex'));
  if (key.length < MIN_PSK_BYTES) {
    throw invalidArgument(field, `holds a key of ${key.length} bytes; a pre-shared key must be at least ${MIN_PSK_BYTES} bytes (${MIN_PSK_BYTES * 2} hex digits)`);
  }
  try {
    checkPsk(identity, key, 'psk');
  } catch (err) {
    throw invalidArgument(field, (err as Error).message);
  }
  return { psk: { identity, key } };
}

/** Reads a PSK file (format in this file's header). */
export function loadPskFile(file: string, field = 'psk file'): Security {
  return parsePskFile(readText(file, field), field);
}

/** A PSK file's text for `identity` and `key`, as parsePskFile reads it. */
export function formatPskFile(identity: string, key: Uint8Array): string {
  return `${identity}:${Buffer.from(key).toString('hex')}\n`;
}

/** A fresh random 256-bit key under `identity` (the demo's, for one run). */
export function generatePsk(identity = 'memshift'): { psk: PskCredentials } {
  return { psk: { identity, key: new Uint8Array(randomBytes(MIN_PSK_BYTES)) } };
}
