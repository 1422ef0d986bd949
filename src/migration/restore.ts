// Restoring a saved guest (`memshift restore`, the library's `restoreGuest`): the file's header says
// which regions to allocate (the caller's `createTarget`, as a destination's), its pages are read
// straight into the target's memory at their fixed offsets, several reads at once (the file layout
// lets any range be read on its own), then every page is hashed and checked against the hash table,
// the table against the trailer's digest, and the device state against the target, before anything
// is loaded. The target is returned loaded and not running: the caller resumes it.
//
//   header ─► trailer ─► createTarget ─► read pages (≤ READS_IN_FLIGHT at once) ─► verify ─► disks ─► state ─► loadState
//
// Local disks (regions of kind `disk`, saved-disks.ts) are restored into the images the target makes
// for them, each block checked, before the state is loaded (a lazy restore too: they are not lazy).
//
// Lazy (post-copy from a file): only the header, trailer, hash table (against the digest) and state are
// read before the target is returned, with its page gate armed, for the caller to resume at once. A
// fault thread (restore-fault-thread.ts) reads each page the vCPU blocks on; a loader here reads the
// rest in order; every page is checked against its saved hash as it is written (saved-pages.ts).
// `loaded` settles once every page is present (the gate then opens), or with the first damaged page.

import { open, type FileHandle } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Mailbox, readFaultLog } from '../memory/page-gate.js';
import { isPresent, loadSavedPage, type SavedRegionPages } from './saved-pages.js';
import { hex64 } from './report.js';
import { RestoreBoard, RestoreState, type RestoreFaultMessage, type RestoreFaultThreadData } from './restore-board.js';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import { hashSlabPages, kernelsOf, pageOffset, viewsOfSlab, type Slab } from '../memory/slab.js';
import { scratchSlot } from '../memory/slab-layout.js';
import type { MemoryTarget, Region } from '../memory/types.js';
import { SAVE_HEADER_BYTES, SAVE_TRAILER_BYTES, decodeSaveHeader, decodeSaveTrailer, type SaveLayout } from '../protocol/save-file.js';
import { restoreDisks } from './saved-disks.js';

export interface LazyLoad {
  /** From the call to every page present. */
  loadedMs: number;
  /** Pages the fault thread wrote for a blocked vCPU, and the vCPU's blocked time per fault (µs). */
  faultPages: number;
  faultLatencyUs: { p50: number; p99: number; max: number } | null;
}

export interface RestoreResult {
  target: MemoryTarget;
  /** Lazy: settles once every page is present (eager: already settled). */
  loaded: Promise<LazyLoad | null>;
  fileBytes: number;
  /** Whether the file was saved live (passes while running). */
  live: boolean;
  /** Page writes the save made (from the trailer). */
  pagesSaved: number;
  readMs: number;
  verifyMs: number;
  totalMs: number;
  digest: bigint;
}

/** Reads in flight at once (libuv's thread pool runs four by default). */
const READS_IN_FLIGHT = 4;
const READ_BYTES = 8 * 2 ** 20;

/**
 * Restores the guest saved in `path` into the target `createTarget` allocates for its regions. With
 * `lazy`, returns before the pages are read, the target's page gate armed (it must support post-copy).
 * A guest larger than `maxGuestBytes` (default three quarters of the host's memory) is refused first.
 * On failure the target `createTarget` made is the caller's to discard.
 */
