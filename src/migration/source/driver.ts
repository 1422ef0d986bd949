// The source's driver: a loop that runs the phase of the current state and feeds its event to the
// machine (machine.ts), which alone decides what comes next. Each phase's I/O lives in phases/; the
// run (run.ts) holds the resources; the report is assembled once, in report.ts. What the driver adds
// is the ending: putting the guest back as the final state says, and closing what the run opened.
//
//   while (!final(s)) s = step(s, await run(s))      failure of a phase = a 'failed' / 'refused' event
//   (a lost link with recovery on: reconnecting / postcopy-recovering, then back to the interrupted state)
//   then settle: failed → unthrottle + resume the guest; in-doubt, postcopy-paused → keep it paused
//   (failed after `resolving`: the destination said NOT_RESUMED, so the guest resumes here too)

import { ErrorCode, MemshiftError, isLinkFailure, toMemshiftError } from '../../errors.js';
import type { MemorySource } from '../../memory/types.js';
import { assembleReport, failureOutcome, type Ending, type Report } from '../report.js';
import { outcomeEvent } from '../events.js';
import { BoardState } from '../postcopy-board.js';
import { destinationMayRun, isFinal, stepSource, type SourceEvent, type SourceState } from './machine.js';
import { runHandshake } from './phases/handshake.js';
import { runPostcopyRunning, runPostcopySwitching } from './phases/postcopy.js';
import { runPrecopyPass } from './phases/precopy.js';
import { runRelease } from './phases/release.js';
import { reconnectPass, recoverPostcopy } from './phases/recover.js';
import { DEFAULT_RESOLVE_TIMEOUT_MS, resolveDoubt } from './phases/resolve.js';
import { runStopAndCopy } from './phases/stop-and-copy.js';
import { awaitResumed } from './phases/switchover.js';
import { SourceRun, type SourceOptions } from './run.js';

export type { SourceOptions } from './run.js';

/** How a source run ended: the report, and the error behind any outcome but completed. */
export interface SourceResult {
  report: Report;
  error: MemshiftError | null;
}

/** Runs one migration of `source`; always resolves (the report's outcome says how it ended). */
export async function runSource(source: MemorySource, options: SourceOptions): Promise<SourceResult> {
  const run = new SourceRun(source, options);
  let state: SourceState = { kind: 'setup' };
  while (!isFinal(state)) {
    let event: SourceEvent;
    try {
      event = await runPhase(run, state);
    } catch (err) {
      event = failureEvent(err, run);
    }
    const before: SourceState['kind'] = state.kind;
    try {
      state = stepSource(state, event);
    } catch (err) {
      state = stepSource(state, failureEvent(err, run));
    }
    if (state.kind !== before) run.emit({ type: 'state', role: 'source', state: state.kind, elapsedMs: performance.now() - run.record.startedAt });
  }
  run.unwatch();
  state = await heldLeaseOrDoubt(run, state);
  await settle(run, state);
  const end = ending(state);
  const report = assembleReport(run.record, end);
  // The last sample: the outcome as its phase; nothing is left to send once the guest runs there.
  run.progress(() => ({ ...run.snapshot(report.outcome, report.iterations.length), ...(report.outcome === 'completed' ? { remainingPages: 0, etaMs: 0 } : {}) }), true);
  run.emit(outcomeEvent(report, end.error));
  return { report, error: end.error };
}

function runPhase(run: SourceRun, s: SourceState): Promise<SourceEvent> {
  switch (s.kind) {
    case 'setup':
      return runHandshake(run);
    case 'precopy':
      return runPrecopyPass(run, s);
    case 'stop-and-copy':
      return runStopAndCopy(run, s);
    case 'awaiting-resume':
      return awaitResumed(run, s.sent);
    case 'resolving':
      return resolveDoubt(run, s);
    case 'postcopy-switching':
      return runPostcopySwitching(run, s);
    case 'postcopy-running':
      return runPostcopyRunning(run, s);
    case 'postcopy-recovering':
      return recoverPostcopy(run, s);
    case 'reconnecting':
      return reconnectPass(run, s);
    case 'releasing':
      return runRelease(run);
    default:
      throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `no phase runs in the final state ${s.kind}`);
  }
}

/**
 * An ERROR frame from the destination is a definite refusal; anything else is a failure whose meaning
 * the machine knows, and a failure of the link may be recovered when recovery is on.
 */
