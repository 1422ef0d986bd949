// What the manager makes of one scrape of a host's /metrics: the host's capacity and, per guest, what
// the host sees (black-box) and, for guests running the daemon, what the guest says of itself (gray-box);
// then each guest's demand estimate, the sample its profile takes. Pure.
//
// Estimates (after Sandpiper): memory allocated is memory committed, so no guest counts less than its
// allocation. Gray-box demand is the guest OS's own (CPU it has work for, memory it uses, swapped
// included). Black-box sees use only: CPU and network use that reaches what the guest is
// given count as CAPPED_INFLATION more (the true demand is unknown but larger); memory is the
// allocation, since a guest's OS fills it with caches, plus the swap traffic seen over the interval,
// which shows that more is needed but not how much.

import type { Vector } from '../manager/resources.js';
import type { ParsedSample } from './metrics-text.js';

export interface GuestView {
  name: string;
  host: string;
  allocation: Vector;
  used: Vector;
  given: Vector;
  swapBytesPerSec: number;
  ramBytes: number;
  dirtyPagesPerSec: number;
  migrating: boolean;
  slaViolationSeconds: number;
  gray: { cpuDemand: number; memUsed: number; responseMs: number; slaMs: number } | null;
}

export interface HostView {
  name: string;
  capacity: Vector;
  guests: GuestView[];
  nucleusSeconds: number;
}

/** Use at or above this share of what is given counts as capped. */
const CAPPED = 0.97;
/** A capped black-box guest is estimated to want this much more than it gets. */
export const CAPPED_INFLATION = 1.25;

export function readHost(samples: readonly ParsedSample[]): HostView {
  const one = (name: string, labels: Record<string, string> = {}): number | undefined =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  const hostName = samples.find((s) => s.name === 'memshift_host_capacity')?.labels.host;
  if (hostName === undefined) throw new Error('no memshift_host_capacity in the metrics: not a memshift host');
  const vector = (name: string, labels: Record<string, string>): Vector => ({
    cpu: one(name, { ...labels, resource: 'cpu' }) ?? 0, net: one(name, { ...labels, resource: 'net' }) ?? 0, mem: one(name, { ...labels, resource: 'mem' }) ?? 0,
  });
  const names = [...new Set(samples.filter((s) => s.name === 'memshift_guest_ram_bytes').map((s) => s.labels.guest))];
  const guests = names.map((guest): GuestView => {
    const l = { guest };
    const g = (name: string): number => one(name, l) ?? 0;
    const cpuDemand = one('memshift_guest_os_cpu_demand_cores', l);
    return {
      name: guest, host: hostName,
      allocation: vector('memshift_guest_allocation', l),
      used: { cpu: g('memshift_guest_cpu_cores'), net: g('memshift_guest_net_bytes_per_second'), mem: 0 },
      given: { cpu: g('memshift_guest_cpu_given_cores'), net: g('memshift_guest_net_given_bytes_per_second'), mem: 0 },
      swapBytesPerSec: g('memshift_guest_swap_bytes_per_second'),
      ramBytes: g('memshift_guest_ram_bytes'),
      dirtyPagesPerSec: g('memshift_guest_dirty_pages_per_second'),
      migrating: g('memshift_guest_migrating') === 1,
      slaViolationSeconds: g('memshift_guest_sla_violation_seconds_total'),
      gray: cpuDemand === undefined ? null : {
        cpuDemand, memUsed: g('memshift_guest_os_memory_used_bytes'), responseMs: g('memshift_guest_response_p95_ms'), slaMs: g('memshift_guest_sla_response_ms'),
      },
    };
  });
  return { name: hostName, capacity: vector('memshift_host_capacity', {}), guests, nucleusSeconds: one('memshift_host_nucleus_seconds_total') ?? 0 };
}

/** The guest's demand as the manager estimates it; `useGray` false ignores the daemon (black-box only). */
export function estimateDemand(g: GuestView, intervalMs: number, useGray: boolean): Vector {
  if (useGray && g.gray !== null) return { cpu: g.gray.cpuDemand, net: blackBox(g.used.net, g.given.net), mem: Math.max(g.allocation.mem, g.gray.memUsed) };
  return {
    cpu: blackBox(g.used.cpu, g.given.cpu),
    net: blackBox(g.used.net, g.given.net),
    mem: g.allocation.mem + (g.swapBytesPerSec * intervalMs) / 1000,
  };
}

function blackBox(used: number, given: number): number {
  return given > 0 && used >= CAPPED * given ? used * CAPPED_INFLATION : used;
}
