// The destination's driver. Its input arrives on its own schedule (frames from the socket, a phase
// finishing, the fault thread's messages), so the loop is turned inside out: every input becomes one
// event, `dispatch` steps the machine (machine.ts) with it, and entering a state runs that state's
// phase (phases/*.ts), whose result is dispatched in turn. Frames are dispatched synchronously, in the
// order they arrived, so what a state may receive is checked before the next frame is looked at.
//
//   frame | phase result | fault-thread message ─► dispatch(e): s = step(s, e); if s is new: enter(s)
//   enter: setup, switching, postcopy-switching, running, postcopy-running, postcopy-confirming
//          ─► phase ─► dispatch(result, if any)
//          awaiting-confirmation, declining ─► linger: answer QUERY channels (accept.ts routes them
//          here) until COMPLETE, an answered NOT_RESUMED, or confirmTimeoutMs ─► dispatch
//          postcopy-recovering ─► drop the lost link, wait recoverTimeoutMs for a RECOVER channel
//          (accept.ts routes it to `recover`) ─► recovered | recover-ended
//          completed, failed, postcopy-paused ─► settle and report (once)
//
// Accepting connections and the handshake's first checks live in accept.ts.

import { ErrorCode, MemshiftError, isLinkFailure, toMemshiftError } from '../../errors.js';
import { FrameType } from '../../protocol/constants.js';
import { decodeComplete, encodeError } from '../../protocol/control.js';
import { frameTypeName } from '../../protocol/frame.js';
import type { Hello } from '../../protocol/handshake.js';
import type { Frame } from '../../protocol/frame-reader.js';
import type { FrameLink } from '../../transport/channel.js';
import { BoardState } from '../postcopy-board.js';
import { watchProgress } from '../watchdog.js';
import { giveBackStorage } from '../shared-storage.js';
import { assembleReport, failureOutcome, stepRate, type Ending } from '../report.js';
import { outcomeEvent } from '../events.js';
import { awaitsSource, isFinalDest, lingers, queryAnswer, stepDest, type DestEvent, type DestState } from './machine.js';
import { confirmPostcopy, postcopyStats, runPostcopySwitchover } from './phases/postcopy.js';
import { answerRecovery } from './phases/recover.js';
import { receiveFrame } from './phases/receive.js';
import { runSetup } from './phases/setup.js';
import { runSwitchover } from './phases/switchover.js';
import { DestinationRun, type DestinationOptions, type DestinationResult } from './run.js';

export type { DestinationOptions, DestinationResult } from './run.js';

/** The longest silence accepted from a source that is due to send (a frozen or lying peer). */
export const DEFAULT_IDLE_TIMEOUT_MS = 20_000;
/** How long a session whose link was lost after SWITCHOVER answers the source's queries. */
export const DEFAULT_CONFIRM_TIMEOUT_MS = 10_000;

/** How a session ended: its result, and whether it got past setup (a refused guest does not end the wait). */
export interface SessionEnd {
  result: DestinationResult;
  accepted: boolean;
}

/** One accepted migration, from HELLO to completion. */
export class Session {
  private state: DestState = { kind: 'awaiting-hello' };
  private readonly run: DestinationRun;
  private accepted = false;
  private done = false;
  private unwatch: () => void = () => undefined;
  /** While lingering: the timer that ends it, and the QUERY channels being answered. */
  private lingerTimer: NodeJS.Timeout | null = null;
  private readonly queries = new Set<FrameLink>();
  /** While post-copy recovers: the timer that ends the wait, the old fault thread's stop, and whether a RECOVER is being answered. */
  private recoverTimer: NodeJS.Timeout | null = null;
  private lostLinkDropped: Promise<void> = Promise.resolve();
  private lostAt = 0;
  private answering = false;

  constructor(
    private channel: FrameLink,
    private readonly hello: Hello,
    options: DestinationOptions,
    private readonly finish: (end: SessionEnd) => void,
  ) {
    this.run = new DestinationRun(channel, options, hello.mode, hello.session);
    this.run.record.session = hello.session;
    this.attach(channel);
    this.dispatch({ type: 'hello', mode: hello.mode });
  }

