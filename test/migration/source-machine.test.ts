// source machine: stepSource as a table. Every valid (state, event) pair is listed with the state it
// leads to (compared by `kind` and every field, never by ordinal); every other pair of the full
// product must throw MS_ERR_UNEXPECTED_MESSAGE naming both. Guards inside otherwise valid pairs (a
// hybrid or post-copy handshake without post-copy, a post-copy decision without it) are listed apart
// and get their own tests. The safety rule (failed / in-doubt / postcopy-paused / completed by where
// a failure happened) is spelled out row by row.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import type { Action, Decision } from '../../src/migration/convergence.js';
import {
  destinationMayRun, isFinal, stepSource, type Interruptible, type SourceEvent, type SourceState, type SwitchoverSent,
} from '../../src/migration/source/machine.js';
import { MIGRATION_MODES, type MigrationMode } from '../../src/protocol/constants.js';
import { expectCode } from '../_support/guest-helpers.js';

const UNEXPECTED = 'MS_ERR_UNEXPECTED_MESSAGE';
const REJECTED = 'MS_ERR_HANDSHAKE_REJECTED';
// A lost link and an explicit refusal carry different errors, so a row cannot pass with the wrong one.
const ERR = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'peer closed');
const REFUSAL = new MemshiftError(ErrorCode.PEER_ERROR, 'destination reported MS_ERR_DIGEST_MISMATCH', { peerCode: 'MS_ERR_DIGEST_MISMATCH' });
const NOT_RESUMED = new MemshiftError(ErrorCode.NOT_RESUMED, 'the destination answered it did not resume');

const decision = (action: Action): Decision => ({ action, rule: action === 'continue' ? 'converging' : 'dirty-rate', reason: `test ${action}`, forced: false });
const ABORT = decision('abort');

// SENT is what a state already holds; SENT_NOW is what a switchover-sent event brings (told apart by digest and identity).
const SENT: SwitchoverSent = { pausedAt: 1000, pauseMs: 2, finalPagesMs: 30, finalPages: 512, deviceStateMs: 1, digest: 0xfeedn };
const SENT_NOW: SwitchoverSent = { pausedAt: 2000, pauseMs: 3, finalPagesMs: 40, finalPages: 64, deviceStateMs: 2, digest: 0xbeefn };

// One instance of every state kind, with distinctive field values, plus the flag combinations that
// change what is valid (post-copy negotiated or not; SWITCHOVER out or not).
const STATES = {
  setup: { kind: 'setup' },
  precopy: { kind: 'precopy', iteration: 3, postcopyReady: false, throttlePercent: 10, remainingHistory: [900, 400] },
  'precopy+postcopy': { kind: 'precopy', iteration: 3, postcopyReady: true, throttlePercent: 10, remainingHistory: [900, 400] },
  'stop-and-copy': { kind: 'stop-and-copy', iteration: 7, singlePass: false },
  'awaiting-resume': { kind: 'awaiting-resume', iteration: 7, sent: SENT },
  resolving: { kind: 'resolving', iteration: 7, sent: SENT, error: ERR },
  'postcopy-switching': { kind: 'postcopy-switching', iteration: 5, sent: null },
  'postcopy-switching+sent': { kind: 'postcopy-switching', iteration: 5, sent: SENT },
  'postcopy-running': { kind: 'postcopy-running', iteration: 5 },
  'postcopy-recovering': { kind: 'postcopy-recovering', iteration: 5, error: ERR },
  reconnecting: { kind: 'reconnecting', resume: { kind: 'stop-and-copy', iteration: 7, singlePass: false }, error: ERR },
  releasing: { kind: 'releasing' },
  completed: { kind: 'completed', confirmed: true },
  aborted: { kind: 'aborted', decision: ABORT },
  failed: { kind: 'failed', error: ERR },
  'in-doubt': { kind: 'in-doubt', error: ERR },
  'postcopy-paused': { kind: 'postcopy-paused', error: ERR },
} satisfies Record<string, SourceState>;
type StateName = keyof typeof STATES;

