// Post-copy on the destination: the guest runs before all of its pages have arrived. Before a step
// touches a page, the vCPU checks the page's bit in its slab's `present` bitmap; when it is clear, it
// posts the page to the fault mailbox in the control block (FAULT_PAGE, then FAULT_SEQ + 1, notify)
// and blocks in Atomics.wait on the bitmap word until the receiver sets the bit (the apply kernel
// notifies that word). The step logic itself never learns that a fault happened.
//
// Each fault's blocked time (fault → page present) is appended to a shared Float64 log so the
// destination can report latency percentiles. Once every page is present the receiver sets
// ALL_PRESENT and the check disappears from the step loop.

import { Ctl } from './vcpu-control.js';
import type { Slab } from './slab.js';
import type { PageGate } from './workload.js';

/** Float64 slots in the fault-latency log (microseconds), a ring after the count in slot 0. */
export const FAULT_LOG_SLOTS = 65536;

export interface PageGateInit {
  /** Float64Array: [0] = faults logged, [1 + i % FAULT_LOG_SLOTS] = latency µs of fault i. */
  faultLog: SharedArrayBuffer;
}

export function createFaultLog(): SharedArrayBuffer {
  return new SharedArrayBuffer((FAULT_LOG_SLOTS + 1) * 8);
}

/** Latencies (µs) of the faults logged so far (the most recent FAULT_LOG_SLOTS). */
export function readFaultLog(log: SharedArrayBuffer): number[] {
  const f = new Float64Array(log);
  const n = f[0];
  const have = Math.min(n, FAULT_LOG_SLOTS);
  const out: number[] = [];
  for (let i = n - have; i < n; i++) out.push(f[1 + (i % FAULT_LOG_SLOTS)]);
  return out;
}

export function createPageGate(init: PageGateInit, slabs: readonly Slab[], control: Int32Array): PageGate {
  const words = slabs.map((s) => new Int32Array(s.memory.buffer));
  const presentBase = slabs.map((s) => s.layout.present >>> 2);
  const slabPages = slabs[0].pageCount;
  const log = new Float64Array(init.faultLog);
  return {
    get open(): boolean {
      return Atomics.load(control, Ctl.ALL_PRESENT) === 1;
    },
    isPresent(si: number, local: number): boolean {
      return (Atomics.load(words[si], presentBase[si] + (local >>> 5)) & (1 << (local & 31))) !== 0;
    },
    waitForPage(page: number): void {
      const si = (page / slabPages) | 0;
      const local = page - si * slabPages;
      const mem = words[si];
      const index = presentBase[si] + (local >>> 5);
      const bit = 1 << (local & 31);
      const t0 = performance.now();
      Atomics.store(control, Ctl.FAULT_PAGE, page | 0);
      Atomics.add(control, Ctl.FAULT_SEQ, 1);
      Atomics.add(control, Ctl.FAULTS, 1);
      Atomics.notify(control, Ctl.FAULT_SEQ);
      for (;;) {
        const word = Atomics.load(mem, index);
        if ((word & bit) !== 0) break;
        // Timed, so a lost wake-up costs at most this long; the apply kernel notifies this word.
        Atomics.wait(mem, index, word, 50);
      }
      const n = log[0];
      log[1 + (n % FAULT_LOG_SLOTS)] = (performance.now() - t0) * 1000;
      log[0] = n + 1;
    },
  };
}
