// TLS 1.3 for a channel: the client end (connect, or wrap a socket the caller opened), the server end
// (an accepted TCP socket), and what a failed authentication is called. Only TLS 1.3 is offered.
//
//   mutual certificates: the server requires a client certificate that chains to its CA; the client
//     checks the server's chain against its CA and the server's name (the host it connects to, or
//     `serverName`, as QEMU's tls-hostname) against the certificate's subject alternative names.
//   pre-shared key: TLS 1.3 external PSK (psk_dhe_ke: OpenSSL still runs an ECDHE exchange, so a
//     leaked key does not expose past sessions). OpenSSL binds such a key to SHA-256, so only the two
//     SHA-256 suites can be negotiated; TLS_AES_256_GCM_SHA384 makes the server look for a
//     certificate it does not have (measured with Node 20.20 / OpenSSL 3.0).
//
// Zero copy: a socket with `onread` gets its cleartext straight into our buffer (TLSWrap decrypts
// each record into a 16 KiB stack buffer and copies it once into whatever buffer the stream offers).
// tls.connect honours `onread` only when it opens the TCP connection itself; for a TLSSocket around
// an existing socket (every server socket, and a client over the caller's socket) Node ignores it, so
// `readSecureInto` sets the same three fields the constructor would have set (found by their symbol
// descriptions) and hands the buffer to the TLS handle, before any cleartext can arrive. Where those
// fields are missing it copies 'data' chunks instead. Measured in one process, 1 GiB over PSK:
// ~0.8-0.9 GB/s reading into our buffer, ~0.55 GB/s copying chunks.
//
// A server never emits cleartext before its handshake is done (and, here, the peer authorized), so no
// frame of an unauthenticated peer is ever parsed.

import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { ErrorCode, MemshiftError } from '../errors.js';
import type { LinkSecurity } from './security.js';
import { copyChunk, copyChunksInto, guardConnect, type Address, type ConnectOptions, type ReadSink } from './tcp.js';

type Secured = Exclude<LinkSecurity, { kind: 'insecure' }>;

export interface SecureLink {
  socket: tls.TLSSocket;
  /** Who the peer proved to be: its certificate's SHA-256 fingerprint, or the PSK identity. */
  peerIdentity: string;
}

/** The suites a TLS 1.3 external PSK can use under OpenSSL (SHA-256 ones; see the header). */
const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

function contextOptions(sec: Secured): tls.SecureContextOptions {
  const base: tls.SecureContextOptions = { minVersion: 'TLSv1.3' };
  return sec.kind === 'tls' ? { ...base, cert: sec.cert, key: sec.key, ca: sec.ca } : { ...base, ciphers: PSK_CIPHERS };
}

function fingerprint(socket: tls.TLSSocket): string {
  return socket.getPeerX509Certificate()?.fingerprint256 ?? '';
}

// ---- client ----------------------------------------------------------------------------------------

function clientOptions(sec: Secured): tls.ConnectionOptions {
  if (sec.kind === 'tls') return { ...contextOptions(sec), ...(sec.serverName === null ? {} : { servername: sec.serverName }) };
  return {
    ...contextOptions(sec),
    pskCallback: () => ({ psk: Buffer.from(sec.key), identity: sec.identity }),
    // A PSK handshake has no certificate to check: the key is the authentication.
    checkServerIdentity: () => undefined,
  };
}

function settleClient(socket: tls.TLSSocket, sec: Secured, peer: string, options: ConnectOptions): Promise<SecureLink> {
  return new Promise((resolve, reject) => {
    const cleanup = guardConnect(socket, options, (ms) => `no TLS session within ${ms} ms`);
    socket.once('secureConnect', () => {
      cleanup();
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 5000);
      resolve({ socket, peerIdentity: sec.kind === 'psk' ? sec.identity : fingerprint(socket) });
    });
    socket.once('error', (cause: Error & { code?: string }) => {
      cleanup();
      if (options.signal?.aborted) reject(new MemshiftError(ErrorCode.CANCELLED, `cannot connect to ${peer}: cancelled`, { cause, peer, phase: 'connect' }));
      else reject(tlsFailure(cause, peer, sec, 'client'));
    });
  });
}

