// The simulated guest's externally visible output: one step in 1024 (chosen by bits of its own random
// value, so outputs draw nothing from the PRNG and RAM is the same with or without them) emits the
// record {step, word it wrote}. Like a NIC's transmit queue, the records wait in a ring shared between
// the vCPU (the only writer) and the host thread that owns the guest (the only reader), which decides
// when they leave: at once, or only once a replica holds the state that produced them (Remus's output
// commit, replication/primary.ts). A full ring stops the vCPU after the step that filled it, as a full
// queue stalls a guest, until the host drains it; commands still reach the vCPU meanwhile.
//
//   ring := written:i32 read:i32 pad[2]  entry{capacity}      entry := stepLo:i32 stepHi:i32 word:i32 0:i32
//
// Counters run modulo 2^32; written − read (unsigned) is the fill. An output is a pure function of the
// step that made it and the memory before it, so `replay` yields the same list: the tests' oracle.

/** Bits 4..13 of a step's value that make it emit an output (one step in 1024). */
export const OUTPUT_STEP_KEY = 0x2c5;
export const OUTPUT_KEY_SHIFT = 4;
export const OUTPUT_KEY_MASK = 0x3ff;

/** One output of the guest: the step that produced it and the word that step wrote. */
export interface GuestOutput {
  step: number;
  word: number;
}

const HEADER_WORDS = 4;
const ENTRY_WORDS = 4;
const WRITTEN = 0;
const READ = 1;

/** Entries a ring holds by default: at the flat-out step rate, several hundred milliseconds of outputs. */
export const DEFAULT_OUTPUT_RING_ENTRIES = 1 << 14;

export function createOutputRing(entries = DEFAULT_OUTPUT_RING_ENTRIES): SharedArrayBuffer {
  if (!Number.isInteger(Math.log2(entries)) || entries < 2) throw new Error(`output ring of ${entries} entries: must be a power of two`);
  return new SharedArrayBuffer(4 * (HEADER_WORDS + entries * ENTRY_WORDS));
}

/** Where a workload sends its outputs: the ring (vCPU thread) or a list (the reference run). */
export interface OutputSink {
  /** Records an output; false when there is no room left for another one. */
  emit(step: number, word: number): boolean;
  /** True when the next emit would not fit. */
  readonly full: boolean;
}

/** The vCPU's end of a ring. */
export class OutputWriter implements OutputSink {
  private readonly i32: Int32Array;
  private readonly mask: number;

  constructor(ring: SharedArrayBuffer) {
    this.i32 = new Int32Array(ring);
    this.mask = (this.i32.length - HEADER_WORDS) / ENTRY_WORDS - 1;
  }

  get full(): boolean {
    return ((Atomics.load(this.i32, WRITTEN) - Atomics.load(this.i32, READ)) >>> 0) > this.mask;
  }

  emit(step: number, word: number): boolean {
    // The vCPU never emits into a full ring (it checks before each batch and ends a batch that fills it).
    if (this.full) throw new Error('output ring overflow: an output was emitted into a full ring');
    const written = this.i32[WRITTEN];
    const at = HEADER_WORDS + (written & this.mask) * ENTRY_WORDS;
    this.i32[at] = step | 0;
    this.i32[at + 1] = Math.floor(step / 2 ** 32);
    this.i32[at + 2] = word;
    // The store publishes the entry: the reader loads `written` first, then the entries before it.
    Atomics.store(this.i32, WRITTEN, (written + 1) | 0);
    return !this.full;
  }
}

/** The host's end of a ring: takes every output written so far, oldest first. */
export function drainOutputRing(ring: SharedArrayBuffer): GuestOutput[] {
  const i32 = new Int32Array(ring);
  const mask = (i32.length - HEADER_WORDS) / ENTRY_WORDS - 1;
  const written = Atomics.load(i32, WRITTEN);
  let read = i32[READ];
  const out: GuestOutput[] = [];
  while (read !== written) {
    const at = HEADER_WORDS + (read & mask) * ENTRY_WORDS;
    out.push({ step: (i32[at] >>> 0) + i32[at + 1] * 2 ** 32, word: i32[at + 2] });
    read = (read + 1) | 0;
  }
  Atomics.store(i32, READ, read);
  return out;
}

/** A sink that keeps every output (the reference run): never full. */
export class OutputList implements OutputSink {
  readonly outputs: GuestOutput[] = [];
  readonly full = false;
  emit(step: number, word: number): boolean {
    this.outputs.push({ step, word });
    return true;
  }
}

/** The line an output is served as (and compared by): "STEP WORD" in decimal, WORD unsigned. */
export function formatOutput(o: GuestOutput): string {
  return `${o.step} ${o.word >>> 0}`;
}
