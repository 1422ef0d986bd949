// How a host shares its machine (cluster/host-model.ts): fairShares gives every guest its allocation
// when the wants (demand up to allocation) fit, else max-min fair in proportion to the allocations;
// shareHost derives what each guest is given, uses, swaps and whether it meets its SLA; responseTime is
// the M/M/1 reading service ÷ (1 − ρ), growing further past saturation, with swapping and a short network.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SWAP_TURNOVER, fairShares, responseTime, shareHost, type GuestLoad } from '../../src/cluster/host-model.js';
import type { Vector } from '../../src/manager/resources.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const close = (actual: number, expected: number, what: string, eps = 1e-9): void =>
  assert.ok(Math.abs(actual - expected) <= eps * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);
const sum = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0);
const GiB = 2 ** 30;
const MiB = 2 ** 20;
const SLA = { serviceMs: 10, responseMs: 80 };

// ---- fairShares ---------------------------------------------------------------------------------

test('fairShares: when the wants fit, every guest is given its allocation', () => {
  assert.equal(fairShares(12, [4, 6, 2], [1, 5, 2]), [4, 6, 2]);
});

test('fairShares: demand above an allocation does not count — the wants are capped at the allocations', () => {
  // wants min(8, 20) + min(3, 1) = 9 ≤ 12: no contention although demand totals 21.
  assert.equal(fairShares(12, [8, 3], [20, 1]), [8, 3]);
});

test('fairShares: contended — the used CPU, Σ min(demand, share), is exactly the capacity', () => {
  const cases: [number, number[], number[]][] = [
    [12, [8, 6, 4], [7, 4.5, 2]],
    [10, [5, 5, 5, 5], [5, 1, 4, 3]],
    [3, [1, 2, 3], [1, 2, 3]],
    [125 * MiB, [120 * MiB, 60 * MiB], [100 * MiB, 45 * MiB]],
  ];
  for (const [capacity, allocations, demands] of cases) {
    assert.ok(sum(allocations.map((a, i) => Math.min(a, demands[i]))) > capacity, 'the case is contended');
    const shares = fairShares(capacity, allocations, demands);
    close(sum(shares.map((s, i) => Math.min(demands[i], s))), capacity, `Σ used for ${capacity}, [${allocations}], [${demands}]`);
    shares.forEach((s, i) => assert.ok(s <= allocations[i], `share ${s} over allocation ${allocations[i]}`));
  }
});

test('fairShares: a small guest keeps what it wants; the rest is split in proportion to the allocations', () => {
  const allocations = [8, 6, 4];
  const demands = [7, 4.5, 2];
  const shares = fairShares(12, allocations, demands);
  // At the first level 12/18 the third guest's share 4·⅔ ≈ 2.67 covers its 2: it keeps 2 and the
  // other two share the remaining 10 in proportion 8 : 6.
  assert.ok(shares[2] >= demands[2], `the small guest is given ${shares[2]} < its demand ${demands[2]}`);
  close(shares[0], (10 * 8) / 14, 'first guest');
  close(shares[1], (10 * 6) / 14, 'second guest');
  close(shares[0] / shares[1], 8 / 6, 'ratio of the unsatisfied guests’ shares');
});

test('fairShares: everyone wanting all of an equal allocation gets an equal part', () => {
  const shares = fairShares(9, [6, 6, 6], [10, 10, 10]);
  for (const s of shares) close(s, 3, 'share');
});

// ---- shareHost ----------------------------------------------------------------------------------

const CONTENDED: GuestLoad[] = [
  { allocation: v(8, 40 * MiB, 4 * GiB), demand: v(7, 10 * MiB, 3 * GiB), sla: SLA },
  { allocation: v(6, 40 * MiB, 6 * GiB), demand: v(4.5, 10 * MiB, 5 * GiB), sla: SLA },
  { allocation: v(4, 20 * MiB, 2 * GiB), demand: v(2, 5 * MiB, 3 * GiB), sla: SLA }, // 1 GiB over its allocation
];
const HOST = v(12, 125 * MiB, 16 * GiB);

test('shareHost: what a guest uses is at most what it is given, and at most what it wants', () => {
  const shares = shareHost(HOST, CONTENDED);
  shares.forEach((s, i) => {
    const g = CONTENDED[i];
    assert.is(s.used.cpu, Math.min(g.demand.cpu, s.given.cpu));
    assert.is(s.used.net, Math.min(g.demand.net, s.given.net));
    assert.is(s.used.mem, Math.min(g.demand.mem, g.allocation.mem));
    assert.is(s.given.mem, g.allocation.mem);
    assert.ok(s.used.cpu <= s.given.cpu && s.used.net <= s.given.net && s.used.mem <= s.given.mem, `guest ${i}`);
  });
  close(sum(shares.map((s) => s.used.cpu)), HOST.cpu, 'the contended CPU is used in full');
  assert.equal(shares.map((s) => s.given.net), CONTENDED.map((g) => g.allocation.net), 'the network is not contended: allocations');
});