const handshake = (mode: MigrationMode, postcopy: boolean): SourceEvent => ({ type: 'handshake-done', mode, postcopy });

// Every event variant: each mode with and without post-copy negotiated, each decision action.
const EVENTS = {
  'handshake-done/cold': handshake('cold', false),
  'handshake-done/cold+postcopy': handshake('cold', true),
  'handshake-done/warm': handshake('warm', false),
  'handshake-done/warm+postcopy': handshake('warm', true),
  'handshake-done/live': handshake('live', false),
  'handshake-done/live+postcopy': handshake('live', true),
  'handshake-done/hybrid': handshake('hybrid', false),
  'handshake-done/hybrid+postcopy': handshake('hybrid', true),
  'handshake-done/postcopy': handshake('postcopy', false),
  'handshake-done/postcopy+postcopy': handshake('postcopy', true),
  'iteration-done/continue': { type: 'iteration-done', decision: decision('continue'), remaining: 250 },
  'iteration-done/throttle': { type: 'iteration-done', decision: { ...decision('throttle'), throttlePercent: 40 }, remaining: 120 },
  'iteration-done/switchover': { type: 'iteration-done', decision: decision('switchover'), remaining: 30 },
  'iteration-done/postcopy': { type: 'iteration-done', decision: decision('postcopy'), remaining: 700 },
  'iteration-done/abort': { type: 'iteration-done', decision: ABORT, remaining: 5000 },
  'switchover-sent': { type: 'switchover-sent', sent: SENT_NOW },
  resumed: { type: 'resumed' },
  'postcopy-done': { type: 'postcopy-done' },
  recovered: { type: 'recovered' },
  released: { type: 'released' },
  'not-resumed': { type: 'not-resumed', error: NOT_RESUMED },
  failed: { type: 'failed', error: ERR },
  'failed/link': { type: 'failed', error: ERR, recoverable: true },
  'refused/link': { type: 'refused', error: REFUSAL, recoverable: true },
  refused: { type: 'refused', error: REFUSAL },
} satisfies Record<string, SourceEvent>;
type EventName = keyof typeof EVENTS;

const SINGLE_PASS = { kind: 'stop-and-copy', iteration: 1, singlePass: true } as const;
const PRECOPY_1 = { kind: 'precopy', iteration: 1, postcopyReady: false, throttlePercent: 0, remainingHistory: [] } as const;

