// Encoder threads started before the migration, as a hypervisor keeps its migration threads: a Node
// worker takes ~35–40 ms to start and load the kernels here, which otherwise sits in every migration's
// setup (QEMU's native threads start in well under a millisecond). `prepareEncoders(source)` starts
// them for that guest's memory, and with `postcopy` the post-copy fault thread too (loaded, waiting
// for its data); the next `migrate(source, …, { prepared })` takes them and closes them when it ends.
// One migration per preparation; what it did not take is closed with it.
//
//   prepareEncoders ─► threads load ─► ready ┈┈ migrate({ prepared }) takes the pool ─► … ─► closed

import { ErrorCode, MemshiftError } from '../../errors.js';
import type { MemorySource } from '../../memory/types.js';
import type { Slab } from '../../memory/slab.js';
import { EncoderPool, defaultEncoderCount } from '../../pipeline/pool.js';
import type { Worker } from 'node:worker_threads';
import { UrgentConnector } from './urgent-connector.js';

export class PreparedEncoders {
  private pool: EncoderPool | null;
  private faultThread: Worker | null;

  private constructor(private readonly slabs: readonly Slab[], pool: EncoderPool, faultThread: Worker | null) {
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
    } catch (err) {
      await pool.close().catch(() => undefined);
      await faultThread?.terminate();
      throw err;
    }
    return new PreparedEncoders(slabs, pool, faultThread);
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
