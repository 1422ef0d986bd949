// Restoring a saved guest (`memshift restore`, the library's `restoreGuest`): the file's header says
// which regions to allocate (the caller's `createTarget`, as a destination's), its pages are read
// straight into the target's memory at their fixed offsets, several reads at once (the file layout
// lets any range be read on its own), then every page is hashed and checked against the hash table,
// the table against the trailer's digest, and the device state against the target, before anything
// is loaded. The target is returned loaded and not running: the caller resumes it.
//
//   header ─► trailer ─► createTarget ─► read pages (≤ READS_IN_FLIGHT at once) ─► verify ─► state ─► loadState

import { open, type FileHandle } from 'node:fs/promises';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import { kernelsOf, pageOffset, viewsOfSlab } from '../memory/slab.js';
import { scratchSlot } from '../memory/slab-layout.js';
import type { MemoryTarget, Region } from '../memory/types.js';
import { SAVE_HEADER_BYTES, SAVE_TRAILER_BYTES, decodeSaveHeader, decodeSaveTrailer, type SaveLayout } from '../protocol/save-file.js';

export interface RestoreResult {
  target: MemoryTarget;
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

/** Restores the guest saved in `path` into the target `createTarget` allocates for its regions. */
export async function restoreGuest(path: string, createTarget: (regions: readonly Region[]) => MemoryTarget): Promise<RestoreResult> {
  const t0 = performance.now();
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    throw new MemshiftError(ErrorCode.IO, `cannot open ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const size = (await fh.stat()).size;
    const layout = decodeSaveHeader(await readAt(fh, 0, Math.min(SAVE_HEADER_BYTES, size), path), size);
    const trailer = decodeSaveTrailer(await readAt(fh, layout.trailerOffset, SAVE_TRAILER_BYTES, path));
    const regions: Region[] = layout.regions.map((r) => ({ id: r.id, name: r.name, kind: r.kind, pageSize: r.pageSize, pageCount: r.pageCount }));
    let target: MemoryTarget;
    try {
      target = createTarget(regions);
    } catch (err) {
      throw toMemshiftError(err, ErrorCode.INVALID_ARGUMENT, 'createTarget');
    }
    checkShape(target, regions);
    await readPages(fh, target, layout, path);
    const readMs = performance.now() - t0;
    const digest = await verifyPages(fh, target, layout, path);
    if (digest !== trailer.digest) {
      throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `the saved pages' digest ${hex(digest)} is not the trailer's ${hex(trailer.digest)}: the hash table was damaged`);
    }
    const state = await readAt(fh, layout.stateOffset, layout.stateBytes, path);
    target.checkState(state);
    target.loadState(state);
    const end = performance.now();
    return { target, fileBytes: layout.fileBytes, live: (layout.flags & 1) !== 0, pagesSaved: trailer.pagesWritten, readMs, verifyMs: end - t0 - readMs, totalMs: end - t0, digest };
  } finally {
    await fh.close();
  }
}

const hex = (d: bigint): string => d.toString(16).padStart(16, '0');

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
      const k = kernelsOf(s).raw;
      const { u8 } = viewsOfSlab(s);
      const out = scratchSlot(s.layout, ScratchAgent.TOOLS).page;
      const got = new BigUint64Array(u8.buffer, out, Math.floor((2 * s.layout.pageSize) / 8));
      const chunk = got.length;
      const zero = k.zeroPageHash(s.layout.pageSize);
      for (let first = 0; first < s.pageCount; first += chunk) {
        const n = Math.min(chunk, s.pageCount - first);
        k.hashPages(pageOffset(s, first), s.layout.pageSize, n, out);
        for (let i = 0; i < n; i++) {
          const page = s.firstPage + first + i;
          if (got[i] !== saved[page]) {
            throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `page ${page} of region ${r.id} does not match its saved hash (the file was damaged at byte ${r.dataOffset + page * r.pageSize} or in its hash table)`, { regionId: r.id, page });
          }
        }
        digest ^= BigInt.asUintN(64, k.digestOfHashes(out, n, (BigInt(r.id) << 32n) + BigInt(s.firstPage + first), zero));
      }
    }
  }
  return digest;
}
