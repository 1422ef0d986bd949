// The source's encoder pool: piscina workers that turn page ranges into PAGE_BATCH frames inside the
// slabs' arenas, or none (`threads` 0): then the main thread encodes each batch itself, just before it
// writes it. Tasks are sized in megabytes (a chunk holds up to 1024 pages), because a task round trip
// costs 15–90 µs here: 256 KiB tasks lose to encoding inline, 1–4 MiB tasks do not.
// Its control board (EncoderBoard in messages.ts) hands each worker its scratch slot and carries the
// niceness the workers should take; no message is sent for either.
//
// Why inline is the default on hosts of up to two cores: a worker there has no core of its own. The
// main thread's writes and the loopback or NIC work of the kernel need the other core, and every batch
// the worker builds is read again by the kernel on the main thread's core, from the worker's cache.
// Measured on 2 cores (1 GiB of random pages, first pass, both ends on one host; `node dist/bench/ab.js
// --a . --b . --b-args "--encoders 1" --shape idle --runs 5`): 0.69 CPU-s per GB and 2.41 GB/s inline
// against 0.77 and 2.15 with one worker.

import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import { createBoard, type Board } from '../memory/shared-board.js';
import type { Slab } from '../memory/slab.js';
import { encodeInto, scanInto } from './encoder-tasks.js';
import { mapFirstChunks } from './chunk-ring.js';
import { MAX_WRITES_AHEAD } from './pass-scheduler.js';
import { EncoderBoard, type EncodeRequest, type EncodeResult, type EncoderWorkerData, type Envelope, type ScanRequest } from './messages.js';

/** One scratch slot per encoder, from FIRST_ENCODER to the last slot. */
export const MAX_ENCODERS = ScratchAgent.COUNT - ScratchAgent.FIRST_ENCODER;

/** The main thread encoding inline takes the slot the first worker would (MAIN serves its own hash-scans). */
const INLINE_AGENT = ScratchAgent.FIRST_ENCODER;

/**
 * No encoder threads on hosts of up to two cores (see above), unless the migration may go post-copy:
 * its push runs beside the fault threads, and only a worker can be lowered in priority for them (the
 * main thread is the application's; fault p99 3.5 ms inline against 2.3 ms with a worker, `ab.js
 * --shape postcopy --runs 3`).
 * Elsewhere one thread per core but the main thread's.
 */
export function defaultEncoderCount(postcopy: boolean, cores = availableParallelism()): number {
  if (cores <= 2) return postcopy ? 1 : 0;
  return Math.min(MAX_ENCODERS, cores - 1);
}

export class EncoderPool {
  private readonly pool: Piscina | null;
  private readonly control: Board;
  /** Batches built at once: the threads, or 1 for the main thread. */
  readonly size: number;
  /** The main thread encodes each batch itself, between its sends (no encoder threads). */
  readonly inline: boolean;
  /**
   * Tasks a scheduler keeps started: two per thread, so a worker never waits for its next; one inline,
   * so each batch goes to the socket as soon as it is built (a second built first would only hold back
   * the first, which a final pass pays in downtime).
   */
  readonly tasksInFlight: number;
  /** Each slab's region key base (region id << 32), for encodeInto on this thread or in the workers. */
  private readonly keyBases: bigint[];
  /**
   * Milliseconds this thread has spent encoding (inline only; workers encode beside it): time in which
   * the socket was given nothing, which a measure of the link leaves out.
   */
  encodingMs = 0;

  constructor(private readonly slabs: readonly Slab[], threads: number) {
    if (!Number.isInteger(threads) || threads < 0 || threads > MAX_ENCODERS) {
      throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `encoders must be an integer in [0, ${MAX_ENCODERS}] (got ${threads})`, { field: 'encoders', value: threads });
    }
    this.size = Math.max(1, threads);
    this.inline = threads === 0;
    this.tasksInFlight = threads === 0 ? 1 : 2 * threads;
    this.control = createBoard(EncoderBoard.SLOTS);
    Atomics.store(this.control, EncoderBoard.NEXT_AGENT, ScratchAgent.FIRST_ENCODER);
    this.keyBases = slabs.map((s) => BigInt(s.regionId) << 32n);
    if (threads === 0) {
      this.pool = null;
      return;
    }
    const data: EncoderWorkerData = {
      slabs: [...slabs],
      control: this.control.buffer as SharedArrayBuffer,
      keyBases: this.keyBases.map(String),
    };
    this.pool = new Piscina({
      filename: new URL('./encode-worker.js', import.meta.url).href,
      workerData: data,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // A few queued tasks per thread keep workers busy without hiding back-pressure.
      maxQueue: threads * 8,
    });
    // A pass that failed closes the pool with tasks still running; a worker's answer that arrives
    // after that makes piscina emit 'error', which must not take the process down. Tasks that were
    // awaited have already rejected; nothing else is waiting for it.
    this.pool.on('error', () => undefined);
  }

  /**
   * Resolves once every thread has loaded its module (a worker takes ~35 ms to start here) and the arena
   * chunks the schedulers will use are mapped: the source spends both while it connects, or before the
   * migration when prepared, instead of inside its first pass.
   */
  async ready(): Promise<void> {
    for (const slab of this.slabs) mapFirstChunks(slab, this.tasksInFlight + MAX_WRITES_AHEAD);
    const pool = this.pool;
    if (pool !== null) await Promise.all(Array.from({ length: this.size }, () => pool.run(null, { name: 'ready' })));
  }

  /** Builds the batch of task `req` (inline: before it returns; its promise settles after). */
  encode(req: EncodeRequest): Promise<EncodeResult> {
    if (this.pool !== null) return this.call<EncodeResult>('encodeBatch', req);
    const t = performance.now();
    try {
      return here('encodeBatch', () => encodeInto(this.slabs, this.keyBases, INLINE_AGENT, req));
    } finally {
      this.encodingMs += performance.now() - t;
    }
  }

  /** Hash-scans a file-backed slab's pages (encode-worker.ts, scanPages); resolves to how many it marked dirty. */
  scan(req: ScanRequest): Promise<number> {
    if (this.pool !== null) return this.call<number>('scanPages', req);
    return here('scanPages', () => scanInto(this.slabs, INLINE_AGENT, req));
  }

  /** Runs the named task; its envelope's error comes back as the MemshiftError it carries. */
  private async call<T>(name: string, req: unknown): Promise<T> {
    let reply: Envelope<T>;
    try {
      reply = await this.pool!.run(req, { name });
    } catch (cause) {
      throw new MemshiftError(ErrorCode.WORKER_FAILED, `encoder worker failed: ${(cause as Error).message}`, { cause });
    }
    if (!reply.ok) throw new MemshiftError(reply.code as typeof ErrorCode.WORKER_FAILED, reply.message);
    return reply.value;
  }

  /**
   * Lowers the encoder threads' priority (raises their niceness) from their next task on: post-copy
   * pushes in the background while a guest waits on faults. One way: it is never lowered back. Without
   * threads it does nothing: the main thread also answers the destination, and the faults have their own.
   */
  yieldToFaults(niceness = 10): void {
    Atomics.store(this.control, EncoderBoard.NICENESS, niceness);
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}

/** A task run on this thread, failing as a worker's does (a MemshiftError with its code). */
function here<T>(task: string, work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    return Promise.reject(toMemshiftError(err, ErrorCode.WORKER_FAILED, task));
  }
}
