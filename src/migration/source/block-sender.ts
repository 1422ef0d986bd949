// A pass's disk blocks (capability BLOCKS), sent beside its RAM pages on the same link: the blocks marked
// dirty now, their marks taken word by word (a write after the take marks its block again, for the
// next pass), read at their offsets into a slot of BlockBuffers, hashed there and sent as runs of
// consecutive blocks, a few frames in flight. A fresh image marks every block it writes, so the first
// pass sends written blocks only and holes never travel. An image this side did not write block by
// block (a guest that arrived by migration or from a save marks all its blocks) has no such marks: a
// block never sent to this destination that reads as all zero is left out instead, since the
// destination's images start empty (Node has no SEEK_DATA to find the holes; a hole reads as zeros
// without touching the disk).
//
// A lost link can lose blocks already sent; the pass that resumes over a new link sends again the
// blocks whose copy the destination does not hold (block-recovery.ts), or, with a destination that
// cannot say, every block ever sent (`sentEver`), which is always right, because a block's bytes are
// read when sent.
//
// Post-copy (POSTCOPY_BLOCKS): the blocks still dirty at the switchover are named missing, the guest
// paused here; once it runs on the destination, a block it faults on is answered at once (`answer`)
// and the rest are pushed as a last pass, zero blocks included.

import { DISK_REGION_BASE, Limits } from '../../protocol/constants.js';
import { encodeZeroBlocks } from '../../protocol/blocks.js';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { BlockBuffers } from '../../pipeline/block-buffers.js';
import type { BlockDevice } from '../../memory/types.js';
import { takeDirtyRuns } from '../../memory/dirty-block-runs.js';
import { DiskDigest } from '../disk-digest.js';
import { BlockRecovery } from '../block-recovery.js';
import { countBits } from '../missing-pages.js';
import { BLOCKS_HEAD_BYTES, FRAME_HEADER_BYTES } from '../../protocol/frame.js';
import type { FrameLink } from '../../transport/channel.js';
import type { ByteLimiter } from '../../pipeline/batch-writer.js';

export interface BlocksSent {
  blocks: number;
  bytes: number;
}

/** Frames in flight: the socket takes one while the next is read and hashed. */
const SLOTS = 4;

export class BlockSender {
  private readonly sentEver: Int32Array[];
  private buffers: BlockBuffers | null = null;
  /** The disks' share of the session digest: every block as it went out last (disk-digest.ts). */
  readonly digest: DiskDigest;

  /** Per disk, the blocks of the words taken in this pass that were never sent before (may be left out when zero). */
  private readonly fresh: Int32Array[];

  /**
   * Per disk, blocks whose marks were taken and whose hash is not recorded yet: a lost link may leave
   * them so (taken, then the pass failed before they were read), sent nowhere and marked nowhere.
   */
  private readonly unrecorded: Int32Array[];

  constructor(readonly devices: readonly BlockDevice[]) {
    this.refused.catch(() => undefined);
    this.sentEver = devices.map((d) => new Int32Array(d.dirty.length));
    this.fresh = devices.map((d) => new Int32Array(d.dirty.length));
    this.unrecorded = devices.map((d) => new Int32Array(d.dirty.length));
    this.digest = new DiskDigest(devices.map((d) => ({ blockBytes: d.blockBytes, blocks: d.blocks })));
  }