const BASE_VALID: [StateName, EventName, SourceState][] = [
  // The machine picks the start phase from the mode and what was negotiated.
  ['setup', 'handshake-done/cold', SINGLE_PASS],
  ['setup', 'handshake-done/cold+postcopy', SINGLE_PASS],
  ['setup', 'handshake-done/warm', SINGLE_PASS],
  ['setup', 'handshake-done/warm+postcopy', SINGLE_PASS],
  ['setup', 'handshake-done/live', PRECOPY_1],
  ['setup', 'handshake-done/live+postcopy', { ...PRECOPY_1, postcopyReady: true }],
  ['setup', 'handshake-done/hybrid+postcopy', { ...PRECOPY_1, postcopyReady: true }],
  ['setup', 'handshake-done/postcopy+postcopy', { kind: 'postcopy-switching', iteration: 1, sent: null }],
  ['setup', 'failed', { kind: 'failed', error: ERR }],
  ['setup', 'refused', { kind: 'failed', error: REFUSAL }],
  // Pre-copy: the policy's decision, with history and throttle carried along.
  ['precopy', 'iteration-done/continue', { ...STATES.precopy, iteration: 4, remainingHistory: [900, 400, 250] }],
  ['precopy', 'iteration-done/throttle', { ...STATES.precopy, iteration: 4, throttlePercent: 40, remainingHistory: [900, 400, 120] }],
  ['precopy', 'iteration-done/switchover', { kind: 'stop-and-copy', iteration: 4, singlePass: false }],
  ['precopy', 'iteration-done/abort', { kind: 'aborted', decision: ABORT }],
  ['precopy', 'failed', { kind: 'failed', error: ERR }],
  ['precopy', 'refused', { kind: 'failed', error: REFUSAL }],
  ['precopy+postcopy', 'iteration-done/continue', { ...STATES['precopy+postcopy'], iteration: 4, remainingHistory: [900, 400, 250] }],
  ['precopy+postcopy', 'iteration-done/throttle', { ...STATES['precopy+postcopy'], iteration: 4, throttlePercent: 40, remainingHistory: [900, 400, 120] }],
  ['precopy+postcopy', 'iteration-done/switchover', { kind: 'stop-and-copy', iteration: 4, singlePass: false }],
  ['precopy+postcopy', 'iteration-done/postcopy', { kind: 'postcopy-switching', iteration: 4, sent: null }],
  ['precopy+postcopy', 'iteration-done/abort', { kind: 'aborted', decision: ABORT }],
  ['precopy+postcopy', 'failed', { kind: 'failed', error: ERR }],
  ['precopy+postcopy', 'refused', { kind: 'failed', error: REFUSAL }],
  // Stop-and-copy: before SWITCHOVER the source guest may still resume.
  ['stop-and-copy', 'switchover-sent', { kind: 'awaiting-resume', iteration: 7, sent: SENT_NOW }],
  ['stop-and-copy', 'failed', { kind: 'failed', error: ERR }],
  ['stop-and-copy', 'refused', { kind: 'failed', error: REFUSAL }],
  // After SWITCHOVER: a lost link is taken to the destination (resolving), a refusal is certain.
  ['awaiting-resume', 'resumed', { kind: 'releasing' }],
  ['awaiting-resume', 'failed', { kind: 'resolving', iteration: 7, sent: SENT, error: ERR }],
  ['awaiting-resume', 'refused', { kind: 'failed', error: REFUSAL }],
  // Its answer over a QUERY channel decides; no answer (or any other) leaves the doubt.
  ['resolving', 'resumed', { kind: 'releasing' }],
  ['resolving', 'not-resumed', { kind: 'failed', error: NOT_RESUMED }],
  ['resolving', 'failed', { kind: 'in-doubt', error: ERR }],
  ['resolving', 'refused', { kind: 'in-doubt', error: REFUSAL }],
  // The post-copy split: the same failure means failed before SWITCHOVER, in-doubt after.
  ['postcopy-switching', 'switchover-sent', { kind: 'postcopy-switching', iteration: 5, sent: SENT_NOW }],
  ['postcopy-switching', 'failed', { kind: 'failed', error: ERR }],
  ['postcopy-switching', 'refused', { kind: 'failed', error: REFUSAL }],
  ['postcopy-switching+sent', 'resumed', { kind: 'postcopy-running', iteration: 5 }],
  ['postcopy-switching+sent', 'failed', { kind: 'in-doubt', error: ERR }],
  ['postcopy-switching+sent', 'refused', { kind: 'failed', error: REFUSAL }],
  // Pages split across hosts: neither a lost link nor a refusal may resume the source.
  ['postcopy-running', 'postcopy-done', { kind: 'releasing' }],
  ['postcopy-running', 'failed', { kind: 'postcopy-recovering', iteration: 5, error: ERR }],
  ['postcopy-running', 'refused', { kind: 'postcopy-recovering', iteration: 5, error: REFUSAL }],
  // A link failure with recovery on: a pass before SWITCHOVER reconnects and resumes; elsewhere it is any failure.
  ['setup', 'failed/link', { kind: 'failed', error: ERR }],
  ['precopy', 'failed/link', { kind: 'reconnecting', resume: STATES.precopy, error: ERR }],
  ['precopy+postcopy', 'failed/link', { kind: 'reconnecting', resume: STATES['precopy+postcopy'], error: ERR }],
  ['stop-and-copy', 'failed/link', { kind: 'reconnecting', resume: STATES['stop-and-copy'], error: ERR }],
  ['awaiting-resume', 'failed/link', { kind: 'resolving', iteration: 7, sent: SENT, error: ERR }],
  ['resolving', 'failed/link', { kind: 'in-doubt', error: ERR }],
  ['postcopy-switching', 'failed/link', { kind: 'failed', error: ERR }],
  ['postcopy-switching+sent', 'failed/link', { kind: 'in-doubt', error: ERR }],
  ['postcopy-running', 'failed/link', { kind: 'postcopy-recovering', iteration: 5, error: ERR }],
  ['postcopy-recovering', 'failed/link', { kind: 'postcopy-paused', error: ERR }],
  ['releasing', 'failed/link', { kind: 'completed', confirmed: false }],
  // The interrupted pass resumes (same iteration, its snapshot kept); a reconnection that fails is a failure: the guest resumes here.
  ['reconnecting', 'recovered', { kind: 'stop-and-copy', iteration: 7, singlePass: false, again: true }],
  ['reconnecting', 'failed', { kind: 'failed', error: ERR }],
  ['reconnecting', 'failed/link', { kind: 'failed', error: ERR }],
  ['reconnecting', 'refused', { kind: 'failed', error: REFUSAL }],
  // Recovery: a new link (the next push is the next iteration), or the pause stays for good.
  ['postcopy-recovering', 'recovered', { kind: 'postcopy-running', iteration: 6 }],
  ['postcopy-recovering', 'failed', { kind: 'postcopy-paused', error: ERR }],
  ['postcopy-recovering', 'refused', { kind: 'postcopy-paused', error: REFUSAL }],
  // The guest runs on the destination: only the confirmation is at stake.
  ['releasing', 'released', { kind: 'completed', confirmed: true }],
  ['releasing', 'failed', { kind: 'completed', confirmed: false }],
  // Not drawn in the diagram (which lists `released, failed`); onFailure treats a refusal like a failure here.
  ['releasing', 'refused', { kind: 'completed', confirmed: false }],
];

