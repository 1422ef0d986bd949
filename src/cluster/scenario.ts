// A cluster scenario (`memshift cluster run`): the hosts, the guests on them with their demand traces
// and SLAs, how long it runs and the manager's policy. The JSON form (documented in the README) allows
// sizes as text ("16GiB", "100MiB" for bytes per second); `parseScenario` checks every field and names
// the one that is wrong. Capacities and allocations are what the hosts' nuclei account for; `ram` is
// the RAM of the simulated guest the engine actually moves, small so a cluster fits one machine.

import { MemshiftError, ErrorCode } from '../errors.js';
import { RESOURCES, type Vector } from '../manager/resources.js';
import type { DemandTraces, Trace } from './demand.js';
import type { GuestSla } from './host-model.js';

export interface ScenarioHost {
  name: string;
  capacity: Vector;
}

export interface ScenarioGuest {
  name: string;
  host: string;
  /** RAM of the simulated guest that migrates (bytes). */
  ram: number;
  /** Pages per second its vCPU writes (the dirty rate a migration meets). */
  dirtyPagesPerSec: number;
  seed: number;
  allocation: Vector;
  demand: DemandTraces;
  sla: GuestSla;
  /** Runs the monitoring daemon: the manager sees its OS's own figures and its response times. */
  graybox: boolean;
}

export interface ManagerPolicy {
  threshold: Vector;
  /** Hot in k of the last n intervals. */
  k: number;
  n: number;
  /** Samples in each guest's profile. */
  window: number;
  /** Allocation after a move: planning demand × headroom. */
  headroom: number;
  /** Most migrations running at once (the network budget). */
  concurrent: number;
  /** No move back to a host a guest left within this many intervals. */
  cooldownIntervals: number;
  /** Pack guests onto fewer hosts once no host is hot (green ICT). */
  consolidate: boolean;
}

export interface Scenario {
  name: string;
  description: string;
  durationMs: number;
  /** The manager's detection interval. */
  intervalMs: number;
  hosts: ScenarioHost[];
  guests: ScenarioGuest[];
  manager: ManagerPolicy;
}

export const DEFAULT_MANAGER_POLICY: ManagerPolicy = {
  threshold: { cpu: 0.75, net: 0.75, mem: 0.85 }, k: 2, n: 3, window: 8, headroom: 1.25, concurrent: 2, cooldownIntervals: 30, consolidate: false,
};

function invalid(where: string, field: string, requirement: string, value?: unknown): MemshiftError {
  const got = value === undefined ? '' : ` (got ${JSON.stringify(value)?.slice(0, 60)})`;
  return new MemshiftError(ErrorCode.SCENARIO_INVALID, `${where}: ${field} ${requirement}${got}`, { field, value });
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 };

/** A number, or a size as text ("16GiB"); zero allowed. */
function quantity(v: unknown, where: string, field: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER) return v;
  if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
    const unit = m === null ? undefined : UNITS[m[2].toLowerCase()];
    if (m !== null && unit !== undefined) {
      const n = Number(m[1]) * unit;
      if (n <= Number.MAX_SAFE_INTEGER) return n;
    }
  }
  throw invalid(where, field, 'must be a number from 0 to 2^53 or a size such as 16GiB', v);
}

function positive(v: unknown, where: string, field: string): number {
  const n = quantity(v, where, field);
  if (n <= 0) throw invalid(where, field, 'must be more than 0', v);
  return n;
}

function integer(v: unknown, where: string, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(where, field, `must be a whole number from ${min} to ${max}`, v);
  return v;
}

function name(v: unknown, where: string, field: string): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v)) throw invalid(where, field, 'must be a name of letters, digits, "_", "." or "-" (at most 63)', v);
  return v;
}

function boolean(v: unknown, where: string, field: string): boolean {
  if (typeof v !== 'boolean') throw invalid(where, field, 'must be true or false', v);
  return v;
}

function object(v: unknown, where: string, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(where, field, 'must be an object', v);
  return v as Record<string, unknown>;
}

