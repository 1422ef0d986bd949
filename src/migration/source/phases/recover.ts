// Recovering a lost link on the source, in two cases that share everything but what the destination
// answers with:
//
// Post-copy (as QEMU's postcopy recover, without an operator's command): the link was lost while the
// destination ran the guest, so both sides hold part of the only complete copy and keep it. The
// destination names the pages it still lacks (MISSING_PAGES*), and those, no others, become the pages
// left to push (pages pushed before whose copies died with the link go again).
//
// Pre-copy and the stop-and-copy pass (beyond QEMU, which starts over): the pass that lost its link
// resumes instead of failing. The destination sends the hash of every page as it holds it
// (PAGE_HASHES*, page-hashes.ts); a page whose hash differs from the one recorded here went out and
// never landed, so it is marked again (its XBZRLE cache slot dropped); what the snapshot still held
// goes anyway. The source guest runs on meanwhile in pre-copy (its writes are caught by the next sync)
// and stays paused in the stop-and-copy pass.
//
// Disk blocks the same way (capability BLOCK_RECOVERY, block-recovery.ts): the destination names the
// blocks it holds, by hash before SWITCHOVER and by absence in post-copy, and only the others go again.
//
// Either way: drop what the lost link left (its channel, its fault thread, its push), reconnect to the
// same address with the same security, HELLO with role RECOVER and the same session, read the answer
// up to HELLO_ACK (which names the new urgent port when post-copy was negotiated), connect a new fault
// thread there, and go on. Resent pages record the same hash, so the digest still proves every page.
//
//   lost ─► close channel, stop fault thread, await push ─► connect (+ TLS, same peer identity)
//   ─► HELLO(RECOVER, session) ─► MISSING_PAGES* | PAGE_HASHES* ─► HELLO_ACK(urgent port) ─► mark pages
//   ─► [fault thread connects] ─► recovered     (retry every RECOVER_RETRY_MS until recoverTimeoutMs)
//   off (0), timed out, cancelled ─► failed (the machine: postcopy-paused, or failed and the guest resumes)

import type { Worker } from 'node:worker_threads';
import { ErrorCode, MemshiftError, toMemshiftError } from '../../../errors.js';
import { BoardState } from '../../postcopy-board.js';
import { Capability, ChannelRole, DISK_REGION_BASE, FrameType } from '../../../protocol/constants.js';
import type { BlockRecovery } from '../../block-recovery.js';
import { decodeMissingPages, decodePageHashes } from '../../../protocol/control.js';
import { frameTypeName } from '../../../protocol/frame.js';
import { markDiverged } from '../../page-hashes.js';
import { decodeHelloAck, encodeHello } from '../../../protocol/handshake.js';
import { PageSender } from '../../../pipeline/page-sender.js';
import type { FrameLink } from '../../../transport/channel.js';
import { Inbox } from '../../inbox.js';
import { clearSnapshots, markUnsent } from '../../missing-pages.js';
import type { SourceEvent, SourceState } from '../machine.js';
import { DEFAULT_STALL_TIMEOUT_MS, type SourceRun } from '../run.js';
import { UrgentConnector } from '../urgent-connector.js';
import { pause, reopener } from './resolve.js';

/** Pause between two attempts (the link may still be down, or the destination not yet aware of the loss). */
export const RECOVER_RETRY_MS = 250;
/** The longest the push of the lost link may take to notice and settle. */
const PUSH_SETTLE_MS = 5_000;

type Recovering = Extract<SourceState, { kind: 'postcopy-recovering' }>;
type Reconnecting = Extract<SourceState, { kind: 'reconnecting' }>;

/** What the destination answers a RECOVER with: the pages it lacks, or the hash of every page. */
type Answer = 'missing' | 'hashes';

export function recoverPostcopy(run: SourceRun, s: Recovering): Promise<SourceEvent> {
  return reconnect(run, s.error, s.iteration + 1, 'missing', 'postcopy-running');
}

export function reconnectPass(run: SourceRun, s: Reconnecting): Promise<SourceEvent> {
  return reconnect(run, s.error, s.resume.iteration, 'hashes', s.resume.kind);
}