/** Connects over TLS 1.3, cleartext read into `sink` without copies; resolves once the peer is verified. */
export function secureConnect(address: Address, sink: ReadSink, sec: Secured, peer: string, options: ConnectOptions = {}): Promise<SecureLink> {
  const socket = tls.connect({
    host: address.host,
    port: address.port,
    ...clientOptions(sec),
    onread: { buffer: () => sink.buffer(), callback: (n: number) => { sink.onRead(n); return true; } },
  } as tls.ConnectionOptions);
  return settleClient(socket, sec, peer, options);
}

/** The client end over a socket the caller connected (its tunnel, say). */
export function secureOver(socket: net.Socket, sink: ReadSink, sec: Secured, peer: string, options: ConnectOptions = {}): Promise<SecureLink> {
  // Without a serverName the certificate must name the socket's remote address (set as `host`, not
  // `servername`: an IP address is no SNI name).
  const secure = tls.connect({ socket, host: socket.remoteAddress, ...clientOptions(sec) });
  readSecureInto(secure, sink);
  return settleClient(secure, sec, peer, options);
}

// ---- server ----------------------------------------------------------------------------------------

/**
 * The server end over an accepted TCP socket. Resolves once the handshake is done and the peer
 * authorized (its certificate chains to our CA, or it holds our key); otherwise the socket is
 * destroyed and the promise rejects with MS_ERR_AUTH_FAILED (or MS_ERR_TIMEOUT after `timeoutMs`)
 * naming the peer and why. Nothing is written to a peer that fails.
 */
