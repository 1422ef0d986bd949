// Saving a guest to a file (`memshift save`, the library's `saveGuest`): a migration whose destination
// is a file laid out by protocol/save-file.ts. Pages go straight from guest memory to their fixed
// offsets (fs writes views of shared memory, no copy). A live save writes passes while the guest runs,
// each page marked clean before it is written (the dirty tracker's sync, as a migration pass), and the
// last pass paused; a suspended save pauses first. Once paused: the hash table (every page hashed as it
// now is), the device state, the header, and last the trailer after an fsync, so a save that stops half
// way is refused by restore as truncated. It is written beside `path` and renamed over it only once
// whole, so a failed save leaves an earlier file of that name as it was. The source stays paused: the
// caller resumes or releases it.
//
//   [live: pass 1 … pass n while running] ─► pause ─► last pass ─► hashes ─► state ─► header ─► fsync ─► trailer ─► fsync
//
// Local disks are saved beside RAM as regions of kind `disk`, block by block on the same passes
// (saved-disks.ts).

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { DISK_REGION_BASE, Limits } from '../protocol/constants.js';
import { ErrorCode, MemshiftError } from '../errors.js';
import { DirtyTracker } from '../memory/dirty-tracker.js';
import { hashSlabPages, pageOffset, viewsOfSlab, type Slab } from '../memory/slab.js';
import type { MemorySource } from '../memory/types.js';
import { SaveFlag, encodeSaveHeader, encodeSaveTrailer, planSaveLayout, type SaveLayout } from '../protocol/save-file.js';
import { diskRegions, hashDisk, writeMarkedBlocks } from './saved-disks.js';

export interface SaveOptions {
  /** Write passes while the guest runs, then a last one paused (default: pause, then one pass). */
  live?: boolean;
  /** Live: most passes while running (default 8); it stops sooner once a pass leaves few pages dirty or no fewer than before. */
  maxPasses?: number;
  /** Sees each pass once written. */
  onPass?: (pass: SavePass) => void;
}

export interface SavePass {
  pass: number;
  pages: number;
  bytes: number;
  ms: number;
  /** Written with the guest paused (the last pass). */
  paused: boolean;
}

export interface SaveResult {
  fileBytes: number;
  /** Page writes over all passes (a page dirtied again is written again). */
  pagesWritten: number;
  passes: SavePass[];
  totalMs: number;
  /** From the pause to the trailer: what the save cost the guest. */
  pausedMs: number;
  /** Session digest of the saved pages (the trailer's). */
  digest: bigint;
  stateBytes: number;
}

/** A running pass leaving at most this share of the guest dirty ends the live passes (the rest is written paused). */
const SMALL_PASS_SHARE = 1 / 256;
/** Bytes per write: a run of dirty pages longer than this is written in pieces. */
const MAX_WRITE_BYTES = 16 * 2 ** 20;