function vector(v: unknown, where: string, field: string, strict: boolean): Vector {
  const o = object(v, where, field);
  for (const k of Object.keys(o)) if (!(RESOURCES as readonly string[]).includes(k)) throw invalid(where, `${field}.${k}`, 'is not a resource (cpu, net, mem)');
  const get = strict ? positive : quantity;
  const cpu = get(o.cpu, where, `${field}.cpu`);
  if (cpu > MAX_CORES) throw invalid(where, `${field}.cpu`, `must be at most ${MAX_CORES} cores`, o.cpu);
  return { cpu, net: get(o.net, where, `${field}.net`), mem: get(o.mem, where, `${field}.mem`) };
}

function trace(v: unknown, where: string, field: string): Trace {
  if (!Array.isArray(v)) return quantity(v, where, field);
  if (v.length === 0 || v.length > 10_000) throw invalid(where, field, 'must have 1 to 10000 [ms, value] points');
  let last = -Infinity;
  return v.map((p, i) => {
    if (!Array.isArray(p) || p.length !== 2) throw invalid(where, `${field}[${i}]`, 'must be a [ms, value] pair', p);
    const t = quantity(p[0], where, `${field}[${i}][0]`);
    if (t < last) throw invalid(where, `${field}[${i}][0]`, 'must not be earlier than the point before it', p[0]);
    last = t;
    return [t, quantity(p[1], where, `${field}[${i}][1]`)] as const;
  });
}

const PAGE = 4096;
/** Most cores a host or a guest's allocation may have (bounds what a request may ask of a nucleus). */
const MAX_CORES = 100_000;

/**
 * A guest as the scenario gives it, or as a host receives it in POST /incoming (then from the wire:
 * every field is checked the same way); `seed` is the default seed.
 */
export function parseGuestSpec(g: unknown, where: string, f: string, seed: number): Omit<ScenarioGuest, 'host'> {
  const go = object(g, where, f);
  const gname = name(go.name, where, `${f}.name`);
  const ram = positive(go.ram ?? '32MiB', where, `${f}.ram`);
  if (!Number.isSafeInteger(ram) || ram % (64 * PAGE) !== 0 || ram > 2 ** 30) throw invalid(where, `${f}.ram`, 'must be a multiple of 256KiB up to 1GiB', go.ram);
  const d = object(go.demand, where, `${f}.demand`);
  const noise = d.noise;
  const share = noise === undefined ? 0 : quantity(noise, where, `${f}.demand.noise`);
  if (share >= 1) throw invalid(where, `${f}.demand.noise`, 'must be a share below 1', noise);
  const sla = object(go.sla ?? { serviceMs: 10, responseMs: 80 }, where, `${f}.sla`);
  const serviceMs = positive(sla.serviceMs, where, `${f}.sla.serviceMs`);
  const responseMs = positive(sla.responseMs, where, `${f}.sla.responseMs`);
  if (responseMs <= serviceMs) throw invalid(where, `${f}.sla.responseMs`, 'must be more than serviceMs', sla.responseMs);
  return {
    name: gname, ram,
    dirtyPagesPerSec: go.dirtyPagesPerSec === undefined ? 1000 : integer(go.dirtyPagesPerSec, where, `${f}.dirtyPagesPerSec`, 0, 1_000_000),
    seed: go.seed === undefined ? seed : integer(go.seed, where, `${f}.seed`, 0, 2 ** 31 - 1),
    allocation: vector(go.allocation, where, `${f}.allocation`, true),
    demand: { cpu: trace(d.cpu ?? 0, where, `${f}.demand.cpu`), net: trace(d.net ?? 0, where, `${f}.demand.net`), mem: trace(d.mem ?? 0, where, `${f}.demand.mem`), noise: share },
    sla: { serviceMs, responseMs },
    graybox: go.graybox === undefined ? false : boolean(go.graybox, where, `${f}.graybox`),
  };
}

/** A resource vector from the wire or a file (all three resources, each > 0). */
export function parseVector(v: unknown, where: string, field: string): Vector {
  return vector(v, where, field, true);
}

