// The write-behind thread (write-behind.ts): writes the ring's slots to their images in order, runs of
// consecutive slots to consecutive offsets as one pwritev, and frees them. A failure is kept (the first
// errno) for the producer to throw at its next drain; the slots after it are still written. A write
// an O_DIRECT descriptor refuses (EINVAL: a file system that opens O_DIRECT but will not write so)
// goes through the image's cached descriptor.

import { writevSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { MAX_SLOTS_PER_WRITE, Ring, SLOTS, ringViews, slotData, slotField, type RingViews } from './write-behind-ring.js';

export interface WriteBehindData {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

const views: RingViews = ringViews((workerData as WriteBehindData).control, (workerData as WriteBehindData).data);
const { ctl, offsets } = views;

function writeRun(first: number, count: number): void {
  const at = first % SLOTS;
  let fd = ctl[slotField(at, 'fd')];
  const buffers: Uint8Array[] = [];
  let bytes = 0;
  for (let k = 0; k < count; k++) {
    const s = (first + k) % SLOTS;
    const n = ctl[slotField(s, 'bytes')];
    buffers.push(slotData(views, s, n));
    bytes += n;
  }
  let done = 0;
  while (done < bytes) {
    let skip = done;
    const rest: Uint8Array[] = [];
    for (const b of buffers) {
      if (skip >= b.length) skip -= b.length;
      else {
        rest.push(b.subarray(skip));
        skip = 0;
      }
    }
    try {
      done += writevSync(fd, rest, offsets[at] + done);
    } catch (cause) {
      const e = cause as NodeJS.ErrnoException;
      if (e.code === 'EINVAL' && fd !== ctl[slotField(at, 'cachedFd')]) {
        fd = ctl[slotField(at, 'cachedFd')];
        continue;
      }
      throw cause;
    }
  }
}

/** How many slots from `first` (up to `end`) continue one another: same image, next offset. */
function runLength(first: number, end: number): number {
  let n = 1;
  while (first + n < end && n < MAX_SLOTS_PER_WRITE) {
    const prev = (first + n - 1) % SLOTS;
    const s = (first + n) % SLOTS;
    if (ctl[slotField(s, 'fd')] !== ctl[slotField(prev, 'fd')] || offsets[s] !== offsets[prev] + ctl[slotField(prev, 'bytes')]) break;
    n++;
  }
  return n;
}

for (;;) {
  const tail = Atomics.load(ctl, Ring.TAIL);
  const head = Atomics.load(ctl, Ring.HEAD);
  // Runs as long as the process does (unreferenced: it never holds it up).
  if (head === tail) {
    Atomics.wait(ctl, Ring.HEAD, head);
    continue;
  }
  const n = runLength(tail, head);
  try {
    writeRun(tail, n);
  } catch (cause) {
    Atomics.compareExchange(ctl, Ring.ERRNO, 0, (cause as NodeJS.ErrnoException).errno ?? -5);
  }
  Atomics.store(ctl, Ring.TAIL, tail + n);
  Atomics.notify(ctl, Ring.TAIL);
}
