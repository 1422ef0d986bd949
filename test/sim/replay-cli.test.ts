// `memshift replay` as a child process: the image it writes is exactly the in-process reference run,
// byte for byte and exactly SIZE bytes long (every RAM region, in order); it takes every guest flag
// `source` takes; a usage error exits 2 with one line that names the flag.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { replay, resolveGuestConfig, type GuestConfig } from '../../src/sim/index.js';
import { guestFlags } from '../../src/cli/guest-flags.js';
import { guestImage, regionImage, withTempDir } from '../_support/guest-helpers.js';

// dist/test/sim/replay-cli.test.js → dist/src/cli/main.js
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function memshift(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MAIN, ...args], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(err);
        return;
      }
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
    });
  });
}

async function replayImageMatches(args: string[], config: GuestConfig, steps: number): Promise<void> {
  await withTempDir(async (dir) => {
    const file = join(dir, 'ram.img');
    const run = await memshift(['replay', ...args, '--dump-memory', file]);
    assert.is(run.code, 0, run.stderr);
    assert.is(run.stdout, '');
    assert.is((await stat(file)).size, config.memoryBytes);
    const image = await readFile(file);
    const expected = guestImage(replay(config, steps));
    assert.ok(image.equals(expected), 'the CLI image differs from the in-process replay');
  });
}

test('replay --memory 64MiB --seed 7 --steps 1000000 writes exactly the in-process image', async () => {
  await replayImageMatches(['--memory', '64MiB', '--seed', '7', '--steps', '1000000'],
    resolveGuestConfig({ memoryBytes: 64 << 20, seed: 7 }), 1_000_000);
});

test('replay honours --fill, --workload and --flag=value syntax', async () => {
  await replayImageMatches(['--memory=8MiB', '--fill=random', '--workload', 'uniform', '--seed', '3', '--steps', '12345'],
    resolveGuestConfig({ memoryBytes: 8 << 20, seed: 3, fill: 'random', workload: 'uniform' }), 12_345);
});

test('replay honours --hot-size', async () => {
  await replayImageMatches(['--memory', '8MiB', '--hot-size', '64KiB', '--seed', '9', '--steps', '50000'],
    resolveGuestConfig({ memoryBytes: 8 << 20, seed: 9, hotBytes: 64 << 10 }), 50_000);
});

test('replay honours --hot-share (500 per mille differs from the default 900)', async () => {
  const config = resolveGuestConfig({ memoryBytes: 8 << 20, seed: 4, hotBytes: 256 << 10, hotPermille: 500 });
  await replayImageMatches(['--memory', '8MiB', '--hot-size', '256KiB', '--hot-share', '500', '--seed', '4', '--steps', '60000'], config, 60_000);
  assert.not.ok(regionImage(replay(config, 60_000)).equals(regionImage(replay({ ...config, hotPermille: 900 }, 60_000))), 'the share changes the image');
});

test('replay accepts --dirty-rate, which paces a running guest and changes no byte of the image', async () => {
  await replayImageMatches(['--memory', '4MiB', '--seed', '5', '--dirty-rate', '1000', '--steps', '20000'],
    resolveGuestConfig({ memoryBytes: 4 << 20, seed: 5, stepsPerSecond: 1000 }), 20_000);
});

test('replay --ram-regions 3 writes all RAM regions in order: the image of the 1-region guest', async () => {
  const config = resolveGuestConfig({ memoryBytes: 8 << 20, seed: 6, workload: 'uniform', ramRegions: 3 });
  await replayImageMatches(['--memory', '8MiB', '--workload', 'uniform', '--ram-regions', '3', '--seed', '6', '--steps', '40000'], config, 40_000);
  assert.ok(guestImage(replay(config, 40_000)).equals(regionImage(replay({ ...config, ramRegions: 1 }, 40_000))));
});

test('replay with --steps 0 and --fill zero writes SIZE zero bytes', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'zero.img');
    const run = await memshift(['replay', '--memory', '1MiB', '--fill', 'zero', '--seed', '0', '--steps', '0', '--dump-memory', file]);
    assert.is(run.code, 0, run.stderr);
    const image = await readFile(file);
    assert.is(image.length, 1 << 20);
    assert.ok(image.equals(Buffer.alloc(1 << 20)));
  });
});

