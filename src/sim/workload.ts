// The simulated vCPU's instruction stream. A step picks a page by the workload's distribution and
// read-modify-writes two of its words, so every step depends on the page's previous content: a page
// that arrives stale or late on the destination changes every later step that touches it.
//
//   page  = hotset & coin < hotPermille ? hotStart + u32 % hotPages : u32 % pageCount   (uniform: the latter)
//   page  = steps % pageCount                                                           (sweep: in order)
//   v     = u32;  o = v % words;  o2 = (o + 1 + (v >>> 24 & 7)) % words;  a = w[o]; b = w[o2]
//   w[o]  = imul(a ^ v, 0x9E3779B1) + b
//   w[o2] = (b ^ (a >>> 7)) + steps
//   mark page dirty
//   disk step (guests with disks; one step in 256, chosen by bits 16..23 of v):
//     h = mix(v, steps);  disk d = h % disks;  block = mix'(h) % blocks[d];  slot = h >>> 8 & 255
//     write the 16-byte record {steps (u64), w[o], v} at block * 4096 + slot * 16, mark the block dirty
//   output step (guests whose host takes outputs; one in 1024, chosen by bits 4..13 of v):
//     emit {steps, w[o]} (output-ring.ts); a full ring ends the batch after this step
//
// A disk record carries a word of RAM, so a page that arrives stale changes the disk as well, and a
// block written on the wrong host or twice shows in the image. Disk steps draw nothing from the PRNG:
// a guest's RAM is the same with or without disks.
//
// Dirty marks are gathered in a private bitmap during a batch and published with one atomic OR per
// touched word when the batch ends (before any pause is acknowledged). Publishing after the writes is
// what matters: a sync that runs between a write and its mark sends the page now and again after the
// mark, never loses it. The locked OR also orders the batch's stores before the mark. Batching turns a
// ~250 ns atomic per step into one per distinct word, which is most of the step's cost on a hot set.
//
// The step logic knows nothing of migration. A page that is not yet present (post-copy destination)
// is waited for by `PageGate` before the step touches it, and so is a disk block before it is
// written. `page` is the guest page; the runner finds its slab in the flat list of all RAM regions'
// slabs (ram-layout.ts), and names pages to the gate by (index in that list, slab-local page).

import { fdatasyncSync, writeSync } from 'node:fs';
import { DISK_BLOCK_BYTES, type GuestConfig } from './guest-config.js';
import type { DiskHandle } from './disk.js';
import { nextU32, seedHash, seedPrng, type PrngState } from './prng.js';
import type { PageGate } from '../memory/page-gate.js';
import type { Slab } from '../memory/slab.js';
import { mapSlabs } from './ram-layout.js';
import { OUTPUT_KEY_MASK, OUTPUT_KEY_SHIFT, OUTPUT_STEP_KEY, type OutputSink } from './output-ring.js';

export interface WorkloadShape {
  kind: GuestConfig['workload'];
  pageCount: number;
  pageSize: number;
  hotStart: number;
  hotPages: number;
  /** Coin threshold out of 1024 for a hot step. */
  hotThreshold: number;
  /** Blocks of each disk (empty: no disk). */
  diskBlocks: readonly number[];
}

/** Bits 16..23 of a step's value that make it a disk step (one in 256). */
const DISK_STEP_KEY = 0x5a;
const DISK_RECORD_BYTES = 16;

export function workloadShape(config: GuestConfig): WorkloadShape {
  const pageCount = config.memoryBytes / config.pageSize;
  const hotPages = Math.max(1, Math.min(pageCount, Math.floor(config.hotBytes / config.pageSize)));
  const room = pageCount - hotPages + 1;
  return {
    kind: config.workload,
    pageCount,
    pageSize: config.pageSize,
    hotStart: Number(seedHash(config.seed, 0x407) % BigInt(room)),
    hotPages,
    hotThreshold: Math.round((config.hotPermille * 1024) / 1000),
    diskBlocks: config.disks.map((bytes) => bytes / DISK_BLOCK_BYTES),
  };
}

