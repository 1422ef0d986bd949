// The destination's fault thread (a worker): the urgent channel's end on this host. It *listens* on
// its own port (announced in HELLO_ACK), accepts the source's urgent connection of the same session,
// then turns each vCPU fault posted to the mailbox into a PAGE_REQUEST for the faulting (region, page)
// and writes each answer into guest memory through the apply kernel, which sets the page's present
// bit and wakes the vCPU. A disk block's fault (region DISK_REGION_BASE + disk) is requested the same
// way; its answer comes on the bulk channel, to the main thread.
//
//   vCPU ─ mailbox (Atomics) ─► fault thread ─ PAGE_REQUEST ─► source fault thread
//   vCPU ◄─ present bit + notify ─ apply kernel ◄─ PAGE_BATCH (one page) ─┘
//
// No message passing or task queue sits on this path: the thread waits on the mailbox with
// Atomics.waitAsync and on its socket, and nothing else runs on it. Control events go to the main
// thread as messages: listening, connected, every missing page present, link lost. It ends when the
// main thread marks the board done (or link lost).
//
// The port is secured as the bulk channel (same credentials, from its data as plain data) and bound
// to it: a connection must authenticate, prove the identity the bulk channel's peer proved (the same
// client certificate, or PSK identity), and then name the session, which only ever travelled inside
// the bulk channel's TLS. Anything else is dropped and the port keeps listening.

import { parentPort } from 'node:worker_threads';
import { URGENT_THREAD_NICENESS, favourThisThread } from '../../pipeline/thread-priority.js';
import { ErrorCode, MemshiftError, toMemshiftError } from '../../errors.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { Mailbox, readFault } from '../../memory/page-gate.js';
import { waitForChange } from '../../memory/shared-board.js';
import { ScratchAgent } from '../../memory/scratch-agents.js';
import { kernelsOf, type Slab } from '../../memory/slab.js';
import type { Region } from '../../memory/types.js';
import { ChannelRole, DISK_REGION_BASE, FrameType, Limits } from '../../protocol/constants.js';
import { decodeHello, encodeHelloAck } from '../../protocol/handshake.js';
import { encodePageRequest } from '../../protocol/control.js';
import { frameTypeName } from '../../protocol/frame.js';
import { Channel } from '../../transport/channel.js';
import { boundAddress, listen } from '../../transport/tcp.js';
import type { LinkSecurity } from '../../transport/security.js';
import { BoardState, DestBoard, faultThreadData, type FaultThreadMessage } from '../postcopy-board.js';
import { BatchApplier } from '../../pipeline/apply.js';

export interface UrgentListenerData {
  slabs: Slab[];
  regions: Region[];
  session: Uint8Array;
  host: string;
  mailbox: SharedArrayBuffer;
  board: SharedArrayBuffer;
  /** How long an accepted connection may take to authenticate and send its HELLO before it is dropped. */
  helloTimeoutMs: number;
  security: LinkSecurity;
  /** What the bulk channel's peer proved to be (certificate fingerprint, PSK identity); null in plaintext. */
  peerIdentity: string | null;
  /** A recovery's thread: first ask again for the page the vCPU may be blocked on (its request died with the old link). */
  refault: boolean;
}

const data = await faultThreadData<UrgentListenerData>();
const board = new Int32Array(data.board);
const mailbox = new Int32Array(data.mailbox);
const memory = GuestMemory.fromSlabs(data.regions, data.slabs);
const pageSize = Math.max(...data.regions.map((r) => r.pageSize));
const maxBody = 16 + 16 + 2 * pageSize;

function isPresent(regionId: number, page: number): boolean {
  // A disk block (POSTCOPY_BLOCKS): asked again; a copy that finds it here is dropped by the main thread.
  if (regionId >= DISK_REGION_BASE) return false;
  const { slab, local } = memory.locate(regionId, page);
  return kernelsOf(slab).raw.bitmapTest(slab.layout.present, local) === 1;
}

function post(m: FaultThreadMessage): void {
  parentPort!.postMessage(m);
}

function linkLost(cause: unknown): void {
  if (Atomics.compareExchange(board, DestBoard.STATE, BoardState.RUNNING, BoardState.LINK_LOST) !== BoardState.RUNNING) return;
  Atomics.notify(mailbox, Mailbox.FAULT_SEQ);
  const e = toMemshiftError(cause, ErrorCode.CONNECTION_CLOSED, 'urgent channel');
  post({ type: 'link-lost', code: e.code, message: e.message });
}

