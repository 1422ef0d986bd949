// The pages of a file-backed region (types.ts, RegionFile) on their way through a slab's window: the
// source reads the pages an encode task will send, or every page a hash-scan checks, from the file into
// its thread's window, and hands the kernels a RAM base that puts page `first` at the window's start;
// the destination applies a batch the same way and writes what it applied back at the pages' offsets.
// Positioned I/O only (pread/pwrite), from whichever thread does the work; each thread opens the file
// once.
//
//   file ──pread──► window[agent] ──kernels (encode │ verify+apply)──► frame │ window ──pwrite──► file

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { ErrorCode, MemshiftError } from '../errors.js';
import { viewsOf } from '../wasm/views.js';
import { kernelsOf, type Slab } from './slab.js';
import { CONTROL_DIGEST, windowOf } from './slab-layout.js';

/**
 * This thread's descriptors, per slab (not per path: a file deleted and made again under the same name
 * is another file, and a descriptor kept for the old one would read pages nobody writes any more).
 */
const opened = new Map<Slab, { read?: number; write?: number }>();

/** This thread's descriptor for the slab's file (read-only on a source, read-write on a destination). */
function fdOf(slab: Slab, write: boolean): number {
  let fds = opened.get(slab);
  if (fds === undefined) opened.set(slab, (fds = {}));
  const have = write ? fds.write : fds.read;
  if (have !== undefined) return have;
  const path = slab.file!.path;
  let fd: number;
  try {
    fd = openSync(path, write ? 'r+' : 'r');
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot open region ${slab.regionId}'s file ${path}: ${(cause as Error).message}`, { cause, regionId: slab.regionId });
  }
  if (write) fds.write = fd;
  else fds.read = fd;
  return fd;
}

/** Closes the descriptors this thread opened for `slabs` (they open again when next used). */
export function closeRegionFiles(slabs: readonly Slab[]): void {
  for (const slab of slabs) {
    const fds = opened.get(slab);
    if (fds === undefined) continue;
    if (fds.read !== undefined) closeSync(fds.read);
    if (fds.write !== undefined) closeSync(fds.write);
    opened.delete(slab);
  }
}

/** A copy of slab page `local`, read from the file (the encoding samplers' view of a file-backed guest). */
export function readPageCopy(slab: Slab, local: number): Uint8Array {
  const out = new Uint8Array(slab.layout.pageSize);
  readPages(slab, 0, local, 1, out);
  return out;
}

/** Reads slab pages [first, first + count) into the window at `at` (bytes); the file must hold them. */
function readPages(slab: Slab, at: number, first: number, count: number, u8 = viewsOf(slab.memory).u8): void {
  const fd = fdOf(slab, false);
  const ps = slab.layout.pageSize;
  const bytes = count * ps;
  let done = 0;
  while (done < bytes) {
    const n = readSync(fd, u8, at + done, bytes - done, slab.file!.offset + first * ps + done);
    if (n === 0) {
      throw new MemshiftError(ErrorCode.IO, `region ${slab.regionId}'s file ${slab.file!.path} ends before page ${slab.firstPage + first + Math.floor(done / ps)}`, { regionId: slab.regionId });
    }
    done += n;
  }
}

function writePages(slab: Slab, from: Uint8Array, first: number): void {
  const fd = fdOf(slab, true);
  const position = slab.file!.offset + first * slab.layout.pageSize;
  for (let done = 0; done < from.length;) done += writeSync(fd, from, done, from.length - done, position + done);
}

/** A window's RAM base for the kernels: slab page `first` lands at the window's start (u32 arithmetic wraps). */
function windowBase(window: number, first: number, pageSize: number): number {
  return (window - first * pageSize) | 0;
}

/**
 * Source, before an encode task: reads the pages marked in the snapshot from the first marked page in
 * [from, to) on, as far as one window reaches, each at its place in `agent`'s window. Returns the page
 * range the task may encode and the RAM base to give the kernel, or null when nothing in [from, to) is
 * marked. Nothing but the pass's own encoders takes snapshot bits while it runs, so the pages read are
 * those the kernel will take.
 */
export function readMarkedPages(slab: Slab, agent: number, from: number, to: number): { from: number; to: number; ram: number } | null {
  const L = slab.layout;
  const first = kernelsOf(slab).raw.bitmapNextSet(L.snapshot, to, from);
  if (first < 0) return null;
  const end = Math.min(to, first + L.windowPages);
  const window = windowOf(L, agent);
  const { u32 } = viewsOf(slab.memory);
  const words = L.snapshot >>> 2;
  let run = -1;
  for (let p = first; p <= end; p++) {
    const marked = p < end && (u32[words + (p >>> 5)] & (1 << (p & 31))) !== 0;
    if (marked && run < 0) run = p;
    if (!marked && run >= 0) {
      readPages(slab, window + (run - first) * L.pageSize, run, p - run);
      run = -1;
    }
  }
  return { from: first, to: end, ram: windowBase(window, first, L.pageSize) };
}

/**
 * Source, hash-scan: reads slab pages [from, to) a window at a time and marks dirty each page whose
 * hash differs from the hash it was last sent with. Returns how many it marked.
 */
