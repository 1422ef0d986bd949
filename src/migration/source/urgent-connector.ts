// The source's end of the urgent channel, seen from the main thread. The channel itself runs on its
// own thread (urgent-connector-thread.ts), which *connects* to the port the destination's fault thread
// listens on (announced in HELLO_ACK) and answers each page request at once from guest memory. This
// handle starts that thread, turns its control messages into events (connected, link lost) and reads
// the fault ring the push planner follows. Nothing on the fault path itself goes through here.
//
//   main ── start ──► thread ── connect ──► destination urgent listener
//   main ◄── 'connected' | 'link-lost' (worker messages) ── thread
//   main ◄── fault ring, counters (board, Atomics) ── thread

import { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../../errors.js';
import type { Board } from '../../memory/shared-board.js';
import type { Slab } from '../../memory/slab.js';
import type { Region } from '../../memory/types.js';
import type { Address } from '../../transport/tcp.js';
import type { LinkSecurity } from '../../transport/security.js';
import { BoardState, SourceBoard, createSourceBoard, endThread, readFaultRing, type Fault, type FaultThreadMessage } from '../postcopy-board.js';
import type { UrgentConnectorData } from './urgent-connector-thread.js';

/** How long the thread may take to connect the urgent channel. */
const CONNECT_TIMEOUT_MS = 10_000;

export class UrgentConnector {
  readonly board: Board;
  /** Resolves (never rejects) with why the urgent link ended before `stop`: lost, or the thread exited. */
  readonly lost: Promise<MemshiftError>;
  private readonly worker: Worker;
  private lostError: MemshiftError | null = null;
  private exited = false;
  private stopping = false;
  private seen = 0;

  private constructor(worker: Worker, board: Board, peer: string) {
    this.worker = worker;
    this.board = board;
    let onLost: (e: MemshiftError) => void = () => undefined;
    this.lost = new Promise((resolve) => { onLost = resolve; });
    const lose = (e: MemshiftError): void => {
      if (this.lostError !== null || this.stopping) return;
      this.lostError = e;
      onLost(e);
    };
    worker.on('message', (m: FaultThreadMessage) => {
      if (m.type === 'link-lost') lose(new MemshiftError(m.code as typeof ErrorCode.CONNECTION_CLOSED, `${peer}: urgent channel lost: ${m.message}`, { peer, phase: 'post-copy' }));
    });
    worker.on('exit', () => {
      this.exited = true;
      lose(new MemshiftError(ErrorCode.WORKER_FAILED, `${peer}: the urgent channel's thread exited`, { peer, phase: 'post-copy' }));
    });
  }

  /**
   * Starts the thread and connects the urgent channel; rejects if it cannot be set up. It is secured
   * as the bulk channel, and its peer must prove the identity the bulk channel's did (`peerIdentity`).
   */
  static async start(
    slabs: readonly Slab[], regions: readonly Region[], session: Uint8Array, address: Address, iteration: number,
    bound: { security: LinkSecurity; peerIdentity: string | null },
  ): Promise<UrgentConnector> {
    const board = createSourceBoard();
    const data: UrgentConnectorData = {
      slabs: [...slabs], regions: [...regions], session, address, board: board.buffer as SharedArrayBuffer, iteration,
      security: bound.security, peerIdentity: bound.peerIdentity,
    };
    const peer = `destination urgent channel ${address.host}:${address.port}`;
    const worker = new Worker(new URL('./urgent-connector-thread.js', import.meta.url), { workerData: data });
    const handle = new UrgentConnector(worker, board, peer);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS);
      worker.on('message', (m: FaultThreadMessage) => {
        if (m.type === 'connected') { clearTimeout(timer); resolve(true); }
      });
      void handle.lost.then(() => { clearTimeout(timer); resolve(false); });
    });
    if (!connected) {
      await handle.stop(BoardState.LINK_LOST);
      throw new MemshiftError(ErrorCode.CONNECTION_FAILED, `cannot open the urgent channel to ${address.host}:${address.port}`, { peer, phase: 'urgent channel' });
    }
    return handle;
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  /** Page requests the destination sent so far. */
  get requests(): number {
    return Atomics.load(this.board, SourceBoard.FAULTS_SEEN);
  }

  /** Faults requested since the last call (at most the ring's size), oldest first. */
  newFaults(): Fault[] {
    const { faults, count } = readFaultRing(this.board, this.seen);
    this.seen = count;
    return faults;
  }

  /** Ends the thread (it closes the urgent channel): DONE after completion, LINK_LOST to keep everything. */
  async stop(state: number = BoardState.DONE): Promise<void> {
    this.stopping = true;
    Atomics.compareExchange(this.board, SourceBoard.STATE, BoardState.RUNNING, state);
    Atomics.notify(this.board, SourceBoard.STATE);
    await endThread(this.worker, this.exited);
  }
}
