// The manager over real hosts (`memshift manager --hosts`, and the manager of `memshift cluster run`):
// every interval it scrapes each host's /metrics, feeds each guest's demand estimate to its profile,
// runs the hotspot detector on each host's utilisation and prediction, plans with the same planner as
// the simulation (what, where, how much, which mode) and executes the plan: the target host opens a
// listener, the source host migrates the guest to it with the engine. Guests near or over their
// allocation get more in place where their host has room; a gray-box guest that breaks its SLA and is
// predicted to go on breaking it (the second trigger) gets what it is short of, in place or by a move.
// With consolidation on, a quiet cluster is packed onto fewer hosts. Every decision goes to the log and
// the report with its reason.

import { performance } from 'node:perf_hooks';
import { formatAddress, parseAddress, type Security } from '../index.js';
import { consolidate } from '../manager/consolidation.js';
import { HotspotDetector, type Hotspot } from '../manager/hotspot.js';
import { chooseMode, hostLoads, leastLoadedFit, planHotspots, type GuestState, type HostState } from '../manager/placement.js';
import { UsageProfile } from '../manager/profile.js';
import { RESOURCES, ZERO, add, over, scale, utilisation, type Resource, type Vector } from '../manager/resources.js';
import { HostClient } from './host-client.js';
import { responseTime } from './host-model.js';
import type { MigrationSummary } from './host.js';
import { estimateDemand, readHost, type GuestView, type HostView } from './observation.js';
import type { ManagerPolicy } from './scenario.js';

export interface LiveManagerOptions {
  /** Control addresses (HOST:PORT) of the hosts. */
  hosts: readonly string[];
  security: Security;
  policy: ManagerPolicy;
  intervalMs: number;
  /** Read gray-box figures where a guest's daemon offers them (false: black-box only). */
  useGray: boolean;
  /** Bytes per second a migration may use (chooses its mode). */
  linkBytesPerSec: number;
  downtimeLimitMs: number;
  /** Epoch ms the report's times count from. */
  originMs: number;
  log: (line: string) => void;
}

export interface HotspotRecord {
  host: string;
  /** SLA breaches: the guest whose SLA broke (null: a host over a threshold). */
  guest: string | null;
  resources: Resource[];
  trigger: 'threshold' | 'sla';
  /** First interval the host was over a threshold, or the guest over its SLA (ms from the origin). */
  onsetAtMs: number;
  detectedAtMs: number;
  /** First interval after detection with the host under every threshold (the guest within its SLA) and nothing moving. */
  resolvedAtMs: number | null;
  migrations: string[];
}

export interface MigrationRecord {
  kind: 'hotspot' | 'sla' | 'consolidation';
  guest: string;
  from: string;
  to: string;
  mode: string;
  allocation: Vector;
  reason: string;
  plannedAtMs: number;
  endedAtMs: number | null;
  summary: MigrationSummary | null;
  error: string | null;
}

export interface LoadPoint {
  atMs: number;
  /** Each host's utilisation per resource, as the manager estimated it. */
  hosts: Record<string, Vector>;
  /** Where each guest was. */
  placement: Record<string, string>;
}

export interface ManagerRunReport {
  intervalMs: number;
  intervals: number;
  useGray: boolean;
  hotspots: HotspotRecord[];
  migrations: MigrationRecord[];
  reallocations: { atMs: number; guest: string; host: string; allocation: Vector; reason: string }[];
  decisions: { atMs: number; text: string }[];
  load: LoadPoint[];
  /** Guests moved back to a host they had left. */
  pingPong: number;
  consolidation: { freed: string[]; ffdHosts: number | null; wattsBefore: number; wattsAfter: number } | null;
  /** What managing cost: this process's CPU, each interval's scrape and plan (medians, ms). */
  managerCpuMs: number;
  scrapeMs: number;
  planMs: number;
}

/** A guest using at least this share of its CPU or network allocation is near its cap: it gets more where there is room. */
const NEAR_CAP = 0.9;
/** An SLA breach is answered with enough CPU for this share of the SLA's response time (a margin for noise). */
const SLA_AIM = 0.8;