async function reconnect(run: SourceRun, lost: MemshiftError, iteration: number, answer: Answer, phase: string): Promise<SourceEvent> {
  if ((run.options.recoverTimeoutMs ?? 0) <= 0) {
    await dropLostLink(run, lost);
    return { type: 'failed', error: lost };
  }
  // The new fault thread loads (~50 ms) while the lost link is dropped and the new one is made; one
  // that no attempt took is ended here.
  const spare: Spare = { worker: run.urgent !== null ? UrgentConnector.warm() : null };
  try {
    return await reconnectWith(run, lost, iteration, answer, phase, spare);
  } finally {
    void spare.worker?.terminate();
  }
}

/** A fault thread loading for the next attempt's connector (null: taken, or no post-copy). */
interface Spare {
  worker: Worker | null;
}

/** The attempts: each connector takes the spare thread, and a failed attempt loads another. */
async function reconnectWith(run: SourceRun, lost: MemshiftError, iteration: number, answer: Answer, phase: string, spare: Spare): Promise<SourceEvent> {
  const lostAt = performance.now();
  const limitMs = run.options.recoverTimeoutMs ?? 0;
  const identity = run.established.channel.peerIdentity;
  const hadUrgent = run.urgent !== null;
  const settled = await dropLostLink(run, lost);
  if (!settled) {
    // Its encoders may still write into the chunk ring a new push would use: stopping is the safe end.
    return { type: 'failed', error: new MemshiftError(lost.code, `${lost.message}; the push of the lost link did not stop within ${PUSH_SETTLE_MS} ms, so the link cannot be recovered`, { cause: lost }) };
  }
  const open = reopener(run);
  if (open === null) {
    return { type: 'failed', error: new MemshiftError(lost.code, `${lost.message}; the migration ran over a link memshift cannot reopen, so it cannot recover`, { cause: lost }) };
  }
  const deadline = lostAt + limitMs;
  let attempts = 0;
  let last: MemshiftError | null = null;
  for (let left = limitMs; left > 0; left = deadline - performance.now()) {
    run.checkCancel('recovering the link');
    attempts++;
    let channel: FrameLink | null = null;
    let urgent: UrgentConnector | null = null;
    try {
      channel = await open(left);
      if (channel.peerIdentity !== identity) {
        throw new MemshiftError(ErrorCode.AUTH_FAILED, `${run.peer} answered the recovery as ${channel.peerIdentity ?? 'no TLS peer'}, not as ${identity ?? 'no TLS peer'}`);
      }
      const { marked, urgentPort, inbox, blocks } = await ask(run, channel, answer, Math.max(1, deadline - performance.now()));
      if (hadUrgent) {
        if (urgentPort === 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${run.peer} recovered the session without an urgent port`);
        urgent = UrgentConnector.spawn(run.slabs, run.source.regions, iteration, run.options.security, spare.worker ?? undefined, run.urgent?.board);
        spare.worker = null;
        await urgent.connect(run.established.session, { host: run.options.address.host, port: urgentPort }, identity);
      }
      install(run, channel, inbox, urgent);
      // Blocks sent before the loss may not have arrived: those the destination does not hold go again.
      const blocksAgain = markBlocksAgain(run, blocks, answer);
      run.live.remaining = run.tracker.pending();
      const recovery = { phase, lostAtMs: lostAt - run.record.startedAt, pausedMs: performance.now() - lostAt, missingPages: marked, ...(blocksAgain === null ? {} : { blocksAgain }), attempts, cause: lost.message };
      run.record.recoveries.push(recovery);
      run.emit({ type: 'recovered', role: 'source', recovery });
      return { type: 'recovered' };
    } catch (err) {
      const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, run.peer);
      channel?.destroy();
      await urgent?.stop(BoardState.LINK_LOST);
      if (e.code === ErrorCode.CANCELLED) throw e;
      last = e;
      if (hadUrgent) spare.worker ??= UrgentConnector.warm();
    }
    await pause(Math.min(RECOVER_RETRY_MS, deadline - performance.now()), run.options.signal);
  }
  run.checkCancel('recovering the link');
  const why = last === null ? '' : ` (last attempt: ${last.code}: ${last.message})`;
  return { type: 'failed', error: new MemshiftError(ErrorCode.TIMEOUT, `${lost.message}; the link did not recover within ${limitMs} ms over ${attempts} attempt(s)${why}`, { peer: run.peer, cause: last ?? lost }) };
}

/** Closes what the lost link left: its channel, its fault thread (the board is kept), and its push; false if the push did not settle. */
async function dropLostLink(run: SourceRun, error: MemshiftError): Promise<boolean> {
  run.unwatch();
  const channel = run.channel;
  // Destroyed, not failed, even if failed already: an ERROR on a link that was only slow would reach the
  // destination as this side's refusal, and a failed channel lingers with its pending writes (the push's).
  if (channel !== null) channel.destroy(error);
  await run.urgent?.stop(BoardState.LINK_LOST);
  if (run.pushing === null) return true;
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([run.pushing.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), PUSH_SETTLE_MS); })]);
  clearTimeout(timer);
  if (settled) run.pushing = null;
  return settled;
}

/**
 * HELLO(RECOVER) on `channel`, then the destination's answer until HELLO_ACK: the pages it lacks become
 * the snapshot (post-copy), or the pages whose hashes differ join it (pre-copy). Returns how many were
 * marked, and the new urgent port (0: none).
 */
async function ask(run: SourceRun, channel: FrameLink, answer: Answer, timeoutMs: number): Promise<{ marked: number; urgentPort: number; inbox: Inbox; blocks: BlockRecovery | null }> {
  const link = run.established;
  // The destination names the disk blocks it holds too (block-recovery.ts), when both sides can.
  const blocks = link.blocks !== null && (link.capabilities & Capability.BLOCK_RECOVERY) !== 0 ? link.blocks.recovery() : null;
  const inbox = new Inbox(channel, run.options.signal);
  channel.phase = 'link recovery';
  await channel.send(encodeHello({ session: link.session, role: ChannelRole.RECOVER, mode: run.options.mode, capabilities: link.offered, regions: [...run.source.regions] }));
  const deadline = performance.now() + timeoutMs;
  // Post-copy: only what the destination names goes again, so the snapshot is rebuilt from its frames.
  if (answer === 'missing') clearSnapshots(run.slabs);
  const expected = answer === 'missing' ? FrameType.MISSING_PAGES : FrameType.PAGE_HASHES;
  let marked = 0;
  // Taken as they arrive, however many there are (a disk's held blocks may take many frames).
  inbox.onOther = (frame) => {
    try {
      if (frame.type !== expected) {
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${run.peer} answered a recovery with ${frameTypeName(frame.type)}, not ${frameTypeName(expected)} or HELLO_ACK`, { frameType: frame.type });
      }
      const { buf, bodyOffset: at, bodyLength: length } = frame;
      const m = answer === 'missing' ? decodeMissingPages(buf, at, length) : decodePageHashes(buf, at, length);
      if (blocks !== null && m.regionId >= DISK_REGION_BASE) {
        if ('bitmap' in m) blocks.absent(m);
        else blocks.held(m);
        return;
      }
      const region = run.source.regions.find((r) => r.id === m.regionId);
      if (region === undefined) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `${frameTypeName(frame.type)} names region ${m.regionId}, which this guest does not have`, { regionId: m.regionId });
      const slabs = run.source.slabsOf(region.id);
      marked += 'bitmap' in m ? markUnsent(region, slabs, m) : markDiverged(region, slabs, m);
    } catch (err) {
      const e = toMemshiftError(err, ErrorCode.FRAME_MALFORMED, run.peer);
      inbox.fail(e);
      channel.fail(e);
    }
  };
  try {
    const f = await inbox.expect([FrameType.HELLO_ACK], Math.max(1, deadline - performance.now()));
    const ack = decodeHelloAck(f.body, 0, f.body.length);
    if (Buffer.compare(ack.session, link.session) !== 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${run.peer} acknowledged another session`);
    return { marked, urgentPort: ack.urgentPort, inbox, blocks };
  } finally {
    inbox.onOther = null;
  }
}

/** Marks the disk blocks to send again (null: the guest has no disks); without the destination's answer, every block ever sent. */
function markBlocksAgain(run: SourceRun, recovery: BlockRecovery | null, answer: Answer): number | null {
  const blocks = run.established.blocks;
  if (blocks === null) return null;
  return recovery !== null ? recovery.mark(answer === 'missing') : blocks.markSentAgain();
}

/** The new link replaces the lost one for every phase from here (push, POSTCOPY_DONE, release). */
function install(run: SourceRun, channel: FrameLink, inbox: Inbox, urgent: UrgentConnector | null): void {
  const { session, capabilities, offered, pool, blocks } = run.established;
  run.channel = channel;
  run.inbox = inbox;
  run.urgent = urgent;
  run.link = { session, capabilities, offered, blocks, sender: new PageSender(run.slabs, pool, channel, { lz4: () => run.compression.lz4, limiter: run.limiter }) };
  run.watchStalls(channel, run.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS);
}
