// Replication end to end: `memshift replicate` and `memshift standby` as two processes on 127.0.0.1.
// The oracle is the replay: a standby that fails over runs K steps and dumps, and its memory must equal
// replay(checkpoint + K); every output a client got from the primary must be one the replay makes
// before that checkpoint (output commit: nothing a client saw is lost by a failover). Seeded trials
// kill the primary, cut or corrupt its link at random points (test/_support/replication-trial.ts;
// `npm run soak:replication` runs them by the hundred); the tests below aim at one case each.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deadline } from '../_support/deadline.js';
import { mkdirSync } from 'node:fs';
import { diffAgainstReplay, diffDisksAgainstReplay, guestArgs, type GuestCase } from '../_support/migration.js';
import { memshift, startDestination, waitForOutput } from '../_support/processes.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { Proxy } from '../_support/proxy.js';
import { makeCredentials } from '../_support/credentials.js';
import {
  describeReplicationTrial, diffOutputPrefix, servedOutputs, planReplicationTrial, replayOutputs, runReplicationTrial, startStandby,
} from '../_support/replication-trial.js';

const { file } = perTestDir(test, 'memshift-replication-');
const json = (name: string): Record<string, any> => JSON.parse(readFileSync(file(name), 'utf8')) as Record<string, any>;

const SEED = 20261202;
const TRIALS = 12;
for (let i = 0; i < TRIALS; i++) {
  const trial = planReplicationTrial(SEED, i);
  test(describeReplicationTrial(trial), deadline(60_000, async () => {
    const v = await runReplicationTrial(trial);
    assert.is(v.violation, null, `${describeReplicationTrial(trial)} (standby ${v.standby}, primary ${v.primary})`);
  }));
}

const guest: GuestCase = { memory: '16MiB', seed: 4242, workload: 'uniform' };

function primaryArgs(port: number, extra: string[] = []): string[] {
  return ['replicate', '--connect', `127.0.0.1:${port}`, ...guestArgs(guest), '--dirty-rate', 'max', '--epoch-ms', '20', '--report', file('primary.json'), ...extra];
}

test('a link cut in the middle of an epoch: the torn epoch is dropped whole, the standby resumes the one before', deadline(120_000, async () => {
  // Every page raw (no deltas): a flat-out uniform writer then puts 16 MiB in every epoch. Past the base
  // and two epochs, stall the stream 6 MiB further on, then reset both halves. The byte barrier can
  // still fall between two epochs (the stream is bursts of 16 MiB, smaller when the host is busy and the
  // guest writes less per epoch): up to five cuts, each judged, at least one inside an epoch.
  const torn: number[] = [];
  for (let attempt = 0; attempt < 5 && !torn.some((n) => n > 0); attempt++) {
    const at = file(`cut${attempt}`);
    mkdirSync(at);
    const standby = await startStandby(at, ['--failover-timeout', '300', '--run-steps', '5000']);
    const proxy = await Proxy.start(standby.port);
    try {
      const primary = memshift([...primaryArgs(proxy.port), '--insecure', '--standby-timeout', '300', '--cache-size', '0', '--report', join(at, 'primary.json')]);
      while (proxy.forwarded < 56 * 2 ** 20) await new Promise((r) => setTimeout(r, 5));
      await proxy.holdAfter(proxy.forwarded + 6 * 2 ** 20);
      // Time for the standby to read what reached its socket (a reset discards what it has not read),
      // short of its 300 ms failover timeout.
      await new Promise((r) => setTimeout(r, 200));
      proxy.cut();
      const [s, p] = await Promise.all([standby.done, primary.done]);
      assert.is(s.code, 0, s.stderr);
      const r = JSON.parse(readFileSync(join(at, 'standby.json'), 'utf8')) as Record<string, any>;
      assert.is(r.outcome, 'failover');
      assert.is(r.guestSteps, r.checkpointSteps + 5000);
      assert.is(diffAgainstReplay(join(at, 'standby.img'), guest, r.guestSteps), null, `cut ${attempt}: ${r.tornPages} torn pages dropped`);
      assert.is(p.code, 1, 'the primary stops when its standby link breaks');
      assert.is((JSON.parse(readFileSync(join(at, 'primary.json'), 'utf8')) as Record<string, any>).error.code, 'MS_ERR_STANDBY_LOST');
      torn.push(r.tornPages as number);
    } finally {
      proxy.cut();
    }
  }
  assert.ok(torn.some((n) => n > 0), `a cut fell inside an epoch (pages dropped per cut: ${torn.join(', ')})`);
}));