export class LiveManager {
  private readonly clients: HostClient[];
  private readonly clientOf = new Map<string, HostClient>();
  private readonly profiles = new Map<string, UsageProfile>();
  private readonly detector: HotspotDetector;
  private readonly slaHistory = new Map<string, boolean[]>();
  private readonly slaSince = new Map<string, number>();
  private readonly openSla = new Map<string, HotspotRecord>();
  /** Guests in flight, and the host each is going to (it loads that host in the plans meanwhile). */
  private readonly arriving = new Map<string, string>();
  private readonly recentMoves = new Map<string, { from: string; interval: number }[]>();
  private readonly overSince = new Map<string, number>();
  private readonly open = new Map<string, HotspotRecord>();
  private readonly report: ManagerRunReport;
  private readonly running: Promise<void>[] = [];
  private readonly scrapes: number[] = [];
  private readonly plans: number[] = [];
  private interval = 0;
  private lastMoveInterval = 0;
  /** Whether a consolidation plan with moves has been reported. */
  private consolidated = false;

  constructor(private readonly options: LiveManagerOptions) {
    this.clients = options.hosts.map((a) => new HostClient(a, options.security));
    const p = options.policy;
    this.detector = new HotspotDetector({ threshold: p.threshold, k: p.k, n: p.n });
    this.report = {
      intervalMs: options.intervalMs, intervals: 0, useGray: options.useGray, hotspots: [], migrations: [], reallocations: [], decisions: [], load: [],
      pingPong: 0, consolidation: null, managerCpuMs: 0, scrapeMs: 0, planMs: 0,
    };
  }

  private now(): number {
    return Date.now() - this.options.originMs;
  }

  private decide(text: string): void {
    this.report.decisions.push({ atMs: this.now(), text });
    this.options.log(`[${(this.now() / 1000).toFixed(1)} s] ${text}`);
  }

  /** The report so far (the dashboard polls it while the manager runs). */
  snapshot(): ManagerRunReport {
    return { ...this.report, intervals: this.interval };
  }