/** Saves `source` to `path` (created or replaced). Resolves with the source paused. */
export async function saveGuest(source: MemorySource, path: string, options: SaveOptions = {}): Promise<SaveResult> {
  const t0 = performance.now();
  const flags = options.live === true ? SaveFlag.LIVE : 0;
  // Local disks are regions of the file too (saved-disks.ts); disks on shared storage stay where they are.
  const devices = source.blockDevices ?? [];
  const regions = [...source.regions, ...diskRegions(devices)];
  // Page and hash offsets do not depend on the device state's size, only the trailer's does.
  const plan = planSaveLayout(regions, 0, flags);
  const partial = `${path}.partial-${randomBytes(4).toString('hex')}`;
  const fd = open(partial);
  let whole = false;
  const passes: SavePass[] = [];
  let pagesWritten = 0;
  const writePass = (paused: boolean): SavePass => {
    const started = performance.now();
    let pages = 0;
    let bytes = 0;
    for (const r of plan.regions) {
      if (r.kind === 'disk') {
        const n = writeMarkedBlocks(devices[r.id - DISK_REGION_BASE], r, (b, at) => write(fd, b, at, path));
        pages += n;
        bytes += n * r.pageSize;
        continue;
      }
      for (const s of source.slabsOf(r.id)) {
        const n = writeMarked(fd, s, r.dataOffset, path);
        pages += n;
        bytes += n * r.pageSize;
      }
    }
    const pass: SavePass = { pass: passes.length + 1, pages, bytes, ms: performance.now() - started, paused };
    passes.push(pass);
    pagesWritten += pages;
    options.onPass?.(pass);
    return pass;
  };
  try {
    const tracker = new DirtyTracker(source);
    const onlyWritten = source.unwrittenPagesAreZero === true;
    const guestPages = source.regions.reduce((n, r) => n + r.pageCount, 0);
    let pausedAt: number;
    if (options.live === true) {
      tracker.startFullPass(onlyWritten);
      writePass(false);
      const maxPasses = options.maxPasses ?? 8;
      let before = Infinity;
      for (let n = 2; n <= maxPasses; n++) {
        const dirty = tracker.sync();
        if (dirty <= guestPages * SMALL_PASS_SHARE || dirty >= before) break;
        before = dirty;
        writePass(false);
      }
      await source.pause();
      pausedAt = performance.now();
      tracker.sync();
    } else {
      await source.pause();
      pausedAt = performance.now();
      tracker.startFullPass(onlyWritten);
    }
    writePass(true);
    const state = await source.saveState();
    if (state.length > Limits.MAX_DEVICE_STATE_BYTES) throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `device state of ${state.length} bytes exceeds ${Limits.MAX_DEVICE_STATE_BYTES}`);
    const layout = planSaveLayout(regions, state.length, flags);
    const digest = writeHashes(fd, source, layout, path) ^ layout.regions.filter((r) => r.kind === 'disk').reduce((d, r) => d ^ hashDisk(devices[r.id - DISK_REGION_BASE], r, (b, at) => write(fd, b, at, path)), 0n);
    write(fd, state, layout.stateOffset, path);
    write(fd, encodeSaveHeader(layout), 0, path);
    // Everything before the trailer is on disk before the trailer says the save is whole.
    fsyncSync(fd);
    write(fd, encodeSaveTrailer({ digest, pagesWritten }), layout.trailerOffset, path);
    fsyncSync(fd);
    try {
      renameSync(partial, path);
    } catch (cause) {
      throw new MemshiftError(ErrorCode.IO, `cannot rename ${partial} to ${path}: ${(cause as Error).message}`, { cause });
    }
    whole = true;
    const end = performance.now();
    return { fileBytes: layout.fileBytes, pagesWritten, passes, totalMs: end - t0, pausedMs: end - pausedAt, digest, stateBytes: state.length };
  } finally {
    closeSync(fd);
    if (!whole) rmSync(partial, { force: true });
  }
}

function open(path: string): number {
  try {
    return openSync(path, 'w');
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot open ${path} for writing: ${(cause as Error).message}`, { cause });
  }
}

function write(fd: number, bytes: Uint8Array, position: number, path: string): void {
  let done = 0;
  try {
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot write ${path}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Writes the pages marked in the slab's snapshot at their offsets, runs of consecutive pages in one
 * write each, and clears the marks. Returns the pages written.
 */
function writeMarked(fd: number, slab: Slab, regionDataOffset: number, path: string): number {
  const L = slab.layout;
  const { u8 } = viewsOfSlab(slab);
  const words = new Int32Array(slab.memory.buffer, L.snapshot, L.bitmapWords * 2);
  const base = regionDataOffset + slab.firstPage * L.pageSize;
  const maxRun = MAX_WRITE_BYTES / L.pageSize;
  let pages = 0;
  let runStart = -1;
  const flush = (end: number): void => {
    if (runStart < 0) return;
    const from = pageOffset(slab, runStart);
    write(fd, u8.subarray(from, from + (end - runStart) * L.pageSize), base + runStart * L.pageSize, path);
    pages += end - runStart;
    runStart = -1;
  };
  for (let w = 0; w < words.length; w++) {
    // Taken atomically: the bits are this pass's from now on.
    const bits = Atomics.exchange(words, w, 0);
    if (bits === 0) {
      flush(w * 32);
      continue;
    }
    for (let b = 0; b < 32; b++) {
      const page = w * 32 + b;
      if ((bits & (1 << b)) !== 0 && page < slab.pageCount) {
        if (runStart < 0) runStart = page;
        else if (page - runStart >= maxRun) {
          flush(page);
          runStart = page;
        }
      } else {
        flush(page);
      }
    }
  }
  flush(slab.pageCount);
  return pages;
}

/** Writes every RAM page's hash (as memory holds it now, paused) to the hash table; returns their share of the session digest. */
function writeHashes(fd: number, source: MemorySource, layout: SaveLayout, path: string): bigint {
  let digest = 0n;
  for (const r of layout.regions) {
    if (r.kind === 'disk') continue;
    for (const s of source.slabsOf(r.id)) {
      hashSlabPages(s, r.id, (first, hashes, part) => {
        digest ^= part;
        write(fd, new Uint8Array(hashes.buffer, hashes.byteOffset, hashes.byteLength), r.hashOffset + 8 * (s.firstPage + first), path);
      });
    }
  }
  return digest;
}
