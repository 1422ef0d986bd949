// Replication (`memshift replicate` → `memshift standby`, two processes on 127.0.0.1):
//   - epochs per second sustained (over the second half of the epochs; overall too) on a 1 GiB guest whose writes land in a 64 MiB hot set, at 200k
//     pages/s (with and without deltas) and flat out, 25 ms epochs; the guest's step rate while replicated against its rate
//     alone, measured in the same run just before (replicate --warmup: guestStepRateBefore);
//   - failover: a 64 MiB guest, 200 ms timeouts; from the primary's death (SIGKILL: its link closes;
//     SIGSTOP: it goes silent) to the guest running on the standby, both clocks of this host.
// Medians of `runs`, the shapes interleaved within each run.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, printTable, type Row } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Proc {
  proc: ChildProcess;
  done: Promise<number | null>;
  out(): string;
  err(): string;
}

function start(args: string[]): Proc {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<number | null>((resolve) => proc.on('close', (c) => resolve(c)));
  return { proc, done, out: () => out, err: () => err };
}

async function until(p: Proc, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  for (let i = 0; i < 6000; i++) {
    const m = pattern.exec(p.out() + p.err());
    if (m !== null) return m;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}: ${p.err()}`);
}

async function standbyOn(dir: string, extra: string[] = []): Promise<{ p: Proc; port: number }> {
  const p = start(['standby', '--listen', '127.0.0.1:0', '--insecure', '--report', join(dir, 'standby.json'), ...extra]);
  const m = await until(p, /listening on 127\.0\.0\.1:(\d+)/, 'the standby');
  return { p, port: Number(m[1]) };
}

interface EpochFigures { epochsPerSecond: number; sustained: number; pausedP50: number; pausedP99: number; commitP50: number; stepRatio: number; mbPerEpoch: number }

/** A steady-state shape: its row name, the guest's dirty rate, and extra replicate flags. */
interface Shape {
  name: string;
  rate: string;
  extra: string[];
}

const SHAPES: Shape[] = [
  { name: '200k pages/s, 25 ms epochs', rate: '200000', extra: [] },
  { name: '200k pages/s, 25 ms epochs, no deltas (--cache-size 0: the baseline)', rate: '200000', extra: ['--cache-size', '0'] },
  { name: 'flat out, 25 ms epochs', rate: 'max', extra: [] },
];

async function steadyRun(dir: string, shape: Shape): Promise<EpochFigures> {
  const { p: standby, port } = await standbyOn(dir, ['--quiet']);
  const report = join(dir, 'primary.json');
  const primary = start(['replicate', '--connect', `127.0.0.1:${port}`, '--insecure', '--memory', '1GiB', '--hot-size', '64MiB', '--hot-share', '1000',
    '--seed', '11', '--dirty-rate', shape.rate, '--epoch-ms', '25', '--warmup', '1000', '--duration', '5', '--quiet', '--report', report, ...shape.extra]);
  const [code] = await Promise.all([primary.done, standby.done]);
  if (code !== 0) throw new Error(`replicate exited ${code}: ${primary.err()}`);
  const r = JSON.parse(readFileSync(report, 'utf8')) as {
    epochsPerSecond: number; sustainedEpochsPerSecond: number; pausedMs: { p50: number; p99: number }; commitMs: { p50: number }; guestStepRate: number; guestStepRateBefore: number;
    bytesPerEpoch: { p50: number };
  };
  return {
    epochsPerSecond: r.epochsPerSecond, sustained: r.sustainedEpochsPerSecond, pausedP50: r.pausedMs.p50, pausedP99: r.pausedMs.p99, commitP50: r.commitMs.p50,
    stepRatio: r.guestStepRate / r.guestStepRateBefore, mbPerEpoch: r.bytesPerEpoch.p50 / 1e6,
  };
}

/** Milliseconds from the primary's death (`signal`) to the guest running on the standby. */
async function failoverRun(dir: string, signal: 'SIGKILL' | 'SIGSTOP'): Promise<number> {
  const { p: standby, port } = await standbyOn(dir, ['--failover-timeout', '200', '--run-steps', '1000']);
  const primary = start(['replicate', '--connect', `127.0.0.1:${port}`, '--insecure', '--memory', '64MiB', '--seed', '12', '--dirty-rate', '200000',
    '--epoch-ms', '25', '--warmup', '0', '--standby-timeout', '200']);
  await until(standby, /base copy/, 'the base copy');
  await new Promise((r) => setTimeout(r, 500));
  const diedAt = performance.timeOrigin + performance.now();
  primary.proc.kill(signal);
  const code = await standby.done;
  if (signal === 'SIGSTOP') primary.proc.kill('SIGKILL');
  await primary.done;
  if (code !== 0) throw new Error(`standby exited ${code}: ${standby.err()}`);
  const r = JSON.parse(readFileSync(join(dir, 'standby.json'), 'utf8')) as { resumedAtEpochMs: number };
  return r.resumedAtEpochMs - diedAt;
}

export async function benchReplication(runs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-bench-replication-'));
  const steady: EpochFigures[][] = SHAPES.map(() => []);
  const failover: Record<string, number[]> = { SIGKILL: [], SIGSTOP: [] };
  try {
    for (let r = 0; r < runs; r++) {
      for (const [i, shape] of SHAPES.entries()) steady[i].push(await steadyRun(dir, shape));
      for (const s of ['SIGKILL', 'SIGSTOP'] as const) failover[s].push(await failoverRun(dir, s));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: Row[] = steady.map((f, i) => ({
    name: `1 GiB, 64 MiB hot set, ${SHAPES[i].name}`,
    'epochs/s sustained': median(f.map((x) => x.sustained)),
    'epochs/s overall': median(f.map((x) => x.epochsPerSecond)),
    'paused p50 ms': median(f.map((x) => x.pausedP50)),
    'paused p99 ms': median(f.map((x) => x.pausedP99)),
    'commit p50 ms': median(f.map((x) => x.commitP50)),
    'payload MB per epoch (p50)': median(f.map((x) => x.mbPerEpoch)),
    '× step rate alone': median(f.map((x) => x.stepRatio)),
  }));
  printTable(`Replication epochs (median of ${runs}; step rate against the same guest alone just before, in the same run)`, rows);
  printTable(`Failover, 64 MiB guest, 200 ms timeouts (median of ${runs}): primary death → guest running on the standby`, [
    { name: 'primary SIGKILLed (its link closes)', ms: median(failover.SIGKILL) },
    { name: 'primary SIGSTOPped (silent: the timeout decides)', ms: median(failover.SIGSTOP) },
  ]);
}
