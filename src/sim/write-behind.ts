// Arriving disk blocks are written behind, by one thread per process (write-behind-thread.ts), so the
// device writes while the next blocks arrive, O_DIRECT as QEMU's cache=none: a migration's blocks do
// not fill this host's page cache (here, the page cache's pages are new memory the hypervisor backs
// on first touch: 1 GiB of blocks cost 3.5 s of copies into it, against 0.5–0.9 s to the device).
// A writer copies its blocks into the ring and goes on; it waits only when the ring is full. `drain`
// waits until every write so far is on its image (then readers see it, and the first failure throws);
// `settled` does the same without blocking the event loop.

import { Worker } from 'node:worker_threads';
import { getSystemErrorName } from 'node:util';
import { ErrorCode, MemshiftError } from '../errors.js';
import { CONTROL_BYTES, Ring, SLOTS, SLOT_BYTES, ringViews, slotData, slotField, type RingViews } from './write-behind-ring.js';
import type { WriteBehindData } from './write-behind-thread.js';
import { WASM_PAGE_BYTES } from '../wasm/kernels.js';

export class WriteBehind {
  private readonly views: RingViews;
  private readonly worker: Worker;

  constructor() {
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const pages = (SLOTS * SLOT_BYTES) / WASM_PAGE_BYTES;
    const data = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer;
    this.views = ringViews(control, data);
    const workerData: WriteBehindData = { control, data };
    this.worker = new Worker(new URL('./write-behind-thread.js', import.meta.url), { workerData });
    // An idle ring must not keep the process alive; whoever needs the writes drains first.
    this.worker.unref();
  }

  /**
   * Queues `from` to be written at `offset` of the image open as `fd` (O_DIRECT, or any descriptor),
   * or of `cachedFd` where `fd` refuses the write (O_DIRECT wants `offset` and `from.length` in whole
   * 4 KiB blocks, as a disk's are). Waits only for a free slot.
   */
  write(fd: number, cachedFd: number, offset: number, from: Uint8Array): void {
    const { ctl, offsets } = this.views;
    for (let done = 0; done < from.length;) {
      const head = Atomics.load(ctl, Ring.HEAD);
      for (let tail = Atomics.load(ctl, Ring.TAIL); head - tail >= SLOTS; tail = Atomics.load(ctl, Ring.TAIL)) Atomics.wait(ctl, Ring.TAIL, tail);
      const slot = head % SLOTS;
      const n = Math.min(SLOT_BYTES, from.length - done);
      slotData(this.views, slot, n).set(from.subarray(done, done + n));
      ctl[slotField(slot, 'fd')] = fd;
      ctl[slotField(slot, 'cachedFd')] = cachedFd;
      ctl[slotField(slot, 'bytes')] = n;
      offsets[slot] = offset + done;
      Atomics.store(ctl, Ring.HEAD, head + 1);
      Atomics.notify(ctl, Ring.HEAD);
      done += n;
    }
  }

  /** Blocks until every queued write is on its image; throws the first that failed (`what` names the image). */
  drain(what: string): void {
    const { ctl } = this.views;
    const head = Atomics.load(ctl, Ring.HEAD);
    for (let tail = Atomics.load(ctl, Ring.TAIL); tail - head < 0; tail = Atomics.load(ctl, Ring.TAIL)) Atomics.wait(ctl, Ring.TAIL, tail);
    this.check(what);
  }

  /** Resolves once every write queued so far is on its image; rejects with the first that failed. */
  async settled(what: string): Promise<void> {
    const { ctl } = this.views;
    const head = Atomics.load(ctl, Ring.HEAD);
    // A pending Atomics.waitAsync does not keep the event loop alive; the thread, referenced, does.
    if (this.settling++ === 0) this.worker.ref();
    try {
      for (let tail = Atomics.load(ctl, Ring.TAIL); tail - head < 0; tail = Atomics.load(ctl, Ring.TAIL)) {
        const waited = Atomics.waitAsync(ctl, Ring.TAIL, tail);
        if (waited.async) await waited.value;
      }
    } finally {
      if (--this.settling === 0) this.worker.unref();
    }
    this.check(what);
  }

  private settling = 0;

  /** Throws a failure once, to the first drain after it. */
  private check(what: string): void {
    const errno = Atomics.exchange(this.views.ctl, Ring.ERRNO, 0);
    if (errno !== 0) throw new MemshiftError(ErrorCode.IO, `a disk write behind failed (${getSystemErrorName(errno)}), found draining ${what}: the image is in doubt`);
  }
}

let shared: WriteBehind | null = null;

/** The process's write-behind ring, started on first use. */
export function writeBehind(): WriteBehind {
  shared ??= new WriteBehind();
  return shared;
}