async function main(): Promise<void> {
  // A blocked vCPU waits on this thread: ahead of the bulk path where the host allows it (post-copy of
  // 1 GiB, 64 MiB hot set, this machine: fault p99 ~1.4-2.0 ms at normal priority, ~0.9-1.4 ms at -10).
  favourThisThread(URGENT_THREAD_NICENESS);
  const server = await listen({ host: data.host, port: 0 });
  post({ type: 'listening', port: boundAddress(server).port });
  const channel = await new Promise<Channel>((resolve) => {
    server.on('connection', (socket) => {
      const peer = `source urgent channel ${socket.remoteAddress}:${socket.remotePort}`;
      const options = { maxBody: Math.max(maxBody, Limits.MAX_CONTROL_BODY_BYTES), peer, security: data.security, timeoutMs: data.helloTimeoutMs };
      // A failed handshake leaves nothing behind (the socket is destroyed); the port keeps listening.
      Channel.acceptWith(socket, options).then((ch) => awaitHello(ch), () => undefined);
    });
    const awaitHello = (ch: Channel): void => {
      if (ch.peerIdentity !== data.peerIdentity) {
        ch.destroy();
        return;
      }
      // A connection that stays silent must not hold a descriptor here for good.
      const silent = setTimeout(() => ch.fail(new MemshiftError(ErrorCode.TIMEOUT, `no HELLO within ${data.helloTimeoutMs} ms on the urgent port`)), data.helloTimeoutMs);
      ch.setHandlers({
        onFrame: (f) => {
          clearTimeout(silent);
          if (f.type !== FrameType.HELLO) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `expected HELLO on the urgent channel, got ${frameTypeName(f.type)}`);
          const hello = decodeHello(f.buf, f.bodyOffset, f.bodyLength);
          if (hello.role !== ChannelRole.URGENT || Buffer.compare(hello.session, data.session) !== 0) {
            throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'urgent channel for another session');
          }
          server.close();
          resolve(ch);
        },
        onClosed: () => clearTimeout(silent),
      });
    };
  });
  const applier = new BatchApplier(memory, 0, ScratchAgent.FAULT_THREAD, true, 'scratch');
  let answered = 0;
  channel.phase = 'post-copy';
  channel.setHandlers({
    onFrame: (f) => {
      if (f.type !== FrameType.PAGE_BATCH) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${frameTypeName(f.type)} on the urgent channel`);
      const before = applier.totals.pages;
      const dupBefore = applier.totals.duplicates;
      applier.apply(f.buf, f.bodyOffset, f.bodyLength, f.checkedLength);
      const applied = applier.totals.pages - before;
      if (answered++ === 0) Atomics.store(board, DestBoard.BULK_AT_FIRST_ANSWER, Atomics.load(board, DestBoard.BULK));
      Atomics.add(board, DestBoard.URGENT, applied);
      Atomics.add(board, DestBoard.DUPLICATE, applier.totals.duplicates - dupBefore);
      const arrived = Atomics.add(board, DestBoard.ARRIVED, applied) + applied;
      const missing = Atomics.load(board, DestBoard.MISSING);
      // This answer completed the set: the main thread checks its own writes the same way.
      if (applied > 0 && missing > 0 && arrived >= missing && arrived - applied < missing) post({ type: 'all-present' });
    },
    onClosed: (e) => linkLost(e ?? new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'the source closed the urgent channel')),
  });
  await channel.send(encodeHelloAck({ session: data.session, capabilities: 0, urgentPort: 0 }));
  post({ type: 'connected' });

  let requestId = 0;
  const request = (regionId: number, page: number): void => {
    Atomics.add(board, DestBoard.REQUESTED, 1);
    channel.send(encodePageRequest({ regionId, page, count: 1, requestId: requestId++ })).catch((e) => linkLost(e));
  };
  let seq = Atomics.load(mailbox, Mailbox.FAULT_SEQ);
  if (data.refault && seq !== 0) {
    const fault = readFault(mailbox);
    seq = fault.seq;
    if (!isPresent(fault.regionId, fault.page)) request(fault.regionId, fault.page);
  }
  for (;;) {
    if (Atomics.load(board, DestBoard.STATE) !== BoardState.RUNNING) break;
    await waitForChange(mailbox, Mailbox.FAULT_SEQ, seq, 1000);
    if (Atomics.load(mailbox, Mailbox.FAULT_SEQ) === seq) continue;
    const fault = readFault(mailbox);
    seq = fault.seq;
    if (fault.regionId >= DISK_REGION_BASE) Atomics.add(board, DestBoard.BLOCK_FAULTS, 1);
    request(fault.regionId, fault.page);
  }
  await channel.close();
}

main().catch((e) => linkLost(e)).finally(() => {
  // Nothing may keep this thread alive once the phase is over.
  process.exit(0);
});
