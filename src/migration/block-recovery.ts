// Which disk blocks go again after a lost link (capability BLOCK_RECOVERY). Without it the source sends
// every block it ever sent, so a recovery costs the whole of the disks' written data. With it the
// destination names what it holds, with region DISK_REGION_BASE + disk, as it does for pages:
//
// - before SWITCHOVER: the hash of each block it holds data for (PAGE_HASHES, runs of blocks whose
//   hash is not a zero block's). Both sides keep a hash per block (disk-digest.ts: the source as the
//   block went out last, the destination as it was written), so a block whose copy died with the link
//   is one whose two hashes differ. A block not named holds zeros there (its image started empty), which
//   agrees with the source only where the source's last copy was zeros too.
// - post-copy: the blocks still absent there (MISSING_PAGES from its present bitmaps); the guest runs
//   there and writes nothing here, so those are all that is left to send.
//
//   destination table / present ─► PAGE_HASHES* | MISSING_PAGES* ─► source: ever sent and not agreed ─► dirty

import { ErrorCode, MemshiftError } from '../errors.js';
import { DISK_REGION_BASE } from '../protocol/constants.js';
import { encodePageHashes, MAX_HASHES_PER_FRAME, type MissingPages, type PageHashes } from '../protocol/control.js';
import type { BlockDevice } from '../memory/types.js';
import type { DiskDigest } from './disk-digest.js';
import { forEachHalf, popcount32, unsentBlocksFrames } from './missing-pages.js';

/** Destination, before SWITCHOVER: PAGE_HASHES for every run of blocks it holds data for. */
export function heldBlockFrames(digest: DiskDigest, disks: number): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let disk = 0; disk < disks; disk++) {
    const table = digest.hashes(disk);
    const halves = new Uint32Array(table.buffer, table.byteOffset, table.length * 2);
    const zero = digest.zeroHash(disk);
    const [lo, hi] = [Number(zero & 0xffffffffn), Number(zero >> 32n)];
    const held = (b: number): boolean => halves[2 * b] !== lo || halves[2 * b + 1] !== hi;
    for (let b = 0; b < table.length;) {
      if (!held(b)) {
        b++;
        continue;
      }
      let end = b + 1;
      while (end < table.length && end - b < MAX_HASHES_PER_FRAME && held(end)) end++;
      frames.push(encodePageHashes({ regionId: DISK_REGION_BASE + disk, firstPage: b, hashes: table.slice(b, end) }));
      b = end;
    }
  }
  return frames;
}

/** Destination, post-copy: MISSING_PAGES for the blocks of each disk not here yet. */
export function absentBlockFrames(devices: readonly BlockDevice[]): { frames: Uint8Array[]; blocks: number } {
  const frames: Uint8Array[] = [];
  let blocks = 0;
  devices.forEach((d, disk) => {
    if (d.present === undefined) return;
    const absent = new Int32Array(d.present.length);
    for (let w = 0; w < absent.length; w++) {
      const valid = w === absent.length - 1 && d.blocks % 32 !== 0 ? (1 << (d.blocks % 32)) - 1 : -1;
      absent[w] = ~Atomics.load(d.present, w) & valid;
    }
    const m = unsentBlocksFrames(disk, absent, d.blocks);
    frames.push(...m.frames);
    blocks += m.blocks;
  });
  return { frames, blocks };
}

/**
 * Source: collects the destination's answer over a recovery, then marks the blocks to send again.
 * `sentEver[disk]` has a bit per block sent at some point, `unrecorded[disk]` one per block whose mark
 * was taken but whose hash is not in `digest` (this side's table) yet: those go again whatever the answer.
 */
export class BlockRecovery {
  /** Per disk: blocks the destination named (held, or absent in post-copy). */
  private readonly named: Int32Array[];
  /** Per disk: blocks whose hash there is the one that last went from here. */
  private readonly agreed: Int32Array[];

  constructor(
    private readonly devices: readonly BlockDevice[],
    private readonly sentEver: readonly Int32Array[],
    private readonly unrecorded: readonly Int32Array[],
    private readonly digest: DiskDigest,
  ) {
    this.named = devices.map((d) => new Int32Array(d.dirty.length));
    this.agreed = devices.map((d) => new Int32Array(d.dirty.length));
  }

  /** The device a frame's region names, or MS_ERR_BATCH_PAGE_RANGE. */
  private disk(regionId: number, first: number, count: number, what: string): number {
    const disk = regionId - DISK_REGION_BASE;
    const device = this.devices[disk];
    if (device === undefined) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `${what} names region ${regionId}, which is none of this guest's disks`, { regionId });
    if (first + count > device.blocks) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `${what} names blocks up to ${first + count}, disk ${disk} has ${device.blocks}`, { regionId });
    return disk;
  }

  /** Before SWITCHOVER: the destination holds these blocks with these hashes. */
  held(m: PageHashes): void {
    const disk = this.disk(m.regionId, m.firstPage, m.hashes.length, 'PAGE_HASHES');
    const ours = this.digest.hashes(disk);
    const named = this.named[disk];
    const agreed = this.agreed[disk];
    for (let i = 0; i < m.hashes.length; i++) {
      const b = m.firstPage + i;
      const bit = 1 << (b & 31);
      named[b >>> 5] |= bit;
      if (m.hashes[i] === ours[b]) agreed[b >>> 5] |= bit;
      else agreed[b >>> 5] &= ~bit;
    }
  }

  /** Post-copy: the destination still lacks these blocks. */
  absent(m: MissingPages): void {
    const disk = this.disk(m.regionId, m.firstPage, m.pageCount, 'MISSING_PAGES');
    const named = this.named[disk];
    forEachHalf(this.devices[disk].blocks, `disk ${disk}`, m, (first, bits) => {
      for (let rest = bits; rest !== 0; rest &= rest - 1) {
        const b = first + (31 - Math.clz32(rest & -rest));
        named[b >>> 5] |= 1 << (b & 31);
      }
    });
  }

  /**
   * Marks dirty what must go again; returns how many of those had gone out before. Before SWITCHOVER
   * (`postcopy` false): each block ever sent whose copy there is not the last one sent (named with
   * another hash, or not named while the last copy sent was not zeros). Post-copy: each block named
   * absent. Either way, each block taken and not recorded.
   */
  mark(postcopy: boolean): number {
    let marked = 0;
    this.devices.forEach((device, disk) => {
      const ever = this.sentEver[disk];
      const named = this.named[disk];
      const agreed = this.agreed[disk];
      const ours = this.digest.hashes(disk);
      const zero = this.digest.zeroHash(disk);
      for (let w = 0; w < ever.length; w++) {
        let again: number;
        if (postcopy) again = named[w];
        else {
          // Not named: zeros there, right only where zeros went last.
          let zerosAgree = 0;
          for (let rest = ever[w] & ~named[w]; rest !== 0; rest &= rest - 1) {
            const bit = rest & -rest;
            if (ours[w * 32 + 31 - Math.clz32(bit)] === zero) zerosAgree |= bit;
          }
          again = ever[w] & ~agreed[w] & ~zerosAgree;
        }
        again |= this.unrecorded[disk][w];
        this.unrecorded[disk][w] = 0;
        if (again === 0) continue;
        Atomics.or(device.dirty, w, again);
        // Counted: those that had gone before (post-copy names the ones never pushed too).
        marked += popcount32(again & ever[w]);
      }
    });
    return marked;
  }
}
