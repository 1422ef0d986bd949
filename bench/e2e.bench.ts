// End-to-end migrations of a 1 GiB guest between two memshift processes on 127.0.0.1, next to raw
// loopback TCP measured in the same run. Reports medians of `runs` runs. Destination memory is either
// fresh (every first write costs the host's lazy backing), prepared (`dest --memory 1GiB --prealloc`:
// allocated and pre-touched before the migration, as a destination hypervisor starts with its RAM), or
// pre-touched during the migration's setup (`--prealloc` alone); all are shown and labelled, with the
// setup time each one costs the migration.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Report } from '../src/index.js';
import { rawLoopbackGBps, rawMemoryToMemory } from './raw-tcp.js';
import { gbPerCpuSecond, median, printTable, type Row } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
export const GUEST = '1GiB';
const GUEST_BYTES = 2 ** 30;

function run(args: string[], netns?: string): { done: Promise<number>; stdout: () => string; stderr: () => string; kill: () => void } {
  const command = netns === undefined ? [process.execPath, CLI, ...args] : ['ip', 'netns', 'exec', netns, process.execPath, CLI, ...args];
  const p = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  return { done: new Promise((r) => p.on('close', (c) => r(c ?? 1))), stdout: () => out, stderr: () => err, kill: () => p.kill('SIGKILL') };
}

export interface MigrationRun {
  source: Report;
  dest: Report;
}

/**
 * What stands between the two processes, when something does: a proxy that cuts the link
 * (recovery.bench.ts: `port` maps the destination's port to the one the source connects to, `during`
 * runs once the source started), or two network namespaces joined by a shaped veth
 * (compression.bench.ts: each side runs in its namespace, the destination listens on `listen`).
 */
export interface Middle {
  port?(destPort: number): Promise<number>;
  during?(): Promise<void>;
  netns?: { source: string; dest: string };
  /** HOST:PORT the destination listens on (default 127.0.0.1:0). */
  listen?: string;
}

