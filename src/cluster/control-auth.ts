// Who may tell a host to move its guests, and whether a reply came from the host. A host's control
// requests (POST) are authenticated with the same choice as its migrations:
//   psk       each request carries `authorization: Memshift-HMAC ts=…,nonce=…,mac=…`, an HMAC-SHA256
//             under the pre-shared key of the time, a random nonce, the name of the host it is for,
//             the method, the path and the body's SHA-256; a host refuses a MAC that does not verify,
//             one made for another host, a time more than 30 s off its own, and a nonce it has seen
//             within that window (no replay). Every reply to a request that sent a nonce
//             (`x-memshift-nonce`) carries the host's name and an HMAC over that nonce, the name, the
//             status and the body, so the manager acts only on what the host said (PSK control runs
//             over plain HTTP: authenticated both ways, not encrypted)
//   tls       the control port is HTTPS with mutual certificates (the transport authenticates both ways)
//   insecure  nothing, by choice
// GET /metrics and GET /guests need no authorization, so a Prometheus can scrape a host. Pure apart
// from the clock and the nonce's randomness, which the caller may pass in.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Security } from '../index.js';

export const AUTH_SCHEME = 'Memshift-HMAC';
/** Requests older or newer than this (ms, against the host's clock) are refused. */
export const AUTH_WINDOW_MS = 30_000;
export const NONCE_HEADER = 'x-memshift-nonce';
export const HOST_HEADER = 'x-memshift-host';
export const REPLY_MAC_HEADER = 'x-memshift-reply-mac';
const NONCE = /^[0-9a-f]{32}$/;

function sha256(body: string): string {
  return createHash('sha256').update(body).digest('hex');
}

function mac(key: Uint8Array, ts: number, nonce: string, host: string, method: string, path: string, body: string): string {
  return createHmac('sha256', key).update(`request\n${ts}\n${nonce}\n${host}\n${method.toUpperCase()}\n${path}\n${sha256(body)}`).digest('hex');
}

/** The pre-shared key that authenticates control requests and replies (null under TLS or plaintext). */
export function pskKey(security: Security): Uint8Array | null {
  return typeof security === 'object' && 'psk' in security ? security.psk.key : null;
}

export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

export function isNonce(v: unknown): v is string {
  return typeof v === 'string' && NONCE.test(v);
}

/** The authorization header for one request to the host named `host`. */
export function signRequest(key: Uint8Array, host: string, method: string, path: string, body: string, now = Date.now(), nonce = newNonce()): string {
  return `${AUTH_SCHEME} ts=${now},nonce=${nonce},mac=${mac(key, now, nonce, host, method, path, body)}`;
}

/** The MAC a host puts on its reply to the request that sent `nonce`. */
export function signReply(key: Uint8Array, host: string, nonce: string, status: number, body: string): string {
  return createHmac('sha256', key).update(`reply\n${nonce}\n${host}\n${status}\n${sha256(body)}`).digest('hex');
}

/** Whether `replyMac` is the host `host`'s MAC on this reply to the request that sent `nonce`. */
export function verifyReply(key: Uint8Array, host: string, nonce: string, status: number, body: string, replyMac: string | undefined): boolean {
  if (replyMac === undefined || !/^[0-9a-f]{64}$/.test(replyMac)) return false;
  return timingSafeEqual(Buffer.from(signReply(key, host, nonce, status, body), 'hex'), Buffer.from(replyMac, 'hex'));
}

/** Verifies the requests made for the host `host`, and remembers their nonces for the window. */
export class RequestVerifier {
  private readonly seen = new Map<string, number>();

  constructor(private readonly key: Uint8Array, private readonly host: string) {}

  /** null when the request is authentic, for this host and fresh; else why not. */
  verify(header: string | undefined, method: string, path: string, body: string, now = Date.now()): string | null {
    if (header === undefined) return `no authorization header (${AUTH_SCHEME} with the pre-shared key)`;
    const m = new RegExp(`^${AUTH_SCHEME} ts=(\\d{1,15}),nonce=([0-9a-f]{32}),mac=([0-9a-f]{64})$`).exec(header);
    if (m === null) return `authorization is not ${AUTH_SCHEME} ts=…,nonce=…,mac=…`;
    const ts = Number(m[1]);
    if (Math.abs(now - ts) > AUTH_WINDOW_MS) return `request time ${new Date(ts).toISOString()} is more than ${AUTH_WINDOW_MS / 1000} s from this host's`;
    const expected = Buffer.from(mac(this.key, ts, m[2], this.host, method, path, body), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(m[3], 'hex'))) return `authorization does not verify under the pre-shared key for host ${this.host}`;
    for (const [n, at] of this.seen) if (now - at > 2 * AUTH_WINDOW_MS) this.seen.delete(n);
    if (this.seen.has(m[2])) return 'nonce seen before (a replayed request)';
    this.seen.set(m[2], now);
    return null;
  }
}
