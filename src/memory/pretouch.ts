// Pre-touching a guest's RAM before it receives, as QEMU's -mem-prealloc does with its prealloc
// threads: every page written once, so that receiving does not pay the host's first-write fault
// (~10 µs a page on these hosts: 3–4 s for 1 GiB on one thread). The faults scale over threads (the
// kernel takes them under a shared lock), so the pages are split into consecutive shares: this thread
// takes one and a worker thread each of the others.
//
//   slabs ─► shares of pages (one per core) ─► share 0 here, the rest on pretouch-thread.ts ─► all done

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../errors.js';
import type { Slab } from './slab.js';

/** Pages [from, to) of one slab's RAM. Plain data and the memory: crosses to a worker as it is. */
export interface TouchRange {
  memory: WebAssembly.Memory;
  ram: number;
  pageSize: number;
  from: number;
  to: number;
}

/**
 * Writes each page of `range` once: an atomic add of zero, a write the host must back with memory that
 * changes no byte, so that other threads may write the same pages meanwhile.
 */
export function touchPages(range: TouchRange): void {
  const i32 = new Int32Array(range.memory.buffer);
  const words = range.pageSize >>> 2;
  const base = range.ram >>> 2;
  for (let p = range.from; p < range.to; p++) Atomics.add(i32, base + p * words, 0);
}

/** Below this many pages one thread does it all: a worker's start costs about what it would save. */
export const PARALLEL_FROM_PAGES = 16_384;

/**
 * Touches every page of `slabs` once, over `threads` threads (this one included). A file-backed
 * slab's pages are the file's: its owner decides when they are allocated, and they are skipped.
 */
export async function pretouch(slabs: readonly Slab[], threads = availableParallelism()): Promise<void> {
  const ranges: TouchRange[] = slabs.filter((s) => s.file === null)
    .map((s) => ({ memory: s.memory, ram: s.layout.ram, pageSize: s.layout.pageSize, from: 0, to: s.pageCount }));
  const pages = ranges.reduce((n, r) => n + r.to, 0);
  if (threads <= 1 || pages < PARALLEL_FROM_PAGES) {
    for (const r of ranges) touchPages(r);
    return;
  }
  const [mine, ...theirs] = shares(ranges, pages, threads);
  const workers = theirs.map((share) => touchOnThread(share));
  // Started before this thread's share: they run while it does.
  for (const r of mine) touchPages(r);
  await Promise.all(workers);
}

/** `ranges` cut into `n` runs of consecutive pages, as even as whole pages allow. */
function shares(ranges: readonly TouchRange[], pages: number, n: number): TouchRange[][] {
  const out: TouchRange[][] = [];
  let at = 0;
  let offset = 0;
  for (let k = 0; k < n; k++) {
    let want = Math.floor((pages * (k + 1)) / n) - Math.floor((pages * k) / n);
    const share: TouchRange[] = [];
    while (want > 0) {
      const r = ranges[at];
      const take = Math.min(want, r.to - offset);
      share.push({ ...r, from: offset, to: offset + take });
      want -= take;
      offset += take;
      if (offset === r.to) {
        at++;
        offset = 0;
      }
    }
    out.push(share);
  }
  return out;
}

/**
 * Touches `share` on a worker thread of its own; settles when it is done, or when `stop` aborts it
 * (the worker is terminated where it is: the pages it reached stay touched, no byte changed).
 */
export function touchOnThread(share: readonly TouchRange[], stop?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./pretouch-thread.js', import.meta.url), { workerData: share });
    let failure: unknown = null;
    const abort = (): void => void worker.terminate();
    stop?.addEventListener('abort', abort, { once: true });
    worker.once('error', (err) => { failure = err; });
    worker.once('exit', (code) => {
      stop?.removeEventListener('abort', abort);
      if (failure === null && (code === 0 || stop?.aborted === true)) resolve();
      else reject(new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `pre-touching guest memory failed on a worker thread: ${failure instanceof Error ? failure.message : `exit code ${code}`}`, { cause: failure }));
    });
  });
}