export function scanChangedPages(slab: Slab, agent: number, from: number, to: number): number {
  const L = slab.layout;
  const k = kernelsOf(slab).raw;
  const window = windowOf(L, agent);
  let marked = 0;
  // Half a MiB at a time: the pages are hashed while the read left them in cache (10 % faster than 2 MiB).
  const step = Math.min(L.windowPages, Math.max(1, (512 * 1024) / L.pageSize));
  for (let first = from; first < to; first += step) {
    const count = Math.min(step, to - first);
    readPages(slab, window, first, count);
    marked += k.markChangedPages(window, L.pageSize, count, first, L.hashes, L.dirty);
  }
  return marked;
}

/**
 * Destination: where a batch's entries from `start` on may be applied through `agent`'s window: the
 * longest run of entries whose slab pages lie in [first, first + windowPages) of this slab, `first`
 * being the first entry's (the decoder checked that pages increase, so none lies below it). Returns
 * the end index and the RAM base for the kernel.
 */
export function applyWindow(slab: Slab, agent: number, pages: (i: number) => number, start: number, count: number): { end: number; ram: number; first: number } {
  const L = slab.layout;
  const first = pages(start) - slab.firstPage;
  const limit = slab.firstPage + Math.min(slab.pageCount, first + L.windowPages);
  let end = start + 1;
  while (end < count && pages(end) < limit) end++;
  return { end, ram: windowBase(windowOf(L, agent), first, L.pageSize), first };
}

/**
 * Destination: which pages of a file-backed slab hold zeros in the file (1) or may not (0), once
 * learnt by `learnZeroPages` and kept up to date by every write since (this thread's view: the
 * destination applies on one thread). Without it, a zero page received is checked against the file.
 */
const zeroInFile = new WeakMap<Slab, Uint8Array>();

/**
 * Destination, before a migration: reads the slab's file through `agent`'s window and notes which
 * pages are zero, so that the zero pages of pass 1 cost nothing where the file is already zero (a
 * destination hypervisor's fresh RAM) and no read where it is not.
 */
export function learnZeroPages(slab: Slab, agent: number): void {
  const L = slab.layout;
  const k = kernelsOf(slab).raw;
  const window = windowOf(L, agent);
  const map = window + L.windowPages * L.pageSize - Math.ceil(L.windowPages / 64) * 8;
  const zero = new Uint8Array(slab.pageCount);
  const { u32 } = viewsOf(slab.memory);
  // The bitmap takes the window's last words: read one page fewer than the window holds.
  const step = L.windowPages - Math.ceil((Math.ceil(L.windowPages / 64) * 8) / L.pageSize);
  for (let first = 0; first < slab.pageCount; first += step) {
    const count = Math.min(step, slab.pageCount - first);
    readPages(slab, window, first, count);
    k.scanZeroPages(window, L.pageSize, count, map);
    for (let i = 0; i < count; i++) zero[first + i] = (u32[(map >>> 2) + (i >>> 5)] >>> (i & 31)) & 1;
  }
  zeroInFile.set(slab, zero);
  // What is known now is recorded as such: a zero page's hash is the zero page's (slab.ts).
  const zeroHash = k.zeroPageHash(L.pageSize);
  const keyBase = (BigInt(slab.regionId) << 32n) + BigInt(slab.firstPage);
  for (let p = 0; p < slab.pageCount; p++) {
    if (zero[p] === 1) k.recordPageHash(L.hashes, p, keyBase + BigInt(p), zeroHash, L.control + CONTROL_DIGEST);
  }
}

/**
 * Destination, after the kernel applied entries: writes them from `agent`'s window (window page 0 is
 * slab page `first`) to the file. `zero` says which were zero pages: those are written only where the
 * file's page is not zero already (a fresh backing file is sparse; writing zeros would allocate it).
 */
export function writeAppliedPages(slab: Slab, agent: number, first: number, pages: readonly number[], zero: readonly boolean[]): void {
  const L = slab.layout;
  const ps = L.pageSize;
  const window = windowOf(L, agent);
  const { u8 } = viewsOf(slab.memory);
  const k = kernelsOf(slab).raw;
  let i = 0;
  while (i < pages.length) {
    let j = i + 1;
    while (j < pages.length && pages[j] === pages[j - 1] + 1 && zero[j] === zero[i]) j++;
    const local = pages[i] - slab.firstPage;
    const at = window + (local - first) * ps;
    const count = j - i;
    const known = zeroInFile.get(slab);
    if (!zero[i]) {
      writePages(slab, u8.subarray(at, at + count * ps), local);
      known?.fill(0, local, local + count);
    } else if (known !== undefined) {
      for (let p = 0; p < count; p++) {
        if (known[local + p] === 1) continue;
        u8.fill(0, at + p * ps, at + (p + 1) * ps);
        writePages(slab, u8.subarray(at + p * ps, at + (p + 1) * ps), local + p);
        known[local + p] = 1;
      }
    } else {
      // Their window slots are free (a zero page has no payload): read what the file holds there.
      readPages(slab, at, local, count);
      for (let p = 0; p < count; p++) {
        if (k.isZeroPage(at + p * ps, ps) === 1) continue;
        u8.fill(0, at + p * ps, at + (p + 1) * ps);
        writePages(slab, u8.subarray(at + p * ps, at + (p + 1) * ps), local + p);
      }
    }
    i = j;
  }
}
