// A process that ran both ends of a migration and cancelled it exits once it closed what it owns: the
// destination's guest, created for the migration and never started, holds no thread that keeps it.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

test('cancelled after the guest was throttled, with both ends in one process, the process exits by itself', async () => {
  const script = fileURLToPath(new URL('../_support/cancel-in-process.js', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await exited;
  clearTimeout(timer);
  assert.is(code, 0, `the process had to be killed or failed: ${err.trim()}`);
  const [source, destination, throttle] = out.trim().split(' ');
  assert.is(source, 'MS_ERR_CANCELLED');
  assert.is(destination, 'cancelled');
  assert.ok(Number(throttle) >= 50, `throttle ${throttle}`);
});

test.run();
