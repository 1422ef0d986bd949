// Hosts and the manager as processes (issue 14): `memshift host` serves its guests' metrics in the
// Prometheus format and refuses unauthenticated control requests; two hosts move a guest with the
// engine when told; `memshift manager --hosts` resolves a hotspot on running hosts; `memshift cluster
// run` plays shipped scenarios with the manager off and on. Every process is tracked and killed by PID.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePsk, formatPskFile, loadPskFile, loadTlsFiles, type Security } from '../../src/index.js';
import { signRequest } from '../../src/cluster/control-auth.js';
import { HostClient } from '../../src/cluster/host-client.js';
import { parseMetrics } from '../../src/cluster/metrics-text.js';
import type { ClusterReport } from '../../src/cluster/cluster-run.js';
import type { ManagerRunReport } from '../../src/cluster/live-manager.js';
import { killAll, memshift, waitForOutput, type Running } from '../_support/processes.js';
import { deadline } from '../_support/deadline.js';
import { makeCredentials } from '../_support/credentials.js';
import { renderedDom } from '../_support/chromium.js';

const dir = mkdtempSync(join(tmpdir(), 'memshift-cluster-test-'));
const psk = generatePsk('cluster-test');
const pskFile = join(dir, 'key.psk');
writeFileSync(pskFile, formatPskFile(psk.psk.identity, psk.psk.key), { mode: 0o600 });
const security: Security = loadPskFile(pskFile);

/** Two hosts; h1 carries web (gray-box, surging to 7 cores at 1.5 s) and db; h2 carries nothing. */
const SCENARIO = {
  name: 'two-hosts', durationMs: 6000, intervalMs: 300,
  hosts: [{ name: 'h1', capacity: { cpu: 12, net: '125MiB', mem: '16GiB' } }, { name: 'h2', capacity: { cpu: 12, net: '125MiB', mem: '8GiB' } }],
  guests: [
    { name: 'web', host: 'h1', ram: '16MiB', graybox: true, allocation: { cpu: 8, net: '40MiB', mem: '4GiB' }, demand: { cpu: [[0, 2], [1500, 2], [1800, 7]], net: '10MiB', mem: '3GiB' } },
    { name: 'db', host: 'h1', ram: '16MiB', allocation: { cpu: 6, net: '40MiB', mem: '6GiB' }, demand: { cpu: 4.5, net: '10MiB', mem: '5GiB' } },
  ],
  manager: { k: 2, n: 3 },
};
const scenarioFile = join(dir, 'scenario.json');
writeFileSync(scenarioFile, JSON.stringify(SCENARIO));

type Host = Running & { address: string };

/** `memshift host NAME` of `scenario` (default the file above), under the PSK unless `extra` says otherwise. */
async function startHost(name: string, o: { scenario?: string; extra?: readonly string[]; epoch?: number } = {}): Promise<Host> {
  const r = memshift(['host', '--listen', '127.0.0.1:0', '--name', name, '--scenario', o.scenario ?? scenarioFile, '--epoch', String(o.epoch ?? Date.now()), ...(o.extra ?? ['--psk-file', pskFile])]);
  await waitForOutput(r, (t) => /listening on 127\.0\.0\.1:\d+/.test(t), 30_000);
  return { ...r, address: /listening on (127\.0\.0\.1:\d+)/.exec(r.stdout())![1] };
}

/** Hosts h1 and h2 of `scenario` whose clock starts 1.5 s from now; resolves once it has started. */
async function hostsOnOneClock(scenario = scenarioFile): Promise<[Host, Host]> {
  const epoch = Date.now() + 1500;
  const hosts = await Promise.all([startHost('h1', { scenario, epoch }), startHost('h2', { scenario, epoch })]);
  await new Promise((r) => setTimeout(r, Math.max(0, epoch - Date.now())));
  return hosts;
}

/** `memshift cluster run NAME args`, which must exit 0; its stderr and its report. */
async function clusterRun(name: string, args: readonly string[]): Promise<{ stderr: string; report: ClusterReport }> {
  const file = join(dir, `${name}.json`);
  const done = await memshift(['cluster', 'run', name, ...args, '--report', file]).done;
  assert.is(done.code, 0, done.stderr);
  return { stderr: done.stderr, report: JSON.parse(readFileSync(file, 'utf8')) as ClusterReport };
}

