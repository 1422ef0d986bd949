// `--events`: a live migration's events as NDJSON from both processes, checked against their reports:
// every line is one JSON object with a type and a wall-clock time; the source says each pass once
// with the report's figures, the switchover decision once, and ends with its outcome; the destination
// names the states it went through and ends with the same session's outcome. `--events -` is stdout.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MigrationEvent, Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { killAll, memshift, startDestination } from '../_support/processes.js';

type Line = MigrationEvent & { at: string } | { type: 'progress'; at: string; phase: string; remainingPages: number };

const dir = mkdtempSync(join(tmpdir(), 'memshift-events-'));
test.after.each(killAll);
test.after(() => rmSync(dir, { recursive: true, force: true }));

const file = (n: string): string => join(dir, n);
const readLines = (text: string): Line[] => text.trim().split('\n').map((l) => JSON.parse(l) as Line);
const ofType = <T extends Line['type']>(lines: Line[], type: T): Extract<Line, { type: T }>[] => lines.filter((l): l is Extract<Line, { type: T }> => l.type === type);

test('a live migration\'s events agree with both reports, pass by pass, and end with the outcome', deadline(60_000, async () => {
  const dest = await startDestination(['--report', file('d.json'), '--events', file('d.ndjson')]);
  const s = await memshift([
    'source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '32MiB', '--seed', '8', '--workload', 'hotset', '--dirty-rate', '50000',
    '--downtime-limit', '5', '--quiet', '--report', file('s.json'), '--events', file('s.ndjson'),
  ]).done;
  assert.is(s.code, 0, s.stderr);
  assert.is((await dest.done).code, 0);
  const sr = JSON.parse(readFileSync(file('s.json'), 'utf8')) as Report;
  const dr = JSON.parse(readFileSync(file('d.json'), 'utf8')) as Report;
  const src = readLines(readFileSync(file('s.ndjson'), 'utf8'));
  const dst = readLines(readFileSync(file('d.ndjson'), 'utf8'));
  for (const l of [...src, ...dst]) assert.ok(!Number.isNaN(Date.parse(l.at)), `a wall-clock time on ${l.type}`);
  // Passes: one event each, the report's own records.
  assert.equal(ofType(src, 'pass').map((p) => p.pass), sr.iterations);
  assert.equal(ofType(src, 'switchover').map((e) => e.decision), [sr.switchoverReason]);
  const sourceStates = ofType(src, 'state').map((e) => e.state);
  assert.is(sourceStates[0], 'precopy', sourceStates.join(' → '));
  assert.ok(sourceStates.includes('stop-and-copy'), sourceStates.join(' → '));
  assert.is(sourceStates.at(-1), 'completed', sourceStates.join(' → '));
  // Progress samples name the same states (then the outcome), and the last one has nothing left to send.
  const samples = ofType(src, 'progress');
  assert.ok(samples.length > 0, 'progress samples are there too');
  for (const p of samples) assert.ok(sourceStates.includes(p.phase) || p.phase === 'completed', `progress phase ${p.phase} is a state`);
  assert.equal([samples.at(-1)!.phase, samples.at(-1)!.remainingPages], ['completed', 0]);
  const outcome = src.at(-1)!;
  assert.is(outcome.type, 'outcome');
  assert.equal(outcome.type === 'outcome' ? [outcome.outcome, outcome.sessionId, outcome.bytesTransferred] : [], ['completed', sr.sessionId, sr.bytesTransferred]);
  // The destination: its states in order, ending with the same session completed.
  const states = ofType(dst, 'state').map((e) => e.state);
  assert.equal(states.slice(0, 2), ['setup', 'receiving']);
  assert.ok(states.includes('running') && states.at(-1) === 'completed', states.join(' → '));
  const end = dst.at(-1)!;
  assert.equal(end.type === 'outcome' ? [end.outcome, end.sessionId] : [], ['completed', dr.sessionId]);
  assert.is(dr.sessionId, sr.sessionId);
  // The destination's own account of each pass: the pages the source sent in it, all applied.
  assert.equal(dr.receivedPasses.map((p) => [p.iteration, p.pages]), sr.iterations.map((it) => [it.iteration, it.pages]));
}));

test('--events - writes the NDJSON to stdout', deadline(60_000, async () => {
  const dest = await startDestination([]);
  const s = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '8MiB', '--seed', '9', '--mode', 'cold', '--quiet', '--events', '-']).done;
  assert.is(s.code, 0, s.stderr);
  const lines = readLines(s.stdout);
  assert.ok(lines.length >= 3, s.stdout);
  assert.is(lines.at(-1)!.type, 'outcome');
  assert.equal(ofType(lines, 'switchover').map((e) => [e.decision.rule, e.decision.reason]), [['mode', 'cold migration: guest paused for a single pass']]);
}));

test.run();
