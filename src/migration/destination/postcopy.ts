// The destination's side of post-copy, on the main thread: starts the fault thread (fault-client.ts)
// at the handshake, marks the pages the source says are missing, and tracks arrivals until every page
// is present. Pages that are not missing start claimed, so a stray copy of one can never overwrite
// what the resumed guest has written since.

import { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { Mailbox, readFaultLog, type PageGateInit } from '../../memory/page-gate.js';
import { kernelsOf, type Slab } from '../../memory/slab.js';
import type { MemoryTarget, Region } from '../../memory/types.js';
import type { MissingPages } from '../../protocol/control.js';
import { viewsOf } from '../../wasm/views.js';
import { BoardState, DestBoard, createBoard } from '../postcopy-board.js';
import { percentile } from '../report.js';
import type { FaultClientData } from './fault-client.js';

export class FaultClient {
  readonly board: Int32Array;
  readonly port: number;
  private readonly mailbox: Int32Array;
  private readonly worker: Worker;
  private exited = false;
  private marked = new Set<number>();
  private missing = 0;

  private constructor(worker: Worker, board: SharedArrayBuffer, readonly gate: PageGateInit, port: number) {
    this.worker = worker;
    this.board = new Int32Array(board);
    this.mailbox = new Int32Array(gate.mailbox);
    this.port = port;
    worker.on('exit', () => {
      this.exited = true;
      Atomics.compareExchange(this.board, DestBoard.STATE, BoardState.RUNNING, BoardState.LINK_LOST);
      Atomics.notify(this.board, DestBoard.ARRIVED);
      Atomics.notify(this.board, DestBoard.CONNECTED);
    });
  }

  /** Arms the target's page gate and starts the fault thread listening on `host`. */
  static async start(target: MemoryTarget, regionId: number, session: Uint8Array, host: string): Promise<FaultClient> {
    if (target.enablePageGate === undefined) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this target cannot run post-copy');
    const gate = target.enablePageGate();
    const board = createBoard();
    const data: FaultClientData = {
      slabs: target.regions.flatMap((r) => [...target.slabsOf(r.id)]), regions: [...target.regions], regionId, session, host,
      mailbox: gate.mailbox, board,
    };
    const worker = new Worker(new URL('./fault-client.js', import.meta.url), { workerData: data });
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', (m: { port: number }) => resolve(m.port));
      worker.once('exit', () => reject(new MemshiftError(ErrorCode.WORKER_FAILED, 'fault thread exited before listening')));
      worker.once('error', (e) => reject(new MemshiftError(ErrorCode.WORKER_FAILED, `fault thread failed: ${e.message}`, { cause: e })));
    });
    return new FaultClient(worker, board, gate, port);
  }

  /** Applies one MISSING_PAGES frame to the region's present and claim bitmaps. */
  markMissing(region: Region, slabs: readonly Slab[], m: MissingPages): void {
    if (!this.marked.has(region.id)) {
      // Everything not named missing is present (and claimed) from here on.
      for (const s of slabs) {
        const k = kernelsOf(s).raw;
        k.bitmapFill(s.layout.present, s.pageCount);
        k.bitmapFill(s.layout.claim, s.pageCount);
      }
      this.marked.add(region.id);
    }
    if (m.firstPage + m.pageCount > region.pageCount) {
      throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `MISSING_PAGES names pages up to ${m.firstPage + m.pageCount}, region ${region.id} has ${region.pageCount}`);
    }
    const perSlab = slabs[0].pageCount;
    // 32-bit halves: bit i of half h is page firstPage + 32h + i.
    const halves = new Uint32Array(m.bitmap.buffer.slice(m.bitmap.byteOffset, m.bitmap.byteOffset + m.bitmap.byteLength));
    const validHalves = Math.ceil(m.pageCount / 32);
    for (let h = 0; h < halves.length; h++) {
      const bits = halves[h];
      if (bits === 0) continue;
      const valid = m.pageCount - h * 32;
      if (h >= validHalves || (valid < 32 && bits >>> valid !== 0)) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `MISSING_PAGES has bits past its ${m.pageCount} pages`);
      const page = m.firstPage + h * 32;
      const slab = slabs[Math.floor(page / perSlab)];
      const half = (page - slab.firstPage) >>> 5;
      const { u32 } = viewsOf(slab.memory);
      u32[(slab.layout.present >>> 2) + half] &= ~bits;
      u32[(slab.layout.claim >>> 2) + half] &= ~bits;
      this.missing += popcount32(bits);
    }
  }

  get missingPages(): number {
    return this.missing;
  }

  /** Starts counting arrivals; call at the switchover with the total the source announced. */
  begin(total: number): void {
    if (total !== this.missing) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `SWITCHOVER announces ${total} missing pages, MISSING_PAGES named ${this.missing}`);
    Atomics.store(this.board, DestBoard.MISSING, total);
  }

  async waitConnected(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (Atomics.load(this.board, DestBoard.CONNECTED) === 0 && !this.exited && performance.now() < deadline) {
      const w = Atomics.waitAsync(this.board, DestBoard.CONNECTED, 0, 100);
      if (w.async) await w.value;
    }
    if (Atomics.load(this.board, DestBoard.CONNECTED) !== 1) throw new MemshiftError(ErrorCode.CONNECTION_FAILED, 'the source did not open the urgent channel');
  }

  /** Records pages the bulk channel wrote. */
  addBulk(applied: number): void {
    if (applied === 0) return;
    Atomics.add(this.board, DestBoard.BULK, applied);
    Atomics.add(this.board, DestBoard.ARRIVED, applied);
  }

  get complete(): boolean {
    return Atomics.load(this.board, DestBoard.ARRIVED) >= Atomics.load(this.board, DestBoard.MISSING);
  }

  get linkLost(): boolean {
    return Atomics.load(this.board, DestBoard.STATE) === BoardState.LINK_LOST;
  }

  /** Resolves when every missing page arrived, or the urgent link was lost. */
  async waitUntilDone(): Promise<void> {
    for (;;) {
      if (this.complete || this.linkLost) return;
      const arrived = Atomics.load(this.board, DestBoard.ARRIVED);
      const w = Atomics.waitAsync(this.board, DestBoard.ARRIVED, arrived, 200);
      if (w.async) await w.value;
    }
  }

  /** Lets the vCPU stop checking pages: every one is present. */
  openGate(): void {
    Atomics.store(this.mailbox, Mailbox.ALL_PRESENT, 1);
  }

  stats(): { faults: number; requested: number; urgent: number; bulk: number; duplicates: number; bulkAtFirstAnswer: number } {
    const b = this.board;
    return {
      faults: Atomics.load(this.mailbox, Mailbox.FAULTS),
      requested: Atomics.load(b, DestBoard.REQUESTED),
      urgent: Atomics.load(b, DestBoard.URGENT),
      bulk: Atomics.load(b, DestBoard.BULK),
      duplicates: Atomics.load(b, DestBoard.DUPLICATE),
      bulkAtFirstAnswer: Atomics.load(b, DestBoard.BULK_AT_FIRST_ANSWER),
    };
  }

  latencyUs(): { p50: number; p99: number; max: number } {
    const l = readFaultLog(this.gate.faultLog);
    return { p50: percentile(l, 50), p99: percentile(l, 99), max: l.reduce((m, x) => (x > m ? x : m), 0) };
  }

  /** Ends the fault thread: DONE after completion, LINK_LOST when the session broke. */
  async stop(state: number = BoardState.DONE): Promise<void> {
    Atomics.compareExchange(this.board, DestBoard.STATE, BoardState.RUNNING, state);
    Atomics.notify(this.mailbox, Mailbox.FAULT_SEQ);
    if (!this.exited) await new Promise((resolve) => this.worker.once('exit', resolve));
  }
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
