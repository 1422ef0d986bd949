// Example: following a migration (onProgress samples, onEvent events) and cancelling it mid-pass with an
// AbortSignal. A cancelled migration rejects with a MemshiftError whose code is MS_ERR_CANCELLED and whose
// details.report is the report (outcome 'cancelled'); the source guest was never paused by a pre-copy pass,
// so it keeps running, and memshift never writes source memory: it equals a replay of the guest's own
// writes. The destination's receive() resolves with a failed report (MS_ERR_PEER_ERROR), and its guest
// never ran. A pass under way starts no batch after abort(); those already encoded still go out, here
// through an 8 MiB/s limit (about a second), not the rest of guest memory.
//
//   node dist/test/examples/cancel-and-progress.js
//
// main() migrates a 16 MiB ExampleGuest (custom-source.ts) over a link capped at 8 MiB/s and aborts at
// the first progress sample of the first pass.

import { pathToFileURL } from 'node:url';
import {
  ErrorCode, MemshiftError, listen, migrate, receive,
  type MigrationEvent, type Progress, type Report,
} from '../../src/index.js';
import { ExampleGuest, type ExampleGuestOptions } from './custom-source.js';

export interface CancelResult {
  /** The code migrate() rejected with (undefined if it resolved). */
  code: string | undefined;
  /** The source's report, from the error's details. */
  report: Report | null;
  destinationReport: Report;
  /** Whether the destination's guest runs (it must not: the migration never reached the switchover). */
  destinationRunning: boolean;
  /** The progress sample on which abort() was called, and ms from abort() to the rejection. */
  abortedAt: Progress | null;
  settleMs: number;
  progress: Progress[];
  events: MigrationEvent[];
  /** The source guest right after the rejection: running, and ticks it ran while the migration was cancelled. */
  sourceRunning: boolean;
  ticksAfterCancel: number;
  /** Source RAM (paused after the test) equals a replay of its own writes for as many ticks. */
  sourceMatchesReplay: boolean;
  throttles: number[];
}

const GUEST: ExampleGuestOptions = { pages: 4096, seed: 11, writesPerTick: 16 };

export async function main(options: { log?: (line: string) => void } = {}): Promise<CancelResult> {
  const log = options.log ?? ((): void => undefined);
  const source = ExampleGuest.create(GUEST);
  await source.resume();
  const { server, address } = await listen('127.0.0.1:0');
  let target: ExampleGuest | null = null;
  const destination = receive({ listen: server, security: 'insecure', createTarget: (r) => (target = ExampleGuest.receiving(r)) });
  const cancel = new AbortController();
  const progress: Progress[] = [];
  const events: MigrationEvent[] = [];
  let abortedAt: Progress | null = null;
  let abortCalledAt = 0;
  let code: string | undefined;
  let report: Report | null = null;
  try {
    await migrate(source, address, {
      security: 'insecure',
      mode: 'live',
      maxBandwidth: 8 * 2 ** 20,
      signal: cancel.signal,
      // Throttled samples (at most every 100 ms, and at each phase change): where the migration is.
      onProgress: (p) => {
        progress.push(p);
        log(`progress ${p.phase} pass ${p.iteration}: ${(p.bytesTransferred / 2 ** 20).toFixed(1)} MiB sent, ${p.remainingPages} pages to go`);
        if (p.phase === 'precopy' && p.bytesTransferred > 0 && !cancel.signal.aborted) {
          abortedAt = p;
          abortCalledAt = performance.now();
          cancel.abort();
        }
      },
      // Events, once each: state changes, pass ends, the switchover decision, the outcome.
      onEvent: (e) => {
        events.push(e);
        log(`event ${e.type}${e.type === 'state' ? ` ${e.state}` : e.type === 'outcome' ? ` ${e.outcome} ${e.error?.code ?? ''}` : ''}`);
      },
    });
  } catch (err) {
    // Match on the code, not the message. MemshiftError carries the report; isMemshiftError(err) also
    // matches an error that crossed a thread or came from another copy of the package.
    code = err instanceof MemshiftError ? err.code : undefined;
    report = err instanceof MemshiftError ? (err.details.report ?? null) : null;
    if (code !== ErrorCode.CANCELLED) throw err;
  }
  const settleMs = performance.now() - abortCalledAt;
  const sourceRunning = source.running;
  const ticks = source.steps;
  await new Promise((r) => setTimeout(r, 20));
  const ticksAfterCancel = source.steps - ticks;
  const { report: destinationReport } = await destination;
  server.close();
  const t = target as ExampleGuest | null;
  const destinationRunning = t?.running ?? false;
  await t?.close();
  // Pause to read a stable memory, compare with the oracle, then close: the guest was the integrator's all along.
  await source.pause();
  const sourceMatchesReplay = source.sha256() === ExampleGuest.replay(GUEST, source.steps).sha256();
  await source.close();
  return {
    code, report, destinationReport, destinationRunning, abortedAt, settleMs, progress, events,
    sourceRunning, ticksAfterCancel, sourceMatchesReplay, throttles: source.throttles,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await main({ log: console.log });
  console.log(`migrate() rejected with ${r.code} ${r.settleMs.toFixed(0)} ms after abort() (pass ${r.abortedAt?.iteration}, ${r.abortedAt?.remainingPages} pages to go); report outcome ${r.report?.outcome}`);
  console.log(`destination: ${r.destinationReport.outcome} (${r.destinationReport.error?.message}); its guest runs: ${r.destinationRunning}`);
  console.log(`source guest running: ${r.sourceRunning} (${r.ticksAfterCancel} ticks in the next 20 ms); memory equals its replay: ${r.sourceMatchesReplay}`);
}