test('replay --help exits 0 and lists every flag, among them every guest flag of source', async () => {
  const run = await memshift(['replay', '--help']);
  assert.is(run.code, 0);
  for (const flag of [...Object.keys(guestFlags).map((f) => `--${f}`), '--steps', '--dump-memory']) {
    assert.ok(run.stdout.includes(flag), `help lacks ${flag}`);
  }
});

const BASE = ['--memory', '1MiB', '--seed', '1', '--steps', '10'];
const usageErrors: [string, string[], string][] = [
  ['an unknown flag', [...BASE, '--bogus', '1'], '--bogus'],
  ['a flag without its value', [...BASE, '--dump-memory'], '--dump-memory'],
  ['a missing required flag', ['--memory', '1MiB', '--seed', '1'], '--steps'],
  ['a size with an unknown unit', ['--memory', '12XB', '--seed', '1', '--steps', '10'], '--memory'],
  ['a negative seed', ['--memory', '1MiB', '--seed', '-1', '--steps', '10'], '--seed'],
  ['a fractional step count', ['--memory', '1MiB', '--seed', '1', '--steps', '1.5'], '--steps'],
  ['a hot share above 1000', [...BASE, '--hot-share', '1001'], '--hot-share'],
  ['five RAM regions', [...BASE, '--ram-regions', '5'], '--ram-regions'],
  ['two RAM regions of fewer than 64 pages', ['--memory', '256KiB', '--ram-regions', '2', '--seed', '1', '--steps', '1'], '--ram-regions'],
  ['a value given to a boolean flag', [...BASE, '--help=yes'], '--help'],
];
for (const [what, args, flag] of usageErrors) {
  test(`replay with ${what} exits 2 with one line naming ${flag}`, async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, 'never.img');
      const hasOut = args.includes('--dump-memory');
      const run = await memshift(['replay', ...args, ...(hasOut ? [] : ['--dump-memory', file])]);
      assert.is(run.code, 2, run.stderr);
      const lines = run.stderr.trimEnd().split('\n');
      assert.is(lines.length, 1, run.stderr);
      assert.ok(lines[0].includes(flag), `"${lines[0]}" does not name ${flag}`);
      assert.ok(lines[0].includes('MS_ERR_INVALID_ARGUMENT'), lines[0]);
      assert.is(existsSync(file), false, 'no image is written');
    });
  });
}

test('replay names the flag, not the library field, when a value fails guest validation', async () => {
  const cases: [string[], string][] = [
    [['--memory', '1000', '--seed', '1', '--steps', '1'], '--memory'],
    [['--memory', '1MiB', '--fill', 'ones', '--seed', '1', '--steps', '1'], '--fill'],
    [['--memory', '1MiB', '--workload', 'busy', '--seed', '1', '--steps', '1'], '--workload'],
    [['--memory', '1MiB', '--hot-size', '2MiB', '--seed', '1', '--steps', '1'], '--hot-size'],
  ];
  const wrong: string[] = [];
  for (const [args, flag] of cases) {
    const run = await memshift(['replay', ...args, '--dump-memory', '/nonexistent-dir/never.img']);
    const line = run.stderr.trimEnd();
    assert.is(run.code, 2, line);
    assert.is(line.split('\n').length, 1, line);
    if (!line.includes(flag)) wrong.push(`${flag}: "${line}"`);
  }
  assert.equal(wrong, [], 'messages that do not name the flag');
});

test('replay to an unwritable path exits 1 with MS_ERR_IO', async () => {
  const run = await memshift(['replay', ...BASE, '--dump-memory', '/nonexistent-dir/sub/ram.img']);
  assert.is(run.code, 1, run.stderr);
  assert.match(run.stderr, /MS_ERR_IO/);
  assert.is(run.stderr.trimEnd().split('\n').length, 1);
});

test('an unknown command exits 2 and names it', async () => {
  const run = await memshift(['replya']);
  assert.is(run.code, 2);
  assert.match(run.stderr, /unknown command "replya"/);
});

test.run();
