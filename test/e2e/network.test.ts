// The guest's network follows it (needs root: network namespaces, a bridge, macvlan, arping). A
// source host, a destination host and a client on one switch (test/_support/lan.ts); the guest's
// address and MAC live on the source host's guest NIC while it runs there, and move at switchover: the
// destination plugs them in on resume and announces them with gratuitous ARP. A client that keeps
// asking the guest's service (its step count) reaches the source's guest, then the destination's, never
// both interleaved; the switch's forwarding table moves the guest's MAC to the destination's port; the
// --on-resume hook runs. The client-visible outage is printed beside the memory downtime.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { deadline } from '../_support/deadline.js';
import { createLan, type Lan } from '../_support/lan.js';
import { diffAgainstReplay, type GuestCase } from '../_support/migration.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { memshift, waitForOutput } from '../_support/processes.js';

const CLIENT = fileURLToPath(new URL('../_support/service-client.js', import.meta.url));
const GUEST_IP = '10.78.0.50';
const GUEST_MAC = '52:54:00:4d:53:01';
const SERVICE_PORT = 7000;

const dir = perTestDir(test, 'memshift-lan-');
let lan: Lan | null = null;
let client: ChildProcess | null = null;
test.after.each(() => {
  client?.kill('SIGKILL');
  client = null;
  lan?.remove();
  lan = null;
});

interface Attempt {
  at: number;
  steps: number | null;
}

/**
 * A client on the LAN asking the guest's service every few ms, and the switch's port for the guest's
 * MAC sampled every 20 ms, until `stop()`.
 */
