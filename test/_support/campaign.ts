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
// One trial in four moves two local disks block by block beside the RAM (their images on each side
// must equal the replay's, as the memories do). Every other trial's guest has two disks on shared
// storage (a directory both processes use): no block
// moves, the lease beside each image changes hands inside the switchover, and two of three of these
// trials also kill one process (SIGKILL) at a named step of the switchover (MEMSHIFT_CRASH_AT):
// before or after the source hands the lease over, after SWITCHOVER is out, before or after the
// destination accepts the lease, right after it resumed. Their verdict adds: a killed source leaves a
// guest the destination runs only if SWITCHOVER was out; a source never resumes once a destination may
// have run; and the images hold exactly the replay's disks at the steps of whoever ran last.
//
// Post-copy and hybrid trials run with recovery on (a few seconds' window on both sides: hybrid's
// pre-copy passes resume, post-copy goes on), and their cut keeps the proxy's address answering: a lost
// link is recovered, and judged like any other end.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../src/index.js';
import { diffAgainstReplay, diffDisksAgainstReplay, readReport, removeDir, type GuestCase } from './migration.js';
import { CRASH_POINTS, type CrashPointName } from '../../src/migration/crash-point.js';
import { mkdirSync } from 'node:fs';
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
  /** The guest's disks are on shared storage (guest.disks). */
  shared: boolean;
  /** The guest's disks are local and move block by block (guest.disks). */
  localDisks: boolean;
  /** Where one process is killed (shared-storage trials), or null. */
  crash: CrashPointName | null;
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
  const guest: GuestCase = { seed: 1 + rng.below(1_000_000), memory: '8MiB', fill: 'mixed', workload: 'hotset', hotSize: '1MiB' };
  // Drawn from a stream of their own, so that the trials planned before disks existed are unchanged.
  const more = seeded((seed * 1_000_033 + index * 7927 + 0x5eed) >>> 0);
  const shared = index % 2 === 1;
  const localDisks = index % 4 === 0;
  const crash = shared && more.below(3) !== 0 ? CRASH_POINTS[more.below(CRASH_POINTS.length)] : null;
  return { index, mode, fault, guest: shared || localDisks ? { ...guest, disks: ['1MiB', '512KiB'] } : guest, shared, localDisks, crash };
}

