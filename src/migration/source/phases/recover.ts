// Post-copy recovery on the source (as QEMU's postcopy recover, without an operator's command): the
// link was lost while the destination ran the guest, so both sides hold part of the only complete
// copy and keep it. The source drops what the lost link left (the bulk channel, the fault thread, the
// push), then reconnects to the same address with the same security, says HELLO with role RECOVER and
// the same session, and the destination answers with the pages it still lacks (MISSING_PAGES*) and a
// new urgent port (HELLO_ACK). Those pages become exactly the pages left to push (pages pushed before
// whose copies died with the link go again; pages the destination holds never do), a new fault thread
// connects, and post-copy runs on. Resent pages record the same hash, so the digest is unchanged.
//
//   lost ─► close channel, stop fault thread, await push ─► connect (+ TLS, same peer identity)
//   ─► HELLO(RECOVER, session) ─► MISSING_PAGES* ─► HELLO_ACK(urgent port) ─► snapshot := missing
//   ─► fault thread connects ─► recovered            (retry every RECOVER_RETRY_MS until recoverTimeoutMs)
//   off (0), timed out, cancelled ─► failed (the machine: postcopy-paused, every page kept)

import { ErrorCode, MemshiftError, toMemshiftError } from '../../../errors.js';
import { BoardState } from '../../postcopy-board.js';
import { ChannelRole, FrameType } from '../../../protocol/constants.js';
import { decodeMissingPages } from '../../../protocol/control.js';
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

export async function recoverPostcopy(run: SourceRun, s: Recovering): Promise<SourceEvent> {
  const lostAt = performance.now();
  const limitMs = run.options.recoverTimeoutMs ?? 0;
  const identity = run.established.channel.peerIdentity;
  const settled = await dropLostLink(run, s.error);
  if (limitMs <= 0) return { type: 'failed', error: s.error };
  if (!settled) {
    // Its encoders may still write into the chunk ring a new push would use: pausing is the safe end.
    return { type: 'failed', error: new MemshiftError(s.error.code, `${s.error.message}; the push of the lost link did not stop within ${PUSH_SETTLE_MS} ms, so post-copy cannot recover`, { cause: s.error }) };
  }
  const open = reopener(run);
  if (open === null) {
    return { type: 'failed', error: new MemshiftError(s.error.code, `${s.error.message}; the migration ran over a link memshift cannot reopen, so post-copy cannot recover`, { cause: s.error }) };
  }
  const deadline = lostAt + limitMs;
  let attempts = 0;
  let last: MemshiftError | null = null;
  for (let left = limitMs; left > 0; left = deadline - performance.now()) {
    run.checkCancel('post-copy recovery');
    attempts++;
    let channel: FrameLink | null = null;
    let urgent: UrgentConnector | null = null;
    try {
      channel = await open(left);
      if (channel.peerIdentity !== identity) {
        throw new MemshiftError(ErrorCode.AUTH_FAILED, `${run.peer} answered the recovery as ${channel.peerIdentity ?? 'no TLS peer'}, not as ${identity ?? 'no TLS peer'}`);
      }
      const { missing, urgentPort, inbox } = await askMissing(run, channel, Math.max(1, deadline - performance.now()));
      urgent = UrgentConnector.spawn(run.slabs, run.source.regions, s.iteration + 1, run.options.security, undefined, run.urgent?.board);
      await urgent.connect(run.established.session, { host: run.options.address.host, port: urgentPort }, identity);
      install(run, channel, inbox, urgent);
      run.live.remaining = missing;
      const recovery = { lostAtMs: lostAt - run.record.startedAt, pausedMs: performance.now() - lostAt, missingPages: missing, attempts, cause: s.error.message };
      run.record.recoveries.push(recovery);
      run.emit({ type: 'recovered', role: 'source', recovery });
      return { type: 'recovered' };
    } catch (err) {
      const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, run.peer);
      channel?.destroy();
      await urgent?.stop(BoardState.LINK_LOST);
      if (e.code === ErrorCode.CANCELLED) throw e;
      last = e;
    }
    await pause(Math.min(RECOVER_RETRY_MS, deadline - performance.now()), run.options.signal);
  }
  run.checkCancel('post-copy recovery');
  const why = last === null ? '' : ` (last attempt: ${last.code}: ${last.message})`;
  return { type: 'failed', error: new MemshiftError(ErrorCode.TIMEOUT, `${s.error.message}; post-copy did not recover within ${limitMs} ms over ${attempts} attempt(s)${why}`, { peer: run.peer, cause: last ?? s.error }) };
}

/** Closes what the lost link left: its channel, its fault thread (the board is kept), and its push; false if the push did not settle. */
async function dropLostLink(run: SourceRun, error: MemshiftError): Promise<boolean> {
  run.unwatch();
  const channel = run.channel;
  if (channel !== null && !channel.isClosed) channel.fail(error);
  await run.urgent?.stop(BoardState.LINK_LOST);
  if (run.pushing === null) return true;
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([run.pushing.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), PUSH_SETTLE_MS); })]);
  clearTimeout(timer);
  if (settled) run.pushing = null;
  return settled;
}

/**
 * HELLO(RECOVER) on `channel`, then the destination's MISSING_PAGES until HELLO_ACK: the pages it lacks
 * become the snapshot (the pages left to push). Returns how many, and the new urgent port.
 */
async function askMissing(run: SourceRun, channel: FrameLink, timeoutMs: number): Promise<{ missing: number; urgentPort: number; inbox: Inbox }> {
  const link = run.established;
  const inbox = new Inbox(channel, run.options.signal);
  channel.phase = 'post-copy recovery';
  await channel.send(encodeHello({ session: link.session, role: ChannelRole.RECOVER, mode: run.options.mode, capabilities: link.offered, regions: [...run.source.regions] }));
  const deadline = performance.now() + timeoutMs;
  // Only what the destination names goes again: the snapshot is rebuilt from its frames alone.
  clearSnapshots(run.slabs);
  let missing = 0;
  for (;;) {
    const f = await inbox.expect([FrameType.MISSING_PAGES, FrameType.HELLO_ACK], Math.max(1, deadline - performance.now()));
    if (f.type === FrameType.HELLO_ACK) {
      const ack = decodeHelloAck(f.body, 0, f.body.length);
      if (Buffer.compare(ack.session, link.session) !== 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${run.peer} acknowledged another session`);
      if (ack.urgentPort === 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${run.peer} recovered the session without an urgent port`);
      return { missing, urgentPort: ack.urgentPort, inbox };
    }
    const m = decodeMissingPages(f.body, 0, f.body.length);
    const region = run.source.regions.find((r) => r.id === m.regionId);
    if (region === undefined) throw new MemshiftError(ErrorCode.BATCH_PAGE_RANGE, `MISSING_PAGES names region ${m.regionId}, which this guest does not have`, { regionId: m.regionId });
    missing += markUnsent(region, run.source.slabsOf(region.id), m);
  }
}

/** The new link replaces the lost one for every phase from here (push, POSTCOPY_DONE, release). */
function install(run: SourceRun, channel: FrameLink, inbox: Inbox, urgent: UrgentConnector): void {
  const { session, capabilities, offered, pool } = run.established;
  run.channel = channel;
  run.inbox = inbox;
  run.urgent = urgent;
  run.link = { session, capabilities, offered, sender: new PageSender(run.slabs, pool, channel, { lz4: () => run.compression.lz4, limiter: run.limiter }) };
  run.watchStalls(channel, run.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS);
  channel.phase = 'post-copy';
}
