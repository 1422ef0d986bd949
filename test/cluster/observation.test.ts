// What the manager reads from a host's /metrics (cluster/observation.ts): readHost recovers the host's
// capacity and, per guest, allocation, use and what it is given (black-box) and the OS's own figures for
// gray-box guests only; estimateDemand turns a guest's view into a demand estimate: gray-box takes the
// OS's CPU demand and max(allocation, OS memory); black-box inflates capped use by CAPPED_INFLATION and
// counts memory as the allocation plus the swap traffic seen over the interval.
//
// The exposition is written as ClusterHost.metrics() (host.ts) writes it, with the same metric names and
// labels, from shares computed by the host model.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CAPPED_INFLATION, estimateDemand, readHost, type GuestView } from '../../src/cluster/observation.js';
import { parseMetrics, renderMetrics, type MetricFamily, type Sample } from '../../src/cluster/metrics-text.js';
import { shareHost, type GuestShare, type GuestSla } from '../../src/cluster/host-model.js';
import { RESOURCES, type Vector } from '../../src/manager/resources.js';

const v = (cpu: number, net: number, mem: number): Vector => ({ cpu, net, mem });
const close = (actual: number, expected: number, what: string, eps = 1e-9): void =>
  assert.ok(Math.abs(actual - expected) <= eps * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);
const GiB = 2 ** 30;
const MiB = 2 ** 20;

interface FakeGuest {
  name: string;
  allocation: Vector;
  demand: Vector;
  sla: GuestSla;
  graybox: boolean;
  ram: number;
  dirtyPagesPerSec: number;
  migrating: boolean;
  slaViolationSeconds: number;
}

/** The exposition of a host running `guests`, family for family as ClusterHost.metrics() writes it. */
function exposition(host: string, capacity: Vector, guests: FakeGuest[], nucleusSeconds = 0.25): { text: string; shares: GuestShare[] } {
  const shares = shareHost(capacity, guests.map((g) => ({ allocation: g.allocation, demand: g.demand, sla: g.sla })));
  const family = (name: string, type: 'gauge' | 'counter', samples: Sample[]): MetricFamily => ({ name, help: `${name} help`, type, samples });
  const per = (f: (g: FakeGuest, s: GuestShare) => number, only: (g: FakeGuest) => boolean = () => true): Sample[] =>
    guests.flatMap((g, i) => (only(g) ? [{ labels: { host, guest: g.name }, value: f(g, shares[i]) }] : []));
  const gray = (g: FakeGuest): boolean => g.graybox;
  const text = renderMetrics([
    family('memshift_host_capacity', 'gauge', RESOURCES.map((r) => ({ labels: { host, resource: r }, value: capacity[r] }))),
    family('memshift_host_guests', 'gauge', [{ labels: { host }, value: guests.length }]),
    family('memshift_host_migrations_total', 'counter', ['in', 'out', 'failed'].map((direction) => ({ labels: { host, direction }, value: 1 }))),
    family('memshift_host_nucleus_seconds_total', 'counter', [{ labels: { host }, value: nucleusSeconds }]),
    family('memshift_guest_allocation', 'gauge', guests.flatMap((g) => RESOURCES.map((r) => ({ labels: { host, guest: g.name, resource: r }, value: g.allocation[r] })))),
    family('memshift_guest_cpu_cores', 'gauge', per((_, s) => s.used.cpu)),
    family('memshift_guest_cpu_given_cores', 'gauge', per((_, s) => s.given.cpu)),
    family('memshift_guest_cpu_seconds_total', 'counter', per((_, s) => s.used.cpu * 10)),
    family('memshift_guest_net_bytes_per_second', 'gauge', per((_, s) => s.used.net)),
    family('memshift_guest_net_given_bytes_per_second', 'gauge', per((_, s) => s.given.net)),
    family('memshift_guest_net_bytes_total', 'counter', per((_, s) => s.used.net * 10)),
    family('memshift_guest_swap_bytes_per_second', 'gauge', per((_, s) => s.swapBytesPerSec)),
    family('memshift_guest_swap_bytes_total', 'counter', per((_, s) => s.swapBytesPerSec * 10)),
    family('memshift_guest_ram_bytes', 'gauge', per((g) => g.ram)),
    family('memshift_guest_dirty_pages_per_second', 'gauge', per((g) => g.dirtyPagesPerSec)),
    family('memshift_guest_migrating', 'gauge', per((g) => (g.migrating ? 1 : 0))),
    family('memshift_guest_os_cpu_demand_cores', 'gauge', per((g) => g.demand.cpu, gray)),
    family('memshift_guest_os_memory_used_bytes', 'gauge', per((g) => g.demand.mem, gray)),
    family('memshift_guest_response_p95_ms', 'gauge', per((_, s) => s.responseMs, gray)),
    family('memshift_guest_sla_response_ms', 'gauge', per((g) => g.sla.responseMs, gray)),
    family('memshift_guest_sla_violation_seconds_total', 'counter', per((g) => g.slaViolationSeconds)),
  ]);
  return { text, shares };
}

