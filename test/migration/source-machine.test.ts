// source machine: stepSource as a table. Every valid (state, event) pair is listed with the state it
// leads to (compared by `kind` and fields, never by ordinal); every other pair of the full product
// must throw MS_ERR_UNEXPECTED_MESSAGE naming both. The safety rule (failed / in-doubt /
// postcopy-paused by where the failure happened) gets its own rows.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import type { Action, Decision } from '../../src/migration/convergence.js';
import { isFinal, stepSource, type SourceEvent, type SourceState } from '../../src/migration/source/machine.js';
import { expectCode } from '../_support/guest-helpers.js';

const UNEXPECTED = 'MS_ERR_UNEXPECTED_MESSAGE';
const ERR = new MemshiftError(ErrorCode.CONNECTION_CLOSED, 'peer closed');

const decision = (action: Action): Decision => ({ action, rule: action === 'continue' ? 'converging' : 'dirty-rate', reason: `test ${action}`, forced: false });

const ABORT = decision('abort');

// One instance of every state kind, with distinctive field values.
const STATES: Record<SourceState['kind'], SourceState> = {
  setup: { kind: 'setup' },
  precopy: { kind: 'precopy', iteration: 3 },
  'stop-and-copy': { kind: 'stop-and-copy', iteration: 7 },
  'awaiting-resume': { kind: 'awaiting-resume', iteration: 7 },
  postcopy: { kind: 'postcopy', iteration: 4 },
  completed: { kind: 'completed' },
  aborted: { kind: 'aborted', decision: decision('abort') },
  failed: { kind: 'failed', error: ERR },
  'in-doubt': { kind: 'in-doubt', error: ERR },
  'postcopy-paused': { kind: 'postcopy-paused', error: ERR },
};

// Every event variant (each start, each decision action).
const EVENTS: Record<string, SourceEvent> = {
  'handshake-done/precopy': { type: 'handshake-done', start: 'precopy' },
  'handshake-done/stop-and-copy': { type: 'handshake-done', start: 'stop-and-copy' },
  'handshake-done/postcopy': { type: 'handshake-done', start: 'postcopy' },
  'iteration-done/continue': { type: 'iteration-done', decision: decision('continue') },
  'iteration-done/throttle': { type: 'iteration-done', decision: { ...decision('throttle'), throttlePercent: 20 } },
  'iteration-done/switchover': { type: 'iteration-done', decision: decision('switchover') },
  'iteration-done/postcopy': { type: 'iteration-done', decision: decision('postcopy') },
  'iteration-done/abort': { type: 'iteration-done', decision: ABORT },
  'switchover-sent': { type: 'switchover-sent' },
  resumed: { type: 'resumed' },
  'postcopy-done': { type: 'postcopy-done' },
  failed: { type: 'failed', error: ERR },
};

type Valid = [state: SourceState['kind'], event: keyof typeof EVENTS, next: SourceState];

const VALID: Valid[] = [
  ['setup', 'handshake-done/precopy', { kind: 'precopy', iteration: 1 }],
  ['setup', 'handshake-done/stop-and-copy', { kind: 'stop-and-copy', iteration: 1 }],
  ['setup', 'handshake-done/postcopy', { kind: 'postcopy', iteration: 1 }],
  ['precopy', 'iteration-done/continue', { kind: 'precopy', iteration: 4 }],
  ['precopy', 'iteration-done/throttle', { kind: 'precopy', iteration: 4 }],
  ['precopy', 'iteration-done/switchover', { kind: 'stop-and-copy', iteration: 4 }],
  ['precopy', 'iteration-done/postcopy', { kind: 'postcopy', iteration: 4 }],
  ['precopy', 'iteration-done/abort', { kind: 'aborted', decision: ABORT }],
  ['stop-and-copy', 'switchover-sent', { kind: 'awaiting-resume', iteration: 7 }],
  ['awaiting-resume', 'resumed', { kind: 'completed' }],
  ['postcopy', 'postcopy-done', { kind: 'completed' }],
  // The safety rule: before SWITCHOVER went out the source guest may resume; after it, it may not.
  ['setup', 'failed', { kind: 'failed', error: ERR }],
  ['precopy', 'failed', { kind: 'failed', error: ERR }],
  ['stop-and-copy', 'failed', { kind: 'failed', error: ERR }],
  ['awaiting-resume', 'failed', { kind: 'in-doubt', error: ERR }],
  ['postcopy', 'failed', { kind: 'postcopy-paused', error: ERR }],
];

const label = (s: SourceState): string => JSON.stringify(s, (k, v) => (v instanceof Error ? `<${(v as MemshiftError).code}>` : v));

for (const [from, ev, next] of VALID) {
  test(`${from} + ${ev} → ${label(next)}`, () => {
    const state = STATES[from];
    const before = label(state);
    const got = stepSource(state, EVENTS[ev]);
    assert.equal(got, next);
    assert.is(label(state), before, 'step must not modify the state it was given');
  });
}

