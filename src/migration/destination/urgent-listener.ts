// The destination's end of the urgent channel, seen from the main thread. The channel runs on its own
// thread (urgent-listener-thread.ts), which *listens* on a port of its own (announced in HELLO_ACK),
// accepts the source's urgent connection of the same session, turns vCPU faults into page requests
// and writes the answers. This handle arms the target's page gate, marks the pages the source says
// are missing, counts arrivals, and turns the thread's messages into events: connected, every page
// present, link lost. Pages that are not missing start claimed, so a stray copy of one can never
// overwrite what the resumed guest has written since. Disk blocks named missing (POSTCOPY_BLOCKS) have
// their `present` bits cleared and count with the pages; they arrive on the bulk channel only.
//
//   vCPU ─ mailbox ─► thread ─ PAGE_REQUEST ─► source     thread ─ 'all-present' | 'link-lost' ─► main

import type { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { Mailbox, readFaultLog, type PageGateInit } from '../../memory/page-gate.js';
import { kernelsOf, type Slab } from '../../memory/slab.js';
import type { Board } from '../../memory/shared-board.js';
import type { MemoryTarget, Region } from '../../memory/types.js';
import type { MissingPages } from '../../protocol/control.js';
import type { LinkSecurity } from '../../transport/security.js';
import { BoardState, DestBoard, createDestBoard, endThread, startFaultThread, warmFaultThread, type FaultThreadMessage } from '../postcopy-board.js';
import { percentile } from '../report.js';
import { clearMissingPages, forEachHalf, popcount32 } from '../missing-pages.js';
import type { UrgentListenerData } from './urgent-listener-thread.js';

export interface UrgentListenerEvents {
  /** Every page missing at the switchover has arrived (once). */
  onAllPresent(): void;
  /** The urgent link broke or its thread ended while it was still needed (once). */
  onLost(error: MemshiftError): void;
}

const THREAD = new URL('./urgent-listener-thread.js', import.meta.url);

export class UrgentListener {
  readonly board: Board;
  /** The port the fault thread listens on (a recovery's thread listens on a new one). */
  port = 0;
  /** Resolves once the source connected the urgent channel (to the current thread). */
  connected: Promise<void> = Promise.resolve();
  private readonly mailbox: Int32Array;
  private worker: Worker | null = null;
  private events: UrgentListenerEvents | null = null;
  private exited = false;
  private stopping = false;
  private begun = false;
  private allPresent = false;
  private lost: MemshiftError | null = null;
  private readonly marked = new Set<number>();
  private missing = 0;
  /** Of `missing`, disk blocks. */
  private missingBlocks = 0;

  private constructor(readonly gate: PageGateInit, private readonly data: Omit<UrgentListenerData, 'host' | 'refault'>) {
    this.board = new Int32Array(data.board);
    this.mailbox = new Int32Array(gate.mailbox);
  }

  /**
   * Arms the target's page gate and starts the fault thread listening on `host`. The urgent channel
   * is secured as the bulk one and bound to it: `peerIdentity` is who the bulk channel's peer proved
   * to be (null in plaintext), and the urgent connection must prove the same, then name the session.
   */
  static async start(target: MemoryTarget, session: Uint8Array, host: string, helloTimeoutMs: number, bound: { security: LinkSecurity; peerIdentity: string | null }): Promise<UrgentListener> {
    if (target.enablePageGate === undefined) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'this target cannot run post-copy');
    const gate = target.enablePageGate();
    const listener = new UrgentListener(gate, {
      slabs: target.regions.flatMap((r) => [...target.slabsOf(r.id)]), regions: [...target.regions], session,
      mailbox: gate.mailbox, board: createDestBoard().buffer as SharedArrayBuffer, helloTimeoutMs,
      security: bound.security, peerIdentity: bound.peerIdentity,
    });
    await listener.spawn(host, false);
    return listener;
  }

  /**
   * After a lost link (the old thread stopped with LINK_LOST): a new fault thread on a new port, over
   * the same gate, board and counts. It asks again for the page the vCPU may be blocked on, whose
   * request may have died with the old link. Returns the new port.
   */
  async rearm(host: string): Promise<number> {
    this.stopping = false;
    this.lost = null;
    Atomics.store(this.board, DestBoard.STATE, BoardState.RUNNING);
    const warm = this.spare;
    this.spare = null;
    await this.spawn(host, true, warm ?? undefined);
    return this.port;
  }

  /** A thread loading ahead of a rearm (~50 ms of modules), started when the link was lost. */
  private spare: Worker | null = null;

  /** Starts loading the thread a recovery's rearm will take, unless one is loading already. */
  prepareRearm(): void {
    this.spare ??= warmFaultThread(THREAD);
  }

  /** The session ended: no recovery will take the loading thread. */
  discardSpare(): void {
    void this.spare?.terminate();
    this.spare = null;
  }

  private async spawn(host: string, refault: boolean, warm?: Worker): Promise<void> {
    const data: UrgentListenerData = { ...this.data, host, refault };
    const worker = startFaultThread(THREAD, data, warm);
    this.worker = worker;
    this.exited = false;
    let onConnected: () => void = () => undefined;
    this.connected = new Promise<void>((resolve) => { onConnected = resolve; });
    // Messages of a thread that was replaced (a late exit after a recovery) are not this one's.
    const current = (): boolean => this.worker === worker;
    worker.on('message', (m: FaultThreadMessage) => {
      if (!current()) return;
      if (m.type === 'connected') onConnected();
      if (m.type === 'all-present') this.noteAllPresent();
      if (m.type === 'link-lost') this.lose(new MemshiftError(m.code as typeof ErrorCode.CONNECTION_CLOSED, `urgent channel lost during post-copy: ${m.message}`, { phase: 'post-copy' }));
    });
    worker.on('exit', () => {
      if (!current()) return;
      this.exited = true;
      this.lose(new MemshiftError(ErrorCode.WORKER_FAILED, "the urgent channel's thread exited", { phase: 'post-copy' }));
    });
    this.port = await new Promise<number>((resolve, reject) => {
      worker.on('message', (m: FaultThreadMessage) => { if (m.type === 'listening') resolve(m.port); });
      worker.once('exit', () => reject(new MemshiftError(ErrorCode.WORKER_FAILED, 'fault thread exited before listening')));
      worker.once('error', (e) => reject(new MemshiftError(ErrorCode.WORKER_FAILED, `fault thread failed: ${e.message}`, { cause: e })));
    });
  }

  /** Where the events go from now on. */
  listen(events: UrgentListenerEvents): void {
    this.events = events;
    if (this.lost !== null) events.onLost(this.lost);
  }

  private lose(e: MemshiftError): void {
    // Once every page is here the urgent channel has done its work: the source may close it first.
    if (this.lost !== null || this.stopping || this.allPresent) return;
    this.lost = e;
    this.events?.onLost(e);
  }

  private noteAllPresent(): void {
    if (this.allPresent || !this.begun || !this.complete) return;
    this.allPresent = true;
    this.events?.onAllPresent();
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
    this.missing += clearMissingPages(region, slabs, m);
  }

  /**
   * Applies one MISSING_PAGES frame of a disk (POSTCOPY_BLOCKS) to its `present` bitmap: the blocks it
   * names are still on the source. The vCPU is not running yet.
   */
  markMissingBlocks(disk: number, present: Int32Array, blocks: number, m: MissingPages): void {
    forEachHalf(blocks, `disk ${disk}`, m, (block, bits) => {
      Atomics.and(present, block >>> 5, ~bits);
      this.missing += popcount32(bits);
      this.missingBlocks += popcount32(bits);
    });
  }

  /** Pages and blocks named missing so far. */
  get missingPages(): number {
    return this.missing;
  }

  /** Starts counting arrivals against the total the source announced; may fire all-present at once. */
  begin(total: number): void {
    if (total !== this.missing) throw new MemshiftError(ErrorCode.FRAME_MALFORMED, `SWITCHOVER announces ${total} missing pages, MISSING_PAGES named ${this.missing}`);
    Atomics.store(this.board, DestBoard.MISSING, total);
    this.begun = true;
    this.noteAllPresent();
  }

  /**
   * After a lost link: `absent` pages are still not here, so the rest of those missing at the switchover
   * arrived (a batch cut short by a failure may have written pages it never counted).
   */
  recount(absent: number): void {
    Atomics.store(this.board, DestBoard.ARRIVED, Atomics.load(this.board, DestBoard.MISSING) - absent);
  }

  /** Fires all-present if every page is here (after a recovery found nothing missing). */
  checkAllPresent(): void {
    this.noteAllPresent();
  }

  /** Records blocks the bulk channel wrote (they count as arrivals, not as pushed pages). */
  addBlocks(written: number): void {
    if (written === 0) return;
    Atomics.add(this.board, DestBoard.ARRIVED, written);
    this.noteAllPresent();
  }

  /** Records pages the bulk channel wrote. */
  addBulk(applied: number): void {
    if (applied === 0) return;
    Atomics.add(this.board, DestBoard.BULK, applied);
    Atomics.add(this.board, DestBoard.ARRIVED, applied);
    this.noteAllPresent();
  }

  get complete(): boolean {
    return Atomics.load(this.board, DestBoard.ARRIVED) >= Atomics.load(this.board, DestBoard.MISSING);
  }

  /** Lets the vCPU stop checking pages: every one is present. */
  openGate(): void {
    Atomics.store(this.mailbox, Mailbox.ALL_PRESENT, 1);
  }

  stats(): { faults: number; requested: number; urgent: number; bulk: number; duplicates: number; bulkAtFirstAnswer: number; blocksMissing: number; blockFaults: number } {
    const b = this.board;
    return {
      blocksMissing: this.missingBlocks,
      blockFaults: Atomics.load(b, DestBoard.BLOCK_FAULTS),
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

  /** Ends the fault thread: DONE after completion, LINK_LOST when the session broke (everything is kept). */
  async stop(state: number = BoardState.DONE): Promise<void> {
    this.stopping = true;
    Atomics.compareExchange(this.board, DestBoard.STATE, BoardState.RUNNING, state);
    Atomics.notify(this.mailbox, Mailbox.FAULT_SEQ);
    if (this.worker !== null) await endThread(this.worker, this.exited);
  }
}
