// The source's post-copy phase. The guest is paused and its state sent; the destination runs it and
// fetches what it touches on the urgent channel (fault-server.ts, its own thread) while this pushes
// every remaining page once, pivoting to recent faults (push-planner.ts). Nothing is released until
// the destination confirms, with the digest of what it holds, that every page is present.
//
//   pause ─► MISSING_PAGES* ─► DEVICE_STATE ─► SWITCHOVER(post-copy) ─► RESUMED
//         ─► push (windows around faults) ║ urgent answers ─► POSTCOPY_DONE(digest) ─► release ─► COMPLETE

import { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../../errors.js';
import type { Slab } from '../../memory/slab.js';
import { kernelsOf } from '../../memory/slab.js';
import type { Region } from '../../memory/types.js';
import { Limits } from '../../protocol/constants.js';
import { encodeMissingPages } from '../../protocol/control.js';
import type { Address } from '../../transport/tcp.js';
import { viewsOf } from '../../wasm/views.js';
import { BoardState, SourceBoard, createBoard, readFaultRing } from '../postcopy-board.js';
import type { FaultServerData } from './fault-server.js';
import { PushPlanner } from '../../pipeline/push-planner.js';

/** The source's fault thread, from the handshake until the post-copy phase ends. */
export class UrgentServer {
  readonly board: Int32Array;
  private readonly worker: Worker;
  private exited = false;

  private constructor(worker: Worker, board: SharedArrayBuffer) {
    this.worker = worker;
    this.board = new Int32Array(board);
    worker.on('exit', () => {
      this.exited = true;
      Atomics.compareExchange(this.board, SourceBoard.STATE, BoardState.RUNNING, BoardState.LINK_LOST);
      Atomics.notify(this.board, SourceBoard.CONNECTED);
    });
  }

  /** Starts the thread and connects the urgent channel; rejects if it cannot be set up. */
  static async start(slabs: readonly Slab[], regions: readonly Region[], session: Uint8Array, address: Address, iteration: number): Promise<UrgentServer> {
    const board = createBoard();
    const data: FaultServerData = { slabs: [...slabs], regions: [...regions], session, address, board, iteration };
    const server = new UrgentServer(new Worker(new URL('./fault-server.js', import.meta.url), { workerData: data }), board);
    const b = server.board;
    while (Atomics.load(b, SourceBoard.CONNECTED) === 0 && !server.exited) {
      const w = Atomics.waitAsync(b, SourceBoard.CONNECTED, 0, 10_000);
      if (w.async && (await w.value) === 'timed-out') break;
    }
    if (Atomics.load(b, SourceBoard.CONNECTED) !== 1) {
      await server.stop();
      throw new MemshiftError(ErrorCode.CONNECTION_FAILED, `cannot open the urgent channel to ${address.host}:${address.port}`, { peer: `${address.host}:${address.port}`, phase: 'urgent channel' });
    }
    return server;
  }

  get linkLost(): boolean {
    return Atomics.load(this.board, SourceBoard.STATE) === BoardState.LINK_LOST;
  }

  get requests(): number {
    return Atomics.load(this.board, SourceBoard.FAULTS_SEEN);
  }

  get pagesAnswered(): number {
    return Atomics.load(this.board, SourceBoard.SENT_URGENT);
  }

  /** Ends the thread (it closes the urgent channel). */
  async stop(state: number = BoardState.DONE): Promise<void> {
    Atomics.compareExchange(this.board, SourceBoard.STATE, BoardState.RUNNING, state);
    Atomics.notify(this.board, SourceBoard.STATE);
    if (!this.exited) await new Promise((resolve) => this.worker.once('exit', resolve));
  }
}

/** MISSING_PAGES frames for the pages marked in a region's snapshot bitmaps (the slabs' words, concatenated). */
export function missingPagesFrames(region: Region, slabs: readonly Slab[]): { frames: Uint8Array[]; missing: number } {
  const bytes = new Uint8Array(Math.ceil(region.pageCount / 64) * 8);
  let at = 0;
  let missing = 0;
  for (const s of slabs) {
    // Slabs hold whole bitmap words (page counts are multiples of 64 but for the last), so their
    // bitmaps concatenate into the region's.
    const { u8 } = viewsOf(s.memory);
    bytes.set(u8.subarray(s.layout.snapshot, s.layout.snapshot + s.layout.bitmapWords * 8), at);
    missing += kernelsOf(s).raw.bitmapCount(s.layout.snapshot, s.layout.bitmapWords);
    at += s.layout.bitmapWords * 8;
  }
  const framePages = Limits.MAX_MISSING_BITMAP_BYTES * 8;
  const frames: Uint8Array[] = [];
  for (let first = 0; first < region.pageCount; first += framePages) {
    const pageCount = Math.min(framePages, region.pageCount - first);
    const bitmap = bytes.slice(first / 8, first / 8 + Math.ceil(pageCount / 64) * 8);
    frames.push(encodeMissingPages({ regionId: region.id, firstPage: first, pageCount, bitmap }));
  }
  return { frames, missing };
}

/** Feeds the planner with faults the urgent thread saw since the last call. */
export function faultFeed(server: UrgentServer, planner: PushPlanner): () => { from: number; to: number; pages: number } {
  let seen = 0;
  return () => {
    const { pages, count } = readFaultRing(server.board, seen);
    seen = count;
    if (pages.length > 0) planner.onFault(pages[pages.length - 1]);
    const pagesInWindow = planner.windowPages;
    const w = planner.next();
    return { ...w, pages: pagesInWindow };
  };
}

