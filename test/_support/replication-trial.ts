// One replication trial: a primary (`memshift replicate`) and a standby (`memshift standby`) on
// 127.0.0.1, a client reading the primary's released outputs, and one fault at a seeded time after
// the base copy: the primary SIGKILLed, the link cut (both halves reset), one bit of the primary →
// standby stream flipped, or none (the primary ends on purpose). The verdict, whatever happened:
//
//   standby failed over  → its memory (and disks: one trial in three has two local disks, replicated
//                          with the epochs) after K more steps equals replay(checkpoint + K)
//   standby ended        → (no fault) the memory it holds equals replay(checkpoint); nothing torn
//   standby found no checkpoint → only when the fault came before the first commit; nothing ran
//   every output the client got from the primary is one the replay makes, in order, with no gap, and
//   from a step before the checkpoint the standby holds (nothing released is lost by a failover)
//   a primary whose standby link broke under it stopped (MS_ERR_STANDBY_LOST or the standby's error)
//
//   primary ──► proxy (fault) ──► standby          client ◄── primary's --serve port

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputList, formatOutput, replay, resolveGuestConfig, parseSize } from '../../src/sim/index.js';
import { diffAgainstReplay, diffDisksAgainstReplay, guestArgs, removeDir, type GuestCase } from './migration.js';
import { killAll, memshift, waitForOutput, type Running } from './processes.js';
import { Proxy } from './proxy.js';
import { seeded } from './seeded.js';

export type ReplicationFault = 'none' | 'kill' | 'cut' | 'flip';
export const REPLICATION_FAULTS: readonly ReplicationFault[] = ['none', 'kill', 'cut', 'flip'];

export interface ReplicationTrial {
  index: number;
  guest: GuestCase;
  dirtyRate: number | 'max';
  epochMs: number;
  fault: ReplicationFault;
  /** Milliseconds after the base copy at which the fault strikes. */
  afterMs: number;
  /** Steps the standby runs after a failover before it dumps. */
  runSteps: number;
}

export interface ReplicationVerdict {
  trial: ReplicationTrial;
  /** failover | ended | no-checkpoint | how the standby exited otherwise. */
  standby: string;
  primary: string;
  epochsCommitted: number;
  outputsSeen: number;
  violation: string | null;
  ms: number;
}

const GUEST_MEMORY = '16MiB';

