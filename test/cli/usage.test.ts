// Usage errors of `memshift source` and `memshift dest` are caught before anything starts: exit status
// 2, one line on stderr with MS_ERR_INVALID_ARGUMENT that names the flag as the user typed it, and no
// guest, connection or listener. (replay's usage errors: test/sim/replay-cli.test.ts.)

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { PROTOCOL_VERSION } from '../../src/index.js';
import { killAll, memshift } from '../_support/processes.js';
import { makeCredentials } from '../_support/credentials.js';

test.after.each(killAll);

/** Runs `memshift <args>` to its end and asserts the one-line usage error naming `flag`. */
async function assertUsageError(args: string[], flag: string, options: { exact?: boolean } = {}): Promise<void> {
  const run = await memshift(args, {}, options).done;
  const line = run.stderr.trimEnd();
  assert.is(run.code, 2, `${args.join(' ')}: ${line}`);
  assert.is(line.split('\n').length, 1, line);
  assert.ok(line.includes('MS_ERR_INVALID_ARGUMENT'), line);
  assert.ok(line.includes(flag), `"${line}" does not name ${flag}`);
  assert.not.match(run.stdout, /listening on/, 'nothing was started');
}

// Port 9 (discard) on loopback: nothing listens there, and nothing may try to connect.
const SOURCE = ['source', '--connect', '127.0.0.1:9', '--memory', '1MiB', '--seed', '1', '--quiet'];

test('source --xbzrle with a value other than auto|on|off exits 2 naming --xbzrle', async () => {
  await assertUsageError([...SOURCE, '--xbzrle', 'maybe'], '--xbzrle');
});

test('source --compress with a value other than auto|lz4|none exits 2 naming --compress', async () => {
  await assertUsageError([...SOURCE, '--compress', 'zstd'], '--compress');
});

test('source --ram-regions 5 exits 2 naming --ram-regions', async () => {
  await assertUsageError([...SOURCE, '--ram-regions', '5'], '--ram-regions');
});

test('dest --slab-size 1 exits 2 naming --slab-size, before it listens', async () => {
  await assertUsageError(['dest', '--listen', '127.0.0.1:0', '--quiet', '--slab-size', '1'], '--slab-size');
});

test('dest --slab-size above the 4 GiB bookkeeping room exits 2 naming --slab-size', async () => {
  await assertUsageError(['dest', '--listen', '127.0.0.1:0', '--quiet', '--slab-size', '4GiB'], '--slab-size');
});

// Security: exactly one of mutual TLS, a pre-shared key or --insecure, chosen on both commands.
const DEST = ['dest', '--listen', '127.0.0.1:0', '--quiet'];
const creds = makeCredentials();
test.after(() => creds.remove());

for (const [name, args] of [['source', SOURCE], ['dest', DEST]] as const) {
  test(`${name} without a security flag exits 2 naming --tls-cert, --psk-file and --insecure`, async () => {
    for (const flag of ['--tls-cert', '--tls-key', '--tls-ca', '--psk-file', '--insecure']) await assertUsageError([...args], flag, { exact: true });
  });

  test(`${name} with two security choices exits 2 naming both`, async () => {
    const run = await memshift([...args, '--insecure', '--psk-file', creds.psk.good], {}, { exact: true }).done;
    assert.is(run.code, 2, run.stderr);
    assert.match(run.stderr, /MS_ERR_INVALID_ARGUMENT: --psk-file and --insecure exclude each other/);
  });

  test(`${name} with a PSK file holding a 16-byte key exits 2 naming --psk-file and the 32-byte minimum`, async () => {
    await assertUsageError([...args, '--psk-file', creds.psk.short], '--psk-file', { exact: true });
    const run = await memshift([...args, '--psk-file', creds.psk.short], {}, { exact: true }).done;
    assert.match(run.stderr, /holds a key of 16 bytes; a pre-shared key must be at least 32 bytes/);
  });

  test(`${name} with --tls-cert but no --tls-key exits 2 naming --tls-key`, async () => {
    await assertUsageError([...args, '--tls-cert', creds.source.cert, '--tls-ca', creds.ca], '--tls-key', { exact: true });
  });
}

test('source with a key that is not its certificate\'s exits 2 naming --tls-key', async () => {
  await assertUsageError([...SOURCE, '--tls-cert', creds.source.cert, '--tls-key', creds.dest.key, '--tls-ca', creds.ca], '--tls-key', { exact: true });
});

test('dest --tls-name exits 2: it is the source\'s flag', async () => {
  await assertUsageError([...DEST, '--insecure', '--tls-name', 'x'], '--tls-name', { exact: true });
});

test('--version prints the package version and the wire protocol version, and exits 0', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  const run = await memshift(['--version']).done;
  assert.is(run.code, 0);
  assert.is(run.stdout.trim(), `memshift ${pkg.version} (wire protocol ${PROTOCOL_VERSION})`);
});

test.run();
