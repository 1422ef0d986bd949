// The page-gate contract: how a target's vCPUs wait for pages during post-copy. The guest runs on the
// destination before all of its pages have arrived; before a vCPU touches a page it checks the page's
// bit in its slab's `present` bitmap. When the bit is clear it posts the page to the fault mailbox and
// blocks in Atomics.wait on the bitmap word until a receiver sets the bit (the apply kernel notifies
// that word). The step logic itself never learns that a fault happened.
//
// Posting is a seqlock: FAULT_SEQ + 1 (odd: being written), FAULT_REGION and FAULT_PAGE, FAULT_SEQ + 1
// (even: published), notify. A reader takes the two fields only between two equal, even reads of
// FAULT_SEQ (`readFault`). The fields can change under a reader that is late: when a pushed page
// satisfies a fault before the fault thread looked, the vCPU goes on and posts the next one.
//
//   mailbox i32: [0] FAULT_SEQ  [1] FAULT_PAGE (region page, as u32)  [2] ALL_PRESENT  [3] FAULTS
//                [4] FAULT_REGION (region id)
//   faultLog f64: [0] faults logged, [1 + i % FAULT_LOG_SLOTS] = blocked time of fault i in µs
//
// One mailbox serves one vCPU (one writer). Once every page is present the receiver sets ALL_PRESENT
// and the check leaves the step loop.
//
// Disk blocks (capability POSTCOPY_BLOCKS) go through the same gate: before a vCPU writes a block whose
// bit is clear in its disk's `present` bitmap (BlockDevice.present) it posts region DISK_REGION_BASE +
// disk and the block as the page, and waits on that bitmap's word. Their blocked times share the log.
//
// A third-party target implements `enablePageGate` by returning `createPageGateInit()` and runs its
// vCPU through `createPageGate(init, slabs)`, or follows the layout above itself.

import { DISK_REGION_BASE } from '../protocol/constants.js';
import type { Slab } from './slab.js';

export const Mailbox = { FAULT_SEQ: 0, FAULT_PAGE: 1, ALL_PRESENT: 2, FAULTS: 3, FAULT_REGION: 4 } as const;
export const MAILBOX_BYTES = 64;
/** Float64 slots in the fault-latency ring. */
export const FAULT_LOG_SLOTS = 65536;

/** What `MemoryTarget.enablePageGate` returns: the shared buffers the vCPU side and the engine share. */
export interface PageGateInit {
  mailbox: SharedArrayBuffer;
  faultLog: SharedArrayBuffer;
}

/** The vCPU's side of the gate. Slabs are named by their index in the list given to `createPageGate`. */
export interface PageGate {
  /** True when every page is present and no check is needed. */
  readonly open: boolean;
  isPresent(slabIndex: number, local: number): boolean;
  /** Posts the fault and blocks this thread until the page is present. */
  waitForPage(slabIndex: number, local: number): void;
  /** Whether block `block` of disk `disk` (index in the list given to `createPageGate`) is here. */
  isBlockPresent(disk: number, block: number): boolean;
  /** Posts the block's fault and blocks this thread until the block is here. */
  waitForBlock(disk: number, block: number): void;
}

export function createPageGateInit(): PageGateInit {
  return { mailbox: new SharedArrayBuffer(MAILBOX_BYTES), faultLog: new SharedArrayBuffer((FAULT_LOG_SLOTS + 1) * 8) };
}

/** Blocked times (µs) of the faults logged so far (the most recent FAULT_LOG_SLOTS). */
export function readFaultLog(log: SharedArrayBuffer): number[] {
  const f = new Float64Array(log);
  const n = f[0];
  const have = Math.min(n, FAULT_LOG_SLOTS);
  const out: number[] = [];
  for (let i = n - have; i < n; i++) out.push(f[1 + (i % FAULT_LOG_SLOTS)]);
  return out;
}

/** The fault last posted to a mailbox, read whole (never one fault's region with the next one's page). */
export function readFault(mailbox: Int32Array): { seq: number; regionId: number; page: number } {
  for (;;) {
    const seq = Atomics.load(mailbox, Mailbox.FAULT_SEQ);
    // Odd: the vCPU is between its two stores, a matter of nanoseconds.
    if ((seq & 1) !== 0) continue;
    const regionId = Atomics.load(mailbox, Mailbox.FAULT_REGION);
    const page = Atomics.load(mailbox, Mailbox.FAULT_PAGE) >>> 0;
    if (Atomics.load(mailbox, Mailbox.FAULT_SEQ) === seq) return { seq, regionId, page };
  }
}

/** The gate over `slabs` (any slabs of any regions, in the order the vCPU indexes them) and the `present` bitmaps of the guest's disks. */
export function createPageGate(init: PageGateInit, slabs: readonly Slab[], diskPresent: readonly SharedArrayBuffer[] = []): PageGate {
  const words = slabs.map((s) => new Int32Array(s.memory.buffer));
  const presentBase = slabs.map((s) => s.layout.present >>> 2);
  const disks = diskPresent.map((b) => new Int32Array(b));
  const mailbox = new Int32Array(init.mailbox);
  const log = new Float64Array(init.faultLog);
  /** Posts (region, page) and waits until `bit` of `mem[index]` is set; logs the blocked time. */
  const wait = (regionId: number, page: number, mem: Int32Array, index: number, bit: number): void => {
    const t0 = performance.now();
    Atomics.add(mailbox, Mailbox.FAULT_SEQ, 1);
    Atomics.store(mailbox, Mailbox.FAULT_REGION, regionId);
    Atomics.store(mailbox, Mailbox.FAULT_PAGE, page | 0);
    Atomics.add(mailbox, Mailbox.FAULT_SEQ, 1);
    Atomics.add(mailbox, Mailbox.FAULTS, 1);
    Atomics.notify(mailbox, Mailbox.FAULT_SEQ);
    for (;;) {
      const word = Atomics.load(mem, index);
      if ((word & bit) !== 0) break;
      // Timed, so that a missed wake-up costs at most this; the receiver notifies this word.
      Atomics.wait(mem, index, word, 50);
    }
    const n = log[0];
    log[1 + (n % FAULT_LOG_SLOTS)] = (performance.now() - t0) * 1000;
    log[0] = n + 1;
  };
  return {
    get open(): boolean {
      return Atomics.load(mailbox, Mailbox.ALL_PRESENT) === 1;
    },
    isPresent(si: number, local: number): boolean {
      return (Atomics.load(words[si], presentBase[si] + (local >>> 5)) & (1 << (local & 31))) !== 0;
    },
    waitForPage(si: number, local: number): void {
      wait(slabs[si].regionId, slabs[si].firstPage + local, words[si], presentBase[si] + (local >>> 5), 1 << (local & 31));
    },
    isBlockPresent(disk: number, block: number): boolean {
      return (Atomics.load(disks[disk], block >>> 5) & (1 << (block & 31))) !== 0;
    },
    waitForBlock(disk: number, block: number): void {
      wait(DISK_REGION_BASE + disk, block, disks[disk], block >>> 5, 1 << (block & 31));
    },
  };
}