export async function restoreGuest(path: string, createTarget: (regions: readonly Region[]) => MemoryTarget, options: { lazy?: boolean; maxGuestBytes?: number } = {}): Promise<RestoreResult> {
  const t0 = performance.now();
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  let keepOpen = false;
  try {
    const size = (await fh.stat()).size;
    const layout = decodeSaveHeader(await readAt(fh, 0, Math.min(SAVE_HEADER_BYTES, size), path), size);
    const trailer = decodeSaveTrailer(await readAt(fh, layout.trailerOffset, SAVE_TRAILER_BYTES, path));
    // Local disks are regions of kind `disk` (saved-disks.ts): restored into images the target makes, not memory.
    const disks = layout.regions.filter((r) => r.kind === 'disk');
    const ram: SaveLayout = { ...layout, regions: layout.regions.filter((r) => r.kind === 'ram') };
    const regions: Region[] = ram.regions.map((r) => ({ id: r.id, name: r.name, kind: r.kind, pageSize: r.pageSize, pageCount: r.pageCount }));
    // A header is checked, not trusted: a sparse file can claim any size. Refused before anything is allocated.
    const guestBytes = regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
    const maxGuestBytes = options.maxGuestBytes ?? Math.floor(totalmem() * 0.75);
    if (guestBytes > maxGuestBytes) {
      throw new MemshiftError(ErrorCode.MEMORY_ALLOCATION, `the saved guest needs ${guestBytes} bytes of memory, more than this host allows (${maxGuestBytes})`, { value: guestBytes, limit: maxGuestBytes });
    }
    let target: MemoryTarget;
    try {
      target = createTarget(regions);
    } catch (err) {
      throw toMemshiftError(err, ErrorCode.INVALID_ARGUMENT, 'createTarget');
    }
    checkShape(target, regions);
    const readFile = (into: Uint8Array, position: number): Promise<Uint8Array> => readAt(fh, position, into.length, path, into);
    if (options.lazy === true) {
      // The disks first, whole and checked: the guest's first disk read must find its blocks.
      const disksDigest = await restoreDisks(disks, target, readFile);
      const { loaded } = await startLazy(fh, path, target, ram, trailer.digest ^ disksDigest, t0);
      keepOpen = true;
      const ready = performance.now() - t0;
      return { target, loaded, fileBytes: layout.fileBytes, live: (layout.flags & 1) !== 0, pagesSaved: trailer.pagesWritten, readMs: ready, verifyMs: 0, totalMs: ready, digest: trailer.digest };
    }
    await readPages(fh, target, ram, path);
    const readMs = performance.now() - t0;
    const digest = (await verifyPages(fh, target, ram, path)) ^ (await restoreDisks(disks, target, readFile));
    if (digest !== trailer.digest) {
      throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `the saved pages' digest ${hex64(digest)} is not the trailer's ${hex64(trailer.digest)}: the hash table was damaged`);
    }
    const state = await readAt(fh, layout.stateOffset, layout.stateBytes, path);
    target.checkState(state);
    target.loadState(state);
    const end = performance.now();
    return { target, loaded: Promise.resolve(null), fileBytes: layout.fileBytes, live: (layout.flags & 1) !== 0, pagesSaved: trailer.pagesWritten, readMs, verifyMs: end - t0 - readMs, totalMs: end - t0, digest };
  } finally {
    // A lazy restore that started keeps the file open for its loader, which closes it.
    if (!keepOpen) await fh.close();
  }
}

/**
 * Lazy: checks the hash tables against the digest and loads the state, arms the page gate, starts the
 * fault thread and the loader. Returns what settles once every page is present.
 */
