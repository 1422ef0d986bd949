// Usage errors of `memshift source` and `memshift dest` are caught before anything starts: exit status
// 2, one line on stderr with MS_ERR_INVALID_ARGUMENT that names the flag as the user typed it, and no
// guest, connection or listener. (replay's usage errors: test/sim/replay-cli.test.ts.)

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { killAll, memshift } from '../_support/processes.js';

test.after.each(killAll);

/** Runs `memshift <args>` to its end and asserts the one-line usage error naming `flag`. */
async function assertUsageError(args: string[], flag: string): Promise<void> {
  const run = await memshift(args).done;
  const line = run.stderr.trimEnd();
  assert.is(run.code, 2, `${args.join(' ')}: ${line}`);
  assert.is(line.split('\n').length, 1, line);
  assert.ok(line.includes('MS_ERR_INVALID_ARGUMENT'), line);
  assert.ok(line.includes(flag), `"${line}" does not name ${flag}`);
  assert.not.match(run.stdout, /listening on/, 'nothing was started');
}

// Port 9 (discard) on loopback: nothing listens there, and nothing may try to connect.
const SOURCE = ['source', '--connect', '127.0.0.1:9', '--memory', '1MiB', '--seed', '1', '--quiet'];

test('source --xbzrle with a value other than on|off exits 2 naming --xbzrle', async () => {
  await assertUsageError([...SOURCE, '--xbzrle', 'maybe'], '--xbzrle');
});

test('source --compress with a value other than none|lz4 exits 2 naming --compress', async () => {
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

test.run();
