// Control-request authentication (cluster/control-auth.ts): signRequest's header verifies under the same
// key for the same method, path and body within AUTH_WINDOW_MS of the host's clock, once per nonce;
// anything else gets a reason string instead of null. A request is signed for one host; replies carry
// the host's MAC over the request's nonce, its name, the status and the body.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AUTH_SCHEME, AUTH_WINDOW_MS, RequestVerifier, signReply, signRequest, verifyReply } from '../../src/cluster/control-auth.js';

const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);
const OTHER_KEY = new Uint8Array(32).map((_, i) => i * 7 + 2);
const NOW = 1_700_000_000_000;
const BODY = JSON.stringify({ guest: 'web', to: '127.0.0.1:7000', mode: 'live' });
let counter = 0;
/** A fresh 32-hex-digit nonce per call. */
const nonce = (): string => (++counter).toString(16).padStart(32, '0');

const HOST = 'h1';
const sign = (n = nonce(), at = NOW, key = KEY, host = HOST): string => signRequest(key, host, 'POST', '/migrate', BODY, at, n);

test('a signed request verifies (null), and the header has the documented shape', () => {
  const n = nonce();
  const header = sign(n);
  assert.ok(header.startsWith(`${AUTH_SCHEME} ts=${NOW},nonce=${n},mac=`), header);
  assert.match(header, /,mac=[0-9a-f]{64}$/);
  assert.is(new RequestVerifier(KEY, HOST).verify(header, 'POST', '/migrate', BODY, NOW), null);
});

test('a changed body, path or method does not verify', () => {
  const v = new RequestVerifier(KEY, HOST);
  const header = sign();
  for (const [method, path, body, what] of [
    ['POST', '/migrate', BODY.replace('web', 'db'), 'body'],
    ['POST', '/migrate', `${BODY} `, 'body with a trailing space'],
    ['POST', '/incoming', BODY, 'path'],
    ['PUT', '/migrate', BODY, 'method'],
  ] as const) {
    const why = v.verify(header, method, path, body, NOW);
    assert.type(why, 'string', what);
    assert.match(why!, /does not verify/, what);
  }
});

test('a forged attempt does not use up the nonce of the genuine request', () => {
  const v = new RequestVerifier(KEY, HOST);
  const header = sign();
  assert.type(v.verify(header, 'POST', '/migrate', '{}', NOW), 'string');
  assert.is(v.verify(header, 'POST', '/migrate', BODY, NOW), null);
});

test('a request signed under another key does not verify', () => {
  const why = new RequestVerifier(KEY, HOST).verify(sign(nonce(), NOW, OTHER_KEY), 'POST', '/migrate', BODY, NOW);
  assert.type(why, 'string');
  assert.match(why!, /does not verify under the pre-shared key/);
});

test('a tampered MAC does not verify', () => {
  const header = sign();
  const last = header.at(-1)!;
  const tampered = header.slice(0, -1) + (last === '0' ? '1' : '0');
  assert.match(new RequestVerifier(KEY, HOST).verify(tampered, 'POST', '/migrate', BODY, NOW) ?? '', /does not verify/);
});

