// The source's fault thread (a worker): the urgent channel's end on this host. It *connects* to the
// port the destination's fault thread listens on, and answers each PAGE_REQUEST at once with the page read straight from
// guest memory (paused: its content is final), ahead of and apart from the bulk push, which keeps
// running on the main thread and the encoder pool. Each request is also appended to the fault ring,
// so the push planner can move its pivot there. A disk block's request (POSTCOPY_BLOCKS) goes to the
// main thread as a message: it owns the disks' reads and their digest, and answers on the bulk channel.
//
// A page is taken from the snapshot atomically: if this thread clears its bit first, the bulk push
// skips it and the page's hash is recorded here; if the push took it first, the answer still goes
// out (the vCPU is waiting now) and the destination keeps whichever copy lands first.
//
// It connects with the bulk channel's credentials (plain data, in its workerData or, for a warm thread,
// its first message) and goes on only if the destination proves the identity it proved on the bulk
// channel (same certificate, or PSK identity).

import { parentPort } from 'node:worker_threads';
import { URGENT_THREAD_NICENESS, favourThisThread } from '../../pipeline/thread-priority.js';
import { ErrorCode, MemshiftError, toMemshiftError } from '../../errors.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { kernelsOf, pageOffset } from '../../memory/slab.js';
import { CONTROL_DIGEST, scratchSlot } from '../../memory/slab-layout.js';
import { ScratchAgent } from '../../memory/scratch-agents.js';
import type { Slab } from '../../memory/slab.js';
import type { Region } from '../../memory/types.js';
import { ChannelRole, DISK_REGION_BASE, FrameType, Limits, PageEncoding } from '../../protocol/constants.js';
import { decodeHelloAck, encodeHello } from '../../protocol/handshake.js';
import { decodePageRequest } from '../../protocol/control.js';
import { encodeBatchFrame } from '../../protocol/page-batch.js';
import { frameTypeName } from '../../protocol/frame.js';
import { Channel } from '../../transport/channel.js';
import { Inbox } from '../inbox.js';
import type { Address } from '../../transport/tcp.js';
import type { LinkSecurity } from '../../transport/security.js';
import { BoardState, SourceBoard, faultThreadData, recordFault, type FaultThreadMessage } from '../postcopy-board.js';
import { waitForChange } from '../../memory/shared-board.js';
import { viewsOf } from '../../wasm/views.js';

export interface UrgentConnectorData {
  slabs: Slab[];
  regions: Region[];
  board: SharedArrayBuffer;
  /** Iteration number stamped on answers (informational). */
  iteration: number;
  /** The bulk channel's security (plain data), used again here. */
  security: LinkSecurity;
}

/**
 * What the thread waits for before it connects (one message): the thread starts while the bulk channel
 * is being set up, and learns where to connect once HELLO_ACK has named the port.
 */
export interface UrgentConnectOrder {
  session: Uint8Array;
  address: Address;
  /** What the destination proved to be on the bulk channel; the urgent port must prove the same. */
  peerIdentity: string | null;
}

const data = await faultThreadData<UrgentConnectorData>();
const board = new Int32Array(data.board);
const memory = GuestMemory.fromSlabs(data.regions, data.slabs);

function post(m: FaultThreadMessage): void {
  parentPort!.postMessage(m);
}

/** The link broke (or the thread failed): say why, once, and end the serving loop. */
function linkLost(cause: unknown): void {
  if (Atomics.compareExchange(board, SourceBoard.STATE, BoardState.RUNNING, BoardState.LINK_LOST) !== BoardState.RUNNING) return;
  Atomics.notify(board, SourceBoard.STATE);
  const e = toMemshiftError(cause, ErrorCode.CONNECTION_CLOSED, 'urgent channel');
  post({ type: 'link-lost', code: e.code, message: e.message });
}

