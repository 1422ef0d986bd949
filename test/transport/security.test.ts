// security (src/transport/security.ts): the Security option is checked before anything connects or
// listens, and PSK files are read in their one documented format. Each refusal is
// MS_ERR_INVALID_ARGUMENT naming the option or the file, and why.

import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatPskFile, generatePsk, loadPskFile, loadTlsFiles, parsePskFile, resolveSecurity } from '../../src/transport/security.js';
import { expectCode } from '../_support/guest-helpers.js';
import { makeCredentials } from '../_support/credentials.js';

const creds = makeCredentials();
test.after(() => creds.remove());

const KEY_HEX = 'a1'.repeat(32);

test('a PSK file is one IDENTITY:HEXKEY line; comments and blank lines are ignored', () => {
  const s = parsePskFile(`# migration key\n\nhost-a:${KEY_HEX}\n`) as { psk: { identity: string; key: Uint8Array } };
  assert.is(s.psk.identity, 'host-a');
  assert.equal([...s.psk.key], new Array(32).fill(0xa1));
});

test('formatPskFile writes what parsePskFile reads', () => {
  const { psk } = generatePsk('node-7');
  const back = parsePskFile(formatPskFile(psk.identity, psk.key)) as { psk: typeof psk };
  assert.equal([back.psk.identity, Buffer.from(back.psk.key).toString('hex')], [psk.identity, Buffer.from(psk.key).toString('hex')]);
});

test('a key shorter than 32 bytes is refused, saying how long it is and how long it must be', () => {
  const e = expectCode(() => parsePskFile(`host:${'ab'.repeat(31)}`, '--psk-file'), 'MS_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /^--psk-file holds a key of 31 bytes; a pre-shared key must be at least 32 bytes \(64 hex digits\)/);
});

test('a PSK file refuses odd or non-hex keys, several entries, and identities with spaces', () => {
  for (const [text, why] of [
    [`host:${KEY_HEX}f`, /even number of hex digits/],
    [`host:${KEY_HEX.replace('a', 'g')}`, /even number of hex digits/],
    [`a:${KEY_HEX}\nb:${KEY_HEX}`, /exactly one IDENTITY:HEXKEY line, found 2/],
    ['', /found 0/],
    [`my host:${KEY_HEX}`, /printable ASCII characters without spaces/],
    [KEY_HEX, /IDENTITY:HEXKEY/],
  ] as const) {
    const e = expectCode(() => parsePskFile(text, 'keyfile'), 'MS_ERR_INVALID_ARGUMENT', JSON.stringify(text));
    assert.match(e.message, why);
    assert.ok(e.message.startsWith('keyfile '), e.message);
  }
});

test('loadPskFile reads the test key file and refuses its 16-byte sibling', () => {
  const good = loadPskFile(creds.psk.good) as { psk: { identity: string; key: Uint8Array } };
  assert.equal([good.psk.identity, good.psk.key.length], [creds.psk.identity, 32]);
  expectCode(() => loadPskFile(creds.psk.short, '--psk-file'), 'MS_ERR_INVALID_ARGUMENT');
  const missing = expectCode(() => loadPskFile(`${creds.dir}/none.psk`, '--psk-file'), 'MS_ERR_INVALID_ARGUMENT');
  assert.match(missing.message, /^--psk-file must name a readable file/);
});

test('resolveSecurity requires a choice: undefined, null or a typo is refused naming options.security', () => {
  for (const v of [undefined, null, 'plaintext', {}, { tls: {}, psk: {} }]) {
    const e = expectCode(() => resolveSecurity(v), 'MS_ERR_INVALID_ARGUMENT', JSON.stringify(v));
    assert.ok(e.message.startsWith('options.security'), e.message);
  }
  assert.equal(resolveSecurity('insecure'), { kind: 'insecure' });
});

test('resolveSecurity checks a PSK key length and copies the key', () => {
  const e = expectCode(() => resolveSecurity({ psk: { identity: 'x', key: new Uint8Array(31) } }), 'MS_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /^options\.security\.psk\.key must be at least 32 bytes/);
  const key = new Uint8Array(32).fill(5);
  const r = resolveSecurity({ psk: { identity: 'x', key } });
  key[0] = 9;
  assert.is(r.kind === 'psk' && r.key[0], 5, 'a later change to the caller\'s buffer does not change the key in use');
});

test('resolveSecurity parses certificates now: a key that is not the certificate\'s is refused naming .key', () => {
  const ok = resolveSecurity(creds.tls(creds.source));
  assert.is(ok.kind, 'tls');
  const mismatched = { tls: { ...(creds.tls(creds.source) as { tls: object }).tls, key: readFileSync(creds.dest.key, 'utf8') } };
  const e = expectCode(() => resolveSecurity(mismatched), 'MS_ERR_INVALID_ARGUMENT');
  assert.match(e.message, /^options\.security\.tls\.key must be the PEM private key of options\.security\.tls\.cert/);
  const notPem = expectCode(() => resolveSecurity({ tls: { cert: 'hello', key: 'k', ca: 'c' } }), 'MS_ERR_INVALID_ARGUMENT');
  assert.match(notPem.message, /^options\.security\.tls\.cert must be a PEM certificate/);
});

test('loadTlsFiles names the flag of the file that is wrong', () => {
  const fields = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' };
  const e = expectCode(() => loadTlsFiles({ cert: creds.source.cert, key: creds.dest.key, ca: creds.ca }, fields), 'MS_ERR_INVALID_ARGUMENT');
  assert.ok(e.message.startsWith('--tls-key '), e.message);
  const ca = expectCode(() => loadTlsFiles({ cert: creds.source.cert, key: creds.source.key, ca: creds.psk.good }, fields), 'MS_ERR_INVALID_ARGUMENT');
  assert.ok(ca.message.startsWith('--tls-ca '), ca.message);
  const missing = expectCode(() => loadTlsFiles({ cert: `${creds.dir}/nope.crt`, key: creds.source.key, ca: creds.ca }, fields), 'MS_ERR_INVALID_ARGUMENT');
  assert.ok(missing.message.startsWith('--tls-cert must name a readable file'), missing.message);
});

test.run();
