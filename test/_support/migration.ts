// One parameterised end-to-end migration (after Cloud Hypervisor's test harness): a destination and a
// source process on 127.0.0.1, both with reports and RAM dumps, and the replay oracle to compare with.

import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../src/index.js';
import { replay, resolveGuestConfig, parseSize, type FillKind, type WorkloadKind } from '../../src/sim/index.js';
import * as assert from 'uvu/assert';
import { killAll, memshift, startDestination, type Finished } from './processes.js';
import { reportSchemaErrors } from './report-schema.js';

export interface GuestCase {
  memory?: string;
  fill?: FillKind;
  workload?: WorkloadKind;
  hotSize?: string;
  /** Steps that land in the hot set, per mille (--hot-share). */
  hotShare?: number;
  /** RAM regions the guest's memory is cut into (--ram-regions); the image concatenates them. */
  ramRegions?: number;
  /** Disk sizes (--disk, each); their images are compared with diffDisksAgainstReplay. */
  disks?: string[];
  /** Bytes of seeded data at the start of each disk (--disk-fill). */
  diskFill?: string;
  seed: number;
}

export interface MigrationCase extends GuestCase {
  mode?: 'live' | 'cold' | 'warm' | 'postcopy' | 'hybrid';
  dirtyRate?: number | 'max';
  downtimeLimit?: number;
  onStall?: 'force' | 'throttle' | 'abort' | 'postcopy';
  maxIterations?: number;
  maxBandwidth?: string;
  warmup?: number;
  /** Steps the destination runs after the migration before it dumps (default 20000). */
  runSteps?: number;
  sourceArgs?: string[];
  destArgs?: string[];
}

export interface Side extends Finished {
  report: Report | null;
  image: string;
}

export interface MigrationOutcome {
  source: Side;
  dest: Side;
  dir: string;
}

export function guestArgs(c: GuestCase): string[] {
  const a = ['--memory', c.memory ?? '64MiB', '--seed', String(c.seed), '--fill', c.fill ?? 'mixed', '--workload', c.workload ?? 'hotset'];
  if (c.hotSize !== undefined) a.push('--hot-size', c.hotSize);
  if (c.hotShare !== undefined) a.push('--hot-share', String(c.hotShare));
  if (c.ramRegions !== undefined) a.push('--ram-regions', String(c.ramRegions));
  for (const d of c.disks ?? []) a.push('--disk', d);
  if (c.diskFill !== undefined) a.push('--disk-fill', c.diskFill);
  return a;
}

/** The report at `path`, or null when the process wrote none. */
export function readReport(path: string): Report | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Report) : null;
}

/** The steps a case's destination runs after its resume (`dest --run-steps`). */
function runStepsOf(c: GuestCase | MigrationCase): number {
  return 'runSteps' in c && c.runSteps !== undefined ? c.runSteps : DEFAULT_RUN_STEPS;
}

const DEFAULT_RUN_STEPS = 20000;

