// `npm test`: runs uvu over every compiled test file and fails unless every test counted ran and
// passed. uvu alone can report success with tests unrun: when a failing test's error carries a
// `details` that is not a string (every MemshiftError does), uvu's formatter throws inside its runner,
// and the `return` in the runner's `finally` swallows it, so the rest of that file is skipped, the
// failure is never printed and the exit code is 0; only "Total" and "Passed" then disagree.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failureRecap } from './_support/failure-recap.js';

const require = createRequire(import.meta.url);
const uvu = join(dirname(require.resolve('uvu')), '..', 'bin.js');
const root = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const child = spawn(process.execPath, [uvu, root, args[0] ?? '\\.test\\.js$', ...args.slice(1)], { stdio: ['ignore', 'pipe', 'pipe'] });
let out = '';
child.stdout.on('data', (d: Buffer) => {
  process.stdout.write(d);
  out += d.toString();
});
child.stderr.on('data', (d: Buffer) => {
  process.stderr.write(d);
  out += d.toString();
});
child.on('close', (code, signal) => {
  // eslint-disable-next-line no-control-regex
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const count = (label: string): number | null => {
    const m = new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm').exec(plain);
    return m === null ? null : Number(m[1]);
  };
  const total = count('Total');
  const passed = count('Passed');
  const skipped = count('Skipped');
  if (code !== 0 || signal !== null) {
    console.error(`run-suite: uvu exited ${signal ?? code}`);
    process.exitCode = 1;
  } else if (total === null || passed === null || skipped === null) {
    console.error('run-suite: uvu printed no totals');
    process.exitCode = 1;
  } else if (passed + skipped !== total || skipped !== 0) {
    console.error(`run-suite: ${total} tests counted, ${passed} passed, ${skipped} skipped: ${total - passed - skipped} did not run or failed unreported (a test whose error is a MemshiftError stops uvu's file silently: look for the file whose (n / m) is short)`);
    process.exitCode = 1;
  }
  if (process.exitCode === 1) {
    const recap = failureRecap(plain);
    if (recap !== '') console.error(recap);
  }
});
