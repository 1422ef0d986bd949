// The page-gate contract: a fault is read whole. A vCPU thread posts faults of two regions as fast as
// it can (their pages are present, so it never blocks) while this thread reads the mailbox; a read
// that paired one fault's region with another's page would name a page outside that region's range.

import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Mailbox, createPageGateInit, readFault } from '../../src/memory/page-gate.js';

const WORKER = `
const { workerData } = require('node:worker_threads');
const { init, memory, stop } = workerData;
import(workerData.gateModule).then(({ createPageGate }) => {
  const slab = (regionId, firstPage) => ({ regionId, firstPage, memory, layout: { present: 1024 } });
  const gate = createPageGate(init, [slab(0, 0), slab(5, 5000)]);
  const halt = new Int32Array(stop);
  for (let i = 0; Atomics.load(halt, 0) === 0; i++) gate.waitForPage(i & 1, (i >> 1) & 63);
});
`;

test('readFault never pairs the region of one fault with the page of another', async () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  new Int32Array(memory.buffer, 1024, 2).fill(-1); // 64 pages present
  const init = createPageGateInit();
  const stop = new SharedArrayBuffer(4);
  const gateModule = new URL('../../src/memory/page-gate.js', import.meta.url).href;
  const worker = new Worker(WORKER, { eval: true, workerData: { init, memory, stop, gateModule } });
  const mailbox = new Int32Array(init.mailbox);
  let reads = 0;
  let torn = 0;
  const regions = new Set<number>();
  const deadline = performance.now() + 20_000;
  try {
    while (Atomics.load(mailbox, Mailbox.FAULTS) < 1000 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    // At least 300 000 reads, and on until both regions were seen: on a loaded host the vCPU thread may
    // sit descheduled through a whole burst of reads, leaving one fault in the mailbox all along.
    const readUntil = performance.now() + 10_000;
    while ((reads < 300_000 || regions.size < 2) && performance.now() < readUntil) {
      const { regionId, page } = readFault(mailbox);
      reads++;
      regions.add(regionId);
      const ok = (regionId === 0 && page < 64) || (regionId === 5 && page >= 5000 && page < 5064);
      if (!ok) torn++;
    }
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    await new Promise((r) => worker.once('exit', r));
  }
  assert.ok(Atomics.load(mailbox, Mailbox.FAULTS) >= 1000, 'the vCPU posted faults');
  assert.equal([...regions].sort((a, b) => a - b), [0, 5], 'both regions were read');
  assert.is(torn, 0, `${torn} of ${reads} reads were torn`);
});

test.run();
