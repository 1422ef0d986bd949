// Local disks in a save file: each disk is a region of kind `disk` (id DISK_REGION_BASE + i, its blocks
// as pages), laid out like RAM regions (save-file.ts): block b at dataOffset + b × blockBytes, holes
// where the guest never wrote, a u64 mxh64 per block in the hash table, inside the session digest.
//
//   save:     every pass writes the blocks marked dirty (the marks taken, as for pages); once paused,
//             each block is hashed from the image (a hole reads as zeros, no I/O)
//   restore:  the target makes empty images (receiveBlockDevices); every block is read from the file,
//             checked against its hash, and written unless it is zero (the image stays sparse)
//
// Hashing goes through a WebAssembly memory of its own (the page kernel hashes where the blocks lie).

import { ErrorCode, MemshiftError } from '../errors.js';
import type { BlockDevice, MemoryTarget } from '../memory/types.js';
import { takeDirtyRuns } from '../memory/dirty-block-runs.js';
import type { SavedRegion } from '../protocol/save-file.js';
import { DISK_REGION_BASE } from '../protocol/constants.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../wasm/kernels.js';

/** Blocks read, hashed or written at once. */
const CHUNK_BYTES = 8 * 2 ** 20;

/** The regions a guest's local disks take in a save file. */
export function diskRegions(devices: readonly BlockDevice[]): { id: number; name: string; kind: 'disk'; pageSize: number; pageCount: number }[] {
  return devices.map((d, i) => ({ id: DISK_REGION_BASE + i, name: `disk${i}`, kind: 'disk' as const, pageSize: d.blockBytes, pageCount: d.blocks }));
}

/** A memory for hashing chunks of blocks: CHUNK_BYTES of blocks, then their hashes. */
class ChunkHasher {
  readonly kernels: Kernels;
  readonly bytes: Uint8Array;
  readonly data = KERNEL_RESERVED_BYTES;
  readonly hashes = KERNEL_RESERVED_BYTES + CHUNK_BYTES;

  constructor() {
    const pages = Math.ceil((KERNEL_RESERVED_BYTES + CHUNK_BYTES + CHUNK_BYTES / 512 * 8) / WASM_PAGE_BYTES);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    this.kernels = new Kernels(memory);
    this.bytes = new Uint8Array(memory.buffer);
  }

  /** Hashes `count` blocks of `blockBytes` now in `data`; returns a copy of their hashes. */
  hash(count: number, blockBytes: number): BigUint64Array {
    this.kernels.raw.hashPages(this.data, blockBytes, count, this.hashes);
    return new BigUint64Array(this.bytes.buffer, this.hashes, count).slice();
  }

  /** The session digest's share of `hashes` (blocks from `first` of region `regionId`). */
  digest(hashes: BigUint64Array, regionId: number, first: number, blockBytes: number): bigint {
    new BigUint64Array(this.bytes.buffer, this.hashes, hashes.length).set(hashes);
    const k = this.kernels.raw;
    return BigInt.asUintN(64, k.digestOfHashes(this.hashes, hashes.length, (BigInt(regionId) << 32n) + BigInt(first), k.zeroPageHash(blockBytes)));
  }
}

/**
 * Writes the blocks of `device` marked dirty now at their offsets in the file (`write(bytes, position)`),
 * taking the marks; runs of consecutive blocks go in one write. Returns the blocks written.
 */
export function writeMarkedBlocks(device: BlockDevice, region: SavedRegion, write: (bytes: Uint8Array, position: number) => void): number {
  const buf = new Uint8Array(CHUNK_BYTES);
  let written = 0;
  for (const { first, count } of takeDirtyRuns(device, Math.floor(CHUNK_BYTES / device.blockBytes))) {
    const bytes = buf.subarray(0, count * device.blockBytes);
    device.read(first, count, bytes);
    write(bytes, region.dataOffset + first * device.blockBytes);
    written += count;
  }
  return written;
}