const SLA: GuestSla = { serviceMs: 10, responseMs: 80 };
const CAPACITY = v(12, 125 * MiB, 16 * GiB);
const guest = (name: string, allocation: Vector, demand: Vector, graybox: boolean, extra: Partial<FakeGuest> = {}): FakeGuest => ({
  name, allocation, demand, sla: SLA, graybox, ram: 32 * MiB, dirtyPagesPerSec: 1000, migrating: false, slaViolationSeconds: 0, ...extra,
});
// h1 after cpu-surge's surge: 13.5 cores wanted of 12 (web and db capped), batch swapping 1 GiB.
const GUESTS: FakeGuest[] = [
  guest('web', v(8, 40 * MiB, 4 * GiB), v(7, 10 * MiB, 3 * GiB), true, { dirtyPagesPerSec: 2500, slaViolationSeconds: 3.5 }),
  guest('db', v(6, 40 * MiB, 6 * GiB), v(4.5, 10 * MiB, 7 * GiB), true),
  guest('batch', v(4, 20 * MiB, 2 * GiB), v(2, 5 * MiB, 3 * GiB), false, { migrating: true, ram: 64 * MiB }),
  guest('cache', v(2, 20 * MiB, 2 * GiB), v(1, 20 * MiB, 1 * GiB), false),
];
const { text: TEXT, shares: SHARES } = exposition('h1', CAPACITY, GUESTS);
const VIEW = readHost(parseMetrics(TEXT));
const byName = (name: string): GuestView => VIEW.guests.find((g) => g.name === name)!;

// ---- readHost -----------------------------------------------------------------------------------

test('readHost: the host, its capacity and nucleus time', () => {
  assert.is(VIEW.name, 'h1');
  assert.equal(VIEW.capacity, CAPACITY);
  assert.is(VIEW.nucleusSeconds, 0.25);
});

test('readHost: every guest, each on this host, with its allocation', () => {
  assert.equal(VIEW.guests.map((g) => g.name), GUESTS.map((g) => g.name));
  for (const g of GUESTS) {
    const view = byName(g.name);
    assert.is(view.host, 'h1');
    assert.equal(view.allocation, g.allocation, g.name);
  }
});

test('readHost: black-box use, what is given and swap traffic, as the host model shared them', () => {
  GUESTS.forEach((g, i) => {
    const view = byName(g.name);
    const s = SHARES[i];
    assert.equal(view.used, { cpu: s.used.cpu, net: s.used.net, mem: 0 }, `${g.name} used (memory use is not visible)`);
    assert.equal(view.given, { cpu: s.given.cpu, net: s.given.net, mem: 0 }, `${g.name} given`);
    assert.is(view.swapBytesPerSec, s.swapBytesPerSec, `${g.name} swap`);
  });
  assert.ok(byName('web').used.cpu < 7, 'the host is contended: web gets less than its 7 cores');
  assert.ok(byName('batch').swapBytesPerSec > 0, 'batch swaps');
});

test('readHost: RAM, dirty rate, migrating and the SLA ledger', () => {
  assert.is(byName('web').dirtyPagesPerSec, 2500);
  assert.is(byName('web').slaViolationSeconds, 3.5);
  assert.is(byName('batch').ramBytes, 64 * MiB);
  assert.is(byName('web').ramBytes, 32 * MiB);
  assert.is(byName('batch').migrating, true);
  assert.is(byName('web').migrating, false);
});

test('readHost: gray-box figures for gray-box guests only', () => {
  GUESTS.forEach((g, i) => {
    const view = byName(g.name);
    if (!g.graybox) {
      assert.is(view.gray, null, `${g.name} runs no daemon`);
      return;
    }
    assert.equal(view.gray, { cpuDemand: g.demand.cpu, memUsed: g.demand.mem, responseMs: SHARES[i].responseMs, slaMs: SLA.responseMs }, g.name);
  });
});

