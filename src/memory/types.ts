// The contract between memshift and whatever owns a guest: the hypervisor tooling that links the
// library, or the simulated guest of the tests and the demo. The engine never asks what is behind it.
//
// Memory is exposed as slabs: shared WebAssembly memories, each holding a run of one region's pages
// and the engine's per-page bookkeeping at offsets the slab layout fixes (slab-layout.ts). Workers and
// kernels read and write pages in place; nothing on the data path copies a page to look at it.

import type { Slab } from './slab.js';
import type { PageGateInit } from './page-gate.js';

export type RegionKind = 'ram' | 'disk';

/**
 * Where a file-backed region's pages live (a hypervisor's RAM backend on tmpfs, as QEMU's
 * `memory-backend-file,share=on`, or any raw image): page i at byte `offset + i × pageSize` of `path`.
 * The engine reads and writes them there with positioned I/O, a window at a time; no slab holds them.
 */
export interface RegionFile {
  readonly path: string;
  readonly offset: number;
}

/** A run of guest pages with one page size: RAM, or a disk image. */
export interface Region {
  /** Stable id on the wire (u16). */
  readonly id: number;
  readonly name: string;
  readonly kind: RegionKind;
  /** Bytes per page: a power of two between 4 KiB and 64 KiB. */
  readonly pageSize: number;
  readonly pageCount: number;
  /**
   * Set when the pages live in a file, not in the slabs. A source without a dirty log for them (no
   * `collectDirtyLog` writes their bits) has them found by hash-scan: at each sync every page is read
   * and hashed, and a page whose hash differs from the hash it was last sent with is dirty.
   */
  readonly file?: RegionFile;
}

/**
 * Storage both hosts reach (a guest's disk images on a shared file system): no block moves, and which
 * host may run the guest is decided outside both processes, by a lease on the images (storage/lease.ts).
 * The engine hands the lease over inside the switchover's commit; neither side runs the guest without it.
 */
export interface SharedStorage {
  /**
   * Source, paused, final pages and device state sent, SWITCHOVER not yet: makes the guest's writes
   * durable and hands the lease to `to`. Again for the same `to` is a no-op. MS_ERR_LEASE_LOST when
   * this side does not hold it.
   */
  handOver(to: string): void;
  /** Whether this side holds the lease now: a source resumes its guest after a failure only if it does. */
  holds(): boolean;
  /**
   * Destination, from SWITCHOVER until accept or giveBack: keeps the lease handed to `as` from expiring
   * (renews it in `as`'s name) without running anything. Optional: without it a switchover must finish
   * within the lease's term.
   */
  keep?(as: string): void;
  /** Destination, before its first resume: throws MS_ERR_LEASE_LOST unless the lease was handed to `as`; keeps it from then on. */
  accept(as: string): void;
  /** Destination that will not resume: hands the lease back to whoever handed it to `as` (nothing when `as` does not hold it). */
  giveBack(as: string): void;
}

/**
 * A guest disk the engine moves block by block (capability BLOCKS), read and written at its offsets,
 * never held in memory. Its writers set a block's bit in `dirty` (32-bit atomic OR) after each write.
 */
export interface BlockDevice {
  readonly blockBytes: number;
  readonly blocks: number;
  /** One bit per block, set after each write since the bit was last taken. */
  readonly dirty: Int32Array;
  /**
   * Post-copy (capability POSTCOPY_BLOCKS; destination): one bit per block held here, shared with the
   * vCPUs. The engine clears the bits of the blocks the source still has at the switchover and sets
   * each again, notifying its word, once the block is written; a vCPU waits for a block's bit before it
   * writes the block (page-gate.ts, waitForBlock). All set until then. A target whose devices lack it
   * receives disks in post-copy as before, every dirty block paused before SWITCHOVER.
   */
  readonly present?: Int32Array;
  /** Reads `count` blocks from `first` into `into` (exactly count × blockBytes bytes). */
  read(first: number, count: number, into: Uint8Array): void;
  /** Writes `count` blocks from `first` (destination); readable when this returns. */
  write(first: number, count: number, from: Uint8Array): void;
  /**
   * Optional: the same, but may return before the blocks are on the device (a pass's blocks, so the
   * device writes while the next ones arrive); `from` may be reused once it returns. Readable once a
   * later `flush` resolves; a later `write` lands after it.
   */
  writeBehind?(first: number, count: number, from: Uint8Array): void;
  /** Makes every write so far durable (destination: in the background after each pass, and before the guest resumes). */
  flush(): Promise<void>;
}