/** Runs a destination and a source to completion (or failure) and collects reports and images. */
export async function runMigration(c: MigrationCase): Promise<MigrationOutcome> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-e2e-'));
  const files = {
    srcReport: join(dir, 'source.json'), srcImage: join(dir, 'source.img'),
    destReport: join(dir, 'dest.json'), destImage: join(dir, 'dest.img'),
  };
  const dest = await startDestination(['--report', files.destReport, '--dump-memory', files.destImage, '--run-steps', String(runStepsOf(c)), ...(c.destArgs ?? [])]);
  const args = [
    'source', '--connect', `127.0.0.1:${dest.port}`, ...guestArgs(c), '--quiet',
    '--mode', c.mode ?? 'live', '--report', files.srcReport, '--dump-memory', files.srcImage,
    '--warmup', String(c.warmup ?? 100), '--dirty-rate', String(c.dirtyRate ?? 'max'),
  ];
  if (c.downtimeLimit !== undefined) args.push('--downtime-limit', String(c.downtimeLimit));
  if (c.onStall !== undefined) args.push('--on-stall', c.onStall);
  if (c.maxIterations !== undefined) args.push('--max-iterations', String(c.maxIterations));
  if (c.maxBandwidth !== undefined) args.push('--max-bandwidth', c.maxBandwidth);
  args.push(...(c.sourceArgs ?? []));
  const source = memshift(args);
  const [s, d] = await Promise.all([source.done, dest.done]);
  return {
    dir,
    source: { ...s, report: readReport(files.srcReport), image: files.srcImage },
    dest: { ...d, report: readReport(files.destReport), image: files.destImage },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

function replayConfig(c: GuestCase): ReturnType<typeof resolveGuestConfig> {
  return resolveGuestConfig({
    memoryBytes: parseSize(c.memory ?? '64MiB', 'memory'), seed: c.seed, fill: c.fill ?? 'mixed', workload: c.workload ?? 'hotset',
    hotBytes: c.hotSize === undefined ? undefined : parseSize(c.hotSize, 'hotSize'),
    hotPermille: c.hotShare, ramRegions: c.ramRegions,
  });
}

/** Pages of the guest that hold anything but zeros after `steps` steps of its replay. */
export function nonZeroPages(c: GuestCase, steps: number): number {
  const reference = replay(replayConfig(c), steps);
  let n = 0;
  for (const r of reference.regions) {
    for (let p = 0; p < r.pageCount; p++) if (reference.pageView(r.id, p).some((b) => b !== 0)) n++;
  }
  return n;
}

/**
 * Compares a RAM image (every RAM region, concatenated in order) with an uninterrupted replay of `steps`
 * steps of the same guest, guest page by guest page across the regions. Returns null when identical,
 * else a description of the first differing page (guest page, and its region and region page).
 */
export function diffAgainstReplay(image: string, c: GuestCase, steps: number): string | null {
  const config = replayConfig(c);
  const memoryBytes = config.memoryBytes;
  const bytes = readFileSync(image);
  if (bytes.length !== memoryBytes) return `image has ${bytes.length} bytes, guest ${memoryBytes}`;
  const reference = replay(config, steps);
  const ps = config.pageSize;
  const pages = memoryBytes / ps;
  let first: string | null = null;
  let differing = 0;
  let p = 0;
  for (const r of reference.regions) {
    for (let local = 0; local < r.pageCount; local++, p++) {
      const a = bytes.subarray(p * ps, (p + 1) * ps);
      if (Buffer.compare(a, Buffer.from(reference.pageView(r.id, local))) !== 0) {
        first ??= `guest page ${p} (region ${r.id} page ${local})`;
        differing++;
      }
    }
  }
  return first === null ? null : `${differing} of ${pages} pages differ from replay(${steps}); first is ${first}`;
}

/** Blocks of a disk image holding anything but zeros: the workload really wrote the disk. */
export function writtenBlocks(image: string): number {
  const bytes = readFileSync(image);
  let n = 0;
  for (let b = 0; b < bytes.length; b += 4096) if (bytes.subarray(b, b + 4096).some((x) => x !== 0)) n++;
  return n;
}

/**
 * Compares the disk images in `dir` (disk0.img, …) with those of an uninterrupted replay of `steps`
 * steps. Null when every image is identical, else which disk differs first and in how many blocks.
 */
export function diffDisksAgainstReplay(dir: string, c: GuestCase, steps: number): string | null {
  const disks = (c.disks ?? []).map((d) => parseSize(d, 'disk'));
  const config = resolveGuestConfig({
    memoryBytes: parseSize(c.memory ?? '64MiB', 'memory'), seed: c.seed, fill: c.fill ?? 'mixed', workload: c.workload ?? 'hotset',
    hotBytes: c.hotSize === undefined ? undefined : parseSize(c.hotSize, 'hotSize'), hotPermille: c.hotShare, ramRegions: c.ramRegions, disks,
    diskFillBytes: c.diskFill === undefined ? 0 : parseSize(c.diskFill, 'diskFill'),
  });
  const refDir = mkdtempSync(join(tmpdir(), 'memshift-disk-replay-'));
  try {
    replay(config, steps, {}, refDir);
    for (let i = 0; i < disks.length; i++) {
      const name = `disk${i}.img`;
      if (!existsSync(join(dir, name))) return `${name} is missing from ${dir}`;
      const got = readFileSync(join(dir, name));
      const want = readFileSync(join(refDir, name));
      if (got.length !== want.length) return `${name} has ${got.length} bytes, the replay's ${want.length}`;
      let differing = 0;
      let first = -1;
      for (let b = 0; b < want.length; b += 4096) {
        if (Buffer.compare(got.subarray(b, b + 4096), want.subarray(b, b + 4096)) !== 0) {
          differing++;
          if (first < 0) first = b / 4096;
        }
      }
      if (differing > 0) return `${name}: ${differing} of ${want.length / 4096} blocks differ from replay(${steps}); first is block ${first}`;
    }
    return null;
  } finally {
    removeDir(refDir);
  }
}

/** A one-line summary of a failed side, for assertion messages. */
export function explain(side: Side): string {
  return `exit ${side.code}${side.signal ? ` (${side.signal})` : ''}; stderr: ${side.stderr.trim().split('\n').slice(-4).join(' | ')}`;
}

/**
 * For an e2e suite: a `migrate` that runs one case and remembers its directory, and an after-each hook
 * that ends every process the test started and removes the directories, even when the test failed.
 */
export function migrationFixture(test: { after: { each: (fn: () => Promise<void>) => void } }): (c: MigrationCase) => Promise<MigrationOutcome> {
  const dirs: string[] = [];
  test.after.each(async () => {
    await killAll();
    while (dirs.length > 0) removeDir(dirs.pop()!);
  });
  return async (c) => {
    const r = await runMigration(c);
    dirs.push(r.dir);
    return r;
  };
}

/**
 * The oracle for a completed migration: both processes exit 0 and report completion, both ends agree
 * on the session digest, and each image is bit-identical to an uninterrupted replay of its own step
 * count (the source's at the pause point, the destination's after it ran on).
 */
export function assertMigratedExactly(r: MigrationOutcome, c: GuestCase | MigrationCase): void {
  assert.is(r.source.code, 0, `source: ${explain(r.source)}`);
  assert.is(r.dest.code, 0, `destination: ${explain(r.dest)}`);
  const src = r.source.report!;
  const dst = r.dest.report!;
  assert.is(src.outcome, 'completed');
  assert.is(dst.outcome, 'completed');
  assert.is(reportSchemaErrors(src), null, 'the source report matches the schema');
  assert.is(reportSchemaErrors(dst), null, 'the destination report matches the schema');
  assert.is(dst.sessionId, src.sessionId, 'both reports name the same session');
  // The destination resumed at the source's pause point and ran exactly --run-steps from there.
  assert.is(dst.guestSteps, src.guestSteps + runStepsOf(c), 'destination steps = source pause point + --run-steps');
  assert.is(dst.digest, src.digest, 'session digests differ');
  // The destination's own view of the downtime lies inside the source's (pause → RESUMED arrived).
  assert.ok(dst.downtimeMs !== null && src.downtimeMs !== null && dst.downtimeMs > 0 && dst.downtimeMs <= src.downtimeMs,
    `destination saw ${dst.downtimeMs} ms of downtime, the source ${src.downtimeMs} ms`);
  assert.is(diffAgainstReplay(r.source.image, c, src.guestSteps), null, 'source image at the pause point');
  assert.is(diffAgainstReplay(r.dest.image, c, dst.guestSteps), null, 'destination image after its own steps');
}
