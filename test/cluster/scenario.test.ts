// Cluster scenarios (cluster/scenario.ts, cluster/scenarios.ts): every shipped scenario parses and a
// parsed scenario survives JSON and parsing again unchanged; every invalid field is refused as a
// MemshiftError MS_ERR_SCENARIO_INVALID naming that field; scaleTime scales times, not values;
// parseGuestSpec checks a guest from the wire the same way.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemshiftError } from '../../src/errors.js';
import { DEFAULT_MANAGER_POLICY, parseGuestSpec, parseScenario, scaleTime, type Scenario } from '../../src/cluster/scenario.js';
import { SCENARIO_NAMES, shippedScenario, shippedScenarioJson } from '../../src/cluster/scenarios.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/**
 * Runs `f`, rethrowing a MemshiftError as a plain Error: uvu cannot report an error whose `details` is an
 * object (its formatter calls details.split), so one escaping a test would silently end this file's run.
 */
function must<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof MemshiftError) throw new Error(`unexpected ${err.code}: ${err.message}`);
    throw err;
  }
}
const parse = (json: unknown, where?: string): Scenario => must(() => parseScenario(json, where));
const shipped = (name: string): Scenario | undefined => must(() => shippedScenario(name));

/** A small valid scenario in file form; each test changes one thing in a fresh copy. */
function base(): any {
  return {
    name: 'small', description: 'two hosts, two guests', durationMs: 10_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: { cpu: 12, net: '125MiB', mem: '16GiB' } }, { name: 'h2', capacity: { cpu: 12, net: '125MiB', mem: '16GiB' } }],
    guests: [
      { name: 'web', host: 'h1', ram: '32MiB', graybox: true, allocation: { cpu: 4, net: '40MiB', mem: '4GiB' },
        demand: { cpu: [[0, 1], [2000, 1], [3000, 3]], net: '10MiB', mem: '3GiB', noise: 0.03 }, sla: { serviceMs: 10, responseMs: 80 } },
      { name: 'db', host: 'h2', allocation: { cpu: 2, net: '20MiB', mem: '2GiB' }, demand: { cpu: 1 } },
    ],
    manager: { k: 2, n: 3 },
  };
}

/** The error parseScenario throws for `json`, checked to be a scenario error naming `field`. */
function refusal(json: unknown, field: string): MemshiftError {
  let caught: unknown;
  try {
    parseScenario(json, 'test.json');
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MemshiftError, `expected a MemshiftError for ${field}, got ${String(caught)}`);
  const err = caught as MemshiftError;
  assert.is(err.code, 'MS_ERR_SCENARIO_INVALID');
  assert.ok(err.message.startsWith('test.json: '), `the message starts with where: ${err.message}`);
  assert.ok(err.message.includes(field), `the message names ${field}: ${err.message}`);
  return err;
}

// ---- valid scenarios ----------------------------------------------------------------------------

test('the base scenario parses: sizes become bytes, defaults fill the rest', () => {
  const s = parse(base());
  assert.equal(s.hosts[0].capacity, { cpu: 12, net: 125 * MiB, mem: 16 * GiB });
  const [web, db] = s.guests;
  assert.is(web.ram, 32 * MiB);
  assert.equal(web.demand.cpu, [[0, 1], [2000, 1], [3000, 3]]);
  assert.is(web.demand.mem, 3 * GiB);
  assert.is(db.ram, 32 * MiB, 'ram defaults to 32MiB');
  assert.is(db.seed, 2, 'the default seed is the guest’s position from 1');
  assert.is(db.graybox, false);
  assert.equal(db.demand, { cpu: 1, net: 0, mem: 0, noise: 0 });
  assert.equal(db.sla, { serviceMs: 10, responseMs: 80 });
  assert.equal(s.manager, { ...DEFAULT_MANAGER_POLICY, k: 2, n: 3 });
});

test('every shipped scenario parses, under its own name', () => {
  assert.ok(SCENARIO_NAMES.length >= 5);
  for (const name of SCENARIO_NAMES) {
    const s = shipped(name);
    assert.ok(s !== undefined, name);
    assert.is(s!.name, name);
    assert.equal(s, parse(shippedScenarioJson(name), name), `${name}: shippedScenario is the parsed JSON`);
    const hosts = new Set(s!.hosts.map((h) => h.name));
    for (const g of s!.guests) assert.ok(hosts.has(g.host), `${name}: ${g.name} on a host of the scenario`);
  }
  assert.is(shipped('no-such-scenario'), undefined);
  assert.is(shippedScenarioJson('no-such-scenario'), undefined);
});