export function describeTrial(t: Trial): string {
  const f = t.fault;
  const where = f.kind === 'none' ? 'no fault' : `${f.kind} at byte ${f.at}${f.kind === 'freeze' ? ` for ${f.ms} ms` : ''}`;
  const storage = t.shared ? `, shared storage${t.crash === null ? '' : `, killed at ${t.crash}`}` : t.localDisks ? ', local disks' : '';
  return `trial ${t.index}: ${t.mode}, guest seed ${t.guest.seed}, ${where}${storage}`;
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
    const disks = file('disks');
    if (t.shared) mkdirSync(disks);
    if (t.localDisks) for (const side of ['source-disks', 'dest-disks']) mkdirSync(file(side));
    const storage = t.shared ? ['--storage', 'shared', '--disk-dir', disks] : [];
    const destDisks = t.localDisks ? ['--disk-dir', file('dest-disks')] : [];
    const sourceDisks = t.localDisks ? ['--disk-dir', file('source-disks')] : [];
    const crashIn = (side: string): NodeJS.ProcessEnv => (t.crash?.startsWith(side) === true ? { MEMSHIFT_CRASH_AT: t.crash } : {});
    const dest = await startDestination([
      '--report', file('dest.json'), '--dump-memory', file('dest.img'), '--run-steps', '2000',
      '--idle-timeout', '1500', '--confirm-timeout', '1500', ...recovery, ...storage, ...destDisks,
    ], {}, crashIn('destination'));
    proxy = await Proxy.start(dest.port);
    const f = t.fault;
    if (f.kind === 'flip') proxy.flipAt(f.at);
    const source = memshift([
      'source', '--connect', `127.0.0.1:${proxy.port}`, '--quiet', '--mode', t.mode,
      '--memory', t.guest.memory!, '--seed', String(t.guest.seed), '--fill', t.guest.fill!, '--workload', t.guest.workload!, '--hot-size', t.guest.hotSize!,
      '--dirty-rate', '20000', '--warmup', '50', '--downtime-limit', '20', '--max-iterations', '6',
      '--stall-timeout', '1000', '--resolve-timeout', '1500', ...recovery, ...storage, ...sourceDisks, ...(t.guest.disks ?? []).flatMap((d) => ['--disk', d]),
      '--report', file('source.json'), '--dump-memory', file('source.img'),
    ], crashIn('source'));
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
    const killed = (r: Running): boolean => r.proc.signalCode === 'SIGKILL';
    if (s === 'running') return verdict(t, 'hang', 'running', `the source did not end within ${TRIAL_DEADLINE_MS} ms`, t0);
    // A destination waiting for a link that will not come back (a lingering switchover) ends by its own
    // timeouts: give it those.
    const d = await endOrHold(dest, 6000);
    const sr = readReport(file('source.json'));
    const dr = d === 'running' ? null : readReport(file('dest.json'));
    const sourceOutcome = sr?.outcome ?? 'no report';
    const destOutcome = d === 'running' ? 'still waiting' : (dr?.outcome ?? 'no report');
    const ends = { destWaiting: d === 'running', sourceKilled: killed(source), destKilled: d !== 'running' && killed(dest) };
    return verdict(t, sr === null && ends.sourceKilled ? 'killed' : sourceOutcome, dr === null && ends.destKilled ? 'killed' : destOutcome, judge(t, sr, dr, ends, file), t0);
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

/** How each process ended, beyond its report. */
interface Ends {
  destWaiting: boolean;
  sourceKilled: boolean;
  destKilled: boolean;
}

/** The invariants of the header, over the two reports, the two memory images and the shared disks. */
function judge(t: Trial, sr: Report | null, dr: Report | null, ends: Ends, file: (n: string) => string): string | null {
  for (const [side, r] of [['source', sr], ['destination', dr]] as const) {
    const errors = r === null ? null : reportSchemaErrors(r);
    if (errors !== null) return `the ${side} report does not match the schema: ${errors}`;
  }
  const destRan = dr !== null && (dr.outcome === 'completed' || dr.outcome === 'paused');
  // Killed right after its resume, the destination ran the guest for a moment.
  const destMayHaveRun = destRan || (ends.destKilled && t.crash === 'destination-after-resume');
  const destExact = (): string | null => {
    if (dr === null) return ends.destKilled ? null : 'the destination wrote no report';
    if (dr.outcome !== 'completed') return null;
    const diff = diffAgainstReplay(file('dest.img'), t.guest, dr.guestSteps);
    return diff === null ? null : `destination memory is not its replay's: ${diff}`;
  };
  /**
   * The disks hold the replay's at `steps`: shared ones at the last runner's count when it stopped;
   * local ones on the side named (`dest` only when it completed: a failed destination's are partial).
   */
  const disksAt = (steps: number, side: 'source' | 'dest' = 'source'): string | null => {
    if (!t.shared && !t.localDisks) return null;
    const where = t.shared ? 'disks' : `${side}-disks`;
    const diff = diffDisksAgainstReplay(file(where), t.guest, steps);
    return diff === null ? null : `${t.shared ? 'shared' : side} disks are not the replay's at step ${steps}: ${diff}`;
  };
  const destDisksAt = (steps: number): string | null => disksAt(steps, 'dest');
  if (sr === null) {
    if (!ends.sourceKilled) return 'the source wrote no report';
    // Killed at a crash point with its guest paused: it runs nowhere else; the destination may run it
    // only if SWITCHOVER was out.
    if (destMayHaveRun && t.crash !== 'source-after-switchover-sent') return `the destination ran the guest though the source died at ${t.crash}, before SWITCHOVER`;
    return dr?.outcome === 'completed' ? destExact() ?? (t.shared ? disksAt(dr.guestSteps) : destDisksAt(dr.guestSteps)) : null;
  }
  const sourceIntact = (): string | null => {
    const diff = diffAgainstReplay(file('source.img'), t.guest, sr.guestSteps);
    return diff === null ? null : `source memory is not its replay's: ${diff}`;
  };
  switch (sr.outcome) {
    case 'completed':
      if (dr === null || dr.outcome !== 'completed') return `source completed, destination ${dr?.outcome ?? (ends.destWaiting ? 'still waiting' : 'without report')}`;
      if (dr.digest !== sr.digest) return `digests differ: source ${sr.digest}, destination ${dr.digest}`;
      return sourceIntact() ?? destExact() ?? (t.shared ? disksAt(dr.guestSteps) : disksAt(sr.guestSteps) ?? destDisksAt(dr.guestSteps));
    case 'failed':
    case 'aborted':
    case 'cancelled':
      // The source runs the guest again: the destination must never have.
      if (destMayHaveRun) return `doubly running: the source ${sr.outcome} and resumed, the destination ${dr?.outcome ?? 'was killed after its resume'}`;
      return sourceIntact() ?? disksAt(sr.guestSteps);
    case 'in-doubt':
    case 'paused':
      // The source guest stays paused with the pause point's memory; a destination that ran it holds it exactly.
      if (destMayHaveRun) {
        const destDisks = dr?.outcome === 'completed' ? (t.shared ? disksAt(dr.guestSteps) : destDisksAt(dr.guestSteps)) : null;
        return sourceIntact() ?? destExact() ?? (t.localDisks ? disksAt(sr.guestSteps) : null) ?? destDisks;
      }
      return sourceIntact() ?? disksAt(sr.guestSteps);
    default:
      return `unknown source outcome ${String(sr.outcome)}`;
  }
}