  /** Makes `channel` the bulk link: its frames and its end are the session's (a replaced link's are not). */
  private attach(channel: FrameLink): void {
    this.channel = channel;
    this.run.replaceChannel(channel);
    channel.setHandlers({
      onFrame: (f) => { if (channel === this.channel) this.onFrame(f); },
      onClosed: (e) => {
        if (channel !== this.channel) return;
        this.dispatch({ type: 'closed', error: e ?? new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${channel.peer} closed the connection during ${channel.phase}`) });
      },
    });
    this.unwatch();
    const limitMs = this.run.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.unwatch = watchProgress(() => channel.bytesReceived, () => awaitsSource(this.state), limitMs, (silentMs) => {
      if (channel !== this.channel) return;
      this.dispatch({ type: 'error', error: new MemshiftError(ErrorCode.TIMEOUT, `${channel.peer}: nothing received for ${Math.round(silentMs)} ms during ${channel.phase}`, { peer: channel.peer, phase: channel.phase }) });
    });
  }

  /** A frame the state cannot take fails the session with that frame's error (the first error wins). */
  private onFrame(frame: Frame): void {
    if (this.done) return;
    let event: DestEvent | null;
    try {
      event = receiveFrame(this.run, this.state, frame);
    } catch (err) {
      event = { type: 'error', error: toMemshiftError(err, ErrorCode.FRAME_MALFORMED, this.channel.peer) };
    }
    if (event !== null) this.dispatch(event);
  }

  private dispatch(event: DestEvent): void {
    if (this.done) return;
    // A failure of the link, with recovery on, may be recovered (the machine decides where).
    if ((event.type === 'closed' || event.type === 'error') && event.recoverable === undefined) {
      event = { ...event, recoverable: this.recoveryOn && isLinkFailure(event.error) };
    }
    const before = this.state;
    try {
      this.state = stepDest(before, event);
    } catch (err) {
      this.state = stepDest(before, { type: 'error', error: toMemshiftError(err, ErrorCode.UNEXPECTED_MESSAGE, 'destination') });
    }
    if (this.state.kind !== before.kind) {
      this.run.emit({ type: 'state', role: 'destination', state: this.state.kind, elapsedMs: performance.now() - this.run.record.startedAt });
      this.enter(this.state);
    }
  }

  /** Runs the phase of a state just entered; its result (or failure) is the next event. */
  private enter(s: DestState): void {
    switch (s.kind) {
      case 'setup':
        this.phase(runSetup(this.run, this.hello).then((e) => {
          this.run.urgent?.listen({
            onAllPresent: () => this.dispatch({ type: 'all-present' }),
            onLost: (error) => this.dispatch({ type: 'error', error }),
          });
          return e;
        }), ErrorCode.HANDSHAKE_REJECTED);
        return;
      case 'receiving':
        this.accepted = true;
        return;
      case 'running':
      case 'postcopy-running':
        // RESUMED went out at the resume itself (switchover.ts, postcopy.ts).
        return;
      case 'switching':
        this.phase(runSwitchover(this.run, s.order, () => {
          this.dispatch({ type: 'resume-started' });
          return this.state.kind === 'resuming';
        }), ErrorCode.UNEXPECTED_MESSAGE);
        return;
      case 'declining':
        // Not resuming, and the source may ask: the lease goes back before anything answers it.
        giveBackStorage(this.run.target?.storage, this.hello.session);
        this.linger(s);
        return;
      case 'awaiting-confirmation':
        this.linger(s);
        return;
      case 'postcopy-switching':
        this.phase(runPostcopySwitchover(this.run, s.order), ErrorCode.UNEXPECTED_MESSAGE);
        return;
      case 'postcopy-confirming':
        this.phase(confirmPostcopy(this.run), ErrorCode.UNEXPECTED_MESSAGE);
        return;
      case 'postcopy-recovering':
      case 'reconnecting':
        this.awaitRecovery(s);
        return;
      case 'failed':
        if (this.run.resumeSample === null && !this.run.resumeCommitted) giveBackStorage(this.run.target?.storage, this.hello.session);
        this.end(s);
        return;
      case 'completed':
      case 'postcopy-paused':
        this.end(s);
        return;
      default:
        this.run.progress(() => this.run.snapshot(s.kind), true);
    }
  }

  private phase(p: Promise<DestEvent | null>, fallback: typeof ErrorCode.UNEXPECTED_MESSAGE | typeof ErrorCode.HANDSHAKE_REJECTED): void {
    p.then(
      (e) => { if (e !== null) this.dispatch(e); },
      (err) => this.dispatch({ type: 'error', error: toMemshiftError(err, fallback, `destination ${this.state.kind}`) }),
    );
  }

  cancel(): void {
    this.dispatch({ type: 'error', error: new MemshiftError(ErrorCode.CANCELLED, `migration cancelled during ${this.channel.phase}`) });
    // Cancelled while (or by now) lingering: stop answering queries; the source stays in doubt.
    if (lingers(this.state)) this.dispatch({ type: 'linger-ended' });
    // Or while waiting for the source to recover the link: post-copy stays paused, a pass fails.
    if (this.state.kind === 'postcopy-recovering' || this.state.kind === 'reconnecting') this.dispatch({ type: 'recover-ended' });
  }

  private get recoveryOn(): boolean {
    return (this.run.options.recoverTimeoutMs ?? 0) > 0;
  }

  /** Whether a RECOVER HELLO may reach this session: a pass or post-copy runs or waits to recover, and recovery is on. */
  get recoverable(): boolean {
    const k = this.state.kind;
    return (k === 'receiving' || k === 'reconnecting' || k === 'postcopy-running' || k === 'postcopy-recovering') && this.recoveryOn;
  }

  /** Whether `hello` (a RECOVER) is this session's source: recoverable, same session id, same TLS peer. */
  answersRecover(session: Uint8Array, peerIdentity: string | null): boolean {
    return this.recoverable && Buffer.compare(session, this.hello.session) === 0 && peerIdentity === this.channel.peerIdentity;
  }

  /**
   * Takes a RECOVER channel (accept.ts checked it with `answersRecover`) as the bulk link. A source
   * that reconnects while this side still thinks post-copy runs knows better: the old link is dead.
   */
  recover(channel: FrameLink): void {
    if (this.state.kind === 'postcopy-running' || this.state.kind === 'receiving') {
      const dead = new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${channel.peer} reconnected to recover the session: the link it replaces is dead`, { phase: this.state.kind });
      this.dispatch({ type: 'error', error: dead, recoverable: true });
    }
    const s = this.state;
    if ((s.kind !== 'postcopy-recovering' && s.kind !== 'reconnecting') || this.answering) {
      channel.fail(new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, this.answering ? 'a recovery of this session is already being answered' : `session is ${s.kind}, not recovering`));
      return;
    }
    this.answering = true;
    const postcopy = s.kind === 'postcopy-recovering';
    const phase = postcopy ? 'postcopy-running' : s.resume.kind;
    const session = Buffer.from(this.hello.session).toString('hex');
    this.run.log(`${channel.peer} reconnected to recover session ${session}`, 'notice');
    const attempt = async (): Promise<number> => {
      await this.lostLinkDropped;
      this.attach(channel);
      return answerRecovery(this.run, channel, this.hello.session, postcopy);
    };
    attempt().then((missing) => {
      this.answering = false;
      if (this.state.kind !== s.kind || channel !== this.channel) return;
      if (this.recoverTimer !== null) clearTimeout(this.recoverTimer);
      this.recoverTimer = null;
      // Pre-copy: the source alone knows which pages differ; this side counts none.
      const recovery = { phase, lostAtMs: this.lostAt - this.run.record.startedAt, pausedMs: performance.now() - this.lostAt, missingPages: missing, attempts: 1, cause: s.error.message };
      this.run.record.recoveries.push(recovery);
      this.run.emit({ type: 'recovered', role: 'destination', recovery });
      this.run.log(postcopy ? `post-copy recovered after ${Math.round(recovery.pausedMs)} ms: ${missing} pages still on the source` : `link recovered after ${Math.round(recovery.pausedMs)} ms: the source resumes its pass`, 'notice');
      this.dispatch({ type: 'recovered' });
      // Nothing was missing any more (the last pages arrived just before the loss): post-copy is done.
      this.run.urgent?.checkAllPresent();
    }, (err: unknown) => {
      this.answering = false;
      const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, channel.peer);
      this.run.log(`recovery from ${channel.peer} failed: ${e.code}: ${e.message}`, 'notice');
      if (!channel.isClosed) channel.fail(e);
    });
  }

  /**
   * The link was lost (post-copy, or a pass with recovery on): drop it, keep every page (and in
   * post-copy the blocked vCPU), and wait (bounded) for the source to reconnect.
   */
  private awaitRecovery(s: Extract<DestState, { kind: 'postcopy-recovering' | 'reconnecting' }>): void {
    this.lostAt = performance.now();
    this.unwatch();
    // Before SWITCHOVER the source may not have noticed (its bytes sat in socket buffers): tell it why,
    // so that it reconnects now instead of going on to a switchover this side will never see.
    if (s.kind === 'reconnecting') this.channel.fail(s.error);
    else if (!this.channel.isClosed) this.channel.destroy();
    this.lostLinkDropped = this.run.urgent?.stop(BoardState.LINK_LOST).catch(() => undefined) ?? Promise.resolve();
    // The recovery's fault thread loads while the source reconnects, not after.
    if ((this.run.options.recoverTimeoutMs ?? 0) > 0) this.run.urgent?.prepareRearm();
    const ms = this.run.options.recoverTimeoutMs ?? 0;
    if (ms <= 0) {
      queueMicrotask(() => this.dispatch({ type: 'recover-ended' }));
      return;
    }
    const session = Buffer.from(this.hello.session).toString('hex');
    const held = s.kind === 'postcopy-recovering' ? 'post-copy lost its link' : `lost the link during ${s.resume.kind} pass ${s.resume.iteration + 1}`;
    this.run.log(`${held} (${s.error.code}: ${s.error.message}); guest held, waiting up to ${ms} ms for the source to recover session ${session}`, 'notice');
    if (this.recoverTimer !== null) clearTimeout(this.recoverTimer);
    this.recoverTimer = setTimeout(() => this.dispatch({ type: 'recover-ended' }), ms);
  }

  /** Lingering after a lost link: connections are let in, for QUERY channels only. */
  get lingering(): boolean {
    return lingers(this.state);
  }

  /** Whether `hello` (a QUERY) may be answered by this session: it lingers, same session id, same TLS peer. */
  answersQuery(session: Uint8Array, peerIdentity: string | null): boolean {
    return lingers(this.state) && Buffer.compare(session, this.hello.session) === 0 && peerIdentity === this.channel.peerIdentity;
  }

  /**
   * Answers a QUERY channel (accept.ts checked it with `answersQuery`): RESUMED, then COMPLETE is
   * awaited on it; or ERROR MS_ERR_NOT_RESUMED, after which nothing is left to linger for.
   */
  answerQuery(channel: FrameLink): void {
    const answer = queryAnswer(this.state);
    const session = Buffer.from(this.hello.session).toString('hex');
    if (answer === null) {
      channel.fail(new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `session ${session} no longer answers queries`));
      return;
    }
    this.queries.add(channel);
    channel.phase = 'query';
    if (answer === 'not-resumed') {
      const frame = encodeError({ code: ErrorCode.NOT_RESUMED, message: `the destination did not resume session ${session} and never will` });
      channel.setHandlers({ onFrame: () => undefined, onClosed: () => this.queries.delete(channel) });
      channel.send(frame).then(() => {
        this.run.log(`told ${channel.peer} over a query that session ${session} was not resumed`, 'notice');
        void channel.close();
        this.dispatch({ type: 'query-answered' });
      }, () => undefined);
      return;
    }
    channel.setHandlers({
      onFrame: (f) => {
        if (f.type !== FrameType.COMPLETE) {
          channel.fail(new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `expected COMPLETE on a query channel, got ${frameTypeName(f.type)}`, { frameType: f.type }));
          return;
        }
        decodeComplete(f.buf, f.bodyOffset, f.bodyLength);
        this.run.log(`${channel.peer} confirmed over a query that it released the guest`, 'notice');
        void channel.close();
        this.dispatch({ type: 'complete' });
      },
      onClosed: () => this.queries.delete(channel),
    });
    void channel.send(this.run.resumedAnswer!).catch(() => undefined);
  }

  /** Lost the link after SWITCHOVER: wait (bounded) for the source to ask how it ended. */
  private linger(s: Extract<DestState, { kind: 'awaiting-confirmation' | 'declining' }>): void {
    if (this.lingerTimer !== null) return;
    this.unwatch();
    void this.run.urgent?.stop();
    // Best effort: a source still on the bulk link hears the refusal there (declining) or sees it end.
    if (s.kind === 'declining') this.channel.fail(s.error);
    else if (!this.channel.isClosed) this.channel.destroy();
    const ms = this.run.options.confirmTimeoutMs ?? DEFAULT_CONFIRM_TIMEOUT_MS;
    const guest = s.kind === 'declining' ? `the guest was not resumed (${s.error.code})` : 'the guest runs here';
    const session = Buffer.from(this.hello.session).toString('hex');
    this.run.log(`lost the link to ${this.channel.peer} after SWITCHOVER of session ${session}; ${guest}; answering its queries for up to ${ms} ms`, 'notice');
    this.lingerTimer = setTimeout(() => this.dispatch({ type: 'linger-ended' }), ms);
  }

  /** Settles the guest and the link as the final state says, then reports, once. */
  private end(s: DestState): void {
    if (this.done || !isFinalDest(s)) return;
    this.done = true;
    this.unwatch();
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    if (this.recoverTimer !== null) clearTimeout(this.recoverTimer);
    for (const q of this.queries) if (!q.isClosed) void q.close();
    const run = this.run;
    run.urgent?.discardSpare();
    if (s.kind === 'postcopy-paused') {
      // The only complete copy is split across both hosts: keep every page, leave the vCPU blocked.
      void run.urgent?.stop(BoardState.LINK_LOST);
      this.channel.destroy();
    } else if (s.kind === 'failed') {
      void run.urgent?.stop();
      this.channel.fail(s.error);
    } else {
      void run.urgent?.stop();
      if (s.kind === 'completed' && !s.confirmed) run.log(`${this.channel.peer} did not confirm it released the guest; the guest runs here`, 'notice');
    }
    const r = run.record;
    const totals = run.applier?.totals;
    r.bytesTransferred = this.run.bytesReceived;
    r.pagesTransferred = totals?.pages ?? 0;
    if (totals) r.pagesByEncoding = { ...totals.counts };
    r.converged = s.kind === 'completed';
    if (run.target !== null && r.digest === 0n) r.digest = run.digest();
    if (run.urgent !== null && run.resumedAt > 0) {
      // Final counts (a request sent just before every page was present is counted, as the source
      // counted it); the time to all-present stays as measured when it happened.
      const now = postcopyStats(run);
      r.postcopy = r.postcopy === null ? now : { ...now, postcopyTimeMs: r.postcopy.postcopyTimeMs };
    }
    if (run.resumeSample !== null) {
      // The guest ran here from its resume until now (post-copy: through the whole push).
      r.stepRateAfterResume = stepRate(run.resumeSample.steps, run.resumeSample.at, run.target?.steps, performance.now());
    }
    const end = ending(s);
    const report = assembleReport(r, end);
    run.progress(() => run.snapshot(report.outcome), true);
    run.emit(outcomeEvent(report, end.error));
    this.finish({ result: { report, target: run.target }, accepted: this.accepted });
  }
}

function ending(s: DestState): Ending {
  switch (s.kind) {
    case 'completed':
      return { outcome: 'completed', error: null };
    case 'failed':
      return { outcome: failureOutcome(s.error), error: s.error };
    case 'postcopy-paused':
      return { outcome: 'paused', error: new MemshiftError(ErrorCode.POSTCOPY_PAUSED, s.error.message) };
    default:
      throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `the destination ended in ${s.kind}, which is not final`);
  }
}