  /**
   * Sends every block marked dirty now; resolves when the socket took the last run. With `keepZeros`,
   * never-sent zero blocks go too: a post-copy destination waits for every block named missing; with
   * `zeroRuns` (ZERO_BLOCKS) as runs without their bytes, else in full. A `limiter` (--max-bandwidth)
   * paces the frames as it paces the pages' batches: the cap is the link's. Once `stopped()` says so,
   * no further run is taken (those taken and not sent stay to be marked by a recovery).
   */
  async sendDirty(link: FrameLink, options: { keepZeros?: boolean; zeroRuns?: boolean; limiter?: ByteLimiter | null; stopped?: () => boolean } = {}): Promise<BlocksSent> {
    const stopped = options.stopped ?? ((): boolean => false);
    const limiter = options.limiter ?? null;
    const keepZeros = options.keepZeros === true;
    const zeroRuns = keepZeros && options.zeroRuns === true;
    const sent: BlocksSent = { blocks: 0, bytes: 0 };
    const buffers = (this.buffers ??= new BlockBuffers(SLOTS));
    const inFlight: (Promise<void> | null)[] = new Array<Promise<void> | null>(SLOTS).fill(null);
    let next = 0;
    for (let disk = 0; disk < this.devices.length; disk++) {
      const device = this.devices[disk];
      const ever = this.sentEver[disk];
      const fresh = this.fresh[disk];
      const unrecorded = this.unrecorded[disk];
      const taken = (w: number, bits: number): void => {
        fresh[w] = bits & ~ever[w];
        ever[w] |= bits;
        unrecorded[w] |= bits;
      };
      for (const { first, count } of takeDirtyRuns(device, Limits.MAX_BLOCKS_PER_FRAME, taken)) {
        const slot = next++ % SLOTS;
        await inFlight[slot];
        if (stopped()) return sent;
        const isFresh = (k: number): boolean => ((fresh[(first + k) >>> 5] >>> ((first + k) & 31)) & 1) === 1;
        const frames = buffers.frames(slot, disk, first, count, device.blockBytes, (data) => device.read(first, count, data), keepZeros && !zeroRuns ? null : isFresh);
        // Left out (the gaps between frames): zeros never sent. Pre-copy: still never sent, so a resumed
        // pass does not send them either. Post-copy: named as zero runs (this side's hash for them is
        // already a zero block's).
        const gaps: Uint8Array[] = [];
        const leftOut = (from: number, to: number): void => {
          if (from === to) return;
          if (zeroRuns) gaps.push(encodeZeroBlocks(disk, from, to - from));
          else for (let k = from; k < to; k++) ever[k >>> 5] &= ~(1 << (k & 31));
        };
        let b = first;
        for (const f of frames) {
          leftOut(b, f.first);
          b = f.first + f.count;
        }
        leftOut(b, first + count);
        let bytes = 0;
        for (const { first: at, count: n, frame } of frames) {
          this.digest.record(disk, at, n, frame, FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES);
          sent.blocks += n;
          bytes += frame.length;
        }
        for (const gap of gaps) bytes += gap.length;
        sent.bytes += bytes;
        for (let k = first; k < first + count; k++) unrecorded[k >>> 5] &= ~(1 << (k & 31));
        // Recorded, then paced: a link lost meanwhile leaves hashes here that the destination does not
        // hold, so these blocks go again after a recovery.
        if (limiter !== null && bytes > 0) await limiter.take(bytes);
        const sends = [...frames.map(({ frame }) => link.send(frame)), ...gaps.map((gap) => link.send(gap))];
        const sending = Promise.all(sends).then(() => undefined);
        // Awaited when its slot comes round or at the end; a failed link must not reject unheard meanwhile.
        sending.catch(() => undefined);
        inFlight[slot] = sending;
      }
    }
    await Promise.all(inFlight);
    return sent;
  }

  /**
   * Post-copy (POSTCOPY_BLOCKS): the destination's guest waits for block `block` of `disk`. Sent at
   * once, ahead of the push, if it is still to send; nothing if it went already (its copy is on the way
   * or there). Answers go one at a time through a buffer of their own. A block the guest does not have,
   * or a send that fails, rejects `refused`.
   */
  answer(disk: number, block: number, link: FrameLink): void {
    const device = this.devices[disk];
    if (device === undefined || !Number.isInteger(block) || block < 0 || block >= device.blocks) {
      this.refuse(new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `the destination asked for block ${block} of disk ${disk}, which the guest does not have`, { regionId: DISK_REGION_BASE + disk, page: block }));
      return;
    }
    const bit = 1 << (block & 31);
    if ((Atomics.and(device.dirty, block >>> 5, ~bit) & bit) === 0) return;
    this.sentEver[disk][block >>> 5] |= bit;
    const buffers = (this.answerBuffers ??= new BlockBuffers(1));
    this.answering = this.answering.then(async () => {
      const frame = buffers.frame(0, disk, block, 1, device.blockBytes, (data) => device.read(block, 1, data));
      this.digest.record(disk, block, 1, frame, FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES);
      this.answeredBytes += frame.length;
      await link.send(frame);
    }).catch((e: unknown) => this.refuse(e));
  }

  private answerBuffers: BlockBuffers | null = null;
  private answering: Promise<void> = Promise.resolve();
  private refuse: (e: unknown) => void = () => undefined;
  /** Rejects with the first answer that could not be given; never resolves. */
  readonly refused: Promise<never> = new Promise<never>((_, reject) => { this.refuse = reject; });
  /** Bytes of the answers so far. */
  answeredBytes = 0;

  /** Resolves once every answer so far is out (or failed: see `refused`). */
  answered(): Promise<void> {
    return this.answering;
  }

  /** The blocks marked to send now and their bytes on the wire (each with its 8-byte hash; frame heads left out). */
  dirtyNow(): { blocks: number; bytes: number } {
    let blocks = 0;
    let bytes = 0;
    for (const device of this.devices) {
      const n = countBits(device.dirty);
      blocks += n;
      bytes += n * (device.blockBytes + 8);
    }
    return { blocks, bytes };
  }

  /** Whether any block is still marked to send. */
  pending(): boolean {
    return this.devices.some((d) => d.dirty.some((w) => w !== 0));
  }

  /** After a lost link, with BLOCK_RECOVERY: collects what the destination holds, then marks the rest (block-recovery.ts). */
  recovery(): BlockRecovery {
    return new BlockRecovery(this.devices, this.sentEver, this.unrecorded, this.digest);
  }

  /** After a lost link without BLOCK_RECOVERY: marks every block sent so far dirty again, for the pass that resumes; returns how many. */
  markSentAgain(): number {
    let marked = 0;
    for (let disk = 0; disk < this.devices.length; disk++) {
      const dirty = this.devices[disk].dirty;
      const ever = this.sentEver[disk];
      for (let w = 0; w < ever.length; w++) if (ever[w] !== 0) Atomics.or(dirty, w, ever[w]);
      marked += countBits(ever);
      this.unrecorded[disk].fill(0);
    }
    return marked;
  }
}
