// Two builds of memshift side by side on one shape, interleaved run by run (A B A B …), medians: how a
// change is measured on a host whose speed swings from one minute to the next.
//
//   node dist/bench/ab.js --a DIR --b DIR [--shape hotset|idle|hybrid|sweep|postcopy] [--runs N]
//                         [--a-args "…"] [--b-args "…"] [--dest-args "…"]
//
// DIR is a checkout built with `npm run build` (its dist/src/cli/main.js runs); the same DIR twice with
// different --a-args / --b-args compares flags of one build (for example `--xbzrle on` and `off`). Each
// run is a plaintext migration on 127.0.0.1 to a destination started with --prealloc and the guest's
// --memory, so it is prepared before it listens (--dest-args replaces those two: "--prealloc" alone
// pre-touches during the setup); the figures come from both reports.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Report } from '../src/index.js';
import { median, printTable, type Row } from './util.js';

const SHAPES: Record<string, string[]> = {
  // T4: a 16 MiB hot set rewritten at 200k pages/s, downtime limit 10 ms.
  hotset: ['--memory', '256MiB', '--seed', '7', '--fill', 'mixed', '--workload', 'hotset', '--dirty-rate', '200000', '--downtime-limit', '10', '--warmup', '200'],
  // T1: an idle guest of random pages (its first pass and its CPU).
  idle: ['--memory', '1GiB', '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200'],
  // T5: pages written in order at 500k pages/s, hybrid.
  hybrid: ['--memory', '256MiB', '--seed', '1', '--fill', 'random', '--workload', 'sweep', '--dirty-rate', '500000', '--downtime-limit', '10', '--mode', 'hybrid', '--warmup', '200'],
  // T6: post-copy of a 1 GiB guest with a 64 MiB hot set (the post-copy bench's row): fault latency.
  postcopy: ['--memory', '1GiB', '--seed', '2', '--fill', 'mixed', '--workload', 'hotset', '--hot-size', '64MiB', '--mode', 'postcopy', '--warmup', '200'],
  // The peer bench's 200k pages/s writer, with its warm-up.
  sweep: ['--memory', '256MiB', '--seed', '7', '--fill', 'random', '--workload', 'sweep', '--dirty-rate', '200000', '--downtime-limit', '10', '--warmup', '1500'],
};

