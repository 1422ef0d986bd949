// The source's encoder pool: piscina workers that turn page ranges into PAGE_BATCH frames inside the
// slabs' arenas. Tasks are sized in megabytes (a chunk holds up to 1024 pages), because a task round
// trip costs 15–90 µs here: 256 KiB tasks lose to encoding inline, 1–4 MiB tasks do not.
// Its control board (EncoderBoard in messages.ts) hands each worker its scratch slot and carries the
// niceness the workers should take; no message is sent for either.

import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import { ErrorCode, MemshiftError } from '../errors.js';
import { ScratchAgent } from '../memory/scratch-agents.js';
import { createBoard, type Board } from '../memory/shared-board.js';
import type { Slab } from '../memory/slab.js';
import { EncoderBoard, type EncodeRequest, type EncodeResult, type EncoderWorkerData, type Envelope, type ScanRequest } from './messages.js';

/** One scratch slot per encoder, from FIRST_ENCODER to the last slot. */
export const MAX_ENCODERS = ScratchAgent.COUNT - ScratchAgent.FIRST_ENCODER;

export function defaultEncoderCount(): number {
  return Math.max(1, Math.min(MAX_ENCODERS, availableParallelism() - 1));
}

export class EncoderPool {
  private readonly pool: Piscina;
  private readonly control: Board;
  readonly size: number;

  constructor(slabs: readonly Slab[], threads: number = defaultEncoderCount()) {
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_ENCODERS) {
      throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, `encoders must be an integer in [1, ${MAX_ENCODERS}] (got ${threads})`, { field: 'encoders', value: threads });
    }
    this.control = createBoard(EncoderBoard.SLOTS);
    Atomics.store(this.control, EncoderBoard.NEXT_AGENT, ScratchAgent.FIRST_ENCODER);
    const data: EncoderWorkerData = {
      slabs: [...slabs],
      control: this.control.buffer as SharedArrayBuffer,
      keyBases: slabs.map((s) => (BigInt(s.regionId) << 32n).toString()),
    };
    this.size = threads;
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
   * Resolves once every thread has loaded its module: a worker takes ~35 ms to start here, which the
   * source spends while it connects instead of inside its first pass.
   */
  async ready(): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, () => this.pool.run(null, { name: 'ready' })));
  }

  encode(req: EncodeRequest): Promise<EncodeResult> {
    return this.call<EncodeResult>('encodeBatch', req);
  }

  /** Hash-scans a file-backed slab's pages (encode-worker.ts, scanPages); resolves to how many it marked dirty. */
  scan(req: ScanRequest): Promise<number> {
    return this.call<number>('scanPages', req);
  }

  /** Runs the named task; its envelope's error comes back as the MemshiftError it carries. */
  private async call<T>(name: string, req: unknown): Promise<T> {
    let reply: Envelope<T>;
    try {
      reply = await this.pool.run(req, { name });
    } catch (cause) {
      throw new MemshiftError(ErrorCode.WORKER_FAILED, `encoder worker failed: ${(cause as Error).message}`, { cause });
    }
    if (!reply.ok) throw new MemshiftError(reply.code as typeof ErrorCode.WORKER_FAILED, reply.message);
    return reply.value;
  }

  /**
   * Lowers the encoder threads' priority (raises their niceness) from their next task on: post-copy
   * pushes in the background while a guest waits on faults. One way: it is never lowered back.
   */
  yieldToFaults(niceness = 10): void {
    Atomics.store(this.control, EncoderBoard.NICENESS, niceness);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