test(`a time up to ${AUTH_WINDOW_MS} ms off the host's is accepted, beyond it refused, either way`, () => {
  const v = new RequestVerifier(KEY, HOST);
  assert.is(v.verify(sign(nonce(), NOW - AUTH_WINDOW_MS), 'POST', '/migrate', BODY, NOW), null, 'exactly the window old');
  assert.is(v.verify(sign(nonce(), NOW + AUTH_WINDOW_MS), 'POST', '/migrate', BODY, NOW), null, 'exactly the window ahead');
  for (const at of [NOW - AUTH_WINDOW_MS - 1, NOW + AUTH_WINDOW_MS + 1, NOW - 10 * AUTH_WINDOW_MS]) {
    const why = v.verify(sign(nonce(), at), 'POST', '/migrate', BODY, NOW);
    assert.type(why, 'string', `${at - NOW} ms off`);
    assert.match(why!, /more than 30 s from this host's/);
  }
});

test('a replayed request is refused the second time, also later within the window', () => {
  const v = new RequestVerifier(KEY, HOST);
  const header = sign();
  assert.is(v.verify(header, 'POST', '/migrate', BODY, NOW), null);
  assert.match(v.verify(header, 'POST', '/migrate', BODY, NOW) ?? '', /nonce seen before/);
  assert.match(v.verify(header, 'POST', '/migrate', BODY, NOW + AUTH_WINDOW_MS) ?? '', /nonce seen before/);
  // A restarted host (a new verifier) has not seen it: the 30 s window bounds that replay.
  assert.is(new RequestVerifier(KEY, HOST).verify(header, 'POST', '/migrate', BODY, NOW), null);
});

test('a nonce is remembered as long as its request could be fresh: seen a window early, replayed a window late', () => {
  const v = new RequestVerifier(KEY, HOST);
  const header = sign(nonce(), NOW);
  assert.is(v.verify(header, 'POST', '/migrate', BODY, NOW - AUTH_WINDOW_MS), null, 'accepted with the host a window behind');
  // Other traffic two windows later lets the verifier forget old nonces; this one must not be forgotten yet.
  assert.is(v.verify(sign(nonce(), NOW + AUTH_WINDOW_MS), 'POST', '/migrate', BODY, NOW + AUTH_WINDOW_MS), null);
  assert.match(v.verify(header, 'POST', '/migrate', BODY, NOW + AUTH_WINDOW_MS) ?? '', /nonce seen before/);
  // A moment later the request's time alone refuses it.
  assert.match(v.verify(header, 'POST', '/migrate', BODY, NOW + AUTH_WINDOW_MS + 1) ?? '', /more than 30 s/);
});

test('a missing header is refused with a reason naming the scheme', () => {
  const why = new RequestVerifier(KEY, HOST).verify(undefined, 'POST', '/migrate', BODY, NOW);
  assert.type(why, 'string');
  assert.match(why!, /no authorization header/);
  assert.ok(why!.includes(AUTH_SCHEME));
});

test('malformed headers are refused with a reason', () => {
  const good = sign('0123456789abcdef0123456789abcdef');
  const mac = good.split('mac=')[1];
  for (const header of [
    '',
    'Bearer abc',
    good.replace(AUTH_SCHEME, 'Memshift-HMAC256'),
    `${AUTH_SCHEME} ts=${NOW},nonce=0123456789ABCDEF0123456789ABCDEF,mac=${mac}`, // upper-case hex
    `${AUTH_SCHEME} ts=${NOW},nonce=0123456789abcdef,mac=${mac}`, // short nonce
    `${AUTH_SCHEME} ts=${NOW},nonce=0123456789abcdef0123456789abcdef,mac=${mac.slice(2)}`, // short mac
    `${AUTH_SCHEME} ts=-${NOW},nonce=0123456789abcdef0123456789abcdef,mac=${mac}`,
    `${AUTH_SCHEME} nonce=0123456789abcdef0123456789abcdef,ts=${NOW},mac=${mac}`, // fields out of order
    `${good} `,
  ]) {
    const why = new RequestVerifier(KEY, HOST).verify(header, 'POST', '/migrate', BODY, NOW);
    assert.type(why, 'string', JSON.stringify(header));
    assert.match(why!, /authorization is not Memshift-HMAC/, JSON.stringify(header));
  }
});

test('a request made for one host does not verify on another that shares the key', () => {
  const header = sign(nonce(), NOW, KEY, 'h1');
  assert.match(new RequestVerifier(KEY, 'h2').verify(header, 'POST', '/migrate', BODY, NOW) ?? '', /does not verify under the pre-shared key for host h2/);
  assert.is(new RequestVerifier(KEY, 'h1').verify(header, 'POST', '/migrate', BODY, NOW), null);
});

test('a reply verifies for its nonce, host, status and body only, and under the key only', () => {
  const n = nonce();
  const mac = signReply(KEY, 'h1', n, 200, '{"ok":1}');
  assert.ok(verifyReply(KEY, 'h1', n, 200, '{"ok":1}', mac));
  assert.not.ok(verifyReply(KEY, 'h1', nonce(), 200, '{"ok":1}', mac), 'another request\'s nonce (a replayed reply)');
  assert.not.ok(verifyReply(KEY, 'h2', n, 200, '{"ok":1}', mac), 'another host');
  assert.not.ok(verifyReply(KEY, 'h1', n, 409, '{"ok":1}', mac), 'another status');
  assert.not.ok(verifyReply(KEY, 'h1', n, 200, '{"ok":2}', mac), 'another body');
  assert.not.ok(verifyReply(OTHER_KEY, 'h1', n, 200, '{"ok":1}', mac), 'another key');
  assert.not.ok(verifyReply(KEY, 'h1', n, 200, '{"ok":1}', undefined), 'no MAC');
  assert.not.ok(verifyReply(KEY, 'h1', n, 200, '{"ok":1}', 'zz'), 'not a MAC');
});

test.run();