// The destination refused because it saw the link fail, with recovery on: a pass it was receiving
// reconnects; everywhere else it is the refusal it always was.
const PASSES: readonly StateName[] = ['precopy', 'precopy+postcopy', 'stop-and-copy'];
const VALID: [StateName, EventName, SourceState][] = [
  ...BASE_VALID,
  ...BASE_VALID.filter(([n, e]) => e === 'refused' && !PASSES.includes(n)).map(([n, , next]): [StateName, EventName, SourceState] => [n, 'refused/link', next]),
  ...PASSES.map((n): [StateName, EventName, SourceState] => [n, 'refused/link', { kind: 'reconnecting', resume: STATES[n] as Interruptible, error: REFUSAL }]),
];

// Valid pairs whose guard rejects them; each has its own test below with its own code and message.
const GUARDED = new Set<string>(['setup|handshake-done/hybrid', 'setup|handshake-done/postcopy', 'precopy|iteration-done/postcopy']);

const label = (s: unknown): string =>
  JSON.stringify(s, (_k, v: unknown) => (v instanceof Error ? `<${(v as MemshiftError).code}>` : typeof v === 'bigint' ? `${v}n` : v));

/** Freezes a state and everything it owns (but not the errors it carries), so a mutating step throws. */
function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null && !(x instanceof Error) && !Object.isFrozen(x)) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}
for (const s of Object.values(STATES)) deepFreeze(s);

for (const [from, ev, next] of VALID) {
  test(`${from} + ${ev} → ${label(next)}`, () => {
    const state: SourceState = STATES[from];
    const event: SourceEvent = EVENTS[ev];
    const before = label(state);
    const got = stepSource(state, event);
    assert.equal(got, next);
    assert.is(label(state), before, 'step must not modify the state it was given');
    assert.is.not(got, state, 'step returns a new state');
    if ('error' in next) assert.ok('error' in got && got.error === next.error, 'the error is carried by identity');
    if ('sent' in next && next.sent !== null) assert.ok('sent' in got && got.sent === next.sent, 'the switchover record is carried by identity');
  });
}