export interface CpuCounters {
  prng: PrngState;
  steps: number;
}

export function initialCounters(config: GuestConfig): CpuCounters {
  return { prng: seedPrng(config.seed, 1), steps: 0 };
}

/**
 * Runs steps over the guest's slabs (every RAM region's, in guest page order). Holds only views; the
 * counters it advances are its own copy.
 */
export class StepRunner {
  readonly shape: WorkloadShape;
  private readonly ram: Int32Array[];
  private readonly ramBase: number[];
  private readonly dirtyBase: number[];
  private readonly slabOfChunk: Uint8Array;
  private readonly slabFirst: Float64Array;
  private readonly words: number;
  /** Marks not yet published, per slab, and the (slab << 24 | word) of every word they touch. */
  private readonly pending: Int32Array[];
  private touched = new Int32Array(4096);
  private touchedCount = 0;
  prng: PrngState;
  steps: number;
  gate: PageGate | null = null;
  private disks: DiskHandle[] = [];
  private diskDirty: Int32Array[] = [];
  private readonly record = new Int32Array(DISK_RECORD_BYTES / 4);
  private readonly recordBytes = new Uint8Array(this.record.buffer);
  private unflushed = new Set<number>();
  /** Where outputs go (null: nobody takes them, and none are made). */
  outputs: OutputSink | null = null;

  constructor(shape: WorkloadShape, slabs: readonly Slab[], counters: CpuCounters) {
    this.shape = shape;
    this.ram = slabs.map((s) => new Int32Array(s.memory.buffer));
    this.ramBase = slabs.map((s) => s.layout.ram >>> 2);
    this.dirtyBase = slabs.map((s) => s.layout.dirty >>> 2);
    ({ slabOfChunk: this.slabOfChunk, slabFirst: this.slabFirst } = mapSlabs(slabs, shape.pageCount));
    this.words = shape.pageSize >>> 2;
    this.pending = slabs.map((s) => new Int32Array(s.layout.bitmapWords * 2));
    this.prng = [...counters.prng] as PrngState;
    this.steps = counters.steps;
  }

  /** Gives the runner its disks (one per `shape.diskBlocks`, same sizes); before the first step. */
  attachDisks(disks: readonly DiskHandle[]): void {
    const want = this.shape.diskBlocks;
    if (disks.length !== want.length || disks.some((d, i) => d.blocks !== want[i])) {
      throw new Error(`the workload has disks of ${want.join(', ') || 'no'} blocks; given ${disks.map((d) => d.blocks).join(', ') || 'none'}`);
    }
    this.disks = [...disks];
    this.diskDirty = disks.map((d) => new Int32Array(d.dirtyBuffer));
  }

  /** Makes the disk writes so far durable (before a pause is acknowledged: another host may read them next). */
  flushDisks(): void {
    for (const d of this.unflushed) fdatasyncSync(this.disks[d].fd);
    this.unflushed.clear();
  }

  counters(): CpuCounters {
    return { prng: this.prng.map((x) => x >>> 0) as PrngState, steps: this.steps };
  }