/** Hashes every block of `device` as its image holds it now; writes the table (`write`) and returns the region's digest share. */
export function hashDisk(device: BlockDevice, region: SavedRegion, write: (bytes: Uint8Array, position: number) => void, hasher = new ChunkHasher()): bigint {
  const per = Math.floor(CHUNK_BYTES / device.blockBytes);
  let digest = 0n;
  for (let first = 0; first < device.blocks; first += per) {
    const n = Math.min(per, device.blocks - first);
    device.read(first, n, hasher.bytes.subarray(hasher.data, hasher.data + n * device.blockBytes));
    const hashes = hasher.hash(n, device.blockBytes);
    digest ^= hasher.digest(hashes, region.id, first, device.blockBytes);
    write(new Uint8Array(hashes.buffer), region.hashOffset + 8 * first);
  }
  return digest;
}

/**
 * Restores the disk regions of a save file into the images `target` makes for them: reads each chunk
 * (`read(into, position)`), checks every block against the table, writes the non-zero ones, and
 * flushes each image. Returns the disks' digest share. Throws MS_ERR_SAVE_FILE_CORRUPT naming the block that does not match.
 */
export async function restoreDisks(
  regions: readonly SavedRegion[], target: MemoryTarget,
  read: (into: Uint8Array, position: number) => Promise<unknown>,
): Promise<bigint> {
  if (regions.length === 0) return 0n;
  regions.forEach((r, i) => {
    if (r.id !== DISK_REGION_BASE + i) throw new MemshiftError(ErrorCode.SAVE_FILE_INVALID, `disk region ${r.id} is out of order (disk ${i} is region ${DISK_REGION_BASE + i})`, { field: 'regionId', value: r.id });
  });
  if (target.receiveBlockDevices === undefined) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, 'the saved guest has disks, and the target cannot take any', { field: 'target' });
  const devices = target.receiveBlockDevices(regions.map((r) => ({ blockBytes: r.pageSize, blocks: r.pageCount })));
  const hasher = new ChunkHasher();
  let digest = 0n;
  for (const [i, r] of regions.entries()) {
    const device = devices[i];
    const table = new Uint8Array(8 * r.pageCount);
    await read(table, r.hashOffset);
    const saved = new BigUint64Array(table.buffer);
    const zero = hasher.kernels.raw.zeroPageHash(r.pageSize);
    const per = Math.floor(CHUNK_BYTES / r.pageSize);
    for (let first = 0; first < r.pageCount; first += per) {
      const n = Math.min(per, r.pageCount - first);
      const data = hasher.bytes.subarray(hasher.data, hasher.data + n * r.pageSize);
      await read(data, r.dataOffset + first * r.pageSize);
      const got = hasher.hash(n, r.pageSize);
      for (let b = 0; b < n; b++) {
        if (got[b] !== saved[first + b]) {
          throw new MemshiftError(ErrorCode.SAVE_FILE_CORRUPT, `block ${first + b} of disk ${i} does not match its saved hash (the file was damaged at byte ${r.dataOffset + (first + b) * r.pageSize} or in its hash table)`, { regionId: r.id, page: first + b });
        }
      }
      digest ^= hasher.digest(got, r.id, first, r.pageSize);
      // Zero blocks stay holes: the image is fresh.
      for (let b = 0; b < n;) {
        if (got[b] === BigInt.asUintN(64, zero)) {
          b++;
          continue;
        }
        let e = b + 1;
        while (e < n && got[e] !== BigInt.asUintN(64, zero)) e++;
        // Behind where the device can: it writes while the next chunk is read and checked.
        if (device.writeBehind !== undefined) device.writeBehind(first + b, e - b, data.subarray(b * r.pageSize, e * r.pageSize));
        else device.write(first + b, e - b, data.subarray(b * r.pageSize, e * r.pageSize));
        b = e;
      }
    }
    await device.flush();
  }
  return digest;
}
