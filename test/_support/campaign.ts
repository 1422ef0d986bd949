// A fault campaign: many short migrations between two CLI processes, each with one fault injected at a
// random point of the source → destination stream (a cut link, a frozen destination, a flipped bit),
// across every mode. Each trial ends with the safety verdict, whatever the outcome:
//
//   source completed  → the destination completed, digests agree, both images equal their replays
//   source failed     → the destination never ran the guest; the source image equals its replay
//   source in doubt   → the source guest stayed paused at the pause point (image = replay); if the
//                       destination ran it, its image equals its replay
//   source paused     → (post-copy) the source kept the pause point's memory; a destination that
//                       finished anyway holds the replay's memory
//
// "Lost" is a guest nobody holds intact; "doubly running" is both sides running it. Both are verdict
// failures. Trials are planned from a seed (mode, fault, byte offset, freeze length), so a failing one
// is rerun by its number; the timing of each run still varies, as on a real host.
//
//   source ──► proxy (fault at byte N) ──► destination        (post-copy's urgent channel goes direct)
//
// Post-copy and hybrid trials run with recovery on (a few seconds' window on both sides: hybrid's
// pre-copy passes resume, post-copy goes on), and their cut keeps the proxy's address answering: a lost
// link is recovered, and judged like any other end.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../src/index.js';
import { diffAgainstReplay, readReport, removeDir, type GuestCase } from './migration.js';
import { killAll, memshift, startDestination, type Running } from './processes.js';
import { Proxy } from './proxy.js';
import { reportSchemaErrors } from './report-schema.js';
import { seeded } from './seeded.js';

export const CAMPAIGN_MODES = ['live', 'cold', 'warm', 'postcopy', 'hybrid'] as const;
export type CampaignMode = (typeof CAMPAIGN_MODES)[number];

export type Fault =
  | { kind: 'none' }
  /** Both directions reset once `at` bytes went source → destination. */
  | { kind: 'cut'; at: number }
  /** The destination process is stopped (SIGSTOP) for `ms` once `at` bytes went through. */
  | { kind: 'freeze'; at: number; ms: number }
  /** One bit of byte `at` of the source → destination stream is flipped. */
  | { kind: 'flip'; at: number };

export interface Trial {
  index: number;
  mode: CampaignMode;
  fault: Fault;
  guest: GuestCase;
}

export interface Verdict {
  trial: Trial;
  /** The source's outcome (its report), or how it exited when it wrote none. */
  source: string;
  destination: string;
  /** Null when every invariant held, else what broke. */
  violation: string | null;
  ms: number;
}

/** The guest every trial moves: small, so that a trial takes about a second. */
const GUEST_BYTES = 8 * 2 ** 20;
/** Fault offsets are drawn below this: past the end of most runs' bytes, so some trials see no fault. */
const MAX_OFFSET = 12 * 2 ** 20;
/** No trial may take longer than this; one that does is a hang, and a violation. */
const TRIAL_DEADLINE_MS = 40_000;

/** How long a post-copy trial's sides try to recover a lost link before they stay paused. */
const RECOVER_WINDOW_MS = 4000;

/** Whether a mode's trials run with post-copy recovery on. */
function recovers(mode: CampaignMode): boolean {
  return mode === 'postcopy' || mode === 'hybrid';
}

/** Trial `index` of the campaign seeded `seed`: the same plan every time. */
export function planTrial(seed: number, index: number): Trial {
  const rng = seeded((seed * 1_000_003 + index * 7919) >>> 0);
  const mode = CAMPAIGN_MODES[index % CAMPAIGN_MODES.length];
  const at = rng.below(MAX_OFFSET);
  const pick = rng.below(10);
  const fault: Fault = pick === 0 ? { kind: 'none' }
    : pick <= 4 ? { kind: 'cut', at }
    : pick <= 6 ? { kind: 'freeze', at, ms: 200 + rng.below(2300) }
    : { kind: 'flip', at };
  return { index, mode, fault, guest: { seed: 1 + rng.below(1_000_000), memory: '8MiB', fill: 'mixed', workload: 'hotset', hotSize: '1MiB' } };
}

export function describeTrial(t: Trial): string {
  const f = t.fault;
  const where = f.kind === 'none' ? 'no fault' : `${f.kind} at byte ${f.at}${f.kind === 'freeze' ? ` for ${f.ms} ms` : ''}`;
  return `trial ${t.index}: ${t.mode}, guest seed ${t.guest.seed}, ${where}`;
}