async function startLazy(fh: FileHandle, path: string, target: MemoryTarget, layout: SaveLayout, digest: bigint, t0: number): Promise<{ loaded: Promise<LazyLoad> }> {
  if (target.enablePageGate === undefined) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, 'a lazy restore needs a target with a page gate (post-copy support)', { field: 'target' });
  const regions: (SavedRegionPages & { table: SharedArrayBuffer })[] = [];
  let tableDigest = 0n;
  for (const r of layout.regions) {
    const table = new SharedArrayBuffer(8 * r.pageCount);
    await readAt(fh, r.hashOffset, 8 * r.pageCount, path, new Uint8Array(table));
    const slabs = target.slabsOf(r.id);
    regions.push({ id: r.id, pageSize: r.pageSize, dataOffset: r.dataOffset, hashes: new BigUint64Array(table), slabs, table });
    tableDigest ^= digestOfTable(new Uint8Array(table), slabs, r.id);
  }
  if (tableDigest !== digest) {
    throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `the hash table's digest ${hex64(tableDigest)} is not the trailer's ${hex64(digest)}: the hash table was damaged`);
  }
  const state = await readAt(fh, layout.stateOffset, layout.stateBytes, path);
  target.checkState(state);
  target.loadState(state);
  const gate = target.enablePageGate();
  const board = new Int32Array(new SharedArrayBuffer(4 * RestoreBoard.SLOTS));
  const data: RestoreFaultThreadData = {
    path, mailbox: gate.mailbox, board: board.buffer as SharedArrayBuffer,
    regions: regions.map((r) => ({ id: r.id, pageSize: r.pageSize, dataOffset: r.dataOffset, hashes: r.table, slabs: [...r.slabs] })),
  };
  const worker = new Worker(new URL('./restore-fault-thread.js', import.meta.url), { workerData: data });
  // Listened for now: a thread that fails ends before anyone would wait for its exit.
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  const failed = new Promise<never>((_, reject) => {
    worker.on('message', (m: RestoreFaultMessage) => reject(new MemshiftError(m.code as typeof ErrorCode.SAVE_FILE_CORRUPT, m.message, { regionId: m.regionId, page: m.page })));
    worker.on('error', (err) => reject(new MemshiftError(ErrorCode.WORKER_FAILED, `restore fault thread failed: ${err.message}`, { cause: err })));
  });
  failed.catch(() => undefined);
  const mailbox = new Int32Array(gate.mailbox);
  const stop = async (): Promise<void> => {
    Atomics.store(board, RestoreBoard.STATE, RestoreState.DONE);
    Atomics.notify(mailbox, Mailbox.FAULT_SEQ);
    void worker.terminate();
    await exited;
  };
  const loader = { stopped: false };
  const load = async (): Promise<LazyLoad> => {
    try {
      await Promise.race([loadAll(fh, path, regions, loader), failed]);
      // A page the fault thread claimed last may still be being written: wait for its present bit.
      while (!allPresent(regions)) await Promise.race([new Promise((r) => setTimeout(r, 1)), failed]);
      Atomics.store(mailbox, Mailbox.ALL_PRESENT, 1);
      const served = Atomics.load(board, RestoreBoard.SERVED);
      const latencies = readFaultLog(gate.faultLog).sort((a, b) => a - b);
      const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
      return {
        loadedMs: performance.now() - t0, faultPages: served,
        faultLatencyUs: latencies.length === 0 ? null : { p50: at(0.5), p99: at(0.99), max: latencies[latencies.length - 1] },
      };
    } finally {
      loader.stopped = true;
      await stop();
      await fh.close();
    }
  };
  const loaded = load();
  // Observed here so that a failure before the caller awaits it is not an unhandled rejection.
  loaded.catch(() => undefined);
  return { loaded };
}

/** The session digest of a region's saved hash table (digestOfHashes over it, through a slab's scratch). */
function digestOfTable(table: Uint8Array, slabs: readonly Slab[], regionId: number): bigint {
  const s = slabs[0];
  const k = kernelsOf(s).raw;
  const { u8 } = viewsOfSlab(s);
  const out = scratchSlot(s.layout, ScratchAgent.TOOLS).page;
  const chunk = Math.floor((2 * s.layout.pageSize) / 8);
  const zero = k.zeroPageHash(s.layout.pageSize);
  const pages = table.length / 8;
  let d = 0n;
  for (let first = 0; first < pages; first += chunk) {
    const n = Math.min(chunk, pages - first);
    u8.set(table.subarray(8 * first, 8 * (first + n)), out);
    d ^= BigInt.asUintN(64, k.digestOfHashes(out, n, (BigInt(regionId) << 32n) + BigInt(first), zero));
  }
  return d;
}

/**
 * Reads every page in order and writes those nobody claimed yet (the fault thread takes the others).
 * Each read lands in the slab's own memory (its frame arena, or one scratch page where it has no arena),
 * where the apply kernel checks and copies it: no copy through a JS buffer.
 */