const args = process.argv.slice(2);
function flag(name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}
const a = flag('a');
const b = flag('b');
if (a === undefined || b === undefined) throw new Error('usage: node dist/bench/ab.js --a DIR --b DIR [--shape hotset|idle|hybrid|sweep|postcopy] [--runs N] [--a-args "…"] [--b-args "…"] [--dest-args "…"]');
const shapeName = flag('shape') ?? 'hotset';
const shape = SHAPES[shapeName];
if (shape === undefined) throw new Error(`--shape takes ${Object.keys(SHAPES).join('|')} (got ${shapeName})`);
const runs = Number(flag('runs') ?? 7);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer (got ${flag('runs')})`);
const memory = shape[shape.indexOf('--memory') + 1];
const destArgs = flag('dest-args')?.split(' ').filter(Boolean) ?? ['--memory', memory, '--prealloc'];

interface Side {
  name: string;
  cli: string;
  extra: string[];
}
const sides: Side[] = [
  { name: `A ${a} ${flag('a-args') ?? ''}`.trim(), cli: join(resolve(a), 'dist/src/cli/main.js'), extra: (flag('a-args') ?? '').split(' ').filter(Boolean) },
  { name: `B ${b} ${flag('b-args') ?? ''}`.trim(), cli: join(resolve(b), 'dist/src/cli/main.js'), extra: (flag('b-args') ?? '').split(' ').filter(Boolean) },
];

function start(cli: string, argv: string[]): { done: Promise<number | null>; out: () => string; err: () => string; kill: () => void } {
  const p = spawn(process.execPath, [cli, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  return { done: new Promise((r) => p.on('close', r)), out: () => out, err: () => err, kill: () => p.kill() };
}

interface Run {
  downtimeMs: number;
  predictedMs: number;
  stopToResumeMs: number;
  totalMs: number;
  etaError: number;
  predictionError: number;
  pass1GBps: number;
  cpuPerGB: number;
  /** Post-copy: the destination's fault latency (the vCPU's blocked time), NaN without faults. */
  faultP50Us: number;
  faultP99Us: number;
}

async function once(side: Side, dir: string): Promise<Run> {
  const dest = start(side.cli, ['dest', '--listen', '127.0.0.1:0', '--quiet', '--insecure', ...destArgs, '--report', join(dir, 'd.json')]);
  try {
    let port = 0;
    for (let waited = 0; port === 0; waited += 10) {
      const m = /listening on [\d.]+:(\d+)/.exec(dest.out());
      if (m !== null) port = Number(m[1]);
      else if (waited > 60_000) throw new Error(`destination did not listen: ${dest.err()}`);
      else await new Promise((r) => setTimeout(r, 10));
    }
    const source = start(side.cli, ['source', '--connect', `127.0.0.1:${port}`, '--quiet', '--insecure', '--report', join(dir, 's.json'), ...shape, ...side.extra]);
    const code = await source.done;
    if (code !== 0) throw new Error(`${side.name}: source exited ${code}: ${source.err()}`);
    await dest.done;
  } finally {
    dest.kill();
  }
  const s = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as Report;
  const d = JSON.parse(readFileSync(join(dir, 'd.json'), 'utf8')) as Report;
  const first = s.iterations[0];
  const left = (s.completedAtMs ?? NaN) - first.endedAtMs;
  const cpu = (s.cpuMs!.user + s.cpuMs!.system + d.cpuMs!.user + d.cpuMs!.system) / 1000;
  return {
    downtimeMs: s.downtimeMs ?? NaN,
    predictedMs: s.predictedDowntimeMs ?? NaN,
    stopToResumeMs: (d.resumedAtEpochMs ?? NaN) - (s.pausedAtEpochMs ?? NaN),
    totalMs: s.totalTimeMs,
    etaError: first.etaMs === null ? NaN : Math.abs(first.etaMs - left) / left,
    predictionError: s.predictedDowntimeMs === null ? NaN : Math.abs(s.predictedDowntimeMs - (s.downtimeMs ?? NaN)) / (s.downtimeMs ?? NaN),
    pass1GBps: first.bytes / first.ms / 1e6,
    cpuPerGB: cpu / (s.bytesTransferred / 1e9),
    faultP50Us: d.postcopy?.faultLatencyUs.p50 ?? NaN,
    faultP99Us: d.postcopy?.faultLatencyUs.p99 ?? NaN,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'memshift-ab-'));
try {
  const results: Run[][] = [[], []];
  for (let r = 0; r < runs; r++) for (const [i, side] of sides.entries()) results[i].push(await once(side, dir));
  const med = (rs: Run[], k: keyof Run): number => median(rs.map((x) => x[k]).filter((v) => !Number.isNaN(v)));
  const rows: Row[] = sides.map((side, i) => ({
    name: side.name,
    'downtime ms': med(results[i], 'downtimeMs'),
    'downtime ms, each run': results[i].map((x) => x.downtimeMs.toFixed(1)).join(' '),
    'predicted ms': med(results[i], 'predictedMs'),
    'prediction error %': 100 * med(results[i], 'predictionError'),
    'stop→resume ms': med(results[i], 'stopToResumeMs'),
    'total ms': med(results[i], 'totalMs'),
    'ETA error %': 100 * med(results[i], 'etaError'),
    'pass 1 GB/s': med(results[i], 'pass1GBps'),
    'CPU-s per GB': med(results[i], 'cpuPerGB'),
    ...(shapeName === 'postcopy' ? { 'fault p50 µs': med(results[i], 'faultP50Us'), 'fault p99 µs': med(results[i], 'faultP99Us') } : {}),
  }));
  printTable(`Shape ${shapeName} (${shape.join(' ')}), ${runs} interleaved runs each, medians (errors: |estimate − actual| ÷ actual; ETA at the end of pass 1)`, rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