/** Trial `index` of the campaign seeded `seed`. */
export function planReplicationTrial(seed: number, index: number): ReplicationTrial {
  const rng = seeded((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const workloads = ['hotset', 'uniform', 'sweep'] as const;
  return {
    index,
    guest: {
      memory: GUEST_MEMORY, seed: 1 + rng.below(1_000_000), workload: workloads[rng.below(3)], fill: rng.chance(0.5) ? 'mixed' : 'random',
      // One trial in three: two local disks, replicated with the epochs.
      ...(index % 3 === 2 ? { disks: ['2MiB', '2MiB'] } : {}),
    },
    dirtyRate: rng.chance(0.5) ? 'max' : 50_000 + rng.below(400_000),
    epochMs: [10, 25, 50][rng.below(3)],
    // In turn, so that any run of four trials has each.
    fault: REPLICATION_FAULTS[index % REPLICATION_FAULTS.length],
    afterMs: rng.below(700),
    runSteps: 20_000,
  };
}

export function describeReplicationTrial(t: ReplicationTrial): string {
  const g = t.guest;
  return `trial ${t.index}: ${g.workload} seed ${g.seed}${g.disks === undefined ? '' : ' with disks'} rate ${t.dirtyRate} epoch ${t.epochMs} ms, ${t.fault}${t.fault === 'none' ? '' : ` at +${t.afterMs} ms`}`;
}

/** Reads "STEP WORD" lines from `port` until the peer closes. */
function outputClient(port: number): { lines: string[]; closed: Promise<void> } {
  const lines: string[] = [];
  let rest = '';
  const socket = net.connect(port, '127.0.0.1');
  socket.on('data', (d: Buffer) => {
    const text = rest + d.toString();
    const parts = text.split('\n');
    rest = parts.pop()!;
    lines.push(...parts);
  });
  const closed = new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
  return { lines, closed };
}

/** Waits for `r` (replicate or standby with --serve) to say where it serves outputs, and reads them from there. */
export async function servedOutputs(r: Running): Promise<{ lines: string[]; closed: Promise<void> }> {
  await waitForOutput(r, (s) => /serving on 127\.0\.0\.1:\d+/.test(s));
  return outputClient(Number(/serving on 127\.0\.0\.1:(\d+)/.exec(r.stdout())![1]));
}

/** The replay's outputs up to (not including) step `steps`, as served lines. */
export function replayOutputs(g: GuestCase, steps: number): string[] {
  const outputs = new OutputList();
  replay(resolveGuestConfig({ memoryBytes: parseSize(g.memory ?? '64MiB', 'memory'), seed: g.seed, fill: g.fill ?? 'mixed', workload: g.workload ?? 'hotset' }), steps, {}, null, outputs);
  return outputs.outputs.map(formatOutput);
}

/** Null when `got` is exactly the first got.length of `expected`, else what differs. */
export function diffOutputPrefix(got: readonly string[], expected: readonly string[]): string | null {
  if (got.length > expected.length) return `${got.length} outputs seen, the replay up to the checkpoint makes ${expected.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== expected[i]) return `output ${i} is "${got[i]}", the replay's is "${expected[i]}"`;
  return null;
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export function startStandby(dir: string, args: readonly string[] = []): Promise<Running & { port: number }> {
  const r = memshift(['standby', '--listen', '127.0.0.1:0', '--insecure', '--report', join(dir, 'standby.json'), '--dump-memory', join(dir, 'standby.img'), ...args]);
  return waitForOutput(r, (t) => /listening on 127\.0\.0\.1:\d+/.test(t)).then(() => ({ ...r, port: Number(/listening on 127\.0\.0\.1:(\d+)/.exec(r.stdout())![1]) }));
}

export async function runReplicationTrial(t: ReplicationTrial): Promise<ReplicationVerdict> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'memshift-replication-'));
  const violations: string[] = [];
  let proxy: (Proxy & { port: number }) | null = null;
  try {
    const standby = await startStandby(dir, ['--failover-timeout', '300', '--run-steps', String(t.runSteps), ...(t.guest.disks === undefined ? [] : ['--dump-disk', dir])]);
    proxy = await Proxy.start(standby.port);
    // The primary's disks in the trial's directory: a killed primary cannot remove a temporary one of its own.
    const primaryDisks = t.guest.disks === undefined ? [] : ['--disk-dir', join(dir, 'primary-disks')];
    if (primaryDisks.length > 0) mkdirSync(primaryDisks[1]);
    const primary = memshift([
      'replicate', '--connect', `127.0.0.1:${proxy.port}`, '--insecure', ...guestArgs(t.guest), ...primaryDisks, '--dirty-rate', String(t.dirtyRate),
      '--epoch-ms', String(t.epochMs), '--standby-timeout', '300', '--serve', '127.0.0.1:0', '--report', join(dir, 'primary.json'),
      ...(t.fault === 'none' ? ['--duration', String((300 + t.afterMs) / 1000)] : []),
    ]);
    const client = await servedOutputs(primary);
    await waitForOutput(standby, (s) => s.includes('base copy'), 30_000);
    await new Promise((r) => setTimeout(r, t.afterMs));
    if (t.fault === 'kill') primary.proc.kill('SIGKILL');
    else if (t.fault === 'cut') proxy.cut();
    else if (t.fault === 'flip') proxy.flipAt(proxy.forwarded + 4096 + (t.afterMs * 977) % 65536);
    const [s, p] = await Promise.all([standby.done, primary.done]);
    await client.closed;
    const sr = readJson(join(dir, 'standby.json'));
    const pr = readJson(join(dir, 'primary.json'));
    const outcome = (sr?.outcome as string | undefined) ?? `exit ${s.code}`;
    const noCheckpoint = (sr?.error as { code?: string } | null)?.code === 'MS_ERR_NO_CHECKPOINT';
    const standbyOutcome = noCheckpoint ? 'no-checkpoint' : outcome;
    const primaryOutcome = t.fault === 'kill' ? `killed (${p.signal})` : `${(pr?.outcome as string | undefined) ?? `exit ${p.code}`}${pr?.error ? ` ${(pr.error as { code: string }).code}` : ''}`;
    const checkpoint = Number(sr?.checkpointSteps ?? 0);
    if (sr === null) violations.push(`the standby wrote no report (exit ${s.code}): ${s.stderr.slice(-400)}`);
    else if (noCheckpoint) {
      if (client.lines.length > 0) violations.push(`${client.lines.length} outputs left the primary, yet no epoch was ever committed`);
    } else if (outcome === 'failover' || outcome === 'ended') {
      if (s.code !== 0) violations.push(`the standby exited ${s.code} after ${outcome}`);
      if (outcome === 'ended' && t.fault !== 'none') violations.push('the standby saw a goodbye from a primary that never ended');
      if (outcome === 'failover' && t.fault === 'none') violations.push(`the standby failed over although the primary ended on purpose (${String(sr.cause)})`);
      const steps = Number(sr.guestSteps);
      if (outcome === 'failover' && steps !== checkpoint + t.runSteps) violations.push(`the standby ran to step ${steps}, not checkpoint ${checkpoint} + ${t.runSteps}`);
      const diff = diffAgainstReplay(join(dir, 'standby.img'), t.guest, steps);
      if (diff !== null) violations.push(`standby memory: ${diff}`);
      if (t.guest.disks !== undefined) {
        const disks = diffDisksAgainstReplay(dir, t.guest, steps);
        if (disks !== null) violations.push(`standby disks: ${disks}`);
      }
    } else violations.push(`standby ${outcome} (exit ${s.code}): ${s.stderr.slice(-400)}`);
    // Output commit: whatever left the primary, the standby's history made too, and before its checkpoint.
    const expected = replayOutputs(t.guest, checkpoint);
    const outputs = diffOutputPrefix(client.lines, expected);
    if (outputs !== null) violations.push(`outputs: ${outputs}`);
    if (t.fault === 'none' && !noCheckpoint && client.lines.length !== expected.length) {
      violations.push(`the primary ended on purpose with ${client.lines.length} outputs released, the replay to its last epoch makes ${expected.length}`);
    }
    if (t.fault === 'cut' || t.fault === 'flip') {
      if (p.code !== 1 || pr?.outcome !== 'failed') violations.push(`the primary did not stop when its standby link broke (exit ${p.code}, outcome ${String(pr?.outcome)})`);
    }
    if (t.fault === 'none' && p.code !== 0) violations.push(`the primary exited ${p.code}: ${p.stderr.slice(-300)}`);
    return {
      trial: t, standby: standbyOutcome, primary: primaryOutcome, epochsCommitted: Number(sr?.epochsCommitted ?? 0), outputsSeen: client.lines.length,
      violation: violations.length === 0 ? null : violations.join('; '), ms: performance.now() - t0,
    };
  } finally {
    proxy?.cut();
    await killAll();
    removeDir(dir);
  }
}
