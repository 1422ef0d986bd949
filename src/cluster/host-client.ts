// The manager's side of a host's control port: scrape its metrics, list its guests, open an incoming
// migration, start an outgoing one. Requests are authenticated as control-auth.ts says, with the same
// Security the migrations use.

import http from 'node:http';
import https from 'node:https';
import { ErrorCode, MemshiftError, parseAddress, type Security } from '../index.js';
import { HOST_HEADER, NONCE_HEADER, REPLY_MAC_HEADER, newNonce, pskKey, signRequest, verifyReply } from './control-auth.js';
import { readMessage } from './http-io.js';
import type { GuestSpec, HostedGuestInfo, MigrationSummary } from './host.js';
import { parseMetrics, type ParsedSample } from './metrics-text.js';
import type { Vector } from '../manager/resources.js';

/** The TLS options of a control port under mutual certificates (null for PSK and plaintext, which use HTTP). */
export function controlTls(s: Security): { cert: string | Buffer; key: string | Buffer; ca: string | Buffer } | null {
  if (typeof s !== 'object' || !('tls' in s)) return null;
  const pem = (x: string | Uint8Array): string | Buffer => (typeof x === 'string' ? x : Buffer.from(x));
  return { cert: pem(s.tls.cert), key: pem(s.tls.key), ca: pem(s.tls.ca) };
}

/** Largest reply read from a host (a /metrics of many guests is well under it). */
const MAX_REPLY = 16 << 20;

export class HostClient {
  /** The host's name, from its first authenticated reply: requests are signed for it. */
  private name: string | null = null;

  /**
   * `timeoutMs` bounds scrapes and short requests (a host that stops answering must not stall the
   * manager's interval); a migration may take up to `migrateTimeoutMs`.
   */
  constructor(readonly address: string, private readonly security: Security, private readonly timeoutMs = 5000, private readonly migrateTimeoutMs = 120_000) {}

  async metrics(): Promise<ParsedSample[]> {
    return parseMetrics(await this.request('GET', '/metrics', ''));
  }

  async guests(): Promise<{ host: string; guests: HostedGuestInfo[]; departed: { name: string; slaViolationSeconds: number }[] }> {
    return JSON.parse(await this.request('GET', '/guests', '')) as never;
  }

  async reallocate(guest: string, allocation: Vector): Promise<void> {
    await this.request('POST', '/allocation', JSON.stringify({ guest, allocation }));
  }

  /** Asks this host to take one migration of `spec`; the port its listener waits on. */
  async incoming(spec: GuestSpec, allocation: Vector): Promise<number> {
    const r = JSON.parse(await this.request('POST', '/incoming', JSON.stringify({ spec, allocation }))) as { port: number };
    return r.port;
  }

  /** Migrates `guest` from this host to `to` (HOST:PORT of a listener from `incoming`); resolves when it ends. */
  async migrate(guest: string, to: string, mode: string, downtimeLimitMs: number): Promise<MigrationSummary> {
    return JSON.parse(await this.request('POST', '/migrate', JSON.stringify({ guest, to, mode, downtimeLimitMs }), this.migrateTimeoutMs)) as MigrationSummary;
  }

  private async request(method: string, path: string, body: string, timeoutMs = this.timeoutMs): Promise<string> {
    const key = pskKey(this.security);
    const nonce = newNonce();
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    if (key !== null) {
      headers[NONCE_HEADER] = nonce;
      if (method !== 'GET') {
        // A request is signed for the host it is meant for: learn its name first (from an authenticated reply).
        if (this.name === null) await this.request('GET', '/guests', '');
        headers.authorization = signRequest(key, this.name!, method, path, body, Date.now(), nonce);
      }
    }
    const { status, text, host, replyMac } = await this.exchange(method, path, body, headers, timeoutMs);
    if (key !== null) {
      if (host === undefined || !verifyReply(key, host, nonce, status, text, replyMac)) {
        throw new MemshiftError(ErrorCode.AUTH_FAILED, `host ${this.address} ${method} ${path}: the reply does not carry the host's MAC under the pre-shared key`);
      }
      if (this.name !== null && host !== this.name) throw new MemshiftError(ErrorCode.AUTH_FAILED, `host ${this.address} answers as ${host}, not ${this.name}`);
      this.name = host;
    }
    if (status === 200) return text;
    let message = text.slice(0, 300);
    let code: string = ErrorCode.HOST_REFUSED;
    try {
      const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
      if (typeof e?.message === 'string') message = e.message;
      if (typeof e?.code === 'string' && e.code.startsWith('MS_ERR_')) code = e.code;
    } catch {
      // Not JSON: the text is the message.
    }
    throw new MemshiftError(code as typeof ErrorCode.HOST_REFUSED, `host ${this.address} ${method} ${path}: ${status}: ${message}`);
  }

  private exchange(method: string, path: string, body: string, headers: Record<string, string | number>, timeoutMs: number): Promise<{ status: number; text: string; host: string | undefined; replyMac: string | undefined }> {
    const { host, port } = parseAddress(this.address, 'host');
    const tls = controlTls(this.security);
    const options = { host, port, method, path, headers, timeout: timeoutMs };
    return new Promise((resolve, reject) => {
      const done = (res: http.IncomingMessage): void => {
        const one = (h: string | string[] | undefined): string | undefined => (typeof h === 'string' ? h : undefined);
        readMessage(res, MAX_REPLY, () => new MemshiftError(ErrorCode.HOST_REFUSED, `host ${this.address} ${method} ${path}: reply over ${MAX_REPLY} bytes`)).then(
          (text) => resolve({ status: res.statusCode ?? 0, text, host: one(res.headers[HOST_HEADER]), replyMac: one(res.headers[REPLY_MAC_HEADER]) }), reject);
      };
      const req = tls === null ? http.request(options, done) : https.request({ ...options, ...tls, servername: '' }, done);
      req.on('timeout', () => req.destroy(new MemshiftError(ErrorCode.TIMEOUT, `host ${this.address} ${method} ${path}: no answer in ${timeoutMs} ms`)));
      req.on('error', (err) => reject(err instanceof MemshiftError ? err : new MemshiftError(ErrorCode.CONNECTION_FAILED, `host ${this.address} ${method} ${path}: ${err.message}`, { cause: err })));
      req.end(body);
    });
  }
}