test('shareHost: memory demand over the allocation is swapped, a tenth turning over each second', () => {
  const shares = shareHost(HOST, CONTENDED);
  assert.is(shares[2].swappedBytes, GiB);
  assert.is(shares[2].swapBytesPerSec, GiB * SWAP_TURNOVER);
  assert.is(SWAP_TURNOVER, 0.1);
  for (const i of [0, 1]) {
    assert.is(shares[i].swappedBytes, 0, `guest ${i} fits its allocation`);
    assert.is(shares[i].swapBytesPerSec, 0);
  }
});

test('shareHost: the guests short of CPU on an oversubscribed host violate their SLA', () => {
  const shares = shareHost(HOST, CONTENDED);
  for (const i of [0, 1]) {
    assert.ok(CONTENDED[i].demand.cpu > shares[i].given.cpu, `guest ${i} gets less than it wants`);
    assert.ok(shares[i].slaViolated, `guest ${i}: ${shares[i].responseMs} ms`);
    assert.ok(shares[i].responseMs > SLA.responseMs);
  }
});

test('shareHost: on a lightly loaded host the response time is service ÷ (1 − ρ) and within the SLA', () => {
  const light: GuestLoad[] = [
    { allocation: v(4, 40 * MiB, 4 * GiB), demand: v(1, 10 * MiB, 2 * GiB), sla: SLA },
    { allocation: v(2, 20 * MiB, 2 * GiB), demand: v(0.5, 5 * MiB, 1 * GiB), sla: SLA },
  ];
  const shares = shareHost(HOST, light);
  shares.forEach((s, i) => {
    assert.equal(s.given, light[i].allocation, 'given its allocation');
    close(s.responseMs, SLA.serviceMs / (1 - 0.25), `guest ${i} at ρ = ¼`);
    assert.is(s.slaViolated, false);
    assert.is(s.swappedBytes, 0);
  });
});

// ---- responseTime -------------------------------------------------------------------------------

const GIVEN = v(4, 100 * MiB, 4 * GiB);

test('responseTime: the service time with no load, service ÷ (1 − ρ) below saturation', () => {
  close(responseTime(10, v(0, 0, 0), GIVEN, 4 * GiB), 10, 'ρ = 0');
  close(responseTime(10, v(2, 0, 0), GIVEN, 4 * GiB), 20, 'ρ = ½');
  close(responseTime(10, v(3, 0, 0), GIVEN, 4 * GiB), 40, 'ρ = ¾');
});

test('responseTime: increasing in CPU demand, through saturation and past what is given', () => {
  let prev = -Infinity;
  for (let cpu = 0; cpu <= 40; cpu += 0.05) {
    const ms = responseTime(10, v(cpu, 0, 0), GIVEN, 4 * GiB);
    assert.ok(Number.isFinite(ms), `${cpu} cores: ${ms}`);
    assert.ok(ms > prev, `${cpu} cores: ${ms} ms not above ${prev} ms`);
    prev = ms;
  }
});

test('responseTime: swapping makes it longer, the more the longer', () => {
  const base = responseTime(10, v(1, 0, 4 * GiB), GIVEN, 4 * GiB);
  const some = responseTime(10, v(1, 0, 4.5 * GiB), GIVEN, 4 * GiB);
  const more = responseTime(10, v(1, 0, 6 * GiB), GIVEN, 4 * GiB);
  close(base, 10 / (1 - 0.25), 'memory demand at the allocation: no swapping');
  assert.ok(some > base && more > some, `${base} < ${some} < ${more}`);
});

test('responseTime: a network shortfall makes it longer; network demand within what is given does not', () => {
  const within = responseTime(10, v(1, 100 * MiB, 0), GIVEN, 4 * GiB);
  close(within, 10 / (1 - 0.25), 'network at what is given');
  const short = responseTime(10, v(1, 150 * MiB, 0), GIVEN, 4 * GiB);
  const shorter = responseTime(10, v(1, 300 * MiB, 0), GIVEN, 4 * GiB);
  assert.ok(short > within && shorter > short, `${within} < ${short} < ${shorter}`);
});

test('responseTime: finite when demand is far over what is given, or nothing is given', () => {
  for (const [demand, given] of [
    [v(1e6, 0, 0), GIVEN],
    [v(1, 0, 0), v(0, 100 * MiB, 4 * GiB)],
    [v(1, 1e12, 0), v(4, 0, 4 * GiB)],
    [v(1e6, 1e12, 1e15), v(0, 0, 1)],
  ] as const) {
    const ms = responseTime(10, demand, given, given.mem);
    assert.ok(Number.isFinite(ms) && ms > 10, `${JSON.stringify(demand)} on ${JSON.stringify(given)}: ${ms}`);
  }
});

test.run();