test('readHost: a host with no guests', () => {
  const view = readHost(parseMetrics(exposition('h2', CAPACITY, []).text));
  assert.is(view.name, 'h2');
  assert.equal(view.capacity, CAPACITY);
  assert.equal(view.guests, []);
});

test('readHost: metrics without memshift_host_capacity are not a memshift host', () => {
  const text = TEXT.split('\n').filter((l) => !l.includes('memshift_host_capacity')).join('\n');
  assert.ok(parseMetrics(text).length > 0);
  assert.throws(() => readHost(parseMetrics(text)), /no memshift_host_capacity/);
  assert.throws(() => readHost([]), /no memshift_host_capacity/);
});

// ---- estimateDemand -----------------------------------------------------------------------------

test('gray-box: the OS’s CPU demand, and memory the larger of allocation and the OS’s use', () => {
  const web = estimateDemand(byName('web'), 1000, true);
  assert.is(web.cpu, 7, 'web wants 7 cores although it gets fewer');
  assert.is(web.mem, 4 * GiB, 'web’s OS uses 3 GiB of its 4 GiB allocation: the allocation counts');
  const db = estimateDemand(byName('db'), 1000, true);
  assert.is(db.cpu, 4.5);
  assert.is(db.mem, 7 * GiB, 'db’s OS uses 7 GiB, above its 6 GiB allocation');
  assert.is(web.net, byName('web').used.net, 'network is black-box even for gray-box guests; web’s is not capped');
});

test('black-box: capped CPU is inflated by CAPPED_INFLATION, uncapped CPU left alone', () => {
  assert.is(CAPPED_INFLATION, 1.25);
  const web = byName('web');
  assert.is(web.used.cpu, web.given.cpu, 'web uses all it is given');
  close(estimateDemand(web, 1000, false).cpu, web.used.cpu * CAPPED_INFLATION, 'web, capped');
  const batch = byName('batch');
  assert.ok(batch.used.cpu < 0.9 * batch.given.cpu, 'batch has room');
  assert.is(estimateDemand(batch, 1000, false).cpu, batch.used.cpu, 'batch, uncapped');
});

test('black-box: capped network is inflated too, uncapped left alone', () => {
  const capped: GuestView = { ...byName('cache'), used: v(1, 20 * MiB, 0), given: v(2, 20 * MiB, 0) };
  close(estimateDemand(capped, 1000, false).net, 20 * MiB * CAPPED_INFLATION, 'net at what is given');
  close(estimateDemand(capped, 1000, true).net, 20 * MiB * CAPPED_INFLATION, 'same with useGray: cache has no daemon');
  const free: GuestView = { ...capped, used: v(1, 10 * MiB, 0) };
  assert.is(estimateDemand(free, 1000, false).net, 10 * MiB);
  const nothingGiven: GuestView = { ...capped, used: v(0, 0, 0), given: v(0, 0, 0) };
  assert.equal(estimateDemand(nothingGiven, 1000, false), { cpu: 0, net: 0, mem: capped.allocation.mem });
});

test('black-box: memory is the allocation plus the swap traffic over the interval', () => {
  const batch = byName('batch');
  // batch wants 3 GiB of its 2 GiB allocation: 1 GiB swapped, a tenth of it per second.
  close(batch.swapBytesPerSec, 0.1 * GiB, 'batch swap traffic');
  close(estimateDemand(batch, 1000, false).mem, 2 * GiB + 0.1 * GiB, '1 s interval');
  close(estimateDemand(batch, 2500, false).mem, 2 * GiB + 0.25 * GiB, '2.5 s interval');
  assert.is(estimateDemand(byName('cache'), 1000, false).mem, 2 * GiB, 'no swapping: the allocation, though the OS uses 1 GiB');
});

test('useGray false ignores the daemon’s figures', () => {
  for (const name of ['web', 'db']) {
    const g = byName(name);
    assert.ok(g.gray !== null);
    const blackOnly = estimateDemand(g, 1000, false);
    assert.equal(blackOnly, estimateDemand({ ...g, gray: null }, 1000, true), name);
    close(blackOnly.mem, g.allocation.mem + g.swapBytesPerSec, `${name}: memory from swap traffic over 1 s, not the OS`);
  }
  // db's OS uses 7 GiB; black-box sees its 1 GiB over the allocation only as swap traffic, 0.1 GiB/s.
  close(estimateDemand(byName('db'), 1000, false).mem, 6 * GiB + 0.1 * GiB, 'db black-box memory');
  assert.ok(estimateDemand(byName('web'), 1000, false).cpu !== 7, 'web’s CPU estimate is not the OS figure');
});

test.run();