  /** Runs intervals until `signal` aborts, then waits for the migrations under way. */
  async run(signal: AbortSignal): Promise<ManagerRunReport> {
    const cpu0 = process.cpuUsage();
    while (!signal.aborted) {
      const started = performance.now();
      await this.step();
      const wait = Math.max(0, this.options.intervalMs - (performance.now() - started));
      await new Promise<void>((r) => {
        const done = (): void => {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          r();
        };
        const t = setTimeout(done, wait);
        signal.addEventListener('abort', done, { once: true });
      });
    }
    await Promise.allSettled(this.running);
    const cpu = process.cpuUsage(cpu0);
    const median = (xs: number[]): number => (xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
    return { ...this.report, intervals: this.interval, managerCpuMs: (cpu.user + cpu.system) / 1000, scrapeMs: median(this.scrapes), planMs: median(this.plans) };
  }

  private async step(): Promise<void> {
    this.interval++;
    const t0 = performance.now();
    const views = await this.scrape();
    this.scrapes.push(performance.now() - t0);
    const t1 = performance.now();
    const at = this.now();
    const guests = views.flatMap((v) => v.guests);
    const estimates = new Map<string, Vector>();
    for (const g of guests) {
      const e = estimateDemand(g, this.options.intervalMs, this.options.useGray);
      estimates.set(g.name, e);
      let p = this.profiles.get(g.name);
      if (p === undefined) this.profiles.set(g.name, (p = new UsageProfile(this.options.policy.window)));
      p.add(e);
      this.noteSla(g, at);
    }
    const point: LoadPoint = { atMs: at, hosts: {}, placement: {} };
    const hotspots: Hotspot[] = [];
    for (const v of views) {
      const load = v.guests.reduce((s, g) => add(s, estimates.get(g.name)!), ZERO);
      const predicted = v.guests.reduce((s, g) => add(s, this.profiles.get(g.name)!.predict()), ZERO);
      const u = utilisation(load, v.capacity);
      point.hosts[v.name] = u;
      for (const g of v.guests) point.placement[g.name] = v.name;
      this.track(v, u, at);
      const hot = this.detector.observe(v.name, u, utilisation(predicted, v.capacity));
      if (v.guests.some((g) => this.moving(g))) continue; // wait for the moves under way before judging again
      if (hot !== null) hotspots.push(hot);
    }
    this.report.load.push(point);
    for (const h of hotspots) this.opened(h, at);
    const hostStates: HostState[] = views.map((v) => ({ name: v.name, capacity: v.capacity }));
    // Every guest loads its host as far as the planner knows, those leaving it too; a guest on its way
    // loads its destination already, as a stand-in that is never moved.
    const guestStates: GuestState[] = guests.map((g) => this.guestState(g));
    const standIns: GuestState[] = guests.filter((g) => this.arriving.has(g.name)).map((g) => ({ ...this.guestState(g), name: `${g.name} (arriving)`, host: this.arriving.get(g.name)! }));
    const movable = new Set(guests.filter((g) => !this.moving(g)).map((g) => g.name));
    if (hotspots.length > 0 && this.budget() > 0) {
      const plan = planHotspots(hotspots, hostStates, [...guestStates, ...standIns], {
        threshold: this.options.policy.threshold, linkBytesPerSec: this.options.linkBytesPerSec, maxMigrations: this.budget(), headroom: this.options.policy.headroom,
        recentMoves: this.recentMoves, interval: this.interval, cooldownIntervals: this.options.policy.cooldownIntervals,
      });
      for (const m of plan.migrations) {
        if (!movable.has(m.guest)) continue;
        this.open.get(m.from)?.migrations.push(m.guest);
        this.start({ kind: 'hotspot', guest: m.guest, from: m.from, to: m.to, mode: m.mode, allocation: m.allocation, reason: m.reason, plannedAtMs: at, endedAtMs: null, summary: null, error: null });
      }
      for (const u of plan.unresolved) this.decide(`${u.host} stays hot: ${u.why}`);
    }
    const hot = new Set(hotspots.map((h) => h.host));
    const grown = await this.reallocate(views, estimates, hot, at);
    this.answerSlaBreaches(views, hostStates, [...guestStates, ...standIns], estimates, hot, new Set(grown), at);
    if (this.options.policy.consolidate) this.consolidateQuiet(hostStates, guestStates, new Map(guests.map((g) => [g.name, g.allocation])), hotspots.length, at);
    this.plans.push(performance.now() - t1);
  }

  /** On its way elsewhere: a migration this manager started, or one its host reports. */
  private moving(g: GuestView): boolean {
    return g.migrating || this.arriving.has(g.name);
  }

  private budget(): number {
    return this.options.policy.concurrent - this.arriving.size;
  }

  /** Every host's view this interval; a host that does not answer, or answers with a name another host has, is left out (and said so). */
  private async scrape(): Promise<HostView[]> {
    const views: HostView[] = [];
    await Promise.all(this.clients.map(async (c) => {
      try {
        const v = readHost(await c.metrics());
        const owner = this.clientOf.get(v.name);
        if (owner !== undefined && owner !== c) {
          this.decide(`hosts ${owner.address} and ${c.address} both answer as ${v.name}: ${c.address} left out (give each host its own --name)`);
          return;
        }
        this.clientOf.set(v.name, c);
        views.push(v);
      } catch (err) {
        this.decide(`host ${c.address} not scraped: ${(err as Error).message}`);
      }
    }));
    return views.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Onset and resolution of each host's overload, from its utilisation this interval. */
  private track(v: HostView, u: Vector, at: number): void {
    const hot = over(u, this.options.policy.threshold).length > 0;
    if (hot && !this.overSince.has(v.name)) this.overSince.set(v.name, at);
    if (!hot) this.overSince.delete(v.name);
    const rec = this.open.get(v.name);
    if (rec !== undefined && !hot && !v.guests.some((g) => this.moving(g))) {
      rec.resolvedAtMs = at;
      this.open.delete(v.name);
      this.decide(`${v.name}: back under every threshold ${((at - rec.onsetAtMs) / 1000).toFixed(1)} s after its onset`);
    }
  }

  private opened(h: Hotspot, at: number): void {
    if (this.open.has(h.host)) return;
    const rec: HotspotRecord = {
      host: h.host, guest: null, resources: h.resources, trigger: 'threshold', onsetAtMs: this.overSince.get(h.host) ?? at, detectedAtMs: at, resolvedAtMs: null, migrations: [],
    };
    this.open.set(h.host, rec);
    this.report.hotspots.push(rec);
    this.decide(`${h.host}: hotspot (${rec.trigger}) in ${h.resources.join(', ')}: utilisation ${fmt(h.utilisation)}, predicted ${fmt(h.predicted)}`);
  }

  /** Each gray-box guest's SLA, every interval: its history (k of n), the start of its breach, its record's end. */
  private noteSla(g: GuestView, at: number): void {
    if (g.gray === null || !this.options.useGray) return;
    const over = g.gray.responseMs > g.gray.slaMs;
    const h = this.slaHistory.get(g.name) ?? [];
    h.push(over);
    if (h.length > this.options.policy.n) h.shift();
    this.slaHistory.set(g.name, h);
    if (over && !this.slaSince.has(g.name)) this.slaSince.set(g.name, at);
    if (!over) this.slaSince.delete(g.name);
    const rec = this.openSla.get(g.name);
    if (rec !== undefined && !over && !this.moving(g)) {
      rec.resolvedAtMs = at;
      this.openSla.delete(g.name);
      this.decide(`${g.name}: back within its SLA (${g.gray.responseMs.toFixed(0)} ms ≤ ${g.gray.slaMs.toFixed(0)} ms) ${((at - rec.onsetAtMs) / 1000).toFixed(1)} s after the breach began`);
    }
  }

  /**
   * SLA-violation detection, predictive (the second trigger): a gray-box guest over its SLA in k of
   * the last n intervals, over it now, and whose predicted demand on what it is given maps (host-model's
   * responseTime, scaled to the response time measured now) to a response time over the SLA again, is
   * short of the resources its predicted demand exceeds. It gets them in place where its host has room
   * (memory not allocated to others; CPU and network under the threshold after the others' demand);
   * else it moves, with that much, to the least loaded host it fits on. Hosts with a threshold hotspot
   * are the planner's this interval.
   */
  private answerSlaBreaches(views: readonly HostView[], hosts: readonly HostState[], guests: readonly GuestState[], estimates: ReadonlyMap<string, Vector>, hot: ReadonlySet<string>, grownNow: ReadonlySet<string>, at: number): void {
    const { k, headroom, threshold } = this.options.policy;
    for (const v of views) {
      if (hot.has(v.name)) continue;
      for (const g of v.guests) {
        if (grownNow.has(g.name)) continue; // grown in place this interval already
        const history = this.slaHistory.get(g.name);
        if (g.gray === null || history === undefined || this.moving(g)) continue;
        const count = history.filter(Boolean).length;
        if (count < k || !history[history.length - 1]) continue;
        const p = this.profiles.get(g.name)!.predict();
        const given = { cpu: Math.max(g.given.cpu, 1e-9), net: Math.max(g.given.net, 1e-9), mem: g.allocation.mem };
        const modelNow = responseTime(1, estimates.get(g.name)!, given, g.allocation.mem);
        const predictedMs = g.gray.responseMs * (responseTime(1, p, given, g.allocation.mem) / Math.max(1e-9, modelNow));
        if (predictedMs <= g.gray.slaMs) continue;
        // How much it needs, from the SLA's terms: the CPU that brings the response time to SLA_AIM of
        // the SLA (service time read off the measured response, service = response × (1 − ρ)); memory
        // above its allocation; network near its cap.
        const want = { ...g.allocation };
        const rhoNow = estimates.get(g.name)!.cpu / given.cpu;
        const cpuNeed = rhoNow < 0.95
          ? p.cpu / Math.max(0.1, 1 - (g.gray.responseMs * (1 - rhoNow)) / (SLA_AIM * g.gray.slaMs))
          : p.cpu * headroom;
        if (cpuNeed > given.cpu) want.cpu = Math.max(cpuNeed, p.cpu * headroom);
        if (p.mem > g.allocation.mem) want.mem = p.mem * headroom;
        if (p.net >= NEAR_CAP * given.net) want.net = p.net * headroom;
        const short = RESOURCES.filter((r) => want[r] !== g.allocation[r]);
        if (short.length === 0) continue;
        let rec = this.openSla.get(g.name);
        if (rec === undefined) {
          rec = { host: v.name, guest: g.name, resources: short, trigger: 'sla', onsetAtMs: this.slaSince.get(g.name) ?? at, detectedAtMs: at, resolvedAtMs: null, migrations: [] };
          this.openSla.set(g.name, rec);
          this.report.hotspots.push(rec);
          this.decide(`${g.name} on ${v.name}: SLA breach (gray-box) — p95 ${g.gray.responseMs.toFixed(0)} ms > ${g.gray.slaMs.toFixed(0)} ms in ${count} of the last ${history.length} intervals, predicted ${predictedMs.toFixed(0)} ms; short of ${short.join(', ')}`);
        }
        if (short.every((r) => this.roomFor(v, g, r, want[r], estimates))) {
          const client = this.clientOf.get(v.name)!;
          void client.reallocate(g.name, want).then(() => {
            this.report.reallocations.push({ atMs: at, guest: g.name, host: v.name, allocation: want, reason: `SLA breach: short of ${short.join(', ')} (gray-box)` });
            this.decide(`${g.name} on ${v.name}: allocation ${fmtAlloc(g.allocation)} → ${fmtAlloc(want)} in place for its SLA`);
          }, (err: Error) => this.decide(`${g.name} on ${v.name}: a larger allocation for its SLA refused: ${err.message}`));
          continue;
        }
        if (this.budget() <= 0) continue;
        const load = hostLoads(hosts, guests).load;
        const planned = this.guestState(g);
        // Placed with what it will be given (the SLA's need), so the host it goes to has room for that.
        const state = { ...planned, demand: { cpu: Math.max(planned.demand.cpu, want.cpu / headroom), net: Math.max(planned.demand.net, want.net / headroom), mem: Math.max(planned.demand.mem, want.mem / headroom) } };
        const banned = new Set((this.recentMoves.get(g.name) ?? []).filter((m) => this.interval - m.interval < this.options.policy.cooldownIntervals).map((m) => m.from));
        const to = leastLoadedFit(state, hosts, load, v.name, banned, threshold);
        if (to === null) {
          this.decide(`${g.name} on ${v.name}: no room to grow it here and no host it fits on: its SLA stays broken`);
          continue;
        }
        rec.migrations.push(g.name);
        this.start({
          kind: 'sla', guest: g.name, from: v.name, to, mode: chooseMode(state.dirtyRate, this.options.linkBytesPerSec), allocation: scale(state.demand, headroom),
          reason: `${g.name}: SLA breach, short of ${short.join(', ')} with no room on ${v.name} to grow it; ${to} is the least loaded host it fits on`, plannedAtMs: at, endedAtMs: null, summary: null, error: null,
        });
      }
    }
  }

  private guestState(g: GuestView): GuestState {
    const p = this.profiles.get(g.name)!;
    const p95 = p.percentile(95);
    const next = p.predict();
    const demand = { cpu: Math.max(p95.cpu, next.cpu), net: Math.max(p95.net, next.net), mem: Math.max(p95.mem, next.mem) };
    // Size for the volume-to-size ratio: the memory the guest holds (its allocation, as the scenario sizes it).
    return { name: g.name, host: g.host, demand, memoryBytes: g.allocation.mem, dirtyRate: g.dirtyPagesPerSec * 4096 };
  }

  private start(rec: MigrationRecord): void {
    this.arriving.set(rec.guest, rec.to);
    this.lastMoveInterval = this.interval;
    this.report.migrations.push(rec);
    this.decide(`migrate ${rec.guest} ${rec.from} → ${rec.to} (${rec.mode}, allocation ${fmtAlloc(rec.allocation)}): ${rec.reason}`);
    const task = (async (): Promise<void> => {
      try {
        const src = this.clientOf.get(rec.from)!;
        const dst = this.clientOf.get(rec.to)!;
        const info = (await src.guests()).guests.find((g) => g.name === rec.guest);
        if (info === undefined) throw new Error(`${rec.guest} is no longer on ${rec.from}`);
        const port = await dst.incoming(info.spec, rec.allocation);
        const summary = await src.migrate(rec.guest, formatAddress({ host: parseAddress(dst.address, 'host').host, port }), rec.mode, this.options.downtimeLimitMs);
        rec.summary = summary;
        if (summary.outcome !== 'completed') throw new Error(`${summary.outcome}: ${summary.error?.code ?? ''} ${summary.error?.message ?? ''}`);
        const left = this.recentMoves.get(rec.guest) ?? [];
        if (left.some((m) => m.from === rec.to)) this.report.pingPong++;
        left.push({ from: rec.from, interval: this.interval });
        this.recentMoves.set(rec.guest, left);
        this.detector.reset(rec.from);
        this.slaHistory.delete(rec.guest);
        this.decide(`${rec.guest} runs on ${rec.to}: ${summary.totalMs.toFixed(0)} ms, downtime ${summary.downtimeMs?.toFixed(1) ?? '?'} ms, ${(summary.bytes / 2 ** 20).toFixed(1)} MiB in ${summary.passes} passes`);
      } catch (err) {
        rec.error = (err as Error).message;
        // The source host says where the guest is after a failure; without its answer (the request
        // itself failed), where it runs is unknown until the next scrape shows it.
        const where = rec.summary === null ? 'where it runs is known at the next scrape'
          : rec.summary.outcome === 'in-doubt' || rec.summary.outcome === 'paused' ? `${rec.from} holds it, not running, for an operator` : `it keeps running on ${rec.from}`;
        this.decide(`migration of ${rec.guest} ${rec.from} → ${rec.to} failed: ${rec.error} (${where})`);
      } finally {
        rec.endedAtMs = this.now();
        this.arriving.delete(rec.guest);
      }
    })();
    this.running.push(task);
  }

  /**
   * "How much", in place: a guest near or over its allocation of a resource (demand at least
   * NEAR_CAP of it; memory: over it) gets demand × headroom, where its host can give that: memory not
   * allocated to others (memory is committed), CPU and network under the threshold after the others'
   * demand (they are shared). Hosts that are hot this interval are left to the planner.
   */
  private async reallocate(views: readonly HostView[], estimates: ReadonlyMap<string, Vector>, hot: ReadonlySet<string>, at: number): Promise<string[]> {
    const { headroom } = this.options.policy;
    const done: string[] = [];
    for (const v of views) {
      if (hot.has(v.name)) continue;
      for (const g of v.guests) {
        if (this.moving(g)) continue;
        const est = estimates.get(g.name)!;
        const grown = RESOURCES.filter((r) => (r === 'mem' ? est.mem > g.allocation.mem : est[r] >= NEAR_CAP * g.allocation[r]))
          .filter((r) => this.roomFor(v, g, r, est[r] * headroom, estimates));
        if (grown.length === 0) continue;
        const allocation = { ...g.allocation };
        for (const r of grown) allocation[r] = est[r] * headroom;
        const gray = g.gray !== null && this.options.useGray;
        const why = grown.map((r) => r === 'mem'
          ? (gray ? `its OS uses ${gib(g.gray!.memUsed)} (gray-box)` : `it swaps ${mib(g.swapBytesPerSec)}/s (black-box: how much more is a guess)`)
          : `${r} demand ${r === 'cpu' ? est.cpu.toFixed(2) : `${mib(est.net)}/s`} of ${r === 'cpu' ? g.allocation.cpu.toFixed(2) : `${mib(g.allocation.net)}/s`} allocated${gray && r === 'cpu' ? ' (gray-box)' : ''}`).join('; ');
        try {
          await this.clientOf.get(v.name)!.reallocate(g.name, allocation);
          done.push(g.name);
          this.report.reallocations.push({ atMs: at, guest: g.name, host: v.name, allocation, reason: why });
          this.decide(`${g.name} on ${v.name}: allocation ${fmtAlloc(g.allocation)} → ${fmtAlloc(allocation)} in place: ${why}`);
        } catch (err) {
          this.decide(`${g.name} on ${v.name}: a larger allocation refused: ${(err as Error).message}`);
        }
      }
    }
    return done;
  }

  /**
   * Whether `g`'s host can give it `want` of `r` in place: memory not allocated to the others (memory is
   * committed), CPU and network under the threshold after the others' demand (they are shared).
   */
  private roomFor(v: HostView, g: GuestView, r: Resource, want: number, estimates: ReadonlyMap<string, Vector>): boolean {
    const others = v.guests.filter((o) => o !== g);
    if (r === 'mem') return others.reduce((s, o) => s + o.allocation.mem, 0) + want <= v.capacity.mem;
    return others.reduce((s, o) => s + estimates.get(o.name)![r], 0) + want <= v.capacity[r] * this.options.policy.threshold[r];
  }

  /** Green ICT: once the cluster has been quiet for n intervals, empty the hosts consolidation can free. */
  private consolidateQuiet(hosts: readonly HostState[], guests: readonly GuestState[], allocations: ReadonlyMap<string, Vector>, hot: number, at: number): void {
    const p = this.options.policy;
    if (hot > 0 || this.open.size > 0 || this.openSla.size > 0 || this.arriving.size > 0 || this.interval - this.lastMoveInterval < p.n || this.interval < p.window) return;
    const plan = consolidate(hosts, guests, p.threshold, undefined, (guest, host) =>
      (this.recentMoves.get(guest) ?? []).some((m) => m.from === host && this.interval - m.interval < p.cooldownIntervals));
    // The report keeps the first plan that moved guests (with the watts before it).
    if (this.report.consolidation === null || (plan.moves.length > 0 && !this.consolidated)) {
      this.consolidated = plan.moves.length > 0;
      this.report.consolidation = { freed: plan.freed, ffdHosts: plan.ffdHosts, wattsBefore: plan.wattsBefore, wattsAfter: plan.wattsAfter };
    }
    if (plan.moves.length === 0) return;
    this.decide(`consolidation: ${plan.moves.length} moves free ${plan.freed.join(', ')} (${plan.hostsInUse} hosts in use; first-fit-decreasing needs ${plan.ffdHosts ?? 'more than there are'}), ${(plan.wattsBefore / 1000).toFixed(2)} → ${(plan.wattsAfter / 1000).toFixed(2)} kW`);
    const byName = new Map(guests.map((g) => [g.name, g]));
    for (const m of plan.moves.slice(0, p.concurrent)) {
      const g = byName.get(m.guest)!;
      this.start({
        kind: 'consolidation', guest: m.guest, from: m.from, to: m.to, mode: chooseMode(g.dirtyRate, this.options.linkBytesPerSec),
        allocation: allocations.get(m.guest)!, reason: `emptying ${m.from} so it can power off`, plannedAtMs: at, endedAtMs: null, summary: null, error: null,
      });
    }
  }
}

function fmt(u: Vector): string {
  return RESOURCES.map((r) => `${r} ${(u[r] * 100).toFixed(0)} %`).join(', ');
}

function gib(b: number): string {
  return `${(b / 2 ** 30).toFixed(2)} GiB`;
}

function mib(b: number): string {
  return `${(b / 2 ** 20).toFixed(1)} MiB`;
}

function fmtAlloc(a: Vector): string {
  return `cpu ${a.cpu.toFixed(2)}, net ${mib(a.net)}/s, mem ${gib(a.mem)}`;
}
