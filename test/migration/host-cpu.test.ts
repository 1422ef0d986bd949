// The host's idle cores between two readings of its tick counters (migration/host-cpu.ts).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MIN_CORE_MS, hostCpuTimes, idleCores } from '../../src/migration/host-cpu.js';

test('idle cores: the idle share of the core time that passed, in cores', () => {
  const from = { idleMs: 1000, totalMs: 4000, cores: 2 };
  assert.is(idleCores(from, { idleMs: 1150, totalMs: 4600, cores: 2 }), 0.5, '150 of 600 core-ms idle on 2 cores');
  assert.is(idleCores(from, { idleMs: 1600, totalMs: 4600, cores: 2 }), 2, 'all idle');
  assert.is(idleCores(from, { idleMs: 1000, totalMs: 4600, cores: 2 }), 0, 'all busy');
});

test('a stretch shorter than MIN_CORE_MS of core time says nothing (the counters tick every 10 ms)', () => {
  const from = { idleMs: 0, totalMs: 0, cores: 2 };
  assert.is(idleCores(from, { idleMs: 0, totalMs: MIN_CORE_MS - 1, cores: 2 }), null);
  assert.is.not(idleCores(from, { idleMs: 0, totalMs: MIN_CORE_MS, cores: 2 }), null);
});

test('the host reading counts every core, and a thread spinning for 300 ms shows as busy', () => {
  const from = hostCpuTimes();
  assert.ok(from.cores >= 1 && from.totalMs > 0 && from.idleMs <= from.totalMs);
  const t0 = Date.now();
  while (Date.now() - t0 < 300);
  const idle = idleCores(from, hostCpuTimes());
  assert.ok(idle !== null && idle <= from.cores - 0.5, `one core spun, yet ${idle} of ${from.cores} idle`);
});

test.run();