test('the primary ends on purpose: the standby holds its last epoch without running it, and every output of that epoch was released', deadline(60_000, async () => {
  const standby = await startStandby(file(), ['--failover-timeout', '300']);
  const primary = memshift([...primaryArgs(standby.port, ['--serve', '127.0.0.1:0', '--duration', '0.6']), '--insecure', ...['--workload', 'hotset']]);
  const client = await servedOutputs(primary);
  const [s, p] = await Promise.all([standby.done, primary.done]);
  await client.closed;
  assert.is(p.code, 0, p.stderr);
  assert.is(s.code, 0, s.stderr);
  const r = json('standby.json');
  const pr = json('primary.json');
  assert.is(r.outcome, 'ended');
  assert.is(r.epochsCommitted, pr.epochs, 'the last epoch was committed before the goodbye');
  assert.is(r.guestSteps, pr.guestSteps, 'the standby holds the primary\'s final step');
  const hotset = { ...guest, workload: 'hotset' as const };
  assert.is(diffAgainstReplay(file('standby.img'), hotset, r.guestSteps), null);
  const expected = replayOutputs(hotset, r.guestSteps);
  assert.ok(expected.length > 0, 'the guest made outputs');
  assert.equal(client.lines, expected, 'every output up to the last epoch, in order, none twice');
  assert.is(pr.outputsReleased, expected.length);
  assert.is(pr.outputsHeld, 0);
}));

test('after a failover the standby serves the outputs from its checkpoint on: with the primary\'s, exactly the replay\'s, none lost or twice', deadline(60_000, async () => {
  const standby = await startStandby(file(), ['--failover-timeout', '300', '--run-steps', '300000', '--serve', '127.0.0.1:0']);
  const after = await servedOutputs(standby);
  const hotset = { ...guest, workload: 'hotset' as const };
  const primary = memshift([...primaryArgs(standby.port, ['--serve', '127.0.0.1:0']), '--insecure', '--workload', 'hotset', '--dirty-rate', '300000']);
  const before = await servedOutputs(primary);
  await waitForOutput(standby, (s) => s.includes('base copy'));
  await new Promise((r) => setTimeout(r, 400));
  primary.proc.kill('SIGKILL');
  const s = await standby.done;
  await Promise.all([before.closed, after.closed]);
  assert.is(s.code, 0, s.stderr);
  const r = json('standby.json');
  assert.is(r.outcome, 'failover');
  assert.is(diffAgainstReplay(file('standby.img'), hotset, r.guestSteps), null);
  const all = replayOutputs(hotset, r.guestSteps);
  const beforeCheckpoint = replayOutputs(hotset, r.checkpointSteps);
  assert.ok(before.lines.length > 0, 'the primary released outputs before it died');
  assert.is(diffOutputPrefix(before.lines, beforeCheckpoint), null);
  assert.equal(after.lines, all.slice(beforeCheckpoint.length), 'the standby made every output after its checkpoint');
  // What the primary made after its last release and before the checkpoint was never shown: the
  // standby does not make it again (it is before its checkpoint), and nobody saw it. Outputs after
  // the checkpoint the primary may have made too were held there, never released.
  assert.ok(before.lines.length <= beforeCheckpoint.length);
}));

test('a primary whose standby dies stops its guest with MS_ERR_STANDBY_LOST and releases nothing more', deadline(60_000, async () => {
  const standby = await startStandby(file(), ['--failover-timeout', '300']);
  const primary = memshift([...primaryArgs(standby.port, ['--serve', '127.0.0.1:0']), '--insecure', '--standby-timeout', '300', '--workload', 'hotset', '--dirty-rate', '300000']);
  const client = await servedOutputs(primary);
  await waitForOutput(standby, (s) => s.includes('base copy'));
  await new Promise((r) => setTimeout(r, 300));
  standby.proc.kill('SIGKILL');
  const p = await primary.done;
  await client.closed;
  assert.is(p.code, 1, p.stderr);
  const pr = json('primary.json');
  assert.is(pr.outcome, 'failed');
  assert.is(pr.error.code, 'MS_ERR_STANDBY_LOST');
  assert.is(client.lines.length, pr.outputsReleased, 'the client got exactly what was released');
  assert.ok(pr.epochsCommitted <= pr.epochs);
  assert.is(diffOutputPrefix(client.lines, replayOutputs({ ...guest, workload: 'hotset' }, pr.guestSteps)), null);
}));

test('a standby is not a migration destination, and a destination is not a standby: each refuses the other by name', deadline(60_000, async () => {
  const standby = await startStandby(file(), ['--failover-timeout', '300']);
  const source = await memshift(['source', '--connect', `127.0.0.1:${standby.port}`, '--insecure', ...guestArgs(guest), '--warmup', '0']).done;
  assert.is(source.code, 1);
  assert.match(source.stderr, /this is a standby/);
  const dest = await startDestination();
  const primary = await memshift([...primaryArgs(dest.port), '--insecure']).done;
  assert.is(primary.code, 1);
  assert.match(primary.stderr, /not a standby/);
  standby.proc.kill('SIGTERM');
}));