async function loadAll(fh: FileHandle, path: string, regions: readonly SavedRegionPages[], loader: { stopped: boolean }): Promise<void> {
  for (const r of regions) {
    for (const s of r.slabs) {
      const L = s.layout;
      const staged = L.arenaBytes >= L.pageSize
        ? { at: L.arena, bytes: Math.min(READ_BYTES, Math.floor(L.arenaBytes / L.pageSize) * L.pageSize) }
        : { at: scratchSlot(L, ScratchAgent.MAIN).page, bytes: L.pageSize };
      const { u8 } = viewsOfSlab(s);
      const bytes = s.pageCount * r.pageSize;
      for (let at = 0; at < bytes && !loader.stopped; at += staged.bytes) {
        const n = Math.min(staged.bytes, bytes - at);
        await readAt(fh, r.dataOffset + s.firstPage * r.pageSize + at, n, path, u8.subarray(staged.at, staged.at + n));
        for (let off = 0; off < n; off += r.pageSize) {
          const local = (at + off) / r.pageSize;
          if (!isPresent(s, local)) loadSavedPage(r, s.firstPage + local, staged.at + off);
        }
      }
    }
  }
}

function allPresent(regions: readonly SavedRegionPages[]): boolean {
  for (const r of regions) {
    for (const s of r.slabs) if (kernelsOf(s).raw.bitmapCount(s.layout.present, s.layout.bitmapWords) < s.pageCount) return false;
  }
  return true;
}


async function readAt(fh: FileHandle, position: number, length: number, path: string, into?: Uint8Array): Promise<Uint8Array> {
  const buf = into ?? new Uint8Array(length);
  let done = 0;
  try {
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  if (done < length) throw new MemshiftError(ErrorCode.SAVE_FILE_TRUNCATED, `${path} ends at byte ${position + done}, inside what its header describes`, { offset: position + done });
  return buf;
}

function checkShape(target: MemoryTarget, regions: readonly Region[]): void {
  // Exactly the saved regions: a lazy restore's vCPU would wait for ever on a page of any other.
  if (target.regions.length !== regions.length) {
    throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `the target has ${target.regions.length} regions, the file ${regions.length}`, { field: 'target' });
  }
  for (const r of regions) {
    const t = target.regions.find((x) => x.id === r.id);
    if (t === undefined || t.pageSize !== r.pageSize || t.pageCount !== r.pageCount) {
      throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `the target has no region ${r.id} of ${r.pageCount} pages of ${r.pageSize} B, which the file holds`, { regionId: r.id });
    }
  }
}

/** Reads every region's pages into the target's slabs, READS_IN_FLIGHT reads at a time. */
async function readPages(fh: FileHandle, target: MemoryTarget, layout: SaveLayout, path: string): Promise<void> {
  const reads: (() => Promise<unknown>)[] = [];
  for (const r of layout.regions) {
    for (const s of target.slabsOf(r.id)) {
      const { u8 } = viewsOfSlab(s);
      const bytes = s.pageCount * r.pageSize;
      for (let at = 0; at < bytes; at += READ_BYTES) {
        const n = Math.min(READ_BYTES, bytes - at);
        const into = u8.subarray(pageOffset(s, 0) + at, pageOffset(s, 0) + at + n);
        reads.push(() => readAt(fh, r.dataOffset + s.firstPage * r.pageSize + at, n, path, into));
      }
    }
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < reads.length) await reads[next++]();
  };
  await Promise.all(Array.from({ length: READS_IN_FLIGHT }, worker));
}

/** Hashes every page read and checks it against the file's hash table; returns the session digest. */
async function verifyPages(fh: FileHandle, target: MemoryTarget, layout: SaveLayout, path: string): Promise<bigint> {
  let digest = 0n;
  for (const r of layout.regions) {
    const table = await readAt(fh, r.hashOffset, 8 * r.pageCount, path);
    const saved = new BigUint64Array(table.buffer, table.byteOffset, r.pageCount);
    for (const s of target.slabsOf(r.id)) {
      hashSlabPages(s, r.id, (first, got, part) => {
        for (let i = 0; i < got.length; i++) {
          const page = s.firstPage + first + i;
          if (got[i] !== saved[page]) {
            throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `page ${page} of region ${r.id} does not match its saved hash (the file was damaged at byte ${r.dataOffset + page * r.pageSize} or in its hash table)`, { regionId: r.id, page });
          }
        }
        digest ^= part;
      });
    }
  }
  return digest;
}
