// Encoder threads started before the migration, as a hypervisor keeps its migration threads: a Node
// worker takes ~35–40 ms to start and load the kernels here, which otherwise sits in every migration's
// setup (QEMU's native threads start in well under a millisecond). `prepareEncoders(source)` starts
// them for that guest's memory, and with `postcopy` the post-copy fault thread too (loaded, waiting
// for its data); the next `migrate(source, …, { prepared })` takes them and closes them when it ends.
// One migration per preparation; what it did not take is closed with it. The guest's samples for
// `--compress auto` and `--xbzrle auto` (what LZ4 and a delta would do to its pages, ~15 ms of one
// thread here) are taken then too, and a migration within SAMPLES_FRESH_MS uses them instead of taking
// them between its handshake and its first pass.
//
//   prepareEncoders ─► threads load ─► ready ─► samples ┈┈ migrate({ prepared }) takes the pool ─► … ─► closed

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MemorySource } from '../../memory/types.js';
import type { Slab } from '../../memory/slab.js';
import { EncoderPool, defaultEncoderCount } from '../../pipeline/pool.js';
import type { Worker } from 'node:worker_threads';
import { UrgentConnector } from './urgent-connector.js';
import type { Lz4Sample, XbzrleSample } from '../compression.js';
import { sampleLz4 } from './lz4-sample.js';
import { sampleXbzrle } from './xbzrle-sample.js';

/** How long a preparation's samples stand for the guest: a migration that starts later samples again. */
export const SAMPLES_FRESH_MS = 10_000;

/** What LZ4 and XBZRLE would do to the guest's pages, and when that was measured (performance.now()). */
export interface GuestSamples {
  lz4: Lz4Sample;
  xbzrle: XbzrleSample;
  at: number;
}

export class PreparedEncoders {
  private pool: EncoderPool | null;
  private faultThread: Worker | null;

  private constructor(private readonly slabs: readonly Slab[], pool: EncoderPool, faultThread: Worker | null, readonly samples: GuestSamples) {
    this.pool = pool;
    this.faultThread = faultThread;
  }

  /** Starts the encoder threads for `source`'s memory (and the fault thread); resolves once every encoder has loaded. */
  static async start(source: MemorySource, encoders?: number, postcopy = false): Promise<PreparedEncoders> {
    const slabs = source.regions.flatMap((r) => [...source.slabsOf(r.id)]);
    const pool = new EncoderPool(slabs, encoders ?? defaultEncoderCount(postcopy));
    const faultThread = postcopy ? UrgentConnector.warm() : null;
    try {
      await pool.ready();
      const samples = { lz4: sampleLz4(slabs, pool.size, pool.inline), xbzrle: sampleXbzrle(slabs), at: performance.now() };
      return new PreparedEncoders(slabs, pool, faultThread, samples);
    } catch (err) {
      await pool.close().catch(() => undefined);
      await faultThread?.terminate();
      throw err;
    }
  }

  /**
   * The guest's `kind` sample if taken less than SAMPLES_FRESH_MS before `now` and of some pages; else
   * null: sample again (a guest with no non-zero page when prepared may have some now).
   */
  freshSample<K extends 'lz4' | 'xbzrle'>(kind: K, now = performance.now()): GuestSamples[K] | null {
    const sample = this.samples[kind];
    return now - this.samples.at < SAMPLES_FRESH_MS && sample.pages > 0 ? sample : null;
  }

  /** The warm fault thread, once, for the migration that takes the pool (null: none was prepared). */
  takeFaultThread(): Worker | null {
    const w = this.faultThread;
    this.faultThread = null;
    return w;
  }

  /** The pool, for the migration of the memory it was prepared for; throws if used twice or for other memory. */
  take(slabs: readonly Slab[]): EncoderPool {
    const pool = this.pool;
    if (pool === null) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, 'these prepared encoders were already used by a migration (one migration per preparation)', { field: 'options.prepared' });
    if (slabs.length !== this.slabs.length || slabs.some((s, i) => s !== this.slabs[i])) {
      throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, 'these encoders were prepared for another guest\'s memory', { field: 'options.prepared' });
    }
    this.pool = null;
    return pool;
  }

  /** Stops the threads no migration took (all of them, for a caller that changed its mind). */
  async close(): Promise<void> {
    const pool = this.pool;
    const faultThread = this.faultThread;
    this.pool = null;
    this.faultThread = null;
    await pool?.close();
    await faultThread?.terminate();
  }
}