test('replication over TLS with a pre-shared key; a primary with another key is refused before anything is replicated', deadline(60_000, async () => {
  const creds = makeCredentials();
  try {
    const standby = memshift(['standby', '--listen', '127.0.0.1:0', '--psk-file', creds.psk.good, '--failover-timeout', '300', '--report', file('standby.json'), '--dump-memory', file('standby.img')], {}, { exact: true });
    await waitForOutput(standby, (t) => /listening on 127\.0\.0\.1:\d+/.test(t));
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(standby.stdout())![1]);
    const rogue = await memshift([...primaryArgs(port), '--psk-file', creds.psk.other, '--duration', '0.3']).done;
    assert.is(rogue.code, 1);
    assert.match(rogue.stderr, /MS_ERR_AUTH_FAILED|MS_ERR_STANDBY_LOST/);
    const real = await memshift([...primaryArgs(port), '--psk-file', creds.psk.good, '--duration', '0.4']).done;
    assert.is(real.code, 0, real.stderr);
    const s = await standby.done;
    assert.is(s.code, 0, s.stderr);
    const r = json('standby.json');
    assert.is(r.outcome, 'ended');
    assert.is(diffAgainstReplay(file('standby.img'), guest, r.guestSteps), null);
  } finally {
    creds.remove();
  }
}));

const disked: GuestCase = { memory: '16MiB', seed: 777, workload: 'hotset', disks: ['4MiB', '4MiB'] };

/** A standby and a primary whose guest has two disks on shared storage (one directory, leases of 500 ms). */
async function sharedStoragePair(runSteps: number): Promise<{ standby: Awaited<ReturnType<typeof startStandby>>; primary: ReturnType<typeof memshift> }> {
  const shared = file('shared');
  mkdirSync(shared);
  mkdirSync(file('standby-disks'));
  const storage = ['--storage', 'shared', '--disk-dir', shared, '--lease-ttl', '500'];
  const standby = await startStandby(file(), ['--failover-timeout', '300', '--run-steps', String(runSteps), '--dump-disk', file('standby-disks'), ...storage]);
  const primary = memshift(['replicate', '--connect', `127.0.0.1:${standby.port}`, '--insecure', ...guestArgs(disked), '--dirty-rate', '100000', '--epoch-ms', '20',
    '--standby-timeout', '300', '--report', file('primary.json'), ...storage]);
  await waitForOutput(standby, (t) => t.includes('base copy'));
  return { standby, primary };
}

test('disks on shared storage: the standby of a killed primary waits for its lease to expire, takes it and runs; memory and disks equal the replay', deadline(60_000, async () => {
  const { standby, primary } = await sharedStoragePair(50_000);
  await new Promise((r) => setTimeout(r, 300));
  primary.proc.kill('SIGKILL');
  const s = await standby.done;
  assert.is(s.code, 0, s.stderr);
  assert.match(s.stderr, /waiting for the primary's lease/);
  const r = json('standby.json');
  assert.is(r.outcome, 'failover');
  assert.is(r.guestSteps, r.checkpointSteps + 50_000);
  assert.is(diffAgainstReplay(file('standby.img'), disked, r.guestSteps), null);
  assert.is(diffDisksAgainstReplay(file('standby-disks'), disked, r.guestSteps), null);
  // The primary's writes past the checkpoint are the replay's too: the standby wrote them again, the same.
  assert.is(diffDisksAgainstReplay(file('shared'), disked, r.guestSteps), null);
}));

test('a primary frozen past its standby\'s failover comes back without its lease: it says so and stops, and the images stay the standby\'s', deadline(60_000, async () => {
  const { standby, primary } = await sharedStoragePair(50_000);
  await new Promise((r) => setTimeout(r, 200));
  primary.proc.kill('SIGSTOP');
  try {
    const s = await standby.done;
    assert.is(s.code, 0, s.stderr);
  } finally {
    primary.proc.kill('SIGCONT');
  }
  const p = await primary.done;
  assert.is(p.code, 1, p.stderr);
  assert.match(p.stderr, /MS_ERR_STANDBY_LOST|MS_ERR_LEASE_LOST/);
  const r = json('standby.json');
  assert.is(r.outcome, 'failover');
  assert.is(json('primary.json').outcome, 'failed');
  assert.is(diffAgainstReplay(file('standby.img'), disked, r.guestSteps), null);
  assert.is(diffDisksAgainstReplay(file('shared'), disked, r.guestSteps), null);
}));

test.run();
