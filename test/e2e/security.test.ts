// End-to-end authentication: two memshift processes on 127.0.0.1 with throwaway credentials made for
// this run. Live migration over mutual TLS and post-copy over a pre-shared key land bit-identical to
// replay (post-copy proves the urgent channel runs over TLS too); a source that cannot authenticate
// is refused before anything is allocated, and the destination goes on to take the real one; a
// mismatch of --insecure fails on both sides with a message that says so.

import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeHello, encodePreface } from '../../src/protocol/handshake.js';
import { assertMigratedExactly, diffAgainstReplay, migrationFixture, type GuestCase, type MigrationCase } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput, type Running } from '../_support/processes.js';
import { makeCredentials } from '../_support/credentials.js';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';

const creds = makeCredentials();
const migrate = migrationFixture(test);
const { file, report } = perTestDir(test, 'memshift-auth-');
test.after(() => creds.remove());

const destTls = creds.tlsArgs(creds.dest);
const sourceTls = creds.tlsArgs(creds.source);
const psk = (file: string): string[] => ['--psk-file', file];

test('live migration over mutual TLS lands bit-identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 81, memory: '64MiB', workload: 'hotset', sourceArgs: sourceTls, destArgs: destTls };
  assertMigratedExactly(await migrate(c), c);
}));

test('post-copy over a pre-shared key lands bit-identical, with faults answered over the urgent channel', deadline(120_000, async () => {
  const c: MigrationCase = {
    seed: 82, mode: 'postcopy', memory: '64MiB', workload: 'hotset', hotSize: '4MiB', runSteps: 200_000,
    sourceArgs: psk(creds.psk.good), destArgs: psk(creds.psk.good),
  };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  const p = r.dest.report!.postcopy!;
  assert.ok(p.faults > 0 && (p.pagesAnswered ?? 0) > 0, `faults ${p.faults}, answered over the urgent channel ${p.pagesAnswered}`);
}));

const guest: GuestCase = { seed: 83, memory: '64MiB', workload: 'hotset' };
const guestArgs = ['--memory', '64MiB', '--seed', '83', '--workload', 'hotset', '--fill', 'mixed', '--quiet', '--warmup', '50'];
const alive = (r: Running): boolean => r.proc.exitCode === null && r.proc.signalCode === null;

/**
 * A destination with `destArgs`; a source with `badArgs` is refused (exit 1, MS_ERR_AUTH_FAILED and
 * `sourceWhy` on its side, `destWhy` in the destination's log, nothing accepted); then a source with
 * `goodArgs` migrates to the same destination process, and its guest lands bit-identical.
 */
async function refusedThenReal(destArgs: string[], badArgs: string[], goodArgs: string[], sourceWhy: RegExp, destWhy: RegExp): Promise<void> {
  const dest = await startDestination([...destArgs, '--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', '1000'], { quiet: false });
  const bad = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...badArgs, ...guestArgs, '--report', file('bad.json')]).done;
  assert.is(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /memshift source: MS_ERR_AUTH_FAILED: authentication with destination 127\.0\.0\.1:\d+ failed: /);
  assert.match(bad.stderr, sourceWhy);
  const refused = report('bad.json');
  assert.equal([refused.outcome, refused.error?.code, refused.iterations.length], ['failed', 'MS_ERR_AUTH_FAILED', 0]);
  await waitForOutput(dest, (t) => /rejected connection from source 127\.0\.0\.1:\d+: MS_ERR_AUTH_FAILED: authentication with source/.test(t));
  assert.match(dest.stderr(), destWhy);
  assert.ok(alive(dest), 'the destination is still waiting');
  assert.not.match(dest.stderr(), /accepted/, 'nothing was accepted, so nothing was allocated');
  const good = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...goodArgs, ...guestArgs, '--report', file('src.json')]).done;
  assert.is(good.code, 0, good.stderr);
  const d = await dest.done;
  assert.is(d.code, 0, d.stderr);
  assert.is(d.stderr.match(/accepted live migration/g)?.length, 1, 'one migration accepted: the real one');
  const r = report('dest.json');
  assert.is(r.outcome, 'completed');
  assert.is(r.digest, report('src.json').digest);
  assert.is(diffAgainstReplay(file('dest.img'), guest, r.guestSteps), null);
}

test('a source whose certificate comes from another CA is refused, and the destination then takes the real source', deadline(120_000, async () => {
  await refusedThenReal(destTls, creds.tlsArgs(creds.rogue), sourceTls,
    /it ended the connection right after the TLS handshake, before its preface: it did not accept this end's certificate/,
    /its certificate \(CN=memshift test rogue\) is not signed by the trusted CA/);
}));

test('a source with the wrong pre-shared key is refused, and the destination then takes the real source', deadline(120_000, async () => {
  await refusedThenReal(psk(creds.psk.good), psk(creds.psk.other), psk(creds.psk.good),
    /it rejected this end's pre-shared key \(wrong key\)/,
    /wrong pre-shared key/);
}));

test('a plaintext source against a TLS destination fails clearly on both sides; the destination keeps waiting', deadline(60_000, async () => {
  const dest = await startDestination(psk(creds.psk.good));
  const s = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--insecure', ...guestArgs]).done;
  assert.is(s.code, 1, s.stderr);
  assert.match(s.stderr, /MS_ERR_CONNECTION_CLOSED: destination 127\.0\.0\.1:\d+: .*before the peer sent a byte \(a peer that requires TLS ends a plaintext connection so: both sides need the same security flags\)/);
  await waitForOutput(dest, (t) => /MS_ERR_AUTH_FAILED: authentication with source 127\.0\.0\.1:\d+ failed: it does not speak TLS 1\.3 \(plaintext needs --insecure on both sides\)/.test(t));
  assert.ok(alive(dest));
}));

test('a TLS source against an --insecure destination fails clearly on both sides; the destination keeps waiting', deadline(60_000, async () => {
  const dest = await startDestination(['--insecure']);
  const s = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, ...psk(creds.psk.good), ...guestArgs]).done;
  assert.is(s.code, 1, s.stderr);
  assert.match(s.stderr, /MS_ERR_AUTH_FAILED: authentication with destination 127\.0\.0\.1:\d+ failed: it does not speak TLS 1\.3/);
  await waitForOutput(dest, (t) => /MS_ERR_HANDSHAKE_MAGIC: peer started a TLS handshake, and this end runs plaintext \(--insecure\)/.test(t));
  assert.ok(alive(dest));
}));

test('a raw plaintext client sending a valid preface and HELLO to a TLS destination gets nothing back', deadline(60_000, async () => {
  const dest = await startDestination(destTls, { quiet: false });
  const peer = net.connect(dest.port, '127.0.0.1');
  let received = 0;
  peer.on('data', (d: Buffer) => { received += d.length; });
  peer.on('error', () => undefined);
  try {
    peer.write(encodePreface());
    peer.write(encodeHello({ session: new Uint8Array(16).fill(2), role: 0, mode: 'live', capabilities: 0, regions: [{ id: 0, name: 'ram', kind: 'ram', pageSize: 4096, pageCount: 256 }] }));
    await new Promise((r) => peer.once('close', r));
    assert.is(received, 0, 'no preface, no HELLO_ACK, no ERROR frame');
    await waitForOutput(dest, (t) => /MS_ERR_AUTH_FAILED: authentication with source 127\.0\.0\.1:\d+ failed: it does not speak TLS 1\.3/.test(t));
    assert.not.match(dest.stderr(), /accepted/, 'no guest was allocated for it');
    assert.ok(alive(dest));
  } finally {
    peer.destroy();
  }
}));

test.run();
