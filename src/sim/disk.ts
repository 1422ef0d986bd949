// A simulated guest's disk: a sparse image file read and written at its offsets, never held in memory,
// and a dirty-block bitmap in shared memory (one bit per DISK_BLOCK_BYTES block) that the vCPU marks
// after each write, as it marks RAM pages. Images are named by their index (`disk0.img`, …) in one
// directory, so a destination on shared storage finds the source's images by the same names.

import { closeSync, constants, copyFileSync, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MemshiftError } from '../errors.js';
import { DISK_BLOCK_BYTES } from './guest-config.js';
import { writeBehind } from './write-behind.js';
import type { BlockDevice } from '../memory/types.js';

/** What the vCPU thread needs of a disk: its open file, its dirty-block bitmap and (post-copy) which blocks are here. */
export interface DiskHandle {
  fd: number;
  blocks: number;
  dirtyBuffer: SharedArrayBuffer;
  presentBuffer: SharedArrayBuffer;
}

export function diskImagePath(dir: string, index: number): string {
  return join(dir, `disk${index}.img`);
}

export class GuestDisk implements DiskHandle, BlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  readonly blocks: number;
  readonly blockBytes = DISK_BLOCK_BYTES;
  readonly dirtyBuffer: SharedArrayBuffer;
  readonly dirty: Int32Array;
  readonly presentBuffer: SharedArrayBuffer;
  readonly present: Int32Array;
  fd: number;
  /**
   * The same image opened O_DIRECT for arriving blocks, written behind (write-behind.ts); the image's
   * own descriptor where the file system refuses O_DIRECT. -1 until the first write. Buffered readers
   * (the vCPU, read) stay coherent: a direct write drops the cached pages it covers.
   */
  private direct = -1;
  /** Writes queued behind since the last drain. */
  private behind = false;

  private constructor(path: string, sizeBytes: number, fd: number) {
    this.path = path;
    this.sizeBytes = sizeBytes;
    this.blocks = sizeBytes / DISK_BLOCK_BYTES;
    this.fd = fd;
    this.dirtyBuffer = new SharedArrayBuffer(Math.ceil(this.blocks / 32) * 4);
    this.dirty = new Int32Array(this.dirtyBuffer);
    this.presentBuffer = new SharedArrayBuffer(this.dirtyBuffer.byteLength);
    this.present = new Int32Array(this.presentBuffer);
    // Every block is here until a post-copy switchover says otherwise (bits past the last block stay clear).
    this.present.fill(-1);
    if (this.blocks % 32 !== 0) this.present[this.present.length - 1] = (1 << (this.blocks % 32)) - 1;
  }

  read(first: number, count: number, into: Uint8Array): void {
    this.drain();
    const bytes = count * DISK_BLOCK_BYTES;
    for (let done = 0; done < bytes;) {
      const n = readSync(this.fd, into, done, bytes - done, first * DISK_BLOCK_BYTES + done);
      // Past the end of a sparse file reads stop short: the rest is zeros.
      if (n === 0) {
        into.fill(0, done, bytes);
        return;
      }
      done += n;
    }
  }

  /**
   * Blocks a reader may want at once (a post-copy fault, a replica's epoch): through the page cache,
   * after every block written behind before them. A 4 KiB write there takes ~8 µs; O_DIRECT, ~100 µs
   * plus two thread wake-ups, which a vCPU waiting on the block would pay.
   */
  write(first: number, count: number, from: Uint8Array): void {
    this.drain();
    this.writeCached(first, count, from);
  }

  /** A pass's blocks: on the image once a later flush resolves (or a read, write or close comes). */
  writeBehind(first: number, count: number, from: Uint8Array): void {
    if (this.direct === -1) this.direct = openDirect(this.path) ?? this.fd;
    writeBehind().write(this.direct, this.fd, first * DISK_BLOCK_BYTES, from.subarray(0, count * DISK_BLOCK_BYTES));
    this.behind = true;
  }

  private drain(): void {
    if (!this.behind) return;
    this.behind = false;
    writeBehind().drain(this.path);
  }

  /** Writes through the page cache (also the guest's own installed blocks). */
  writeCached(first: number, count: number, from: Uint8Array): void {
    const bytes = count * DISK_BLOCK_BYTES;
    for (let done = 0; done < bytes;) done += writeSync(this.fd, from, done, bytes - done, first * DISK_BLOCK_BYTES + done);
  }

  /**
   * A new, all-zero image (a hole of `sizeBytes`): what a fresh guest's disk holds. Replaces any file at
   * `path`, unless `exclusive` (a disk arriving from a peer never overwrites an image already there).
   */
  static create(path: string, sizeBytes: number, exclusive = false): GuestDisk {
    const fd = openImage(path, exclusive ? 'wx+' : 'w+');
    try {
      ftruncateSync(fd, sizeBytes);
    } catch (cause) {
      closeSync(fd);
      throw io(`cannot size disk image ${path}`, cause);
    }
    return new GuestDisk(path, sizeBytes, fd);
  }

  /** An existing image, which must be exactly `sizeBytes` long (a guest's disk on shared storage). */
  static open(path: string, sizeBytes: number): GuestDisk {
    const fd = openImage(path, 'r+');
    const size = fstatSync(fd).size;
    if (size !== sizeBytes) {
      closeSync(fd);
      throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `disk image ${path} is ${size} B; the guest's disk is ${sizeBytes} B`);
    }
    return new GuestDisk(path, sizeBytes, fd);
  }

  /** Makes every write so far durable, on a libuv thread: the caller's event loop runs on meanwhile. */
  async flush(): Promise<void> {
    if (this.behind) {
      this.behind = false;
      await writeBehind().settled(this.path);
    }
    await new Promise<void>((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(io(`cannot flush ${this.path}`, err)) : resolve())));
  }

  /** The same, on this thread (a pause that must not return before the image is durable). */
  flushNow(): void {
    this.drain();
    fdatasyncSync(this.fd);
  }

  /** Writes the image to `path` (a dump for comparison with a replay's). */
  copyTo(path: string): void {
    this.flushNow();
    copyFileSync(this.path, path);
  }

  close(): void {
    if (this.fd < 0) return;
    this.drain();
    if (this.direct !== this.fd && this.direct >= 0) closeSync(this.direct);
    this.direct = -1;
    closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Writes the first `bytes` of `disk` with seeded data (block b of disk i: xorshift32 from a mix of
 * seed, i and b) and marks those blocks dirty, as written by the guest: a fresh guest's installed
 * blocks. Deterministic, so a replay's disks match.
 */
export function fillDisk(disk: GuestDisk, index: number, bytes: number, seed: number, between: () => void = () => undefined): void {
  const chunkBlocks = 256;
  const chunk = new Uint32Array((chunkBlocks * DISK_BLOCK_BYTES) / 4);
  const words = DISK_BLOCK_BYTES / 4;
  const seedLo = seed >>> 0;
  const seedHi = Math.floor(seed / 2 ** 32) >>> 0;
  const blocks = bytes / DISK_BLOCK_BYTES;
  for (let first = 0; first < blocks; first += chunkBlocks) {
    const count = Math.min(chunkBlocks, blocks - first);
    for (let k = 0; k < count; k++) {
      let x = Math.imul((first + k) ^ seedLo, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b) ^ seedHi;
      if (x === 0) x = 1;
      const base = k * words;
      for (let w = 0; w < words; w++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        chunk[base + w] = x;
      }
    }
    disk.writeCached(first, count, new Uint8Array(chunk.buffer, 0, count * DISK_BLOCK_BYTES));
    between();
  }
  for (let b = 0; b < blocks; b++) disk.dirty[b >>> 5] |= 1 << (b & 31);
  // Installed long before: on the disk, not dirty in the page cache (a migration must not inherit the flush).
  if (blocks > 0) disk.flushNow();
}

/** The image opened O_DIRECT, or null where the file system refuses it (tmpfs before Linux 6.6). */
function openDirect(path: string): number | null {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return null;
  }
}

function openImage(path: string, flags: string): number {
  try {
    return openSync(path, flags, 0o644);
  } catch (cause) {
    throw io(`cannot open disk image ${path}`, cause);
  }
}

function io(message: string, cause: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.IO, `${message}: ${(cause as Error).message}`, { cause });
}
