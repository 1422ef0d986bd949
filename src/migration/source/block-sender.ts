// A pass's disk blocks (capability BLOCKS), sent after its RAM pages on the same link: the blocks marked
// dirty now, their marks taken word by word (a write after the take marks its block again, for the
// next pass), read at their offsets into a slot of BlockBuffers, hashed there and sent as runs of
// consecutive blocks, a few frames in flight. A fresh image marks every block it writes, so the first
// pass sends written blocks only and holes never travel.
//
// A lost link can lose blocks already sent; the pass that resumes over a new link sends again every
// block ever sent (`sentEver`), which is always right, because a block's bytes are read when sent.

import { Limits } from '../../protocol/constants.js';
import { BlockBuffers } from '../../pipeline/block-buffers.js';
import type { BlockDevice } from '../../memory/types.js';
import { takeDirtyRuns } from '../../memory/dirty-block-runs.js';
import { DiskDigest } from '../disk-digest.js';
import { BLOCKS_HEAD_BYTES, FRAME_HEADER_BYTES } from '../../protocol/frame.js';
import type { FrameLink } from '../../transport/channel.js';

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

  constructor(readonly devices: readonly BlockDevice[]) {
    this.sentEver = devices.map((d) => new Int32Array(d.dirty.length));
    this.digest = new DiskDigest(devices.map((d) => ({ blockBytes: d.blockBytes, blocks: d.blocks })));
  }

  /** Sends every block marked dirty now; resolves when the socket took the last run. */
  async sendDirty(link: FrameLink): Promise<BlocksSent> {
    const sent: BlocksSent = { blocks: 0, bytes: 0 };
    const buffers = (this.buffers ??= new BlockBuffers(SLOTS));
    const inFlight: (Promise<void> | null)[] = new Array<Promise<void> | null>(SLOTS).fill(null);
    let next = 0;
    for (let disk = 0; disk < this.devices.length; disk++) {
      const device = this.devices[disk];
      const ever = this.sentEver[disk];
      for (const { first, count } of takeDirtyRuns(device, Limits.MAX_BLOCKS_PER_FRAME, (w, bits) => (ever[w] |= bits))) {
        const slot = next++ % SLOTS;
        await inFlight[slot];
        const frame = buffers.frame(slot, disk, first, count, device.blockBytes, (data) => device.read(first, count, data));
        this.digest.record(disk, first, count, frame, FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES);
        const sending = link.send(frame);
        // Awaited when its slot comes round or at the end; a failed link must not reject unheard meanwhile.
        sending.catch(() => undefined);
        inFlight[slot] = sending;
        sent.blocks += count;
        sent.bytes += frame.length;
      }
    }
    await Promise.all(inFlight);
    return sent;
  }

  /** After a lost link: mark every block sent so far dirty again, for the pass that resumes. */
  markSentAgain(): void {
    for (let disk = 0; disk < this.devices.length; disk++) {
      const dirty = this.devices[disk].dirty;
      const ever = this.sentEver[disk];
      for (let w = 0; w < ever.length; w++) if (ever[w] !== 0) Atomics.or(dirty, w, ever[w]);
    }
  }
}