/** Runs one trial to its end (every process it started is gone when this resolves) and judges it. */
export async function runTrial(t: Trial): Promise<Verdict> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'memshift-campaign-'));
  const file = (name: string): string => join(dir, name);
  let proxy: (Proxy & { port: number }) | null = null;
  try {
    // Post-copy recovers: its trials give both sides a window, and a cut leaves the address answering
    // (the link breaks, the destination host stays), so the source can come back.
    const recovery = recovers(t.mode) ? ['--recover-timeout', String(RECOVER_WINDOW_MS)] : [];
    const dest = await startDestination([
      '--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', '2000',
      '--idle-timeout', '1500', '--confirm-timeout', '1500', ...recovery,
    ]);
    proxy = await Proxy.start(dest.port);
    const f = t.fault;
    if (f.kind === 'flip') proxy.flipAt(f.at);
    const source = memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, '--quiet', '--mode', t.mode,
      '--memory', t.guest.memory!, '--seed', String(t.guest.seed), '--fill', t.guest.fill!, '--workload', t.guest.workload!, '--hot-size', t.guest.hotSize!,
      '--dirty-rate', '20000', '--warmup', '50', '--downtime-limit', '20', '--max-iterations', '6',
      '--stall-timeout', '1000', '--resolve-timeout', '1500', ...recovery,
      '--report', file('source.json'), '--dump-memory', file('source.img'),
    ]);
    let sourceDone = false;
    void source.done.then(() => { sourceDone = true; });
    if (f.kind === 'cut' || f.kind === 'freeze') {
      const reached = await Promise.race([proxy.holdAfter(f.at).then(() => true), source.done.then(() => false)]);
      if (reached && !sourceDone) {
        if (f.kind === 'cut' && recovers(t.mode)) {
          proxy.resetConnections();
          proxy.release();
        } else if (f.kind === 'cut') proxy.cut();
        else {
          dest.proc.kill('SIGSTOP');
          proxy.release();
          await new Promise((r) => setTimeout(r, f.ms));
          dest.proc.kill('SIGCONT');
        }
      } else proxy.release();
    }
    const s = await endOrHold(source, TRIAL_DEADLINE_MS);
    if (s === 'running') return verdict(t, 'hang', 'running', `the source did not end within ${TRIAL_DEADLINE_MS} ms`, t0);
    // A destination waiting for a link that will not come back (a lingering switchover) ends by its own
    // timeouts: give it those.
    const d = await endOrHold(dest, 6000);
    const sr = readReport(file('source.json'));
    const dr = d === 'running' ? null : readReport(file('dest.json'));
    const sourceOutcome = sr?.outcome ?? 'no report';
    const destOutcome = d === 'running' ? 'still waiting' : (dr?.outcome ?? 'no report');
    return verdict(t, sourceOutcome, destOutcome, judge(t, sr, dr, d === 'running', file), t0);
  } finally {
    proxy?.cut();
    await killAll();
    removeDir(dir);
  }
}

/**
 * Waits until `r` exits, or holds a paused post-copy (it wrote its report and image and waits for
 * recovery until stopped: it is stopped here, as a supervisor would), or `ms` pass.
 */
async function endOrHold(r: Running, ms: number): Promise<'ended' | 'running'> {
  const until = Date.now() + ms;
  let exited = false;
  void r.done.then(() => { exited = true; });
  while (!exited && Date.now() < until) {
    if (r.stderr().includes('until this process is stopped')) {
      r.proc.kill('SIGTERM');
      await r.done;
      return 'ended';
    }
    await new Promise((res) => setTimeout(res, 20));
  }
  return exited ? 'ended' : 'running';
}

function verdict(trial: Trial, source: string, destination: string, violation: string | null, t0: number): Verdict {
  return { trial, source, destination, violation, ms: performance.now() - t0 };
}

/** The invariants of the header, over the two reports and the two memory images. */
function judge(t: Trial, sr: Report | null, dr: Report | null, destWaiting: boolean, file: (n: string) => string): string | null {
  if (sr === null) return 'the source wrote no report';
  for (const [side, r] of [['source', sr], ['destination', dr]] as const) {
    const errors = r === null ? null : reportSchemaErrors(r);
    if (errors !== null) return `the ${side} report does not match the schema: ${errors}`;
  }
  const sourceIntact = (): string | null => {
    const diff = diffAgainstReplay(file('source.img'), t.guest, sr.guestSteps);
    return diff === null ? null : `source memory is not its replay's: ${diff}`;
  };
  const destRan = dr !== null && (dr.outcome === 'completed' || dr.outcome === 'paused');
  const destExact = (): string | null => {
    if (dr === null) return 'the destination wrote no report';
    if (dr.outcome !== 'completed') return null;
    const diff = diffAgainstReplay(file('dest.img'), t.guest, dr.guestSteps);
    return diff === null ? null : `destination memory is not its replay's: ${diff}`;
  };
  switch (sr.outcome) {
    case 'completed':
      if (dr === null || dr.outcome !== 'completed') return `source completed, destination ${dr?.outcome ?? (destWaiting ? 'still waiting' : 'without report')}`;
      if (dr.digest !== sr.digest) return `digests differ: source ${sr.digest}, destination ${dr.digest}`;
      return sourceIntact() ?? destExact();
    case 'failed':
    case 'aborted':
    case 'cancelled':
      // The source runs the guest again: the destination must never have.
      if (destRan) return `doubly running: the source ${sr.outcome} and resumed, the destination ${dr!.outcome}`;
      return sourceIntact();
    case 'in-doubt':
    case 'paused':
      // The source guest stays paused with the pause point's memory; a destination that ran it holds it exactly.
      return sourceIntact() ?? (destRan ? destExact() : null);
    default:
      return `unknown source outcome ${String(sr.outcome)}`;
  }
}