test('every pair not in the valid table throws MS_ERR_UNEXPECTED_MESSAGE naming the event and the state', () => {
  const valid = new Set(VALID.map(([s, e]) => `${s}|${e}`));
  let invalid = 0;
  for (const [name, state] of Object.entries(STATES) as [StateName, SourceState][]) {
    for (const [evName, event] of Object.entries(EVENTS) as [EventName, SourceEvent][]) {
      const key = `${name}|${evName}`;
      if (valid.has(key) || GUARDED.has(key)) continue;
      invalid++;
      const err = expectCode(() => stepSource(state, event), UNEXPECTED, key) as MemshiftError;
      assert.ok(err.message.includes(event.type), `${key}: message ${JSON.stringify(err.message)} does not name event ${event.type}`);
      assert.ok(err.message.includes(state.kind), `${key}: message ${JSON.stringify(err.message)} does not name state ${state.kind}`);
      assert.is(err.details.phase, state.kind, key);
    }
  }
  // 17 states × 25 event variants, minus the 63 + 12 valid rows and the 3 guarded pairs.
  assert.is(VALID.length, 75);
  assert.is(invalid, 17 * 25 - 75 - 3);
});

test('the valid table has no duplicate (state, event) pair and names only known states and events', () => {
  const keys = VALID.map(([s, e]) => `${s}|${e}`);
  assert.is(new Set(keys).size, keys.length);
  for (const key of GUARDED) assert.not.ok(keys.includes(key), `${key} is both valid and guarded`);
});

// ---- the start phase is decided from the handshake ------------------------------------------------

test('a hybrid handshake without post-copy negotiated is rejected: hybrid needs post-copy on both ends', () => {
  const err = expectCode(() => stepSource(STATES.setup, EVENTS['handshake-done/hybrid']), REJECTED) as MemshiftError;
  assert.ok(err.message.includes('hybrid'), err.message);
  assert.ok(err.message.includes('post-copy'), err.message);
});

test('a post-copy handshake without post-copy negotiated is rejected', () => {
  const err = expectCode(() => stepSource(STATES.setup, EVENTS['handshake-done/postcopy']), REJECTED) as MemshiftError;
  assert.ok(err.message.includes('post-copy migration'), err.message);
});

test('only hybrid and post-copy need post-copy negotiated: every other mode starts without it', () => {
  const needs = MIGRATION_MODES.filter((mode) => {
    try {
      stepSource(STATES.setup, handshake(mode, false));
      return false;
    } catch (err) {
      assert.is((err as MemshiftError).code, REJECTED, mode);
      return true;
    }
  });
  assert.equal([...needs].sort(), ['hybrid', 'postcopy']);
});

// ---- pre-copy decisions ----------------------------------------------------------------------------

test('a post-copy decision without post-copy negotiated throws, naming the rule and the missing negotiation', () => {
  const err = expectCode(() => stepSource(STATES.precopy, EVENTS['iteration-done/postcopy']), UNEXPECTED) as MemshiftError;
  assert.ok(err.message.includes('post-copy was not negotiated'), err.message);
  assert.ok(err.message.includes('dirty-rate'), `message ${JSON.stringify(err.message)} does not name the rule`);
  assert.is(err.details.phase, 'precopy');
});

test('a throttle decision without a percentage keeps the current throttle', () => {
  const got = stepSource(STATES.precopy, { type: 'iteration-done', decision: decision('throttle'), remaining: 77 });
  assert.equal(got, { ...STATES.precopy, iteration: 4, throttlePercent: 10, remainingHistory: [900, 400, 77] });
});

test('continue keeps the throttle already applied (it is not reset to 0)', () => {
  const throttled: SourceState = { ...STATES.precopy, throttlePercent: 60 };
  const got = stepSource(throttled, EVENTS['iteration-done/continue']);
  assert.ok(got.kind === 'precopy' && got.throttlePercent === 60, label(got));
});