function failureEvent(err: unknown, run: SourceRun): SourceEvent {
  const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, 'source');
  const recovery = (run.options.recoverTimeoutMs ?? 0) > 0;
  const peerCode = e.details.peerCode;
  if (e.code === ErrorCode.PEER_ERROR && peerCode !== ErrorCode.POSTCOPY_PAUSED) {
    // The destination saw the link fail (a page that arrived corrupt, a silence): with recovery on, a
    // pass it was receiving waits for this side to reconnect (the machine knows which states can).
    return { type: 'refused', error: e, recoverable: recovery && peerCode !== undefined && isLinkFailure({ code: peerCode }) };
  }
  return { type: 'failed', error: e, recoverable: recovery && isLinkFailure(e) };
}

/**
 * A guest on shared storage resumes here only while this side holds its lease. Once the lease was
 * handed over, the destination may run the guest whatever the link said, unless it gave the lease back
 * (a refusal, an answered NOT_RESUMED): a failure without the lease is a doubt, and the guest stays
 * paused. The other way round, the lease settles a doubt: a destination gives it back only when it will
 * never resume the guest, so a source that holds it again after SWITCHOVER may resume.
 */
async function heldLeaseOrDoubt(run: SourceRun, s: SourceState): Promise<SourceState> {
  const storage = run.source.storage;
  // Completed: the destination runs the guest. Post-copy paused: its pages are split, it runs nowhere.
  if (storage == null || s.kind === 'completed' || s.kind === 'postcopy-paused') return s;
  if (!storage.holds()) {
    // Handed over, then the migration failed: a destination that will not resume gives the lease back
    // as it ends, which may be a while after this side saw the failure. Wait for it as a doubt is resolved.
    const until = performance.now() + (run.options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS);
    while (!storage.holds() && performance.now() < until) await new Promise((r) => setTimeout(r, LEASE_POLL_MS));
  }
  const held = storage.holds();
  if (s.kind === 'in-doubt') {
    if (!held) return s;
    const error = new MemshiftError(s.error.code, `${s.error.message}; the destination gave the guest's lease back, so it never ran the guest: it resumes here`, { cause: s.error });
    run.emit({ type: 'state', role: 'source', state: 'failed', elapsedMs: performance.now() - run.record.startedAt });
    return { kind: 'failed', error };
  }
  if (held) return s;
  const why = s.kind === 'failed' ? `${s.error.code}: ${s.error.message}` : s.kind;
  const error = new MemshiftError(ErrorCode.LEASE_LOST, `the migration ended (${why}) and this side no longer holds the guest's lease (handed to the destination and not given back, or lost): the guest stays paused here; see memshift lease show`);
  run.emit({ type: 'state', role: 'source', state: 'in-doubt', elapsedMs: performance.now() - run.record.startedAt });
  return { kind: 'in-doubt', error };
}

/** How often a source waiting for its lease to come back looks at it. */
const LEASE_POLL_MS = 50;

/** Puts the guest where the final state says it belongs, and closes what the run opened. */
async function settle(run: SourceRun, s: SourceState): Promise<void> {
  const error = s.kind === 'failed' || s.kind === 'in-doubt' || s.kind === 'postcopy-paused' ? s.error : s.kind === 'aborted' ? abortError(s) : null;
  if (!destinationMayRun(s)) {
    // Nothing reached the point where the destination could run the guest: it keeps running here.
    run.throttle(0);
    if (run.paused) {
      await run.source.resume().catch(() => undefined);
      run.paused = false;
    }
  }
  // post-copy paused: the only complete copy is split across both hosts; keep every page and the guest paused.
  if (run.channel !== null && !run.channel.isClosed && error !== null) run.channel.fail(error);
  await run.urgent?.stop(BoardState.LINK_LOST).catch(() => undefined);
  await run.pool?.close().catch(() => undefined);
  // What a preparation held that this migration did not take (a fault thread it never needed).
  await run.options.prepared?.close().catch(() => undefined);
  if (run.record.guestSteps === 0) run.record.guestSteps = run.source.steps ?? 0;
}

function abortError(s: Extract<SourceState, { kind: 'aborted' }>): MemshiftError {
  return new MemshiftError(ErrorCode.MIGRATION_ABORTED, `migration aborted by policy: ${s.decision.reason}`);
}

function ending(s: SourceState): Ending {
  switch (s.kind) {
    case 'completed':
      return { outcome: 'completed', error: null };
    case 'aborted':
      return { outcome: 'aborted', error: abortError(s) };
    case 'in-doubt':
      return { outcome: 'in-doubt', error: s.error };
    case 'postcopy-paused':
      return { outcome: 'paused', error: new MemshiftError(ErrorCode.POSTCOPY_PAUSED, `post-copy paused: ${s.error.message}; every page is kept for recovery`) };
    case 'failed':
      return { outcome: failureOutcome(s.error), error: s.error };
    default:
      throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `the source ended in ${s.kind}, which is not final`);
  }
}
