// Who may tell a host to move its guests. A host's control requests (everything but GET /metrics) are
// authenticated with the same choice as its migration channels:
//   psk       each request carries `authorization: Memshift-HMAC ts=…,nonce=…,mac=…`, an HMAC-SHA256
//             under the pre-shared key of the time, a random nonce, the method, the path and the body's
//             SHA-256; a host refuses a MAC that does not verify, a time more than 30 s off its own, and
//             a nonce it has seen within that window (no replay)
//   tls       the control port is HTTPS with mutual certificates (the transport authenticates)
//   insecure  nothing, by choice
// Pure apart from the clock and the nonce's randomness, which the caller may pass in.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const AUTH_SCHEME = 'Memshift-HMAC';
/** Requests older or newer than this (ms, against the host's clock) are refused. */
export const AUTH_WINDOW_MS = 30_000;

function mac(key: Uint8Array, ts: number, nonce: string, method: string, path: string, body: string): string {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', key).update(`${ts}\n${nonce}\n${method.toUpperCase()}\n${path}\n${bodyHash}`).digest('hex');
}

/** The authorization header for one request. */
export function signRequest(key: Uint8Array, method: string, path: string, body: string, now = Date.now(), nonce = randomBytes(16).toString('hex')): string {
  return `${AUTH_SCHEME} ts=${now},nonce=${nonce},mac=${mac(key, now, nonce, method, path, body)}`;
}

/** Verifies requests' authorization headers and remembers nonces for the window. */
export class RequestVerifier {
  private readonly seen = new Map<string, number>();

  constructor(private readonly key: Uint8Array) {}

  /** null when the request is authentic and fresh; else why not. */
  verify(header: string | undefined, method: string, path: string, body: string, now = Date.now()): string | null {
    if (header === undefined) return `no authorization header (${AUTH_SCHEME} with the pre-shared key)`;
    const m = new RegExp(`^${AUTH_SCHEME} ts=(\\d{1,15}),nonce=([0-9a-f]{32}),mac=([0-9a-f]{64})$`).exec(header);
    if (m === null) return `authorization is not ${AUTH_SCHEME} ts=…,nonce=…,mac=…`;
    const ts = Number(m[1]);
    if (Math.abs(now - ts) > AUTH_WINDOW_MS) return `request time ${new Date(ts).toISOString()} is more than ${AUTH_WINDOW_MS / 1000} s from this host's`;
    const expected = Buffer.from(mac(this.key, ts, m[2], method, path, body), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(m[3], 'hex'))) return 'authorization does not verify under the pre-shared key';
    for (const [n, at] of this.seen) if (now - at > 2 * AUTH_WINDOW_MS) this.seen.delete(n);
    if (this.seen.has(m[2])) return 'nonce seen before (a replayed request)';
    this.seen.set(m[2], now);
    return null;
  }
}
