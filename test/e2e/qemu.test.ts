// A real QEMU guest moved by memshift (issue 13): two QEMUs on 127.0.0.1 under TCG, RAM in shared files,
// `memshift qemu-source` and `memshift qemu-dest` between them. memshift carries the RAM (hash-scanned,
// no dirty log); QEMU's own migration the devices, inside memshift's session. The oracle is the guest
// itself (test/qemu/guest/): it checks every page it wrote on each sweep, so a page lost, stale or
// zeroed shows up as errors on its serial port. After the move it must keep counting, with zero errors.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { perTestDir } from '../_support/per-test-dir.js';
import { killAll, memshift, waitForOutput } from '../_support/processes.js';
import { guestErrors, guestStatus, nextStatus, qemuCapability, qemuStatus, removeQemuFiles, startQemu, type QemuGuest } from '../_support/qemu-guest.js';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { formatPskFile, generatePsk } from '../../src/index.js';

const dir = perTestDir(test, 'memshift-qemu-');
test.after.each(async () => {
  await killAll();
  removeQemuFiles();
});

interface Pair {
  src: QemuGuest;
  dst: QemuGuest;
}

async function startPair(append: string, name: string, destMemMiB = 256, numa = false): Promise<Pair> {
  const [src, dst] = await Promise.all([startQemu(dir.file(), `${name}-src`, { append, numa }), startQemu(dir.file(), `${name}-dst`, { append, incoming: true, memMiB: destMemMiB, numa })]);
  return { src, dst };
}

/** A pre-shared key file in the test's directory: the adapter takes the trust flags of the other commands. */
function pskFile(name: string): string[] {
  const { psk } = generatePsk('qemu-test');
  writeFileSync(dir.file(name), formatPskFile(psk.identity, psk.key), { mode: 0o600 });
  return ['--psk-file', dir.file(name)];
}

async function migrateQemu(p: Pair, sourceArgs: readonly string[], security: { source: string[]; dest: string[] } = { source: ['--insecure'], dest: ['--insecure'] }) {
  const dest = memshift(['qemu-dest', '--listen', '127.0.0.1:0', '--qmp', p.dst.qmp, ...security.dest, '--quiet', '--report', dir.file('dest.json')]);
  await waitForOutput(dest, (t) => /listening on 127\.0\.0\.1:\d+/.test(t));
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(dest.stdout())![1]);
  const source = memshift(['qemu-source', '--connect', `127.0.0.1:${port}`, '--qmp', p.src.qmp, ...security.source, '--quiet', '--report', dir.file('source.json'), ...sourceArgs]);
  const [s, d] = await Promise.all([source.done, dest.done]);
  return { s, d };
}

const report = (name: string): Report => JSON.parse(readFileSync(dir.file(name), 'utf8')) as Report;

for (const shape of [
  { name: 'idle', mode: 'live', append: 'mib=64 rate=0', args: [] as string[], psk: true },
  { name: 'dirtying', mode: 'live', append: 'mib=128 rate=20000', args: ['--downtime-limit', '50'] },
  { name: 'dirtying', mode: 'warm', append: 'mib=64 rate=20000', args: ['--mode', 'warm'] },
  // Sweeps its 64 MiB every few ms: pre-copy cannot converge; the throttle (stop/cont) and the cap end it.
  { name: 'flat-out', mode: 'live', append: 'mib=64 flat=1', args: ['--downtime-limit', '20', '--on-stall', 'throttle', '--max-iterations', '6'] },
]) {
  test(`${shape.mode}, ${shape.name} 256 MiB guest: the destination QEMU runs on, counting sweeps with zero errors; the source QEMU stays stopped`, deadline(120_000, async () => {
    const p = await startPair(shape.append, `${shape.mode}-${shape.name}`);
    // The guest has initialised its region and checked it at least once.
    await nextStatus(p.src, 0, 2);
    let security;
    if ('psk' in shape) {
      const key = pskFile('m.psk');
      security = { source: key, dest: key };
    }
    const { s, d } = await migrateQemu(p, shape.args, security);
    assert.is(s.code, 0, `qemu-source: ${s.stderr}`);
    assert.is(d.code, 0, `qemu-dest: ${d.stderr}`);
    const sr = report('source.json');
    const dr = report('dest.json');
    assert.is(sr.outcome, 'completed');
    assert.is(dr.outcome, 'completed');
    assert.is(dr.digest, sr.digest);
    assert.ok(dr.hypervisor !== undefined && dr.hypervisor.stopToResumeMs > 0, 'QEMU\'s stop → resume is reported');
    assert.ok(dr.hypervisor!.deviceStateBytes > 0, 'QEMU\'s device stream travelled');
    if (shape.name === 'flat-out') {
      assert.ok(sr.switchoverReason?.forced === true, `a flat-out writer is not expected to converge: ${sr.switchoverReason?.reason}`);
      assert.ok(sr.iterations.some((it) => it.throttlePercent > 0), 'the throttle stopped the guest a share of the time');
    }
    if (shape.name !== 'idle' && shape.mode === 'live') {
      const later = sr.iterations.slice(1).reduce((n, it) => n + it.pages, 0);
      assert.ok(later > 0, 'hash-scan found pages written after pass 1');
    }
    // The guest runs on the destination: new status lines, time and sweeps moving on, no error.
    const before = guestStatus(p.dst).length;
    const after = await nextStatus(p.dst, before, 3);
    const last = after[after.length - 1];
    const lastAtSource = guestStatus(p.src).at(-1)!;
    assert.ok(last.t > lastAtSource.t, `the destination guest's clock runs on (${last.t} after ${lastAtSource.t})`);
    if (shape.name !== 'idle') assert.ok(last.pages > lastAtSource.pages, 'and it keeps writing');
    assert.is(last.errors, 0, `the guest found pages it did not write: ${guestErrors(p.dst).join('\n')}`);
    assert.is(await qemuStatus(p.dst), 'running');
    assert.is(await qemuStatus(p.src), 'postmigrate');
    // Both QEMUs' migration settings are as the adapters found them (a later migration of QEMU's own carries the RAM).
    assert.is(await qemuCapability(p.dst, 'x-ignore-shared'), false);
    assert.is(await qemuCapability(p.src, 'x-ignore-shared'), false);
  }));
}

