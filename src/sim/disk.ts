// A simulated guest's disk: a sparse image file read and written at its offsets, never held in memory,
// and a dirty-block bitmap in shared memory (one bit per DISK_BLOCK_BYTES block) that the vCPU marks
// after each write, as it marks RAM pages. Images are named by their index (`disk0.img`, …) in one
// directory, so a destination on shared storage finds the source's images by the same names.

import { closeSync, copyFileSync, fdatasyncSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MemshiftError } from '../errors.js';
import { DISK_BLOCK_BYTES } from './guest-config.js';

/** What the vCPU thread needs of a disk: its open file and its dirty-block bitmap. */
export interface DiskHandle {
  fd: number;
  blocks: number;
  dirty: SharedArrayBuffer;
}

export function diskImagePath(dir: string, index: number): string {
  return join(dir, `disk${index}.img`);
}

export class GuestDisk implements DiskHandle {
  readonly path: string;
  readonly sizeBytes: number;
  readonly blocks: number;
  readonly dirty: SharedArrayBuffer;
  fd: number;

  private constructor(path: string, sizeBytes: number, fd: number) {
    this.path = path;
    this.sizeBytes = sizeBytes;
    this.blocks = sizeBytes / DISK_BLOCK_BYTES;
    this.fd = fd;
    this.dirty = new SharedArrayBuffer(Math.ceil(this.blocks / 32) * 4);
  }

  /** A new, all-zero image (a hole of `sizeBytes`): what a fresh guest's disk holds. Replaces any file at `path`. */
  static create(path: string, sizeBytes: number): GuestDisk {
    const fd = openImage(path, 'w+');
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

  /** Makes every write so far durable, so that another host reading the image sees it. */
  flush(): void {
    fdatasyncSync(this.fd);
  }

  /** Writes the image to `path` (a dump for comparison with a replay's). */
  copyTo(path: string): void {
    this.flush();
    copyFileSync(this.path, path);
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
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
