// The manager's side of a host's control port: scrape its metrics, list its guests, open an incoming
// migration, start an outgoing one. Requests are authenticated as control-auth.ts says, with the same
// Security the migrations use.

import http from 'node:http';
import https from 'node:https';
import { ErrorCode, MemshiftError, type Security } from '../index.js';
import { signRequest } from './control-auth.js';
import type { GuestSpec, HostedGuestInfo, MigrationSummary } from './host.js';
import { parseMetrics, type ParsedSample } from './metrics-text.js';
import type { Vector } from '../manager/resources.js';

/** The TLS options of a control port under mutual certificates (null for PSK and plaintext, which use HTTP). */
export function controlTls(s: Security): { cert: string | Buffer; key: string | Buffer; ca: string | Buffer } | null {
  if (typeof s !== 'object' || !('tls' in s)) return null;
  const pem = (x: string | Uint8Array): string | Buffer => (typeof x === 'string' ? x : Buffer.from(x));
  return { cert: pem(s.tls.cert), key: pem(s.tls.key), ca: pem(s.tls.ca) };
}

export class HostClient {
  constructor(readonly address: string, private readonly security: Security, private readonly timeoutMs = 120_000) {}

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
    return JSON.parse(await this.request('POST', '/migrate', JSON.stringify({ guest, to, mode, downtimeLimitMs }))) as MigrationSummary;
  }

  private request(method: string, path: string, body: string): Promise<string> {
    const [host, port] = splitAddress(this.address);
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const s = this.security;
    if (typeof s === 'object' && 'psk' in s && method !== 'GET') headers.authorization = signRequest(s.psk.key, method, path, body);
    const tls = controlTls(s);
    const options = { host, port, method, path, headers, timeout: this.timeoutMs };
    return new Promise((resolve, reject) => {
      const done = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) return resolve(text);
          let message = text.slice(0, 300);
          let code: string = ErrorCode.HOST_REFUSED;
          try {
            const e = (JSON.parse(text) as { error: { code: string; message: string } }).error;
            message = e.message;
            code = e.code;
          } catch {
            // Not JSON: the text is the message.
          }
          reject(new MemshiftError(code.startsWith('MS_ERR_') ? (code as typeof ErrorCode.HOST_REFUSED) : ErrorCode.HOST_REFUSED, `host ${this.address} ${method} ${path}: ${res.statusCode}: ${message}`));
        });
      };
      const req = tls === null ? http.request(options, done) : https.request({ ...options, ...tls, servername: '' }, done);
      req.on('timeout', () => req.destroy(new MemshiftError(ErrorCode.TIMEOUT, `host ${this.address} ${method} ${path}: no answer in ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(err instanceof MemshiftError ? err : new MemshiftError(ErrorCode.CONNECTION_FAILED, `host ${this.address} ${method} ${path}: ${err.message}`, { cause: err })));
      req.end(body);
    });
  }
}

function splitAddress(a: string): [string, number] {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i).replace(/^\[|\]$/g, ''), Number(a.slice(i + 1))];
}
