// An epoch's disk blocks (local disks, replicated with the epochs). On the primary, their dirty marks
// are taken and the blocks read while the guest is paused, as runs of consecutive blocks, so that the
// epoch holds the disks exactly as they were at its pause; they are sealed as BLOCKS frames (hashed in
// BlockBuffers, as migration's) after the guest runs again. On the standby, an epoch's runs are checked
// as they arrive and kept aside, and written to the images only once the epoch's END came: a torn
// epoch never reaches the disks either.

import { ErrorCode, MemshiftError } from '../errors.js';
import type { BlockDevice } from '../memory/types.js';
import { takeDirtyRuns } from '../memory/dirty-block-runs.js';
import { BlockBuffers } from '../pipeline/block-buffers.js';
import { FrameType, Limits } from '../protocol/constants.js';
import { blocksCheckedLength, decodeBlocks, type DiskShape } from '../protocol/blocks.js';
import { malformed } from '../protocol/codec-util.js';

interface Run {
  disk: number;
  first: number;
  count: number;
  data: Uint8Array;
}

/** Frames in flight: the socket takes one while the next is hashed. */
const SLOTS = 4;

/** The primary's side: what the disks held at the pause, until it is sent. */
export class StagedBlocks {
  private runs: Run[] = [];
  private buffers: BlockBuffers | null = null;

  constructor(readonly devices: readonly BlockDevice[]) {}

  get shapes(): DiskShape[] {
    return this.devices.map((d) => ({ blockBytes: d.blockBytes, blocks: d.blocks }));
  }

  /** Takes every dirty mark and reads those blocks now (a write after the take marks its block again). Returns the blocks read. */
  capture(): number {
    let blocks = 0;
    this.devices.forEach((device, disk) => {
      for (const { first, count } of takeDirtyRuns(device, Limits.MAX_BLOCKS_PER_FRAME)) {
        const data = new Uint8Array(count * device.blockBytes);
        device.read(first, count, data);
        this.runs.push({ disk, first, count, data });
        blocks += count;
      }
    });
    return blocks;
  }

  /** Sends what was captured as BLOCKS frames; resolves once the socket took them. Returns the blocks sent. */
  async send(send: (frame: Uint8Array) => Promise<void>): Promise<number> {
    const buffers = (this.buffers ??= new BlockBuffers(SLOTS));
    const inFlight: (Promise<void> | null)[] = new Array<Promise<void> | null>(SLOTS).fill(null);
    let blocks = 0;
    for (let i = 0; i < this.runs.length; i++) {
      const run = this.runs[i];
      const slot = i % SLOTS;
      await inFlight[slot];
      const frame = buffers.frame(slot, run.disk, run.first, run.count, this.devices[run.disk].blockBytes, (into) => into.set(run.data));
      const sending = send(frame);
      sending.catch(() => undefined);
      inFlight[slot] = sending;
      blocks += run.count;
    }
    this.runs = [];
    await Promise.all(inFlight);
    return blocks;
  }
}

/** The standby's side: an epoch's runs, checked, until its END writes them. */
export class ReceivedBlocks {
  private runs: Run[] = [];
  private readonly buffers = new BlockBuffers(1);
  count = 0;

  constructor(readonly shapes: readonly DiskShape[]) {}

  /**
   * Checks a BLOCKS frame (its CRC must have covered the head and the hashes) and every block against
   * its hash; keeps a copy. Throws, keeping nothing of the frame, on any mismatch.
   */
  accept(buf: Uint8Array, offset: number, length: number, checkedLength: number, what: string): void {
    const m = decodeBlocks(buf, offset, length, this.shapes);
    if (m.zero) throw malformed('BLOCKS: a run of zero blocks is not part of replication', FrameType.BLOCKS);
    if (checkedLength !== blocksCheckedLength(m.count)) throw malformed(`BLOCKS: the checksum covers ${checkedLength} bytes, not the head and ${m.count} hashes`, FrameType.BLOCKS);
    const blockBytes = this.shapes[m.disk].blockBytes;
    this.buffers.verify(buf, m.hashesOffset, m.dataOffset, m.count, blockBytes, () => `${what}: disk ${m.disk} blocks ${m.firstBlock}+${m.count}`);
    this.runs.push({ disk: m.disk, first: m.firstBlock, count: m.count, data: buf.slice(m.dataOffset, m.dataOffset + m.count * blockBytes) });
    this.count += m.count;
  }

  /** Writes every kept run to `devices` (the disks DISKS named) and forgets them; returns the blocks written. */
  applyTo(devices: readonly BlockDevice[]): number {
    if (devices.length !== this.shapes.length) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${this.shapes.length} disks were named; the guest has ${devices.length}`);
    const written = this.count;
    for (const run of this.runs) devices[run.disk].write(run.first, run.count, run.data);
    this.clear();
    return written;
  }

  /** Drops the kept runs (a torn epoch). */
  clear(): void {
    this.runs = [];
    this.count = 0;
  }
}