test('a parsed scenario written as JSON parses again to the same scenario', () => {
  for (const name of SCENARIO_NAMES) {
    const s = shipped(name)!;
    assert.equal(parse(JSON.parse(JSON.stringify(s)), name), s, name);
  }
  const s = parse(base());
  assert.equal(parse(JSON.parse(JSON.stringify(s))), s, 'base');
});

test('trace points at the same time (a step) are allowed', () => {
  const json = base();
  json.guests[0].demand.cpu = [[0, 1], [2000, 1], [2000, 5]];
  assert.equal(parse(json).guests[0].demand.cpu, [[0, 1], [2000, 1], [2000, 5]]);
});

// ---- refusals -----------------------------------------------------------------------------------

test('a guest on an unknown host', () => {
  const json = base();
  json.guests[1].host = 'h9';
  const err = refusal(json, 'guests[1].host');
  assert.match(err.message, /must name one of the hosts/);
  assert.is(err.details.field, 'guests[1].host');
});

test('a guest name used twice', () => {
  const json = base();
  json.guests[1].name = 'web';
  assert.match(refusal(json, 'guests[1].name').message, /web is used twice/);
});

test('a host name used twice', () => {
  const json = base();
  json.hosts[1].name = 'h1';
  assert.match(refusal(json, 'hosts').message, /h1 twice/);
});

test('a size that is not a number or a size with a known unit', () => {
  for (const bad of ['16 gigs', '16GB', 'lots', '-4GiB', '1e3', '']) {
    const json = base();
    json.hosts[0].capacity.mem = bad;
    refusal(json, 'hosts[0].capacity.mem');
  }
  const json = base();
  json.guests[0].allocation.net = -1;
  refusal(json, 'guests[0].allocation.net');
});

test('a capacity or allocation of 0 is refused (each must be more than 0)', () => {
  const json = base();
  json.hosts[1].capacity.cpu = 0;
  assert.match(refusal(json, 'hosts[1].capacity.cpu').message, /more than 0/);
});

test('trace times going backwards', () => {
  const json = base();
  json.guests[0].demand.cpu = [[0, 1], [2000, 1], [1999, 3]];
  assert.match(refusal(json, 'guests[0].demand.cpu[2][0]').message, /earlier than the point before it/);
  const json2 = base();
  json2.guests[0].demand.cpu = [[0, 1], [2000]];
  refusal(json2, 'guests[0].demand.cpu[1]');
  const json3 = base();
  json3.guests[0].demand.net = [];
  refusal(json3, 'guests[0].demand.net');
});

test('an SLA response time not above the service time', () => {
  for (const responseMs of [10, 5]) {
    const json = base();
    json.guests[0].sla = { serviceMs: 10, responseMs };
    assert.match(refusal(json, 'guests[0].sla.responseMs').message, /more than serviceMs/);
  }
});

test('k above n', () => {
  const json = base();
  json.manager = { k: 4, n: 3 };
  assert.match(refusal(json, 'manager.k').message, /at most n \(3\)/);
  const json2 = base();
  json2.manager = { k: 3 }; // n defaults to 3: fine
  assert.is(parse(json2).manager.k, 3);
  const json3 = base();
  json3.manager = { n: 1 }; // k defaults to 2 > 1
  refusal(json3, 'manager.k');
});

test('a threshold above 1', () => {
  const json = base();
  json.manager = { threshold: { cpu: 0.8, net: 1.2, mem: 0.9 } };
  refusal(json, 'manager.threshold.net');
  const json2 = base();
  json2.manager = { threshold: { cpu: 1, net: 1, mem: 1 } };
  assert.equal(parse(json2).manager.threshold, { cpu: 1, net: 1, mem: 1 }, 'exactly 1 is allowed');
});

test('a guest RAM that is not a multiple of 256KiB, or over 1GiB', () => {
  for (const ram of ['100KiB', 32 * MiB + 4096, '2GiB', 256 * 1024 + 0.5]) {
    const json = base();
    json.guests[0].ram = ram;
    assert.match(refusal(json, 'guests[0].ram').message, /multiple of 256KiB/, String(ram));
  }
  const json = base();
  json.guests[0].ram = '256KiB';
  assert.is(parse(json).guests[0].ram, 256 * 1024);
});