test('aborted keeps the decision that aborted, by identity', () => {
  const d = decision('abort');
  const got = stepSource(STATES.precopy, { type: 'iteration-done', decision: d, remaining: 1 });
  assert.ok(got.kind === 'aborted' && got.decision === d, label(got));
});

// ---- failures: where they happen decides what the source guest may do --------------------------------

test('post-copy switching: a failure is failed before SWITCHOVER went out and in-doubt after', () => {
  const before = stepSource(STATES['postcopy-switching'], EVENTS.failed);
  const sent = stepSource(STATES['postcopy-switching'], EVENTS['switchover-sent']);
  const after = stepSource(sent, EVENTS.failed);
  assert.equal([before.kind, sent.kind, after.kind], ['failed', 'postcopy-switching', 'in-doubt']);
  assert.equal([destinationMayRun(before), destinationMayRun(after)], [false, true]);
});

test('post-copy switching: resumed before SWITCHOVER went out is rejected, and SWITCHOVER goes out only once', () => {
  const early = expectCode(() => stepSource(STATES['postcopy-switching'], EVENTS.resumed), UNEXPECTED) as MemshiftError;
  assert.ok(early.message.includes('resumed') && early.message.includes('postcopy-switching'), early.message);
  const twice = expectCode(() => stepSource(STATES['postcopy-switching+sent'], EVENTS['switchover-sent']), UNEXPECTED) as MemshiftError;
  assert.ok(twice.message.includes('switchover-sent'), twice.message);
});

test('a refusal is a definite failure wherever the destination has not resumed, and a pause once it runs the guest', () => {
  const kinds = (['setup', 'precopy', 'stop-and-copy', 'awaiting-resume', 'postcopy-switching', 'postcopy-switching+sent', 'postcopy-running', 'postcopy-recovering'] as const)
    .map((name) => stepSource(STATES[name], EVENTS.refused).kind);
  assert.equal(kinds, ['failed', 'failed', 'failed', 'failed', 'failed', 'failed', 'postcopy-recovering', 'postcopy-paused']);
});

test('a failure while releasing still completes, unconfirmed: the guest runs on the destination', () => {
  const got = stepSource(STATES.releasing, EVENTS.failed);
  assert.equal(got, { kind: 'completed', confirmed: false });
  assert.ok(destinationMayRun(got));
});

test('final states reject a second failure and a refusal (no failed → failed)', () => {
  for (const name of ['completed', 'aborted', 'failed', 'in-doubt', 'postcopy-paused'] as const) {
    expectCode(() => stepSource(STATES[name], EVENTS.failed), UNEXPECTED, `${name} + failed`);
    expectCode(() => stepSource(STATES[name], EVENTS.refused), UNEXPECTED, `${name} + refused`);
  }
});

test('the error of a failed or refused event is carried by identity into every failure state', () => {
  const own = new MemshiftError(ErrorCode.TIMEOUT, 'timeout');
  const outcomes = (['precopy', 'awaiting-resume', 'postcopy-switching', 'postcopy-switching+sent', 'postcopy-running', 'postcopy-recovering'] as const).flatMap((name) =>
    (['failed', 'refused'] as const).map((type) => stepSource(STATES[name], { type, error: own })));
  for (const got of outcomes) assert.ok('error' in got && got.error === own, label(got));
  assert.equal([...new Set(outcomes.map((s) => s.kind))].sort(), ['failed', 'in-doubt', 'postcopy-paused', 'postcopy-recovering', 'resolving']);
});

// ---- resolving a switchover in doubt (stop-and-copy) ---------------------------------------------------

test('a lost link after SWITCHOVER is asked about (resolving) unless cancelled or answered with another digest', () => {
  const kindAfter = (code: (typeof ErrorCode)[keyof typeof ErrorCode]) => stepSource(STATES['awaiting-resume'], { type: 'failed', error: new MemshiftError(code, code) }).kind;
  assert.equal(
    [ErrorCode.CONNECTION_CLOSED, ErrorCode.CONNECTION_FAILED, ErrorCode.TIMEOUT, ErrorCode.CANCELLED, ErrorCode.DIGEST_MISMATCH].map(kindAfter),
    ['resolving', 'resolving', 'resolving', 'in-doubt', 'in-doubt'],
  );
});