test('a guest with two NUMA nodes, each in its own RAM file: two regions, both moved; the guest counts on error-free', deadline(120_000, async () => {
  // The guest's region (16 MiB up, 176 MiB) spans both nodes' memory (128 MiB each).
  const p = await startPair('mib=176 rate=20000', 'numa', 256, true);
  await nextStatus(p.src, 0, 2);
  const { s, d } = await migrateQemu(p, ['--downtime-limit', '100']);
  assert.is(s.code, 0, s.stderr);
  assert.is(d.code, 0, d.stderr);
  const sr = report('source.json');
  assert.is(sr.iterations[0].pages, 2 * 32768, 'pass 1 covers both regions');
  const after = await nextStatus(p.dst, guestStatus(p.dst).length, 2);
  assert.ok(after.at(-1)!.pages > guestStatus(p.src).at(-1)!.pages, 'the guest writes on at the destination');
  assert.is(after.at(-1)!.errors, 0, guestErrors(p.dst).join('\n'));
}));

test('the destination QEMU dies before the switchover: the source QEMU runs on, its guest error-free', deadline(120_000, async () => {
  const p = await startPair('mib=64 rate=20000', 'fail');
  await nextStatus(p.src, 0, 2);
  // Its own temporary directory: an adapter makes nothing there before the switchover, so one killed
  // before it leaves nothing behind.
  const tmp = dir.file('dest-tmp');
  mkdirSync(tmp);
  const dest = memshift(['qemu-dest', '--listen', '127.0.0.1:0', '--qmp', p.dst.qmp, '--insecure', '--quiet'], { TMPDIR: tmp });
  await waitForOutput(dest, (t) => /listening on 127\.0\.0\.1:\d+/.test(t));
  assert.equal(readdirSync(tmp), [], 'nothing in the temporary directory while the adapter waits');
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(dest.stdout())![1]);
  // qemu-dest holds the QEMU's files; the QEMU itself is gone when memshift asks it to load the devices.
  p.dst.running.proc.kill('SIGKILL');
  await p.dst.running.done;
  const source = memshift(['qemu-source', '--connect', `127.0.0.1:${port}`, '--qmp', p.src.qmp, '--insecure', '--quiet', '--report', dir.file('source.json')]);
  const [s, d] = await Promise.all([source.done, dest.done]);
  assert.is.not(s.code, 0);
  assert.is.not(d.code, 0);
  assert.match(d.stderr, /MS_ERR_QEMU/);
  assert.equal(readdirSync(tmp), [], 'the device stream\'s directory is gone after the failed load');
  assert.is(report('source.json').outcome, 'failed');
  assert.is(await qemuStatus(p.src), 'running');
  assert.is(await qemuCapability(p.src, 'x-ignore-shared'), false, 'the source QEMU\'s settings are back');
  const before = guestStatus(p.src).length;
  const after = await nextStatus(p.src, before, 2);
  assert.is(after[after.length - 1].errors, 0, guestErrors(p.src).join('\n'));
}));

test('a destination QEMU with other RAM is refused at the handshake; the source QEMU runs on', deadline(120_000, async () => {
  const p = await startPair('mib=16 rate=0', 'mismatch', 128);
  const dest = memshift(['qemu-dest', '--listen', '127.0.0.1:0', '--qmp', p.dst.qmp, '--insecure']);
  await waitForOutput(dest, (t) => /listening on 127\.0\.0\.1:\d+/.test(t));
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(dest.stdout())![1]);
  const s = await memshift(['qemu-source', '--connect', `127.0.0.1:${port}`, '--qmp', p.src.qmp, '--insecure', '--quiet']).done;
  assert.is(s.code, 1);
  assert.match(s.stderr, /65536 pages at the source: larger than the pre-allocated guest \(32768\)/);
  assert.is(await qemuStatus(p.src), 'running');
}));

test('a QEMU whose RAM is not in a shared file is refused, naming the backend and the flags to use', deadline(60_000, async () => {
  const src = await startQemu(dir.file(), 'plain', { append: 'mib=16 rate=0', plainRam: true });
  const source = memshift(['qemu-source', '--connect', '127.0.0.1:9', '--qmp', src.qmp, '--insecure']);
  const s = await source.done;
  assert.is(s.code, 1);
  assert.match(s.stderr, /MS_ERR_QEMU/);
  assert.match(s.stderr, /memory-backend-ram/);
  assert.match(s.stderr, /share=on/);
  assert.is(await qemuStatus(src), 'running');
}));

test('qemu-dest refuses a QEMU that is not waiting for an incoming migration', deadline(60_000, async () => {
  const q = await startQemu(dir.file(), 'busy', { append: 'mib=16 rate=0' });
  const dest = memshift(['qemu-dest', '--listen', '127.0.0.1:0', '--qmp', q.qmp, '--insecure']);
  const d = await dest.done;
  assert.is(d.code, 1);
  assert.match(d.stderr, /MS_ERR_QEMU.*running, not waiting for a migration.*-incoming defer/);
}));

test.run();