test('noise of 1 or more', () => {
  for (const noise of [1, 1.5]) {
    const json = base();
    json.guests[0].demand.noise = noise;
    assert.match(refusal(json, 'guests[0].demand.noise').message, /share below 1/);
  }
});

test('an unknown resource in a vector', () => {
  const json = base();
  json.hosts[0].capacity.disk = '1TiB';
  assert.match(refusal(json, 'hosts[0].capacity.disk').message, /is not a resource/);
  const json2 = base();
  json2.guests[1].allocation.gpu = 1;
  refusal(json2, 'guests[1].allocation.gpu');
  const json3 = base();
  json3.manager = { threshold: { cpu: 0.5, net: 0.5, mem: 0.5, disk: 0.5 } };
  refusal(json3, 'manager.threshold.disk');
});

test('other fields: durationMs, a bad name, a non-boolean graybox, no hosts', () => {
  const json = base();
  json.durationMs = 500;
  refusal(json, 'durationMs');
  const json2 = base();
  json2.guests[0].name = 'web server';
  refusal(json2, 'guests[0].name');
  const json3 = base();
  json3.guests[0].graybox = 'yes';
  refusal(json3, 'guests[0].graybox');
  const json4 = base();
  json4.hosts = [];
  refusal(json4, 'hosts');
  refusal([], 'the scenario');
});

// ---- scaleTime ----------------------------------------------------------------------------------

test('scaleTime scales the duration, the interval and every trace time, not the values', () => {
  const s = shipped('cpu-surge')!;
  const before = JSON.stringify(s);
  const k = 0.5;
  const fast = scaleTime(s, k);
  assert.is(fast.durationMs, s.durationMs * k);
  assert.is(fast.intervalMs, s.intervalMs * k);
  fast.guests.forEach((g, i) => {
    const orig = s.guests[i];
    for (const r of ['cpu', 'net', 'mem'] as const) {
      const t = orig.demand[r];
      const expected = typeof t === 'number' ? t : t.map(([ms, value]) => [ms * k, value]);
      assert.equal(g.demand[r], expected, `${g.name}.${r}`);
    }
    assert.is(g.demand.noise, orig.demand.noise);
    assert.equal(g.allocation, orig.allocation);
  });
  const web = fast.guests.find((g) => g.name === 'web')!;
  assert.equal(web.demand.cpu, [[0, 2], [2000, 2], [2500, 7]], 'the surge at 4–5 s now at 2–2.5 s');
  assert.equal(fast.hosts, s.hosts);
  assert.equal(fast.manager, s.manager);
  assert.is(JSON.stringify(s), before, 'the scenario given is not changed');
});

test('scaleTime keeps the interval at 50 ms at least (the least parseScenario allows)', () => {
  const s: Scenario = parse({ ...base(), durationMs: 200_000 });
  assert.is(must(() => scaleTime(s, 0.01)).intervalMs, 50);
  assert.is(must(() => scaleTime(s, 2)).intervalMs, 2000);
});

test('scaleTime refuses a scale that makes the scenario shorter than the 1 s a scenario lasts at least', () => {
  const s: Scenario = parse(base());
  let caught: unknown;
  try {
    scaleTime(s, 0.05);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MemshiftError);
  assert.is(caught.code, 'MS_ERR_SCENARIO_INVALID');
  assert.match(caught.message, /0\.05 makes the scenario shorter than 1 s/);
  assert.is(must(() => scaleTime(s, 0.1)).durationMs, 1000);
});

// ---- parseGuestSpec -----------------------------------------------------------------------------

test('parseGuestSpec: a spec from the wire without an allocation is refused', () => {
  const spec = { name: 'web', ram: '32MiB', demand: { cpu: 1 }, sla: { serviceMs: 10, responseMs: 80 } };
  let caught: unknown;
  try {
    parseGuestSpec(spec, 'POST /incoming', 'spec', 1);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MemshiftError);
  assert.is((caught as MemshiftError).code, 'MS_ERR_SCENARIO_INVALID');
  assert.match((caught as MemshiftError).message, /^POST \/incoming: spec\.allocation must be an object/);
  const ok = must(() => parseGuestSpec({ ...spec, allocation: { cpu: 2, net: '10MiB', mem: '1GiB' } }, 'POST /incoming', 'spec', 7));
  assert.equal(ok.allocation, { cpu: 2, net: 10 * MiB, mem: GiB });
  assert.is(ok.seed, 7, 'the default seed is the one passed');
});

test.run();