function watchGuest(l: Lan): { stop(): Promise<{ attempts: Attempt[]; ports: { at: number; port: string | null }[] }> } {
  const c = spawn('ip', ['netns', 'exec', l.client, process.execPath, CLIENT, GUEST_IP, String(SERVICE_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  client = c;
  let out = '';
  c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<void>((r) => c.once('close', () => r()));
  const ports: { at: number; port: string | null }[] = [];
  const sampler = setInterval(() => ports.push({ at: Date.now(), port: l.portOfMac(GUEST_MAC) }), 20);
  return {
    async stop() {
      clearInterval(sampler);
      c.kill('SIGTERM');
      await done;
      return { attempts: JSON.parse(out) as Attempt[], ports };
    },
  };
}

for (const mode of ['live', 'hybrid'] as const) {
  test(`${mode}: the guest's address moves with it; the client reaches the source's guest, then the destination's; the switch learns the new port`, deadline(90_000, async () => {
    lan = createLan();
    const c: GuestCase = { seed: mode === 'live' ? 61 : 62, memory: '32MiB' };
    const dest = memshift([
      'dest', '--listen', `${lan.destAddress}:7301`, '--guest-dev', 'g0', '--run-steps', '250000', '--quiet',
      '--on-resume', `echo "$MEMSHIFT_GUEST_IP $MEMSHIFT_GUEST_MAC $MEMSHIFT_STATE" > ${dir.file('on-resume.txt')}`,
      '--report', dir.file('dest.json'), '--dump-memory', dir.file('dest.img'),
    ], {}, { netns: lan.dest });
    await waitForOutput(dest, (t) => t.includes('listening on'));
    const watch = watchGuest(lan);
    const source = memshift([
      'source', '--connect', `${lan.destAddress}:7301`, '--memory', c.memory!, '--seed', String(c.seed), '--dirty-rate', '100000',
      '--guest-ip', `${GUEST_IP}/24`, '--guest-mac', GUEST_MAC, '--guest-port', String(SERVICE_PORT), '--guest-dev', 'g0',
      '--mode', mode, ...(mode === 'hybrid' ? ['--postcopy-after', '1'] : ['--downtime-limit', '50']), '--warmup', '1500', '--quiet',
      '--report', dir.file('source.json'),
    ], {}, { netns: lan.source });
    const [s, d] = await Promise.all([source.done, dest.done]);
    const { attempts, ports } = await watch.stop();
    assert.is(s.code, 0, s.stderr);
    assert.is(d.code, 0, d.stderr);
    const src = dir.report('source.json');
    const dst = dir.report('dest.json');
    assert.is(diffAgainstReplay(dir.file('dest.img'), c, dst.guestSteps), null, 'destination memory after it ran on');

    // Answers up to the pause point came from the source's guest; later ones from the destination's.
    const paused = src.guestSteps;
    const answered = attempts.filter((a) => a.steps !== null) as { at: number; steps: number }[];
    const fromSource = answered.filter((a) => a.steps <= paused);
    const fromDest = answered.filter((a) => a.steps > paused);
    assert.ok(fromSource.length > 10, `the client reached the guest on the source (${fromSource.length} answers)`);
    assert.ok(fromDest.length > 10, `the client reached the guest on the destination (${fromDest.length} answers)`);
    const lastSource = fromSource[fromSource.length - 1].at;
    const firstDest = fromDest[0].at;
    assert.ok(lastSource <= firstDest, 'never answered by both hosts in turn: the source stopped answering before the destination started');
    assert.ok(fromDest.every((a, i) => i === 0 || a.steps >= fromDest[i - 1].steps), 'the destination\'s guest only moves forward');

    // The switch learned the guest's MAC on the source's port, then on the destination's, for good.
    const seen = ports.map((p) => p.port);
    const firstAtDest = seen.indexOf(lan.portOf.dest);
    assert.ok(seen.slice(0, Math.max(0, firstAtDest)).includes(lan.portOf.source), `learned on the source's port first (${[...new Set(seen)].join(', ')})`);
    assert.ok(firstAtDest >= 0, 'then on the destination\'s');
    assert.not.ok(seen.slice(firstAtDest).includes(lan.portOf.source), 'and never back on the source\'s');
    assert.is(readFileSync(dir.file('on-resume.txt'), 'utf8').trim(), `${GUEST_IP} ${GUEST_MAC} ${mode === 'live' ? 'running' : 'postcopy-running'}`);

    const resumedAt = dst.resumedAtEpochMs ?? NaN;
    const macMovedAt = ports[firstAtDest].at;
    console.log(`  ${mode}: client outage ${firstDest - lastSource} ms (last answer from the source → first from the destination); memory downtime ${src.downtimeMs?.toFixed(1)} ms; switch at the destination's port ${macMovedAt - resumedAt} ms after the resume (sampled every 20 ms)`);
  }));
}

test('replication: the primary answers only from committed epochs; when it dies, the standby plugs the guest\'s address in and announces it, and the client reaches the standby\'s guest, from its checkpoint on', deadline(90_000, async () => {
  lan = createLan();
  const c: GuestCase = { seed: 63, memory: '32MiB' };
  const standby = memshift([
    // A failover timeout of 1 s, not 300 ms: the primary's base copy writes its staging and delta cache
    // for the first time in synchronous chunks, and on a host slow to fault memory in it sent nothing
    // for 350 ms once (the standby then had no epoch to fail over to).
    'standby', '--listen', `${lan.destAddress}:7302`, '--insecure', '--guest-dev', 'g0', '--failover-timeout', '1000', '--run-steps', '250000',
    '--report', dir.file('standby.json'), '--dump-memory', dir.file('standby.img'),
  ], {}, { netns: lan.dest });
  await waitForOutput(standby, (t) => t.includes('listening on'));
  const watch = watchGuest(lan);
  const primary = memshift([
    'replicate', '--connect', `${lan.destAddress}:7302`, '--insecure', '--memory', c.memory!, '--seed', String(c.seed), '--dirty-rate', '100000',
    '--guest-ip', `${GUEST_IP}/24`, '--guest-mac', GUEST_MAC, '--guest-port', String(SERVICE_PORT), '--guest-dev', 'g0', '--epoch-ms', '25',
    '--warmup', '1000', '--quiet',
  ], {}, { netns: lan.source });
  // Killed 1.5 s (some 60 epochs) after the base copy arrived, not at a fixed time from its start: on a
  // host slow to fault memory in, the start and the base copy took most of 2.5 s, and the kill came
  // before any epoch was committed.
  await waitForOutput(standby, (t) => t.includes('base copy'), 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  const killedAt = Date.now();
  primary.proc.kill('SIGKILL');
  const s = await standby.done;
  const { attempts, ports } = await watch.stop();
  assert.is(s.code, 0, s.stderr);
  const r = JSON.parse(readFileSync(dir.file('standby.json'), 'utf8')) as { outcome: string; guestSteps: number; checkpointSteps: number };
  assert.is(r.outcome, 'failover');
  assert.is(diffAgainstReplay(dir.file('standby.img'), c, r.guestSteps), null);
  const answered = attempts.filter((a) => a.steps !== null) as { at: number; steps: number }[];
  const fromPrimary = answered.filter((a) => a.at < killedAt);
  const fromStandby = answered.filter((a) => a.at > killedAt);
  assert.ok(fromPrimary.length > 10, `the client reached the guest on the primary first (${fromPrimary.length} answers)`);
  assert.ok(fromStandby.length > 10, `then on the standby (${fromStandby.length} answers)`);
  assert.ok(fromStandby.every((a) => a.steps >= r.checkpointSteps && a.steps <= r.guestSteps), 'the standby\'s guest answers from its checkpoint on');
  // Output commit: the primary sent an answer only once the standby held the epoch that made it.
  const late = fromPrimary.filter((a) => a.steps > r.checkpointSteps);
  assert.is(late.length, 0, `answers from the primary past the standby's checkpoint ${r.checkpointSteps}: ${late.map((a) => a.steps).join(', ')}`);
  const seen = ports.map((p) => p.port);
  const firstAtStandby = seen.indexOf(lan.portOf.dest);
  assert.ok(seen.slice(0, Math.max(0, firstAtStandby)).includes(lan.portOf.source), `the switch learned the MAC on the primary's port first (${[...new Set(seen)].join(', ')})`);
  assert.ok(firstAtStandby >= 0, 'then on the standby\'s');
}));

test.run();