test('every pair not in the valid table throws MS_ERR_UNEXPECTED_MESSAGE naming the event and the state', () => {
  const valid = new Set(VALID.map(([s, e]) => `${s}|${e}`));
  let invalid = 0;
  for (const state of Object.values(STATES)) {
    for (const [name, event] of Object.entries(EVENTS)) {
      if (valid.has(`${state.kind}|${name}`)) continue;
      invalid++;
      const err = expectCode(() => stepSource(state, event), UNEXPECTED, `${state.kind} + ${name}`) as MemshiftError;
      assert.ok(err.message.includes(event.type), `message ${JSON.stringify(err.message)} does not name event ${event.type}`);
      assert.ok(err.message.includes(state.kind), `message ${JSON.stringify(err.message)} does not name state ${state.kind}`);
      assert.is(err.details.phase, state.kind);
    }
  }
  // 10 states × 12 event variants, minus the 16 valid rows.
  assert.is(invalid, 10 * 12 - 16);
});

test('the error of a failed event is carried by identity into failed, in-doubt and postcopy-paused', () => {
  for (const from of ['precopy', 'awaiting-resume', 'postcopy'] as const) {
    const own = new MemshiftError(ErrorCode.TIMEOUT, `timeout in ${from}`);
    const got = stepSource(STATES[from], { type: 'failed', error: own });
    assert.ok('error' in got && got.error === own, `${from}: error not carried`);
  }
});

test('aborted keeps the decision that aborted, by identity', () => {
  const d = decision('abort');
  const got = stepSource({ kind: 'precopy', iteration: 9 }, { type: 'iteration-done', decision: d });
  assert.ok(got.kind === 'aborted' && got.decision === d);
});

test('final states reject a second failure too (no failed → failed)', () => {
  for (const kind of ['completed', 'aborted', 'failed', 'in-doubt', 'postcopy-paused'] as const) {
    expectCode(() => stepSource(STATES[kind], EVENTS.failed), UNEXPECTED, kind);
  }
});

test('isFinal is true exactly for completed, aborted, failed, in-doubt and postcopy-paused', () => {
  const finals = Object.values(STATES).filter(isFinal).map((s) => s.kind).sort();
  assert.equal(finals, ['aborted', 'completed', 'failed', 'in-doubt', 'postcopy-paused']);
});

test('a live migration walks setup → precopy 1..3 → stop-and-copy 4 → awaiting-resume 4 → completed', () => {
  const events: SourceEvent[] = [
    EVENTS['handshake-done/precopy'], EVENTS['iteration-done/continue'], EVENTS['iteration-done/throttle'],
    EVENTS['iteration-done/switchover'], EVENTS['switchover-sent'], EVENTS.resumed,
  ];
  const trail: SourceState[] = [];
  let s: SourceState = { kind: 'setup' };
  for (const e of events) trail.push((s = stepSource(s, e)));
  assert.equal(trail, [
    { kind: 'precopy', iteration: 1 }, { kind: 'precopy', iteration: 2 }, { kind: 'precopy', iteration: 3 },
    { kind: 'stop-and-copy', iteration: 4 }, { kind: 'awaiting-resume', iteration: 4 }, { kind: 'completed' },
  ]);
});

test('a hybrid migration that fails in post-copy ends postcopy-paused, never failed', () => {
  let s: SourceState = stepSource({ kind: 'setup' }, EVENTS['handshake-done/precopy']);
  s = stepSource(s, EVENTS['iteration-done/postcopy']);
  s = stepSource(s, EVENTS.failed);
  assert.is(s.kind, 'postcopy-paused');
});

test('a refusal after SWITCHOVER is a definite failure (resume the source), a lost link is in doubt', () => {
  const refusal = new MemshiftError(ErrorCode.PEER_ERROR, 'destination reported MS_ERR_DIGEST_MISMATCH', { peerCode: 'MS_ERR_DIGEST_MISMATCH' });
  const waiting: SourceState = { kind: 'awaiting-resume', iteration: 4 };
  assert.is(stepSource(waiting, { type: 'refused', error: refusal }).kind, 'failed');
  assert.is(stepSource(waiting, { type: 'failed', error: ERR }).kind, 'in-doubt');
  assert.is(stepSource({ kind: 'postcopy', iteration: 2 }, { type: 'refused', error: refusal }).kind, 'postcopy-paused', 'post-copy never resumes the source');
  assert.is(stepSource({ kind: 'precopy', iteration: 2 }, { type: 'refused', error: refusal }).kind, 'failed');
  expectCode(() => stepSource({ kind: 'completed' }, { type: 'refused', error: refusal }), UNEXPECTED, 'nothing follows completion');
});

test.run();
