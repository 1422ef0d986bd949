// Resolving a switchover in doubt (stop-and-copy only): the link was lost after SWITCHOVER went out and
// before RESUMED came back, so the destination may or may not run the guest. Rather than guess, ask it:
// reconnect to the same address with the same security, say HELLO with role QUERY and the same
// session, and read its answer. The guest stays paused throughout; only the answer moves it.
//
//   connect (+ TLS, same peer identity) ─► HELLO(QUERY, session) ─┬─► RESUMED (digest checked as ever) ─► resumed
//        ▲                                                         ├─► ERROR MS_ERR_NOT_RESUMED ─► not-resumed
//        └──── retry every RESOLVE_RETRY_MS until resolveTimeoutMs ┴─► anything else: no answer yet
//   timeout or cancel ─► failed (the machine: in-doubt)
//
// A destination that lost the link lingers for its confirmTimeoutMs answering such queries; one that
// has not noticed the loss yet turns the connection away, hence the retries.

import { ErrorCode, MemshiftError, toMemshiftError } from '../../../errors.js';
import { ChannelRole, Limits } from '../../../protocol/constants.js';
import { encodeHello } from '../../../protocol/handshake.js';
import { Channel, type FrameLink } from '../../../transport/channel.js';
import { Inbox } from '../../inbox.js';
import type { SourceEvent, SourceState, SwitchoverSent } from '../machine.js';
import type { SourceRun } from '../run.js';
import { awaitResumed } from './switchover.js';

/** Default for how long the source asks before it leaves the switchover in doubt. */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 10_000;
/** Pause between two attempts (the destination may not have noticed the lost link yet). */
export const RESOLVE_RETRY_MS = 250;

type Resolving = Extract<SourceState, { kind: 'resolving' }>;

export async function resolveDoubt(run: SourceRun, s: Resolving): Promise<SourceEvent> {
  const { options } = run;
  const limitMs = options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
  const deadline = performance.now() + limitMs;
  const lost = `link lost after SWITCHOVER (${s.error.message})`;
  const original = run.established.channel;
  const identity = original.peerIdentity;
  run.unwatch();
  original.destroy();
  const open = reopener(run);
  if (open === null) {
    return { type: 'failed', error: new MemshiftError(s.error.code, `${lost}; the migration ran over a link memshift cannot reopen, so the destination was not asked`, { cause: s.error }) };
  }
  let last: MemshiftError | null = null;
  for (let left = limitMs; left > 0; left = deadline - performance.now()) {
    run.checkCancel('resolving the switchover');
    let channel: FrameLink | null = null;
    try {
      channel = await open(left);
      if (channel.peerIdentity !== identity) {
        throw new MemshiftError(ErrorCode.AUTH_FAILED, `${run.peer} answered the query as ${channel.peerIdentity ?? 'no TLS peer'}, not as ${identity ?? 'no TLS peer'}`);
      }
      const event = await ask(run, channel, s.sent, Math.max(1, deadline - performance.now()));
      const r = run.record.switchoverReason;
      const how = 'link lost after SWITCHOVER; the destination confirmed it resumed over a new connection';
      if (r !== null) run.record.switchoverReason = { ...r, reason: `${r.reason}; ${how}` };
      return event;
    } catch (err) {
      const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, run.peer);
      channel?.destroy();
      if (e.code === ErrorCode.CANCELLED) throw e;
      if (e.code === ErrorCode.PEER_ERROR && e.details.peerCode === ErrorCode.NOT_RESUMED) {
        const error = new MemshiftError(ErrorCode.NOT_RESUMED, `${lost}; the destination answered over a new connection that it did not resume the guest and never will (${e.message})`, { peer: run.peer, peerCode: ErrorCode.NOT_RESUMED, cause: e });
        return { type: 'not-resumed', error };
      }
      // It answered RESUMED with another digest: asking again cannot change that.
      if (e.code === ErrorCode.DIGEST_MISMATCH) return { type: 'failed', error: e };
      last = e;
    }
    await pause(Math.min(RESOLVE_RETRY_MS, deadline - performance.now()), options.signal);
  }
  run.checkCancel('resolving the switchover');
  const why = last === null ? '' : ` (last attempt: ${last.code}: ${last.message})`;
  return { type: 'failed', error: new MemshiftError(ErrorCode.TIMEOUT, `${lost}; the destination gave no answer within ${limitMs} ms of asking${why}`, { peer: run.peer, cause: last ?? s.error }) };
}

/** Says HELLO(QUERY) on `channel` and reads the answer as the normal RESUMED is read (same checks). */
async function ask(run: SourceRun, channel: FrameLink, sent: SwitchoverSent, timeoutMs: number): Promise<SourceEvent> {
  const link = run.established;
  // From here the run's channel is this one: the release sends COMPLETE on it, the end closes it.
  run.channel = channel;
  run.inbox = new Inbox(channel, run.options.signal);
  channel.phase = 'switchover query';
  await channel.send(encodeHello({ session: link.session, role: ChannelRole.QUERY, mode: run.options.mode, capabilities: link.offered, regions: [...run.source.regions] }));
  return awaitResumed(run, sent, true, timeoutMs);
}

/** How to reach the destination again: the caller's opener (tests), else its address, unless the run came over a caller's socket or link. */
export function reopener(run: SourceRun): ((timeoutMs: number) => Promise<FrameLink>) | null {
  const o = run.options;
  if (o.reopen !== undefined) return o.reopen;
  if (o.socket !== undefined || o.link !== undefined) return null;
  return (timeoutMs) => Channel.connect(o.address, {
    maxBody: Limits.MAX_CONTROL_BODY_BYTES, peer: run.peer, security: o.security, timeoutMs: Math.min(o.connectTimeoutMs, timeoutMs), signal: o.signal,
  });
}

/** Waits `ms` (less if cancelled meanwhile). */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
