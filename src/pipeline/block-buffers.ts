// Disk blocks on their way out and in (BLOCKS), in a WebAssembly memory of their own so that the page
// kernel's mxh64 hashes them where they lie: the source reads a run of blocks straight into a slot,
// hashes it, and sends the frame from there; the destination checks every block's hash before the run
// is written: where the frame lies when it was received into a memory with kernels (the destination's
// receive ring is in guest memory's arena, `receivedIn`), else in a copy in its scratch. A slot is
// reused only once the socket has taken its frame.
//
//   slot := pad … [frame header 16][BLOCKS head 16][hash u64 × count][data count × blockBytes]
//                                                                     ^ 128-aligned (slot base + 1 KiB)

import { ErrorCode, MemshiftError } from '../errors.js';
import { FrameType, Limits } from '../protocol/constants.js';
import { BLOCKS_HEAD_BYTES, FRAME_HEADER_BYTES, sealFrame } from '../protocol/frame.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../wasm/kernels.js';

const LEAD_BYTES = 1024;
const SLOT_BYTES = LEAD_BYTES + Limits.MAX_BLOCKS_PER_FRAME * Limits.MAX_BLOCK_BYTES;
const HASH_BYTES = 8;

export class BlockBuffers {
  readonly kernels: Kernels;
  readonly bytes: Uint8Array;
  readonly slots: number;

  /** A memory frames are received into, whose kernels check a run where it lies; `out` is room there for its hashes. */
  private received: { kernels: Kernels; out: number } | null = null;

  constructor(slots: number) {
    this.slots = slots;
    const pages = Math.ceil((KERNEL_RESERVED_BYTES + slots * SLOT_BYTES + LEAD_BYTES) / WASM_PAGE_BYTES);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    this.kernels = new Kernels(memory);
    this.bytes = new Uint8Array(memory.buffer);
  }

  private dataAt(slot: number): number {
    return KERNEL_RESERVED_BYTES + slot * SLOT_BYTES + LEAD_BYTES;
  }

  /**
   * A BLOCKS frame in `slot` for `count` blocks of `blockBytes` from `firstBlock` of `disk`: `fill`
   * reads the blocks into the view it is given, then each block is hashed and the frame sealed (the CRC
   * covers the head and the hashes; the hashes cover the data). Returns the frame, a view of the slot.
   */
  frame(slot: number, disk: number, firstBlock: number, count: number, blockBytes: number, fill: (data: Uint8Array) => void): Uint8Array {
    return this.frames(slot, disk, firstBlock, count, blockBytes, fill, null)[0].frame;
  }

  /**
   * As `frame`, but the blocks `skippable(k)` allows and that read as all zero are left out: one frame
   * per run of the others (none when every block is left out). A later run's head and hashes go just
   * before its data, over the block left out there (4 KiB and more; at most 544 bytes are needed), so
   * the frames share the slot without moving a byte.
   */
  frames(slot: number, disk: number, firstBlock: number, count: number, blockBytes: number, fill: (data: Uint8Array) => void, skippable: ((k: number) => boolean) | null): { first: number; count: number; frame: Uint8Array }[] {
    const data = this.dataAt(slot);
    fill(this.bytes.subarray(data, data + count * blockBytes));
    // A block left out must have room for the next run's head and hashes.
    if (blockBytes < FRAME_HEADER_BYTES + BLOCKS_HEAD_BYTES + HASH_BYTES * count) skippable = null;
    const kept: { from: number; to: number }[] = [];
    let from = -1;
    for (let k = 0; k <= count; k++) {
      const skip = k < count && skippable !== null && skippable(k) && this.kernels.raw.isZeroPage(data + k * blockBytes, blockBytes) === 1;
      if (k < count && !skip) {
        if (from < 0) from = k;
      } else if (from >= 0) {
        kept.push({ from, to: k });
        from = -1;
      }
    }
    return kept.map(({ from: k, to }) => {
      const n = to - k;
      const at = data + k * blockBytes;
      const hashes = at - HASH_BYTES * n;
      const start = hashes - BLOCKS_HEAD_BYTES - FRAME_HEADER_BYTES;
      this.kernels.raw.hashPages(at, blockBytes, n, hashes);
      const head = new DataView(this.bytes.buffer, start + FRAME_HEADER_BYTES, BLOCKS_HEAD_BYTES);
      head.setUint16(0, disk, true);
      head.setUint16(2, 0, true);
      head.setUint32(4, firstBlock + k, true);
      head.setUint32(8, n, true);
      head.setUint32(12, 0, true);
      const end = sealFrame(this.bytes, start, FrameType.BLOCKS, BLOCKS_HEAD_BYTES + HASH_BYTES * n + n * blockBytes, BLOCKS_HEAD_BYTES + HASH_BYTES * n);
      return { first: firstBlock + k, count: n, frame: this.bytes.subarray(start, end) };
    });
  }

  /**
   * Frames received into `kernels`' memory are checked where they lie; `out` is a scratch range there of
   * 8 bytes per block of the largest run, used by this thread alone.
   */
  receivedIn(kernels: Kernels, out: number): void {
    kernels.checkRange('out', out, HASH_BYTES * Limits.MAX_BLOCKS_PER_FRAME);
    this.received = { kernels, out };
  }

  /**
   * Checks `count` blocks at `buf[dataOffset…]` against the hashes at `buf[hashesOffset…]` (where they lie
   * when `receivedIn` names their memory, else copied into slot 0). Throws MS_ERR_PAGE_HASH_MISMATCH naming the first block that differs.
   */
  verify(buf: Uint8Array, hashesOffset: number, dataOffset: number, count: number, blockBytes: number, what: () => string): void {
    let { kernels, bytes } = this;
    let data: number;
    let out: number;
    const received = this.received;
    if (received !== null && buf.buffer === received.kernels.memory.buffer) {
      ({ kernels } = received);
      bytes = new Uint8Array(buf.buffer);
      data = buf.byteOffset + dataOffset;
      out = received.out;
    } else {
      data = this.dataAt(0);
      out = data - HASH_BYTES * count;
      this.bytes.set(buf.subarray(dataOffset, dataOffset + count * blockBytes), data);
    }
    kernels.raw.hashPages(data, blockBytes, count, out);
    for (let i = 0; i < count * HASH_BYTES; i++) {
      if (bytes[out + i] !== buf[hashesOffset + i]) {
        throw new MemshiftError(ErrorCode.PAGE_HASH_MISMATCH, `${what()}: block ${Math.floor(i / HASH_BYTES)} of the run does not match its hash: not written`);
      }
    }
  }
}
