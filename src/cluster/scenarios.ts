// The scenarios memshift ships (`memshift cluster run NAME`; `memshift cluster show NAME` prints one as
// a file to edit). Each is written in the scenario file format (scenario.ts), at a 1 s interval.
// Hosts: 12 cores, 16 GiB, 1 Gb/s (125 MiB/s) unless said otherwise; every guest moves 32 MiB of RAM.

import { parseScenario, type Scenario } from './scenario.js';

const HOST = { cpu: 12, net: '125MiB', mem: '16GiB' };
const BIG_NET = { cpu: 12, net: '500MiB', mem: '16GiB' };
const BIG = { cpu: 24, net: '125MiB', mem: '32GiB' };
const SLA = { serviceMs: 10, responseMs: 80 };

/** A guest with constant demand (cpu cores, net and mem as sizes). */
function steady(name: string, host: string, cpu: number, net: string, mem: string, allocation: { cpu: number; net: string; mem: string }, extra: object = {}): object {
  return { name, host, ram: '32MiB', allocation, demand: { cpu, net, mem, noise: 0.03 }, sla: SLA, ...extra };
}

const SHIPPED: Record<string, object> = {
  'cpu-surge': {
    name: 'cpu-surge',
    description: 'web on h1 surges from 2 to 7 cores at 4 s; h1 (12 cores) is oversubscribed and web and db miss their SLA until web moves to a host with room and a larger allocation',
    durationMs: 20_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: HOST }, { name: 'h2', capacity: HOST }, { name: 'h3', capacity: HOST }],
    guests: [
      { name: 'web', host: 'h1', ram: '32MiB', graybox: true, allocation: { cpu: 8, net: '40MiB', mem: '4GiB' },
        demand: { cpu: [[0, 2], [4000, 2], [5000, 7]], net: '10MiB', mem: '3GiB', noise: 0.03 }, sla: SLA },
      steady('db', 'h1', 4.5, '10MiB', '5GiB', { cpu: 6, net: '40MiB', mem: '6GiB' }, { graybox: true }),
      steady('batch', 'h1', 2, '5MiB', '1536MiB', { cpu: 4, net: '20MiB', mem: '2GiB' }),
      steady('cache', 'h2', 1, '20MiB', '3GiB', { cpu: 4, net: '40MiB', mem: '4GiB' }),
      steady('mail', 'h3', 1, '5MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
    ],
  },
  'net-surge': {
    name: 'net-surge',
    description: 'stream on h1 goes from 20 to 100 MiB/s at 4 s; with api it wants more than h1\'s 125 MiB/s link until stream moves to a host with a faster one',
    durationMs: 20_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: HOST }, { name: 'h2', capacity: BIG_NET }, { name: 'h3', capacity: BIG_NET }],
    guests: [
      { name: 'stream', host: 'h1', ram: '32MiB', graybox: true, allocation: { cpu: 4, net: '120MiB', mem: '4GiB' },
        demand: { cpu: 1.5, net: [[0, 20 * 2 ** 20], [4000, 20 * 2 ** 20], [5000, 100 * 2 ** 20]], mem: '3GiB', noise: 0.03 }, sla: SLA },
      steady('api', 'h1', 2, '45MiB', '2GiB', { cpu: 4, net: '60MiB', mem: '3GiB' }, { graybox: true }),
      steady('logs', 'h2', 1, '30MiB', '2GiB', { cpu: 2, net: '60MiB', mem: '3GiB' }),
      steady('backup', 'h3', 1, '40MiB', '2GiB', { cpu: 2, net: '60MiB', mem: '3GiB' }),
    ],
  },
  'memory-pressure': {
    name: 'memory-pressure',
    description: 'analytics on h1 grows from 3 to 8 GiB from 3 s to 7 s, past its 4 GiB allocation and past what h1 has unallocated: it swaps and misses its SLA. The gray-box daemon shows the OS\'s real use, so the manager sizes it right at once; black-box sees only swap traffic and has to guess',
    durationMs: 20_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: HOST }, { name: 'h2', capacity: HOST }, { name: 'h3', capacity: HOST }],
    guests: [
      { name: 'analytics', host: 'h1', ram: '32MiB', graybox: true, allocation: { cpu: 4, net: '20MiB', mem: '4GiB' },
        demand: { cpu: 2, net: '5MiB', mem: [[0, 3 * 2 ** 30], [3000, 3 * 2 ** 30], [7000, 8 * 2 ** 30]], noise: 0.01 }, sla: SLA },
      steady('db', 'h1', 3, '10MiB', '5GiB', { cpu: 4, net: '40MiB', mem: '5632MiB' }),
      steady('queue', 'h1', 1, '10MiB', '3GiB', { cpu: 2, net: '20MiB', mem: '3584MiB' }),
      steady('web', 'h2', 2, '20MiB', '4GiB', { cpu: 4, net: '40MiB', mem: '5GiB' }),
      steady('mail', 'h3', 1, '5MiB', '2GiB', { cpu: 2, net: '10MiB', mem: '3GiB' }),
    ],
  },
  'flash-crowd': {
    name: 'flash-crowd',
    description: 'three shop front-ends, two on h1 and one on h2, go from 1.5 to 5 cores each at 4 s together; both hosts go hot, h1 past its 12 cores so that its shops miss their SLA, until the manager spreads the shops over h3 and h4 (24 cores each), two migrations at a time',
    durationMs: 20_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: HOST }, { name: 'h2', capacity: HOST }, { name: 'h3', capacity: BIG }, { name: 'h4', capacity: BIG }],
    guests: [
      ...['shop1', 'shop2'].map((name) => ({ name, host: 'h1', ram: '32MiB', graybox: true, allocation: { cpu: 6, net: '30MiB', mem: '3GiB' },
        demand: { cpu: [[0, 1.5], [4000, 1.5], [5000, 5]], net: '10MiB', mem: '2GiB', noise: 0.03 }, sla: SLA })),
      steady('search', 'h1', 3, '10MiB', '3GiB', { cpu: 4, net: '30MiB', mem: '4GiB' }),
      { name: 'shop3', host: 'h2', ram: '32MiB', graybox: true, allocation: { cpu: 6, net: '30MiB', mem: '3GiB' },
        demand: { cpu: [[0, 1.5], [4000, 1.5], [5000, 5]], net: '10MiB', mem: '2GiB', noise: 0.03 }, sla: SLA },
      steady('orders', 'h2', 6.5, '10MiB', '4GiB', { cpu: 8, net: '30MiB', mem: '5GiB' }),
      steady('mail', 'h3', 1, '5MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
      steady('ci', 'h4', 1.5, '5MiB', '2GiB', { cpu: 4, net: '10MiB', mem: '3GiB' }),
    ],
    manager: { concurrent: 2 },
  },
  'night-consolidation': {
    name: 'night-consolidation',
    description: 'night-time load on four hosts, each a quarter used or less; the manager packs the guests onto as few hosts as the thresholds allow and names the hosts that can power off',
    durationMs: 20_000, intervalMs: 1000,
    hosts: [{ name: 'h1', capacity: HOST }, { name: 'h2', capacity: HOST }, { name: 'h3', capacity: HOST }, { name: 'h4', capacity: HOST }],
    guests: [
      steady('web', 'h1', 1, '5MiB', '2GiB', { cpu: 4, net: '20MiB', mem: '3GiB' }),
      steady('db', 'h1', 1.5, '5MiB', '3GiB', { cpu: 4, net: '20MiB', mem: '4GiB' }),
      steady('mail', 'h2', 0.5, '2MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
      steady('ci', 'h3', 1, '2MiB', '2GiB', { cpu: 4, net: '10MiB', mem: '3GiB' }),
      steady('wiki', 'h4', 0.5, '2MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
    ],
    manager: { consolidate: true, window: 4 },
  },
};

export const SCENARIO_NAMES = Object.keys(SHIPPED);

/** A shipped scenario in its file form (JSON-ready), or undefined. */
export function shippedScenarioJson(name: string): object | undefined {
  return SHIPPED[name];
}

/** A shipped scenario, checked. */
export function shippedScenario(name: string): Scenario | undefined {
  const json = SHIPPED[name];
  return json === undefined ? undefined : parseScenario(json, name);
}
