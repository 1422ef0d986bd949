// The disks' share of the session digest (block migration). Each side records the hash of every block
// as it goes out (the source, once it hashed the run) or lands (the destination, once it checked the
// run), and the digest both compare at SWITCHOVER and POSTCOPY_DONE is the memory's XOR this. The
// per-frame checks prove each block that arrived; the digest proves that every block that went out
// arrived, last version included: a run lost or skipped between the two changes it.
//
// Same scheme as the pages' (assembly/hash.ts): a table of each block's last hash, starting at the hash
// of a zero block, and an XOR of keyed contributions in which a zero block counts nothing, so blocks
// never sent (holes, never written) add nothing on either side. Keys are (0x8000 + disk) << 32 | block,
// as the save file names disk regions. The tables live in a WebAssembly memory per disk, where the
// kernel keeps them: 8 bytes per block, as guest RAM's 8 bytes per page.
//
//   key(disk, block) → table[disk][block] = hash → digest ^= contribution change

import type { DiskShape } from '../protocol/blocks.js';
import { KERNEL_RESERVED_BYTES, Kernels, WASM_PAGE_BYTES } from '../wasm/kernels.js';
import { DISK_REGION_BASE } from '../protocol/constants.js';

interface DiskTable {
  kernels: Kernels;
  table: number;
  digestAt: number;
  keyBase: bigint;
  blocks: number;
  zeroHash: bigint;
}

export class DiskDigest {
  private readonly disks: DiskTable[];

  constructor(shapes: readonly DiskShape[]) {
    this.disks = shapes.map((shape, i) => {
      const digestAt = KERNEL_RESERVED_BYTES;
      const table = digestAt + 64;
      const pages = Math.ceil((table + shape.blocks * 8) / WASM_PAGE_BYTES);
      const kernels = new Kernels(new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
      const zeroHash = BigInt.asUintN(64, kernels.raw.zeroPageHash(shape.blockBytes));
      kernels.raw.fillU64(table, shape.blocks, zeroHash);
      return { kernels, table, digestAt, keyBase: BigInt(DISK_REGION_BASE + i) << 32n, blocks: shape.blocks, zeroHash };
    });
  }

  /**
   * Records blocks [first, first + count) of `disk` as hashing to the u64s (little-endian) at
   * `hashes[offset…]`. The caller checked the disk and the run against the disk's shape.
   */
  record(disk: number, first: number, count: number, hashes: Uint8Array, offset: number): void {
    const d = this.disks[disk];
    const dv = new DataView(hashes.buffer, hashes.byteOffset + offset, count * 8);
    for (let i = 0; i < count; i++) {
      d.kernels.raw.recordPageHash(d.table, first + i, d.keyBase + BigInt(first + i), dv.getBigUint64(i * 8, true), d.digestAt);
    }
  }

  /** Disk `disk`'s table: each block's last recorded hash (a zero block's where none was). */
  hashes(disk: number): BigUint64Array {
    const d = this.disks[disk];
    return new BigUint64Array(d.kernels.memory.buffer, d.table, d.blocks);
  }

  /** The hash of an all-zero block of disk `disk`. */
  zeroHash(disk: number): bigint {
    return this.disks[disk].zeroHash;
  }

  /** The disks' share of the session digest: 0 while every recorded block is zero. */
  get value(): bigint {
    let v = 0n;
    for (const d of this.disks) v ^= new DataView(d.kernels.memory.buffer).getBigUint64(d.digestAt, true);
    return v;
  }
}