/** One migration between two CLI processes; `guest` and `mode` flags go to the source. */
export async function migrateOnce(sourceArgs: string[], destArgs: string[] = [], middle?: Middle): Promise<MigrationRun> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-bench-'));
  try {
    const dest = run(['dest', '--listen', middle?.listen ?? '127.0.0.1:0', '--quiet', '--insecure', '--report', join(dir, 'd.json'), ...destArgs], middle?.netns?.dest);
    let host = '';
    let port = 0;
    // A prepared destination prints its address only once its memory is allocated and pre-touched.
    for (let i = 0; i < 3000 && port === 0; i++) {
      const m = /listening on ([\d.]+):(\d+)/.exec(dest.stdout());
      if (m) [host, port] = [m[1], Number(m[2])];
      else await new Promise((r) => setTimeout(r, 10));
    }
    const to = middle?.port === undefined ? port : await middle.port(port);
    const source = run(['source', '--connect', `${host}:${to}`, '--quiet', '--insecure', '--report', join(dir, 's.json'), ...sourceArgs], middle?.netns?.source);
    await middle?.during?.();
    const sc = await source.done;
    // A refused source leaves a prepared destination waiting for the right guest: end it.
    if (sc !== 0) dest.kill();
    const dc = await dest.done;
    if (sc !== 0 || dc !== 0) throw new Error(`migration failed: source exit ${sc} (${source.stderr().trim()}), destination exit ${dc}`);
    return {
      source: JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as Report,
      dest: JSON.parse(readFileSync(join(dir, 'd.json'), 'utf8')) as Report,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Case {
  name: string;
  source: string[];
  dest: string[];
}

const guest = (fill: string, workload: string): string[] => ['--memory', GUEST, '--seed', '1', '--fill', fill, '--workload', workload, '--warmup', '200'];

export async function benchE2e(runs: number): Promise<void> {
  const prepared = ['--memory', GUEST, '--prealloc'];
  const cases: Case[] = [
    { name: 'random fill, idle, live, prepared destination', source: guest('random', 'idle'), dest: prepared },
    { name: 'mixed fill, hot set, live, prepared destination', source: guest('mixed', 'hotset'), dest: prepared },
    { name: 'random fill, idle, live, pre-touched during setup', source: guest('random', 'idle'), dest: ['--prealloc'] },
    { name: 'random fill, idle, live, fresh memory', source: guest('random', 'idle'), dest: [] },
    { name: 'mixed fill, hot set, live, fresh memory', source: guest('mixed', 'hotset'), dest: [] },
  ];
  const raw: number[] = [];
  const memoryToMemory: { gbps: number; cpuPerGB: number }[] = [];
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    raw.push(await rawLoopbackGBps(GUEST_BYTES));
    memoryToMemory.push(await rawMemoryToMemory(GUEST_BYTES));
    for (const c of cases) {
      const m = await migrateOnce(c.source, c.dest);
      results.set(c.name, [...(results.get(c.name) ?? []), m]);
    }
  }
  const baseline = median(raw);
  const m2m = median(memoryToMemory.map((m) => m.gbps));
  const rows: Row[] = [
    { name: 'raw loopback TCP, 4 MiB writes (baseline)', 'GB/s': baseline, 'x raw': 1, 'setup ms': '', 'total ms': (GUEST_BYTES / baseline) / 1e6, 'downtime ms': '', iterations: '', 'GB per cpu-s': '' },
    // What any migration's memory traffic allows: each byte read from one guest-sized buffer and written to another once.
    { name: `raw loopback TCP, ${GUEST} buffer to ${GUEST} buffer`, 'GB/s': m2m, 'x raw': m2m / baseline, 'setup ms': '', 'total ms': (GUEST_BYTES / m2m) / 1e6, 'downtime ms': '', iterations: '', 'GB per cpu-s': 1 / median(memoryToMemory.map((m) => m.cpuPerGB)) },
  ];
  for (const c of cases) {
    const ms = results.get(c.name)!;
    // Throughput of the first pass: every page, raw or zero, over the wire while the guest runs.
    const pass1 = median(ms.map((m) => m.source.iterations[0].bytes / m.source.iterations[0].ms / 1e6));
    const cpu = median(ms.map(gbPerCpuSecond));
    rows.push({
      name: c.name,
      'GB/s': pass1,
      'x raw': pass1 / baseline,
      'setup ms': median(ms.map((m) => m.source.setupTimeMs)),
      'total ms': median(ms.map((m) => m.source.totalTimeMs)),
      'downtime ms': median(ms.map((m) => m.source.downtimeMs ?? NaN)),
      iterations: median(ms.map((m) => m.source.iterations.length)),
      'GB per cpu-s': cpu,
    });
  }
  printTable(`Live migration of a ${GUEST} guest between two processes on 127.0.0.1 (median of ${runs} runs; GB/s = first pass, both processes' CPU counted)`, rows);
  await benchZeroGuest(runs, baseline);
}

/**
 * A 4 GiB guest that was never written (all zero, idle): against the time raw loopback TCP needs for
 * 4 GiB at the baseline measured above. The simulated guest marks every write, so the first pass
 * sends only written pages (none) when the destination's memory is fresh: UNWRITTEN_ZERO.
 */
async function benchZeroGuest(runs: number, baseline: number): Promise<void> {
  const bytes = 4 * 2 ** 30;
  const rawMs = bytes / baseline / 1e6;
  const ms: MigrationRun[] = [];
  for (let r = 0; r < runs; r++) ms.push(await migrateOnce(['--memory', '4GiB', '--seed', '1', '--fill', 'zero', '--workload', 'idle', '--warmup', '0']));
  const total = median(ms.map((m) => m.source.totalTimeMs));
  printTable(`A never-written 4 GiB guest (median of ${runs} runs)`, [
    { name: 'raw loopback TCP for 4 GiB (baseline, from the rate above)', 'total ms': rawMs, 'x raw time': 1, 'pages in pass 1': '', 'bytes on the wire': bytes },
    {
      name: 'zero fill, idle, live', 'total ms': total, 'x raw time': total / rawMs,
      'pages in pass 1': median(ms.map((m) => m.source.iterations[0].pages)), 'bytes on the wire': median(ms.map((m) => m.source.bytesTransferred)),
    },
  ]);
}
