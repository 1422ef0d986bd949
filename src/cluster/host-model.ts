// How a host shares its machine among its guests, and what each guest and its application see (the
// simulated part of `memshift host`). Pure: capacity, allocations and demands in; what each guest is
// given, what the host sees of it (black-box) and what the guest sees of itself (gray-box) out.
//
//   CPU, network  a guest may use up to its allocation; when the guests together want more than the
//                 host has, the host fills them up in proportion to their allocations (max-min fair,
//                 as a credit scheduler does): a guest that wants less than its share keeps what it
//                 wants and the rest is shared out again among the others
//   memory        a guest holds at most its allocation; demand above it is swapped, which the host
//                 sees as swap traffic. The host sees memory only that way: a guest's OS fills its
//                 allocation with caches, so resident memory says nothing below it (Sandpiper's point)
//   response time the SLA's terms, from the resources (an M/M/1 reading): service ÷ (1 − ρ) with ρ
//                 the CPU the application wants over the CPU it is given, growing past ρ = 1 with the
//                 backlog; swapping and a short network multiply it

import type { Vector } from '../manager/resources.js';

export interface GuestSla {
  /** The application's response time with a whole CPU to itself (ms). */
  serviceMs: number;
  /** The SLA: p95 response time at most this (ms). */
  responseMs: number;
}

export interface GuestLoad {
  allocation: Vector;
  demand: Vector;
  sla: GuestSla;
}

export interface GuestShare {
  /** What the guest is given: CPU cores and network bytes/s it may use (its allocation or its share of a full host). */
  given: Vector;
  /** What it uses: min(demand, given); memory: min(demand, allocation). */
  used: Vector;
  /** Bytes of its memory demand above its allocation (swapped out). */
  swappedBytes: number;
  /** Bytes per second the host sees it swap (a tenth of the swapped bytes turn over each second). */
  swapBytesPerSec: number;
  /** p95 response time of its application (ms). */
  responseMs: number;
  slaViolated: boolean;
}

/** A swapped working set turns over this share per second: the swap traffic the host can see. */
export const SWAP_TURNOVER = 0.1;
/** ρ above this counts as saturated: the queue is what grows, not the M/M/1 term. */
const RHO_SATURATED = 0.95;

export function shareHost(capacity: Vector, guests: readonly GuestLoad[]): GuestShare[] {
  const cpu = fairShares(capacity.cpu, guests.map((g) => g.allocation.cpu), guests.map((g) => g.demand.cpu));
  const net = fairShares(capacity.net, guests.map((g) => g.allocation.net), guests.map((g) => g.demand.net));
  return guests.map((g, i) => {
    const given = { cpu: cpu[i], net: net[i], mem: g.allocation.mem };
    const used = { cpu: Math.min(g.demand.cpu, given.cpu), net: Math.min(g.demand.net, given.net), mem: Math.min(g.demand.mem, given.mem) };
    const swappedBytes = Math.max(0, g.demand.mem - g.allocation.mem);
    const responseMs = responseTime(g.sla.serviceMs, g.demand, given, g.allocation.mem);
    return { given, used, swappedBytes, swapBytesPerSec: swappedBytes * SWAP_TURNOVER, responseMs, slaViolated: responseMs > g.sla.responseMs };
  });
}

/** The application's p95 response time (ms) for a demand on what it is given (the SLA mapping). */
export function responseTime(serviceMs: number, demand: Vector, given: Vector, memAllocation: number): number {
  const rho = given.cpu > 0 ? demand.cpu / given.cpu : demand.cpu > 0 ? Infinity : 0;
  let ms = rho < RHO_SATURATED ? serviceMs / (1 - rho) : (serviceMs / (1 - RHO_SATURATED)) * (1 + 10 * (Math.min(rho, 100) - RHO_SATURATED));
  const swapped = Math.max(0, demand.mem - memAllocation);
  if (swapped > 0) ms *= 1 + (30 * swapped) / Math.max(1, memAllocation);
  const netShort = given.net > 0 ? demand.net / given.net : demand.net > 0 ? 100 : 0;
  if (netShort > 1) ms *= 1 + 50 * (Math.min(100, netShort) - 1);
  return ms;
}

/**
 * What each guest may use of `capacity`: its allocation when everyone's wants (demand up to the
 * allocation) fit; otherwise max-min fair in proportion to the allocations (water-filling). A guest
 * that wants less than its level still counts as given its level: it could use that much.
 */
export function fairShares(capacity: number, allocations: readonly number[], demands: readonly number[]): number[] {
  const want = allocations.map((a, i) => Math.min(a, demands[i]));
  if (want.reduce((s, w) => s + w, 0) <= capacity) return [...allocations];
  let remaining = capacity;
  let active = allocations.map((_, i) => i);
  let level = 0;
  for (;;) {
    const weight = active.reduce((s, i) => s + allocations[i], 0);
    level = weight > 0 ? remaining / weight : 0;
    const satisfied = active.filter((i) => want[i] <= allocations[i] * level);
    if (satisfied.length === 0 || satisfied.length === active.length) break;
    for (const i of satisfied) remaining -= want[i];
    active = active.filter((i) => !satisfied.includes(i));
  }
  return allocations.map((a) => Math.min(a, a * level));
}
