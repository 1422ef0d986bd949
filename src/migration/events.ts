// What a migration tells a program as it happens (the library's `onEvent`; the CLI's `--events`
// writes each as one NDJSON line, next to the throttled progress events). Progress samples say where
// a migration is; these say what happened, once each:
//
//   state       the side's state machine entered a state (setup, precopy, stop-and-copy, …)
//   pass        source: a pass ended, with its figures (the report's iteration record)
//   switchover  source: the convergence decision that ended pre-copy, with its rule and numbers
//   recovered   post-copy runs again over a new link after losing one (the report's recovery record)
//   outcome     the run ended: outcome, error, session, totals (the report has the rest)

import type { MemshiftError } from '../errors.js';
import type { IterationRecord } from './metrics.js';
import type { Recovery, Report } from './report.js';

export type MigrationEvent =
  | { type: 'state'; role: Report['role']; state: string; elapsedMs: number }
  | { type: 'pass'; role: 'source'; pass: IterationRecord }
  | { type: 'switchover'; role: 'source'; decision: NonNullable<Report['switchoverReason']> }
  | { type: 'recovered'; role: Report['role']; recovery: Recovery }
  | {
    type: 'outcome'; role: Report['role']; outcome: Report['outcome']; error: { code: string; message: string } | null;
    sessionId: string | null; totalTimeMs: number; downtimeMs: number | null; bytesTransferred: number;
  };

export type EventSink = (e: MigrationEvent) => void;

/** Calls `sink` and keeps a throwing sink from breaking the migration that reports to it. */
export function eventSink(sink: EventSink | undefined): EventSink {
  if (sink === undefined) return () => undefined;
  return (e) => {
    try {
      sink(e);
    } catch {
      // A consumer's failure is its own; the migration goes on.
    }
  };
}

/** The outcome event of a finished run. */
export function outcomeEvent(report: Report, error: MemshiftError | null): MigrationEvent {
  return {
    type: 'outcome', role: report.role, outcome: report.outcome, error: error === null ? null : { code: error.code, message: error.message },
    sessionId: report.sessionId, totalTimeMs: report.totalTimeMs, downtimeMs: report.downtimeMs, bytesTransferred: report.bytesTransferred,
  };
}