test('resolving keeps the guest paused: only NOT_RESUMED lets it resume, RESUMED releases it, silence stays in doubt', () => {
  assert.not.ok(isFinal(STATES.resolving));
  const declined = stepSource(STATES.resolving, EVENTS['not-resumed']);
  const confirmed = stepSource(stepSource(STATES.resolving, EVENTS.resumed), EVENTS.released);
  const silent = stepSource(STATES.resolving, { type: 'failed', error: new MemshiftError(ErrorCode.CANCELLED, 'cancelled') });
  assert.equal([declined.kind, confirmed.kind, silent.kind], ['failed', 'completed', 'in-doubt']);
  assert.equal([destinationMayRun(declined), destinationMayRun(confirmed), destinationMayRun(silent)], [false, true, true]);
});

test('post-copy never resolves: a lost link after its SWITCHOVER stays in doubt', () => {
  assert.is(stepSource(STATES['postcopy-switching+sent'], EVENTS.failed).kind, 'in-doubt');
  expectCode(() => stepSource(STATES['postcopy-switching+sent'], EVENTS['not-resumed']), UNEXPECTED);
});

// ---- predicates ------------------------------------------------------------------------------------

test('isFinal is true exactly for completed, aborted, failed, in-doubt and postcopy-paused', () => {
  const finals = Object.values(STATES).filter((s: SourceState) => isFinal(s)).map((s) => s.kind).sort();
  assert.equal(finals, ['aborted', 'completed', 'failed', 'in-doubt', 'postcopy-paused']);
  assert.ok(isFinal({ kind: 'completed', confirmed: false }), 'an unconfirmed completion is final too');
});

test('destinationMayRun is true exactly for in-doubt, postcopy-paused and completed', () => {
  const may = Object.values(STATES).filter((s: SourceState) => destinationMayRun(s)).map((s) => s.kind).sort();
  assert.equal(may, ['completed', 'in-doubt', 'postcopy-paused']);
  assert.ok(destinationMayRun({ kind: 'completed', confirmed: false }), 'unconfirmed: the guest still runs there');
});

// ---- walk-throughs ----------------------------------------------------------------------------------

function walk(events: SourceEvent[]): SourceState[] {
  const trail: SourceState[] = [];
  let s: SourceState = { kind: 'setup' };
  for (const e of events) trail.push((s = stepSource(s, e)));
  return trail;
}

test('a live migration walks setup → precopy 1..3 → stop-and-copy 4 → awaiting-resume 4 → releasing → completed', () => {
  const trail = walk([
    EVENTS['handshake-done/live'], EVENTS['iteration-done/continue'], EVENTS['iteration-done/throttle'],
    EVENTS['iteration-done/switchover'], EVENTS['switchover-sent'], EVENTS.resumed, EVENTS.released,
  ]);
  assert.equal(trail, [
    { kind: 'precopy', iteration: 1, postcopyReady: false, throttlePercent: 0, remainingHistory: [] },
    { kind: 'precopy', iteration: 2, postcopyReady: false, throttlePercent: 0, remainingHistory: [250] },
    { kind: 'precopy', iteration: 3, postcopyReady: false, throttlePercent: 40, remainingHistory: [250, 120] },
    { kind: 'stop-and-copy', iteration: 4, singlePass: false },
    { kind: 'awaiting-resume', iteration: 4, sent: SENT_NOW },
    { kind: 'releasing' },
    { kind: 'completed', confirmed: true },
  ]);
  assert.equal(trail.map(isFinal), [false, false, false, false, false, false, true]);
});

