// The source's end of the urgent channel, seen from the main thread. The channel itself runs on its
// own thread (urgent-connector-thread.ts), which *connects* to the port the destination's fault thread
// listens on (announced in HELLO_ACK) and answers each page request at once from guest memory. This
// handle starts that thread, turns its control messages into events (connected, link lost) and reads
// the fault ring the push planner follows. Nothing on the fault path itself goes through here.
//
//   main ── spawn (while the bulk channel is set up) ──► thread
//   main ── connect(session, port) ──► thread ── connect ──► destination urgent listener
//   main ◄── 'connected' | 'link-lost' (worker messages) ── thread
//   main ◄── fault ring, counters (board, Atomics) ── thread

import type { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../../errors.js';
import type { Board } from '../../memory/shared-board.js';
import type { Slab } from '../../memory/slab.js';
import type { Region } from '../../memory/types.js';
import type { Address } from '../../transport/tcp.js';
import type { LinkSecurity } from '../../transport/security.js';
import { BoardState, SourceBoard, createSourceBoard, endThread, readFaultRing, startFaultThread, warmFaultThread, type Fault, type FaultThreadMessage } from '../postcopy-board.js';
import type { UrgentConnectOrder, UrgentConnectorData } from './urgent-connector-thread.js';

/** How long the thread may take to connect the urgent channel. */
const CONNECT_TIMEOUT_MS = 10_000;

const THREAD = new URL('./urgent-connector-thread.js', import.meta.url);

export class UrgentConnector {
  readonly board: Board;
  /** Resolves (never rejects) with why the urgent link ended before `stop`: lost, or the thread exited. */
  readonly lost: Promise<MemshiftError>;
  private readonly worker: Worker;
  private lostError: MemshiftError | null = null;
  private exited = false;
  private stopping = false;
  private seen = 0;
  /** Post-copy with disks: the destination's guest waits for this block (region DISK_REGION_BASE + disk). */
  onBlockFault: ((regionId: number, block: number) => void) | null = null;
  /** Names the destination's urgent port in errors once `connect` knows it. */
  private peer = 'destination urgent channel';

  private constructor(worker: Worker, board: Board) {
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
      if (m.type === 'block-fault') for (let b = m.block; b < m.block + m.count; b++) this.onBlockFault?.(m.regionId, b);
      if (m.type === 'link-lost') lose(new MemshiftError(m.code as typeof ErrorCode.CONNECTION_CLOSED, `${this.peer}: urgent channel lost: ${m.message}`, { peer: this.peer, phase: 'post-copy' }));
    });
    worker.on('exit', () => {
      this.exited = true;
      lose(new MemshiftError(ErrorCode.WORKER_FAILED, `${this.peer}: the urgent channel's thread exited`, { peer: this.peer, phase: 'post-copy' }));
    });
  }

  /**
   * Starts the thread, which loads and waits for `connect`: a source that may go post-copy spawns it
   * while its bulk channel is being set up, so the thread's start-up (~50 ms here) overlaps the
   * destination's setup instead of following it. The channel is secured as the bulk channel.
   */
  static spawn(slabs: readonly Slab[], regions: readonly Region[], iteration: number, security: LinkSecurity, warm?: Worker, board: Board = createSourceBoard()): UrgentConnector {
    // A recovery's thread takes the board of the one that lost its link: counts and fault ring go on.
    Atomics.store(board, SourceBoard.STATE, BoardState.RUNNING);
    const data: UrgentConnectorData = { slabs: [...slabs], regions: [...regions], board: board.buffer as SharedArrayBuffer, iteration, security };
    const worker = startFaultThread(THREAD, data, warm);
    return new UrgentConnector(worker, board);
  }

  /**
   * A fault thread started ahead of any migration (`prepareEncoders(…, { postcopy: true })`): it loads
   * its modules (~50 ms here) and waits for `spawn` to hand it its data.
   */
  static warm(): Worker {
    return warmFaultThread(THREAD);
  }

  /**
   * Connects the urgent channel to `address` for `session`; rejects (after stopping the thread) if it
   * cannot be set up. Its peer must prove the identity the bulk channel's did (`peerIdentity`).
   */
  async connect(session: Uint8Array, address: Address, peerIdentity: string | null): Promise<void> {
    this.peer = `destination urgent channel ${address.host}:${address.port}`;
    const connected = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS);
      this.worker.on('message', (m: FaultThreadMessage) => {
        if (m.type === 'connected') { clearTimeout(timer); resolve(true); }
      });
      void this.lost.then(() => { clearTimeout(timer); resolve(false); });
    });
    const order: UrgentConnectOrder = { session, address, peerIdentity };
    this.worker.postMessage(order);
    if (!(await connected)) {
      await this.stop(BoardState.LINK_LOST);
      throw new MemshiftError(ErrorCode.CONNECTION_FAILED, `cannot open the urgent channel to ${address.host}:${address.port}`, { peer: this.peer, phase: 'urgent channel' });
    }
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