  /**
   * Runs `n` steps and returns how many ran: `n`, or fewer when the output sink filled up (the batch
   * ends after the step that filled it). An idle guest's steps are no-ops that only count.
   */
  run(n: number): number {
    if (n <= 0) return 0;
    if (this.shape.kind === 'idle') {
      this.steps += n;
      return n;
    }
    const s = this.prng;
    const { pageCount, hotStart, hotPages, hotThreshold } = this.shape;
    const hot = this.shape.kind === 'hotset';
    const sweep = this.shape.kind === 'sweep';
    const words = this.words;
    const mask = words - 1;
    const pending = this.pending;
    const slabOfChunk = this.slabOfChunk;
    const slabFirst = this.slabFirst;
    const gate = this.gate !== null && !this.gate.open ? this.gate : null;
    if (this.disks.length !== this.shape.diskBlocks.length) throw new Error('the workload writes disks, and none were attached');
    const withDisks = this.disks.length > 0;
    const outputs = this.outputs;
    let steps = this.steps;
    let i = 0;
    while (i < n) {
      let page: number;
      if (sweep) {
        page = steps % pageCount;
      } else {
        const r = nextU32(s);
        if (hot && (r >>> 22) < hotThreshold) page = hotStart + (nextU32(s) % hotPages);
        else page = (hot ? nextU32(s) : r) % pageCount;
      }
      const si = slabOfChunk[page >>> 6]; // one entry per 64 pages (RAM_REGION_ALIGN_PAGES)
      const local = page - slabFirst[si];
      if (gate !== null && !gate.isPresent(si, local)) gate.waitForPage(si, local);
      const v = nextU32(s);
      // words is a power of two: & mask is v % words.
      const o = v & mask;
      const o2 = (o + 1 + ((v >>> 24) & 7)) & mask;
      const mem = this.ram[si];
      const base = this.ramBase[si] + local * words;
      const a = mem[base + o];
      const b = mem[base + o2];
      mem[base + o] = (Math.imul(a ^ v, 0x9e3779b1) + b) | 0;
      mem[base + o2] = ((b ^ (a >>> 7)) + steps) | 0;
      if (withDisks && ((v >>> 16) & 0xff) === DISK_STEP_KEY) this.writeDisk(v, steps, mem[base + o], gate);
      const marks = pending[si];
      const w = local >>> 5;
      if (marks[w] === 0) this.touch((si << 24) | w);
      marks[w] |= 1 << (local & 31);
      i++;
      const full = outputs !== null && ((v >>> OUTPUT_KEY_SHIFT) & OUTPUT_KEY_MASK) === OUTPUT_STEP_KEY && !outputs.emit(steps, mem[base + o]);
      steps++;
      if (full) break;
    }
    this.steps = steps;
    this.publishDirty();
    return i;
  }

  private writeDisk(v: number, step: number, word: number, gate: PageGate | null): void {
    let h = Math.imul(v ^ step, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    let h2 = Math.imul(h ^ 0x27d4eb2f, 0x165667b1);
    h2 ^= h2 >>> 15;
    const d = (h >>> 0) % this.disks.length;
    const block = (h2 >>> 0) % this.shape.diskBlocks[d];
    const slot = (h >>> 8) & 255;
    const r = this.record;
    r[0] = step | 0;
    r[1] = Math.floor(step / 2 ** 32);
    r[2] = word;
    r[3] = v;
    // A block still on the source (post-copy) arrives whole: the record goes over it, never under it.
    if (gate !== null && !gate.isBlockPresent(d, block)) gate.waitForBlock(d, block);
    writeSync(this.disks[d].fd, this.recordBytes, 0, DISK_RECORD_BYTES, block * DISK_BLOCK_BYTES + slot * DISK_RECORD_BYTES);
    Atomics.or(this.diskDirty[d], block >>> 5, 1 << (block & 31));
    this.unflushed.add(d);
  }

  private touch(entry: number): void {
    if (this.touchedCount === this.touched.length) {
      const grown = new Int32Array(this.touched.length * 2);
      grown.set(this.touched);
      this.touched = grown;
    }
    this.touched[this.touchedCount++] = entry;
  }

  /** Publishes the batch's dirty marks into the slabs' shared dirty bitmaps. */
  publishDirty(): void {
    for (let i = 0; i < this.touchedCount; i++) {
      const e = this.touched[i];
      const si = e >>> 24;
      const w = e & 0xffffff;
      Atomics.or(this.ram[si], this.dirtyBase[si] + w, this.pending[si][w]);
      this.pending[si][w] = 0;
    }
    this.touchedCount = 0;
  }
}