/** What both ends expose: regions and the slabs that hold them. */
export interface GuestMemoryView {
  readonly regions: readonly Region[];
  /** The slabs of `regionId`, in page order (slab i holds pages [slab.firstPage, slab.firstPage + slab.pageCount)). */
  slabsOf(regionId: number): readonly Slab[];
}

/**
 * A running guest on the source host. Writers of guest memory must set the page's bit in its slab's
 * dirty bitmap (32-bit atomic OR) after each write; a hypervisor whose dirty log lives elsewhere merges
 * it in `collectDirtyLog`.
 */
export interface MemorySource extends GuestMemoryView {
  /** Called before each dirty-bitmap sync: merge an external dirty log into the slabs' dirty bitmaps. */
  collectDirtyLog?(): void;
  /** Stops the vCPUs at an instruction (step) boundary; resolves once nothing writes memory. */
  pause(): Promise<void>;
  /** Lets the vCPUs run again after a failed or cancelled migration. */
  resume(): Promise<void>;
  /** Slows the vCPUs to (100 - percent) % of their time (auto-converge); 0 removes the throttle. */
  throttle(percent: number): void;
  /**
   * Device (vCPU) state; only called while paused. A hypervisor whose device state takes a while to
   * save (QEMU's own stream) returns a promise, and starts the save at `pause` so that it runs beside
   * the final pass.
   */
  saveState(): Uint8Array | Promise<Uint8Array>;
  /** Called once the destination runs the guest: the source copy will never run again. */
  release?(): Promise<void>;
  /** Work the guest has done (the simulated guest's step count), for the report; 0 if unknown. */
  readonly steps?: number;
  /** Shared storage, when the guest's disks live on it (the lease goes to the destination at switchover). */
  readonly storage?: SharedStorage | null;
  /**
   * Disks that move with the guest (local storage): the first pass sends the blocks marked in `dirty`
   * (a fresh image marks every block it writes, so holes are never sent), later passes what was written since.
   */
  readonly blockDevices?: readonly BlockDevice[];
  /**
   * True when every page not marked dirty since its slab was allocated is zero: every write, the
   * initial fill included, marked its page. The first pass then sends only pages written at some
   * point (when the target agrees); a page written without its mark would arrive as zeros.
   */
  readonly unwrittenPagesAreZero?: boolean;
}

/** A guest being received on the destination host. */
export interface MemoryTarget extends GuestMemoryView {
  /** Checks device state against this guest before anything is loaded; throws MS_ERR_DEVICE_STATE_INVALID. */
  checkState(state: Uint8Array): void;
  loadState(state: Uint8Array): void;
  /** Starts the vCPUs. In post-copy they block on pages not yet present (see enablePageGate). */
  resume(): Promise<void>;
  /**
   * Resolves once resume() can start the vCPUs at once (their threads started and loaded). The
   * destination waits for it before HELLO_ACK: a post-copy switchover follows within milliseconds,
   * and a thread still starting then would be started inside the guest's downtime.
   */
  ready?(): Promise<void>;
  /**
   * Post-copy: before the first resume, makes every vCPU access to a page whose `present` bit is clear
   * post the page to the returned mailbox and wait for the bit (page-gate.ts describes the protocol).
   * A target without it cannot receive post-copy migrations.
   */
  enablePageGate?(): PageGateInit;
  /**
   * Makes the disks a source's DISKS named (empty, `blocks` × `blockBytes` each) and returns them to
   * write into; a target without it cannot receive a guest whose disks move.
   */
  receiveBlockDevices?(disks: readonly { blockBytes: number; blocks: number }[]): readonly BlockDevice[];
  /** True when this host reaches the shared storage a source's guest may have its disks on. */
  readonly reachesSharedStorage?: boolean;
  /** Shared storage, once the device state said the guest has disks on it: the lease must be accepted before resuming. */
  readonly storage?: SharedStorage | null;
  /** True when every page holds zeros until received (freshly allocated slabs): see MemorySource. */
  readonly unwrittenPagesAreZero?: boolean;
  /** Work the guest has done (its step count, carried in the device state), for the report; absent if unknown. */
  readonly steps?: number;
}