/** One page as a single-entry PAGE_BATCH: zero, or raw read once (copy + hash in one pass). */
function answer(regionId: number, page: number): Uint8Array {
  const { slab, local } = memory.locate(regionId, page);
  const k = kernelsOf(slab).raw;
  const L = slab.layout;
  const src = pageOffset(slab, local);
  const key = (BigInt(regionId) << 32n) + BigInt(page);
  const owned = k.bitmapClear(L.snapshot, local) === 1;
  let encoding: number = PageEncoding.ZERO;
  let payload: Uint8Array = new Uint8Array(0);
  let hash: bigint;
  if (k.isZeroPage(src, L.pageSize) === 1) {
    hash = BigInt.asUintN(64, k.zeroPageHash(L.pageSize));
  } else {
    const scratch = scratchSlot(L, ScratchAgent.FAULT_THREAD).page;
    hash = BigInt.asUintN(64, k.copyAndHash(scratch, src, L.pageSize));
    encoding = PageEncoding.RAW;
    payload = viewsOf(slab.memory).u8.subarray(scratch, scratch + L.pageSize); // copied into the frame below
  }
  if (owned) k.recordPageHash(L.hashes, local, key, hash, L.control + CONTROL_DIGEST);
  return encodeBatchFrame(regionId, data.iteration, [{ page, encoding, size: payload.length, hash, payload }]);
}

async function main(): Promise<void> {
  // A blocked vCPU waits on this thread: ahead of the bulk path where the host allows it (post-copy of
  // 1 GiB, 64 MiB hot set, this machine: fault p99 ~1.4-2.0 ms at normal priority, ~0.9-1.4 ms at -10).
  favourThisThread(URGENT_THREAD_NICENESS);
  const order = await new Promise<UrgentConnectOrder>((resolve) => parentPort!.once('message', resolve));
  const channel = await Channel.connect(order.address, {
    maxBody: Limits.MAX_CONTROL_BODY_BYTES,
    peer: `destination urgent channel ${order.address.host}:${order.address.port}`,
    timeoutMs: 10_000,
    security: data.security,
  });
  if (channel.peerIdentity !== order.peerIdentity) {
    channel.destroy();
    throw new MemshiftError(ErrorCode.AUTH_FAILED, `destination urgent channel ${order.address.host}:${order.address.port} is not the peer of the bulk channel (it proved another identity)`);
  }
  const inbox = new Inbox(channel);
  inbox.onFailure = (e) => linkLost(e);
  await channel.send(encodeHello({ session: order.session, role: ChannelRole.URGENT, mode: 'postcopy', capabilities: 0, regions: data.regions }));
  const ack = await inbox.expect([FrameType.HELLO_ACK], 10_000);
  if (Buffer.compare(decodeHelloAck(ack.body, 0, ack.body.length).session, order.session) !== 0) {
    throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'urgent channel acknowledged another session');
  }
  channel.phase = 'post-copy';
  inbox.onOther = (f) => {
    if (f.type !== FrameType.PAGE_REQUEST) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${frameTypeName(f.type)} on the urgent channel`);
    const req = decodePageRequest(f.buf, f.bodyOffset, f.bodyLength);
    if (req.regionId >= DISK_REGION_BASE) {
      // A disk block: the main thread reads the disk and answers on the bulk channel (it checks the range).
      Atomics.add(board, SourceBoard.FAULTS_SEEN, 1);
      post({ type: 'block-fault', regionId: req.regionId, block: req.page, count: req.count });
      return;
    }
    const region = memory.region(req.regionId);
    if (req.page + req.count > region.pageCount) {
      throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `request for pages ${req.page}+${req.count} outside region ${req.regionId}`, { regionId: req.regionId, page: req.page });
    }
    Atomics.add(board, SourceBoard.FAULTS_SEEN, 1);
    recordFault(board, { regionId: req.regionId, page: req.page });
    for (let p = req.page; p < req.page + req.count; p++) {
      channel.send(answer(req.regionId, p)).catch((e) => linkLost(e));
      Atomics.add(board, SourceBoard.SENT_URGENT, 1);
    }
  };
  post({ type: 'connected' });
  // Serve until the main thread ends the phase or the link breaks.
  while (Atomics.load(board, SourceBoard.STATE) === BoardState.RUNNING) await waitForChange(board, SourceBoard.STATE, BoardState.RUNNING, 1000);
  await channel.close();
}

main().catch((e) => linkLost(e)).finally(() => process.exit(0));
