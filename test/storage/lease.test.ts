// The single-runner lease of a shared image (src/storage/lease.ts): one holder at a time; a held lease
// refuses others with MS_ERR_LEASE_HELD naming the holder; an expired one can be taken, and its old
// holder then finds it lost; hand-over and break move it to the next generation; a damaged file is
// refused but can be broken; old generations are pruned; and of several processes taking a free lease
// at the same instant exactly one wins.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { breakLease, handOverLease, holdsLease, readLease, renewLease, takeLease } from '../../src/storage/lease.js';
import { expectCode } from '../_support/guest-helpers.js';
import { CLI } from '../_support/processes.js';

let dir = '';
let image = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'memshift-lease-'));
  image = join(dir, 'guest.img');
  writeFileSync(image, '');
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_800_000_000_000;

test('a free image is taken at generation 1; another runner is refused with the holder named', () => {
  assert.is(readLease(image), null);
  const r = takeLease(image, 'host-a', 30_000, T0);
  assert.equal(r, { owner: 'host-a', generation: 1, takenAtMs: T0, expiresAtMs: T0 + 30_000 });
  assert.ok(holdsLease(image, 'host-a', T0 + 1));
  assert.not.ok(holdsLease(image, 'host-b', T0 + 1));
  const e = expectCode(() => takeLease(image, 'host-b', 30_000, T0 + 29_999), 'MS_ERR_LEASE_HELD');
  assert.match(e.message, '"host-a"');
  assert.equal(readLease(image), r, 'a refused take changes nothing');
});

test('an expired lease can be taken, and its old holder then finds it lost', () => {
  takeLease(image, 'host-a', 1000, T0);
  const r = takeLease(image, 'host-b', 1000, T0 + 1000);
  assert.is(r.generation, 2);
  assert.not.ok(holdsLease(image, 'host-a', T0 + 1000));
  expectCode(() => renewLease(image, 'host-a', 1000, T0 + 1001), 'MS_ERR_LEASE_LOST');
});

test('renewing extends the holder\'s term; a hand-over passes it on and the old holder can no longer renew', () => {
  takeLease(image, 'src', 1000, T0);
  assert.is(renewLease(image, 'src', 5000, T0 + 900).expiresAtMs, T0 + 5900);
  assert.ok(holdsLease(image, 'src', T0 + 5000));
  const h = handOverLease(image, 'src', 'dst', 5000, T0 + 1000);
  assert.equal({ owner: h.owner, generation: h.generation }, { owner: 'dst', generation: 2 });
  assert.ok(holdsLease(image, 'dst', T0 + 1001));
  assert.not.ok(holdsLease(image, 'src', T0 + 1001));
  expectCode(() => renewLease(image, 'src', 5000, T0 + 1001), 'MS_ERR_LEASE_LOST');
  expectCode(() => handOverLease(image, 'src', 'other', 5000, T0 + 1001), 'MS_ERR_LEASE_LOST');
});

test('a break frees the lease at the next generation, over a damaged file too; generations are pruned', () => {
  takeLease(image, 'host-a', 60_000, T0);
  const b = breakLease(image, T0 + 1);
  assert.equal({ owner: b.owner, generation: b.generation }, { owner: '', generation: 2 });
  assert.not.ok(holdsLease(image, 'host-a', T0 + 2));
  assert.is(takeLease(image, 'host-b', 60_000, T0 + 2).generation, 3);
  writeFileSync(`${image}.lease.3`, 'not a lease');
  expectCode(() => readLease(image), 'MS_ERR_LEASE_INVALID');
  expectCode(() => takeLease(image, 'host-c', 60_000, T0 + 3), 'MS_ERR_LEASE_INVALID');
  assert.is(breakLease(image, T0 + 4).generation, 4);
  for (let i = 0; i < 5; i++) takeLease(image, `host-${i}`, 1, T0 + 10 + 2 * i);
  const left = readdirSync(dir).filter((n) => n.includes('.lease.')).sort();
  assert.equal(left, ['guest.img.lease.8', 'guest.img.lease.9'], 'the current generation and the one before it are kept');
});

test('of six processes taking a free lease at the same instant, exactly one wins', async () => {
  const mod = fileURLToPath(new URL('../../src/storage/lease.js', import.meta.url));
  const start = Date.now() + 400;
  const script = (i: number): string => `
    const { takeLease } = await import(${JSON.stringify(mod)});
    while (Date.now() < ${start});
    try { takeLease(${JSON.stringify(image)}, 'p${i}', 60000); console.log('won'); } catch (e) { console.log(e.code); }`;
  const runs = Array.from({ length: 6 }, (_, i) => new Promise<string>((resolve) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script(i)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('close', () => resolve(out.trim()));
  }));
  const results = await Promise.all(runs);
  assert.is(results.filter((r) => r === 'won').length, 1, results.join(', '));
  assert.ok(results.every((r) => r === 'won' || r === 'MS_ERR_LEASE_HELD'), results.join(', '));
  assert.is(readLease(image)!.generation, 1);
});

test('memshift lease show names the holder, and lease break frees it', async () => {
  takeLease(image, 'host-a', 60_000);
  const run = (args: string[]): Promise<string> => new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'lease', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('close', () => resolve(out));
  });
  assert.match(await run(['show', image]), /generation 1, held by "host-a"/);
  assert.match(await run(['break', image]), /free \(generation 2/);
  assert.equal(JSON.parse(await run(['show', image, '--json'])).owner, '');
});

test.run();