/** Checks a parsed JSON scenario; `where` (a file name) prefixes every error. */
export function parseScenario(json: unknown, where = 'scenario'): Scenario {
  const o = object(json, where, 'the scenario');
  const hosts = o.hosts;
  if (!Array.isArray(hosts) || hosts.length < 1 || hosts.length > 16) throw invalid(where, 'hosts', 'must list 1 to 16 hosts', hosts);
  const parsedHosts = hosts.map((h, i): ScenarioHost => {
    const ho = object(h, where, `hosts[${i}]`);
    return { name: name(ho.name, where, `hosts[${i}].name`), capacity: vector(ho.capacity, where, `hosts[${i}].capacity`, true) };
  });
  const hostNames = new Set<string>();
  for (const h of parsedHosts) {
    if (hostNames.has(h.name)) throw invalid(where, 'hosts', `name ${h.name} twice`);
    hostNames.add(h.name);
  }
  const guests = o.guests;
  if (!Array.isArray(guests) || guests.length < 1 || guests.length > 64) throw invalid(where, 'guests', 'must list 1 to 64 guests', guests);
  const guestNames = new Set<string>();
  const parsedGuests = guests.map((g, i): ScenarioGuest => {
    const f = `guests[${i}]`;
    const spec = parseGuestSpec(g, where, f, i + 1);
    if (guestNames.has(spec.name)) throw invalid(where, `${f}.name`, `${spec.name} is used twice`);
    guestNames.add(spec.name);
    const host = name((g as Record<string, unknown>).host, where, `${f}.host`);
    if (!hostNames.has(host)) throw invalid(where, `${f}.host`, 'must name one of the hosts', host);
    return { ...spec, host };
  });
  const m = object(o.manager ?? {}, where, 'manager');
  // Each setting the scenario gives, checked; the default otherwise.
  const set = <K extends keyof ManagerPolicy>(key: K, parse: (v: unknown, field: string) => ManagerPolicy[K]): ManagerPolicy[K] =>
    m[key] === undefined ? DEFAULT_MANAGER_POLICY[key] : parse(m[key], `manager.${key}`);
  const whole = (min: number, max: number) => (v: unknown, field: string): number => integer(v, where, field, min, max);
  const policy: ManagerPolicy = {
    threshold: set('threshold', (v, field) => vector(v, where, field, true)),
    k: set('k', whole(1, 100)),
    n: set('n', whole(1, 100)),
    window: set('window', whole(2, 1000)),
    headroom: set('headroom', (v, field) => positive(v, where, field)),
    concurrent: set('concurrent', whole(1, 16)),
    cooldownIntervals: set('cooldownIntervals', whole(0, 100_000)),
    consolidate: set('consolidate', (v, field) => boolean(v, where, field)),
  };
  for (const r of RESOURCES) if (policy.threshold[r] > 1) throw invalid(where, `manager.threshold.${r}`, 'must be a share of at most 1', policy.threshold[r]);
  if (policy.k > policy.n) throw invalid(where, 'manager.k', `must be at most n (${policy.n})`, policy.k);
  if (policy.headroom < 1) throw invalid(where, 'manager.headroom', 'must be at least 1', policy.headroom);
  return {
    name: typeof o.name === 'string' ? o.name : where,
    description: typeof o.description === 'string' ? o.description : '',
    durationMs: integer(o.durationMs, where, 'durationMs', 1000, 3_600_000),
    intervalMs: o.intervalMs === undefined ? 1000 : integer(o.intervalMs, where, 'intervalMs', 50, 600_000),
    hosts: parsedHosts,
    guests: parsedGuests,
    manager: policy,
  };
}

/** The scenario with every time (duration, interval, trace points) multiplied by `k` (tests and demos run faster). */
export function scaleTime(s: Scenario, k: number): Scenario {
  if (!(k > 0) || s.durationMs * k < 1000) throw invalid(s.name, 'time scale', `${k} makes the scenario shorter than 1 s (it lasts ${s.durationMs} ms)`, k);
  const t = (tr: Trace): Trace => (typeof tr === 'number' ? tr : tr.map(([ms, v]) => [ms * k, v] as const));
  return {
    ...s,
    durationMs: Math.round(s.durationMs * k),
    intervalMs: Math.max(50, Math.round(s.intervalMs * k)),
    guests: s.guests.map((g) => ({ ...g, demand: { ...g.demand, cpu: t(g.demand.cpu), net: t(g.demand.net), mem: t(g.demand.mem) } })),
  };
}