export function secureAccept(accepted: net.Socket, sink: ReadSink, sec: Secured, peer: string, timeoutMs: number): Promise<SecureLink> {
  let unknownIdentity: string | null = null;
  // One server object per connection, never listening: it runs the handshake and the checks of a
  // tls.Server (client certificate required; handshake errors as 'tlsClientError') on this socket.
  const server = tls.createServer(sec.kind === 'tls'
    ? { ...contextOptions(sec), requestCert: true, rejectUnauthorized: false }
    : {
      ...contextOptions(sec),
      pskCallback: (_socket: tls.TLSSocket, identity: string) => {
        if (identity === sec.identity) return Buffer.from(sec.key);
        unknownIdentity = identity;
        return null;
      },
    });
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: MemshiftError, socket?: net.Socket): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      accepted.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new MemshiftError(ErrorCode.TIMEOUT, `${peer}: no TLS handshake within ${timeoutMs} ms`, { peer, phase: 'TLS handshake' })), timeoutMs);
    server.on('tlsClientError', (cause: Error & { code?: string }, socket) => {
      fail(tlsFailure(cause, peer, sec, 'server', unknownIdentity), socket);
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      if (settled) {
        socket.destroy();
        return;
      }
      // rejectUnauthorized is false so that the reason is ours to report (Node would close silently).
      if (sec.kind === 'tls' && !socket.authorized) {
        const cert = socket.getPeerX509Certificate();
        const why = cert === undefined
          ? 'it sent no client certificate'
          : `its certificate (${subjectOf(cert)}) is not signed by the trusted CA, or not valid now (${String(socket.authorizationError)})`;
        fail(new MemshiftError(ErrorCode.AUTH_FAILED, `authentication with ${peer} failed: ${why}`, { peer, phase: 'TLS handshake' }), socket);
        return;
      }
      settled = true;
      clearTimeout(timer);
      readSecureInto(socket, sink);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 5000);
      resolve({ socket, peerIdentity: sec.kind === 'psk' ? sec.identity : fingerprint(socket) });
    });
    accepted.once('close', () => fail(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${peer} closed the connection during the TLS handshake`, { peer, phase: 'TLS handshake' })));
    accepted.on('error', () => undefined); // reported through the TLS socket or the close above
    server.emit('connection', accepted);
  });
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}

/**
 * Makes `socket` (a TLSSocket Node built without `onread`) read its cleartext into `sink`, as the
 * `onread` option would have: see the header. Returns false when it fell back to copying chunks.
 */
export function readSecureInto(socket: tls.TLSSocket, sink: ReadSink): boolean {
  const fields = Object.getOwnPropertySymbols(socket);
  const find = (name: string): symbol | undefined => fields.find((s) => s.description === name);
  const kBuffer = find('kBuffer');
  const kBufferGen = find('kBufferGen');
  const kBufferCb = find('kBufferCb');
  const handle = (socket as unknown as { _handle: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  // Anything already pushed as chunks (nothing, when called before cleartext can arrive) goes first.
  const early = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
  if (early !== null) copyChunk(early, sink);
  if (kBuffer === undefined || kBufferGen === undefined || kBufferCb === undefined || handle === null || typeof handle.useUserBuffer !== 'function') {
    copyChunksInto(socket, sink);
    socket.resume();
    return false;
  }
  const target = socket as unknown as Record<symbol, unknown>;
  target[kBuffer] = true;
  target[kBufferGen] = () => sink.buffer();
  target[kBufferCb] = (n: number) => {
    sink.onRead(n);
    return true;
  };
  handle.useUserBuffer(sink.buffer());
  socket.resume();
  return true;
}

// ---- failures --------------------------------------------------------------------------------------

/** Certificate verification results OpenSSL reports by name (X509_V_ERR_*), as Node's error codes. */
const CERT_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'CERT_REVOKED',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
]);

/** Codes of a peer that is not speaking TLS at all (a plaintext memshift, an HTTP client). */
const NOT_TLS = /WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG|RECORD_LENGTH_MISMATCH|UNSUPPORTED_PROTOCOL|WRONG_SSL_VERSION/;

/** Why a TLS handshake failed, as this end saw it, in the words an operator needs. */
function reasonOf(code: string, message: string, sec: Secured, side: 'client' | 'server', unknownIdentity: string | null): string | null {
  const psk = sec.kind === 'psk';
  if (CERT_CODES.has(code)) return `its certificate is not trusted: not signed by the CA given to this end, or not valid now (${code})`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `its certificate does not carry the name this end expects (${message}); set the expected name with --tls-name (serverName)`;
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'it sent no client certificate';
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') return 'it requires a client certificate and this end has none (does it use certificates while this end uses a pre-shared key?)';
  if (code === 'ERR_SSL_BINDER_DOES_NOT_VERIFY') return 'wrong pre-shared key (its identity is known here, its key differs)';
  if (psk && side === 'client' && code === 'ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER') return 'it rejected this end\'s pre-shared key (wrong key)';
  if (unknownIdentity !== null) return `unknown pre-shared key identity ${JSON.stringify(unknownIdentity)}`;
  if (psk && side === 'server' && /NO_SUITABLE_SIGNATURE_ALGORITHM|NO_SHARED_CIPHER/.test(code)) return 'it offered no pre-shared key (does it use certificates?)';
  if (!psk && side === 'server' && /NO_SHARED_CIPHER/.test(code)) return 'it offered only pre-shared-key suites (does it use a pre-shared key?)';
  if (side === 'client' && code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE') {
    return psk ? 'it does not know this end\'s pre-shared key identity, or it uses certificates' : 'handshake failure (does it use a pre-shared key?)';
  }
  if (NOT_TLS.test(code)) return 'it does not speak TLS 1.3 (plaintext needs --insecure on both sides)';
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return `TLS handshake failed: ${message.split('\n')[0]}`;
  return null;
}

/**
 * The error for a failed TLS connection: MS_ERR_AUTH_FAILED naming the peer and why when TLS refused
 * it, else the connection error it was (refused, reset, timed out).
 */
export function tlsFailure(cause: Error & { code?: string }, peer: string, sec: Secured, side: 'client' | 'server', unknownIdentity: string | null = null): MemshiftError {
  const code = cause.code ?? '';
  const why = reasonOf(code, cause.message, sec, side, unknownIdentity);
  if (why !== null) return new MemshiftError(ErrorCode.AUTH_FAILED, `authentication with ${peer} failed: ${why}`, { peer, phase: 'TLS handshake', cause });
  if (side === 'client') return new MemshiftError(ErrorCode.CONNECTION_FAILED, `cannot connect to ${peer}: ${cause.message}`, { peer, phase: 'connect', cause });
  return new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${peer}: ${cause.message} during the TLS handshake`, { peer, phase: 'TLS handshake', cause });
}

/** The error for a peer that ended a verified TLS connection before a single byte: it refused us. */
export function refusedAfterHandshake(peer: string, sec: Secured): MemshiftError {
  const what = sec.kind === 'tls' ? 'certificate (not signed by the CA it trusts?)' : 'pre-shared key';
  return new MemshiftError(ErrorCode.AUTH_FAILED, `authentication with ${peer} failed: it ended the connection right after the TLS handshake, before its preface: it did not accept this end's ${what}`, { peer, phase: 'TLS handshake' });
}