async function post(address: string, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${address}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, text: await res.text() };
}

test.after.each(async () => {
  await killAll();
});

test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('a host serves its guests in the Prometheus format: black-box for each, gray-box only for the one with the daemon', deadline(60_000, async () => {
  const h1 = await startHost('h1');
  const res = await fetch(`http://${h1.address}/metrics`);
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  assert.match(text, /# TYPE memshift_guest_cpu_seconds_total counter/);
  const samples = parseMetrics(text);
  const value = (name: string, labels: Record<string, string>): number | undefined =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  assert.is(value('memshift_host_capacity', { host: 'h1', resource: 'cpu' }), 12);
  assert.is(value('memshift_host_capacity', { host: 'h1', resource: 'mem' }), 16 * 2 ** 30);
  assert.is(value('memshift_host_guests', { host: 'h1' }), 2);
  assert.is(value('memshift_guest_allocation', { guest: 'db', resource: 'cpu' }), 6);
  assert.is(value('memshift_guest_ram_bytes', { guest: 'web' }), 16 * 2 ** 20);
  assert.ok(value('memshift_guest_os_cpu_demand_cores', { guest: 'web' }) !== undefined, 'web runs the daemon');
  assert.is(value('memshift_guest_os_cpu_demand_cores', { guest: 'db' }), undefined, 'db does not: no gray-box figures');
  // The nucleus runs: db's demand (4.5 cores, no contention) is what it uses.
  await new Promise((r) => setTimeout(r, 300));
  const again = parseMetrics(await (await fetch(`http://${h1.address}/metrics`)).text());
  const used = again.find((s) => s.name === 'memshift_guest_cpu_cores' && s.labels.guest === 'db')!.value;
  assert.ok(Math.abs(used - 4.5) < 1e-9, `db uses ${used} cores`);
}));

test('a host refuses control requests without authentication, under another key, or made for another host, and says why; a client under another key trusts none of its replies', deadline(60_000, async () => {
  const [h1, h2] = await Promise.all([startHost('h1'), startHost('h2')]);
  const body = JSON.stringify({ guest: 'web', to: '127.0.0.1:9' });
  const bare = await post(h1.address, '/migrate', body);
  assert.is(bare.status, 401);
  assert.match(bare.text, /no authorization header/);
  const other = generatePsk('intruder');
  const wrongKey = await post(h1.address, '/migrate', body, { authorization: signRequest(other.psk.key, 'h1', 'POST', '/migrate', body) });
  assert.is(wrongKey.status, 401);
  assert.match(wrongKey.text, /does not verify under the pre-shared key for host h1/);
  // Signed with the right key for h2, sent to h1 (a request seen on its way to h2, replayed): refused.
  const forH2 = await post(h1.address, '/migrate', body, { authorization: signRequest(psk.psk.key, 'h2', 'POST', '/migrate', body) });
  assert.is(forH2.status, 401);
  assert.match(forH2.text, /for host h1/);
  const stranger = await new HostClient(h1.address, other).guests().then(() => null, (e: Error & { code?: string }) => e);
  assert.is(stranger?.code, 'MS_ERR_AUTH_FAILED', 'a reply without the MAC of the key the client holds is not believed');
  // Nothing moved: both guests still run on h1, and h2 has none.
  const list = await new HostClient(h1.address, security).guests();
  assert.equal(list.guests.map((g) => g.name).sort(), ['db', 'web']);
  assert.ok(list.guests.every((g) => g.running && !g.migrating && g.held === null));
  assert.equal((await new HostClient(h2.address, security).guests()).guests, []);
}));

test('a host refuses a guest it cannot allocate, and a malformed spec, with named errors', deadline(60_000, async () => {
  const h2 = await startHost('h2');
  const client = new HostClient(h2.address, security);
  const spec = { ...SCENARIO.guests[0], host: undefined };
  const tooBig = await client.incoming(spec as never, { cpu: 1, net: 1e6, mem: 9 * 2 ** 30 }).then(() => null, (e: Error & { code?: string }) => e);
  assert.is(tooBig?.code, 'MS_ERR_HOST_REFUSED');
  assert.match(tooBig!.message, /409: h2 cannot allocate/);
  const bad = await client.incoming({ name: 'x', ram: 12345 } as never, { cpu: 1, net: 1, mem: 1 }).then(() => null, (e: Error) => e);
  assert.match(bad!.message, /400: POST \/incoming: spec\.ram must be a multiple of 256KiB/);
}));

test('two host processes move a running guest with the engine: it runs on the target, its steps go on, the source keeps its ledger', deadline(90_000, async () => {
  const [h1, h2] = await Promise.all([startHost('h1'), startHost('h2')]);
  const c1 = new HostClient(h1.address, security);
  const c2 = new HostClient(h2.address, security);
  const before = (await c1.guests()).guests.find((g) => g.name === 'db')!;
  const port = await c2.incoming(before.spec, { cpu: 6, net: 40 * 2 ** 20, mem: 6 * 2 ** 30 });
  const summary = await c1.migrate('db', `127.0.0.1:${port}`, 'live', 50);
  assert.is(summary.outcome, 'completed');
  assert.is(summary.error, null);
  assert.ok(summary.bytes > 0 && summary.passes >= 1);
  // The target admits the guest once receive() completes: wait for it.
  let after;
  for (let i = 0; i < 100 && after === undefined; i++) {
    after = (await c2.guests()).guests.find((g) => g.name === 'db');
    if (after === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(after !== undefined, 'db runs on h2');
  assert.ok(after.running);
  assert.ok(after.steps >= before.steps, `steps went on: ${before.steps} → ${after.steps}`);
  const left = await c1.guests();
  assert.equal(left.guests.map((g) => g.name), ['web']);
  assert.equal(left.departed.map((d) => d.name), ['db']);
  const m1 = parseMetrics(await (await fetch(`http://${h1.address}/metrics`)).text());
  assert.is(m1.find((s) => s.name === 'memshift_host_migrations_total' && s.labels.direction === 'out')!.value, 1);
  // A second migration of the same guest from h1 is refused: it is not there any more.
  const again = await c1.migrate('db', `127.0.0.1:${port}`, 'live', 50).then(() => null, (e: Error) => e);
  assert.match(again!.message, /409: no guest db on h1/);
}));

test('memshift manager --hosts resolves a CPU hotspot on running hosts by migrating, and explains it', deadline(90_000, async () => {
  const [h1, h2] = await hostsOnOneClock();
  const report = join(dir, 'manager.json');
  const m = memshift(['manager', '--hosts', `${h1.address},${h2.address}`, '--scenario', scenarioFile, '--duration', '5000', '--psk-file', pskFile, '--report', report]);
  const done = await m.done;
  assert.is(done.code, 0, done.stderr);
  const r = JSON.parse(readFileSync(report, 'utf8')) as ManagerRunReport;
  const hot = r.hotspots.find((h) => h.host === 'h1');
  assert.ok(hot !== undefined, `a hotspot on h1: ${done.stderr}`);
  assert.ok(hot.resources.includes('cpu'));
  assert.ok(hot.resolvedAtMs !== null && hot.resolvedAtMs >= hot.detectedAtMs, 'resolved after detection');
  const moved = r.migrations.filter((x) => x.error === null);
  assert.ok(moved.length >= 1);
  assert.is(moved[0].from, 'h1');
  assert.is(moved[0].to, 'h2');
  assert.match(moved[0].reason, /h1: cpu \d+ % > 75 %/);
  assert.is(moved[0].summary?.outcome, 'completed');
  assert.is(r.pingPong, 0);
  const on2 = (await new HostClient(h2.address, security).guests()).guests.map((g) => g.name);
  assert.ok(on2.includes(moved[0].guest), `${moved[0].guest} runs on h2`);
}));

test('an SLA breach with no threshold crossed: the gray-box guest short of CPU on a full host moves to one with room, and its record closes when it is back within its SLA', deadline(90_000, async () => {
  // h1 has 4 cores; app (2 allocated) goes from 1 to 2.5 cores at 1 s beside busy (1.5): the host is
  // at 100 %, which the policy's CPU threshold (1.0) does not call hot, but app misses its SLA and
  // there is no room on h1 to give it more.
  const sla = {
    name: 'sla', durationMs: 12_000, intervalMs: 300,
    hosts: [{ name: 'h1', capacity: { cpu: 4, net: '125MiB', mem: '16GiB' } }, { name: 'h2', capacity: { cpu: 8, net: '125MiB', mem: '16GiB' } }],
    guests: [
      { name: 'app', host: 'h1', ram: '16MiB', graybox: true, allocation: { cpu: 2, net: '10MiB', mem: '2GiB' }, demand: { cpu: [[0, 1], [1000, 1], [1100, 2.5]], net: '1MiB', mem: '1GiB' } },
      { name: 'busy', host: 'h1', ram: '16MiB', allocation: { cpu: 2, net: '10MiB', mem: '2GiB' }, demand: { cpu: 1.5, net: '1MiB', mem: '1GiB' } },
    ],
    manager: { k: 2, n: 3, threshold: { cpu: 1, net: 0.75, mem: 0.85 } },
  };
  const slaFile = join(dir, 'sla.json');
  writeFileSync(slaFile, JSON.stringify(sla));
  const [h1, h2] = await hostsOnOneClock(slaFile);
  const report = join(dir, 'sla-manager.json');
  const done = await memshift(['manager', '--hosts', `${h1.address},${h2.address}`, '--scenario', slaFile, '--duration', '9000', '--psk-file', pskFile, '--report', report]).done;
  assert.is(done.code, 0, done.stderr);
  const r = JSON.parse(readFileSync(report, 'utf8')) as ManagerRunReport;
  assert.ok(r.hotspots.every((h) => h.trigger === 'sla'), `no threshold hotspot: ${JSON.stringify(r.hotspots)}`);
  const breach = r.hotspots.find((h) => h.guest === 'app');
  assert.ok(breach !== undefined, `an SLA breach of app: ${done.stderr}`);
  assert.ok(breach.onsetAtMs <= breach.detectedAtMs);
  const move = r.migrations.find((m) => m.guest === 'app');
  assert.ok(move !== undefined && move.kind === 'sla' && move.error === null, JSON.stringify(r.migrations));
  assert.is(move.to, 'h2');
  assert.ok(move.allocation.cpu >= 2.5, `it gets what it is short of: ${move.allocation.cpu} cores`);
  assert.ok(breach.resolvedAtMs !== null, `back within its SLA on h2: ${done.stderr}`);
  assert.ok((await new HostClient(h2.address, security).guests()).guests.some((g) => g.name === 'app'));
}));

test('the manager\'s dashboard in headless Chromium: hosts, load charts, the hotspot, the migration with its passes and downtime, no network fetch', deadline(90_000, async () => {
  const [h1, h2] = await hostsOnOneClock();
  const m = memshift(['manager', '--hosts', `${h1.address},${h2.address}`, '--scenario', scenarioFile, '--duration', '60000', '--psk-file', pskFile, '--dashboard', '127.0.0.1:0']);
  await waitForOutput(m, (t) => /runs on h2: /.test(t), 30_000);
  const url = /dashboard on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(m.stderr())![1];
  const page = await (await fetch(url)).text();
  assert.not.match(page, /(src|href)=["']https?:/, 'the page loads nothing from the network');
  assert.match(page, /uPlot/, 'the chart library is inlined');
  const dom = await renderedDom(url, 2500);
  assert.match(dom, /data-rendered="yes"/, 'the page\'s script ran and read /state');
  assert.equal([...dom.matchAll(/<tr class="host-row" data-host="([^"]+)"/g)].map((x) => x[1]), ['h1', 'h2']);
  assert.ok((dom.match(/class="uplot/g) ?? []).length >= 3, 'a load chart per resource');
  assert.match(dom, /<tr class="hotspot-row" data-host="h1">/);
  const moved = /<tr class="migration-row" data-guest="([^"]+)"/.exec(dom);
  assert.ok(moved !== null, 'a migration row');
  assert.match(dom, new RegExp(`<tr class="pass-row" data-guest="${moved[1]}" data-iteration="1">`), 'its first pass');
  assert.match(dom, /<tr class="pass-row downtime-row"><td>downtime<\/td><td class="num">\d+\.\d ms<\/td>/, 'its downtime');
  assert.match(dom, /<li>\[\d+\.\d s\] migrate /, 'the decision log');
}));

test('the control port under mutual TLS: a client with the cluster\'s certificate is served, one without is not', deadline(60_000, async () => {
  const c = makeCredentials();
  const tlsFlags = ['--tls-cert', c.dest.cert, '--tls-key', c.dest.key, '--tls-ca', c.ca];
  const h1 = await startHost('h1', { extra: tlsFlags });
  const client = new HostClient(h1.address, loadTlsFiles({ cert: c.source.cert, key: c.source.key, ca: c.ca }));
  const list = await client.guests();
  assert.equal(list.guests.map((g) => g.name).sort(), ['db', 'web']);
  const rogue = new HostClient(h1.address, loadTlsFiles({ cert: c.rogue.cert, key: c.rogue.key, ca: c.ca }));
  const refused = await rogue.guests().then(() => null, (e: Error) => e);
  assert.ok(refused !== null, 'a certificate from another CA is refused');
  const plain = await fetch(`http://${h1.address}/metrics`).then(() => null, (e: Error) => e);
  assert.ok(plain !== null, 'plain HTTP gets nothing');
}));

test('memshift cluster run cpu-surge: the manager moves web off h1, cuts SLA violation-seconds, loses no guest', deadline(120_000, async () => {
  const { stderr, report: c } = await clusterRun('cpu-surge', ['--time-scale', '0.35', '--runs', 'off,on']);
  const [off, on] = c.runs;
  assert.is(off.kind, 'off');
  assert.is(on.kind, 'on');
  assert.equal(off.lost, []);
  assert.equal(on.lost, []);
  assert.is(off.placement.web, 'h1');
  assert.ok(on.placement.web !== 'h1', `web moved: ${JSON.stringify(on.placement)}`);
  assert.ok(off.slaViolationSeconds > 0, 'without the manager the surge breaks the SLA');
  assert.ok(on.slaViolationSeconds < off.slaViolationSeconds, `${on.slaViolationSeconds} < ${off.slaViolationSeconds}`);
  const h = on.manager!.hotspots.find((x) => x.host === 'h1');
  assert.ok(h !== undefined && h.resolvedAtMs !== null, 'h1 hotspot resolved');
  assert.is(c.summary.pingPong, 0);
  assert.is(c.summary.failedMigrations, 0);
  assert.match(stderr, /violation-seconds with the manager \/ without: \d+ %/);
}));

test('memshift cluster run night-consolidation: the quiet cluster is packed onto as few hosts as first-fit-decreasing', deadline(120_000, async () => {
  const { report: c } = await clusterRun('night-consolidation', ['--time-scale', '0.35', '--runs', 'on']);
  const on = c.runs[0];
  assert.equal(on.lost, []);
  const plan = on.manager!.consolidation;
  assert.ok(plan !== null && plan.ffdHosts !== null);
  assert.ok(on.hostsInUse <= plan.ffdHosts, `${on.hostsInUse} hosts in use, first-fit-decreasing ${plan.ffdHosts}`);
  assert.ok(on.emptyHosts.length >= 2, `hosts freed: ${on.emptyHosts.join(', ')}`);
  assert.ok(on.manager!.migrations.every((m) => m.kind === 'consolidation' && m.error === null));
}));

test('memshift cluster run memory-pressure: gray-box sizes the growing guest from its OS, black-box from its swapping', deadline(120_000, async () => {
  const { report: c } = await clusterRun('memory-pressure', ['--time-scale', '0.35', '--runs', 'on,blackbox']);
  const [gray, black] = c.runs;
  assert.equal(gray.lost, []);
  assert.equal(black.lost, []);
  const grown = (run: typeof gray): string[] => run.manager!.reallocations.filter((x) => x.guest === 'analytics').map((x) => x.reason);
  assert.ok(grown(gray).some((why) => /gray-box/.test(why)), `gray-box: ${grown(gray).join(' | ')}`);
  assert.ok(grown(black).length > 0 && grown(black).every((why) => !/gray-box/.test(why)), `black-box: ${grown(black).join(' | ')}`);
  assert.ok(c.summary.blackboxOverGray !== null);
}));

test('memshift cluster: a scenario file with a bad field is refused naming it, before any host starts', deadline(30_000, async () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...SCENARIO, guests: [{ ...SCENARIO.guests[0], host: 'h9' }] }));
  const done = await memshift(['cluster', 'run', bad]).done;
  assert.is(done.code, 1);
  assert.match(done.stderr, /MS_ERR_SCENARIO_INVALID: .*guests\[0\]\.host must name one of the hosts/);
  const list = await memshift(['cluster', 'list']).done;
  assert.is(list.code, 0);
  for (const n of ['cpu-surge', 'net-surge', 'memory-pressure', 'flash-crowd', 'night-consolidation']) assert.match(list.stdout, new RegExp(`^${n} `, 'm'));
}));

test.run();