test('a cold migration is one paused pass: setup → stop-and-copy 1 (single pass) → awaiting-resume 1 → releasing → completed', () => {
  const trail = walk([EVENTS['handshake-done/cold'], EVENTS['switchover-sent'], EVENTS.resumed, EVENTS.released]);
  assert.equal(trail, [
    { kind: 'stop-and-copy', iteration: 1, singlePass: true },
    { kind: 'awaiting-resume', iteration: 1, sent: SENT_NOW },
    { kind: 'releasing' },
    { kind: 'completed', confirmed: true },
  ]);
});

test('a post-copy migration walks setup → postcopy-switching → (SWITCHOVER) → postcopy-running → releasing → completed', () => {
  const trail = walk([EVENTS['handshake-done/postcopy+postcopy'], EVENTS['switchover-sent'], EVENTS.resumed, EVENTS['postcopy-done'], EVENTS.released]);
  assert.equal(trail, [
    { kind: 'postcopy-switching', iteration: 1, sent: null },
    { kind: 'postcopy-switching', iteration: 1, sent: SENT_NOW },
    { kind: 'postcopy-running', iteration: 1 },
    { kind: 'releasing' },
    { kind: 'completed', confirmed: true },
  ]);
});

test('a hybrid migration that fails while switching, before SWITCHOVER went out, ends failed (the source guest resumes)', () => {
  const trail = walk([EVENTS['handshake-done/hybrid+postcopy'], EVENTS['iteration-done/continue'], EVENTS['iteration-done/postcopy'], EVENTS.failed]);
  assert.equal(trail.map((s) => s.kind), ['precopy', 'precopy', 'postcopy-switching', 'failed']);
  assert.equal(trail[2], { kind: 'postcopy-switching', iteration: 3, sent: null });
  const end = trail[3];
  assert.ok(end.kind === 'failed' && end.error === ERR, label(end));
  assert.not.ok(destinationMayRun(end));
});

test('a hybrid migration that fails in post-copy tries to recover and, failing that, ends postcopy-paused, never failed', () => {
  const trail = walk([EVENTS['handshake-done/hybrid+postcopy'], EVENTS['iteration-done/postcopy'], EVENTS['switchover-sent'], EVENTS.resumed, EVENTS.failed, EVENTS.failed]);
  assert.equal(trail.map((s) => s.kind), ['precopy', 'postcopy-switching', 'postcopy-switching', 'postcopy-running', 'postcopy-recovering', 'postcopy-paused']);
  assert.not.ok(isFinal(trail[4]), 'recovering is not an end');
  assert.ok(destinationMayRun(trail[5]));
});

test('a live migration whose link fails in pass 2 reconnects, resumes pass 2 (again), and the pass after it starts as any other', () => {
  const trail = walk([
    EVENTS['handshake-done/live'], EVENTS['iteration-done/continue'], EVENTS['failed/link'], EVENTS.recovered, EVENTS['iteration-done/continue'],
  ]);
  assert.equal(trail.map((s) => s.kind), ['precopy', 'precopy', 'reconnecting', 'precopy', 'precopy']);
  assert.equal(trail[3], { ...PRECOPY_1, iteration: 2, remainingHistory: [250], again: true });
  assert.equal(trail[4], { ...PRECOPY_1, iteration: 3, remainingHistory: [250, 250] });
  assert.not.ok(destinationMayRun(trail[2]), 'before SWITCHOVER the destination never runs the guest');
});

test('a post-copy migration that recovers twice pushes on in iterations 2 and 3, then completes', () => {
  const trail = walk([EVENTS['handshake-done/postcopy+postcopy'], EVENTS['switchover-sent'], EVENTS.resumed, EVENTS.failed, EVENTS.recovered, EVENTS.failed, EVENTS.recovered, EVENTS['postcopy-done'], EVENTS.released]);
  assert.equal(trail.map((s) => s.kind), [
    'postcopy-switching', 'postcopy-switching', 'postcopy-running', 'postcopy-recovering', 'postcopy-running', 'postcopy-recovering', 'postcopy-running', 'releasing', 'completed',
  ]);
  assert.equal(trail[6], { kind: 'postcopy-running', iteration: 3 });
});

test.run();
