// The post-copy example's vCPU thread (started by postcopy-target.ts). It is a thread because it blocks:
// before touching a page it checks the page's `present` bit through the page gate and, when the bit is
// clear, posts the page to the gate's mailbox and waits in Atomics.wait until memshift has written it.
// The main thread must stay free meanwhile to receive pages. This guest's "program": read every page
// once in a shuffled order (hash it), then write a stamp into its last word.
//
//   start { gate, seed } ──► for each page: [gate: present? else waitForPage] ─► read ─► write stamp
//                        ──► post { pageSha256 }

import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { GuestMemory, createPageGate, type PageGateInit, type Region, type Slab } from '../../src/index.js';

export interface VcpuData {
  regions: Region[];
  /** The slabs of the guest's one RAM region, in order: the list the page gate indexes. */
  slabs: Slab[];
}

export interface VcpuStart {
  /** The gate from enablePageGate(), or null when every page is present at resume (not post-copy). */
  gate: PageGateInit | null;
  seed: number;
}

export interface VcpuResult {
  /** SHA-256 of each page as the vCPU first read it, by page index. */
  pageSha256: Uint8Array[];
}

/** What the vCPU writes into a page's last 32-bit word after reading it. */
export const stampOf = (page: number): number => (0x5eedf00d ^ page) >>> 0;

function shuffled(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n).map((_, i) => i);
  let x = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function run(data: VcpuData, start: VcpuStart): VcpuResult {
  // The slabs crossed by postMessage (their memories are shared): rebuild the page-level view over them.
  const memory = GuestMemory.fromSlabs(data.regions, data.slabs);
  const ram = data.regions[0];
  const gate = start.gate === null ? null : createPageGate(start.gate, data.slabs);
  const pageSha256: Uint8Array[] = new Array(ram.pageCount);
  for (const page of shuffled(ram.pageCount, start.seed)) {
    const { slab, local } = memory.locate(ram.id, page);
    // slab.index is the slab's position in its region, i.e. its index in data.slabs (one region).
    // `open` turns true once every page is present; then no check is needed.
    if (gate !== null && !gate.open && !gate.isPresent(slab.index, local)) gate.waitForPage(slab.index, local);
    const view = memory.pageView(ram.id, page);
    pageSha256[page] = createHash('sha256').update(view).digest();
    // The page is ours now: a copy of it still being pushed by the source is discarded, not applied over this.
    new Uint32Array(view.buffer, view.byteOffset, view.byteLength / 4)[view.byteLength / 4 - 1] = stampOf(page);
  }
  return { pageSha256 };
}

if (parentPort !== null) {
  const port = parentPort;
  port.once('message', (start: VcpuStart) => port.postMessage(run(workerData as VcpuData, start)));
}
