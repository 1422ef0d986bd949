// `memshift replay` as a child process: the image it writes is exactly the in-process reference run,
// byte for byte and exactly SIZE bytes long; a usage error exits 2 with one line that names the flag.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveGuestConfig, type GuestConfig } from '../../src/memory/guest-config.js';
import { replay } from '../../src/memory/simulated-guest.js';
import { regionImage, withTempDir } from '../_support/guest-helpers.js';

// dist/test/memory/replay-cli.test.js → dist/src/cli/main.js
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
    const expected = regionImage(replay(config, steps));
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

test('replay --help exits 0 and lists every flag', async () => {
  const run = await memshift(['replay', '--help']);
  assert.is(run.code, 0);
  for (const flag of ['--memory', '--fill', '--workload', '--hot-size', '--seed', '--steps', '--dump-memory']) {
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
