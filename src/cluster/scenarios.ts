// The scenarios memshift ships (`memshift cluster run NAME`; `memshift cluster show NAME` prints one as
// a file to edit). Each is written in the scenario file format (scenario.ts), at a 1 s interval.
// Hosts: 12 cores, 16 GiB, 1 Gb/s (125 MiB/s) unless said otherwise; every guest moves 32 MiB of RAM.

import { parseScenario, type Scenario } from './scenario.js';

const HOST = { cpu: 12, net: '125MiB', mem: '16GiB' };
const BIG_NET = { cpu: 12, net: '500MiB', mem: '16GiB' };
const BIG = { cpu: 24, net: '125MiB', mem: '32GiB' };
const SLA = { serviceMs: 10, responseMs: 80 };

type Size = string | number;
type Trace = Size | [number, number][];

/** A scenario of the shipped shape: 20 s at a 1 s interval, hosts h1, h2, … of the capacities given. */
function scenario(name: string, description: string, capacities: object[], guests: object[], manager?: object): object {
  return {
    name, description, durationMs: 20_000, intervalMs: 1000,
    hosts: capacities.map((capacity, i) => ({ name: `h${i + 1}`, capacity })),
    guests, ...(manager === undefined ? {} : { manager }),
  };
}

/** A guest with constant demand (cpu cores, net and mem as sizes). */
function steady(name: string, host: string, cpu: number, net: string, mem: string, allocation: { cpu: number; net: string; mem: string }, extra: object = {}): object {
  return { name, host, ram: '32MiB', allocation, demand: { cpu, net, mem, noise: 0.03 }, sla: SLA, ...extra };
}

/** A gray-box guest whose demand follows the traces given (the surge of each scenario). */
function surging(name: string, host: string, allocation: { cpu: number; net: string; mem: string }, demand: { cpu: Trace; net: Trace; mem: Trace }, noise = 0.03): object {
  return { name, host, ram: '32MiB', graybox: true, allocation, demand: { ...demand, noise }, sla: SLA };
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** A shop front-end of the flash crowd: 1.5 cores, 5 from 4 s (over 1 s). */
function shop(name: string, host: string): object {
  return surging(name, host, { cpu: 6, net: '30MiB', mem: '3GiB' }, { cpu: [[0, 1.5], [4000, 1.5], [5000, 5]], net: '10MiB', mem: '2GiB' });
}

const SHIPPED: Record<string, object> = {
  'cpu-surge': scenario('cpu-surge',
    'web on h1 surges from 2 to 7 cores at 4 s; h1 (12 cores) is oversubscribed and web and db miss their SLA until web moves to a host with room and a larger allocation',
    [HOST, HOST, HOST], [
      surging('web', 'h1', { cpu: 8, net: '40MiB', mem: '4GiB' }, { cpu: [[0, 2], [4000, 2], [5000, 7]], net: '10MiB', mem: '3GiB' }),
      steady('db', 'h1', 4.5, '10MiB', '5GiB', { cpu: 6, net: '40MiB', mem: '6GiB' }, { graybox: true }),
      steady('batch', 'h1', 2, '5MiB', '1536MiB', { cpu: 4, net: '20MiB', mem: '2GiB' }),
      steady('cache', 'h2', 1, '20MiB', '3GiB', { cpu: 4, net: '40MiB', mem: '4GiB' }),
      steady('mail', 'h3', 1, '5MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
    ]),
  'net-surge': scenario('net-surge',
    'stream on h1 goes from 20 to 100 MiB/s at 4 s; with api it wants more than h1\'s 125 MiB/s link until stream moves to a host with a faster one',
    [HOST, BIG_NET, BIG_NET], [
      surging('stream', 'h1', { cpu: 4, net: '120MiB', mem: '4GiB' }, { cpu: 1.5, net: [[0, 20 * MiB], [4000, 20 * MiB], [5000, 100 * MiB]], mem: '3GiB' }),
      steady('api', 'h1', 2, '45MiB', '2GiB', { cpu: 4, net: '60MiB', mem: '3GiB' }, { graybox: true }),
      steady('logs', 'h2', 1, '30MiB', '2GiB', { cpu: 2, net: '60MiB', mem: '3GiB' }),
      steady('backup', 'h3', 1, '40MiB', '2GiB', { cpu: 2, net: '60MiB', mem: '3GiB' }),
    ]),
  'memory-pressure': scenario('memory-pressure',
    'analytics on h1 grows from 3 to 8 GiB from 3 s to 7 s, past its 4 GiB allocation and past what h1 has unallocated: it swaps and misses its SLA. The gray-box daemon shows the OS\'s real use, so the manager sizes it right at once; black-box sees only swap traffic and has to guess',
    [HOST, HOST, HOST], [
      surging('analytics', 'h1', { cpu: 4, net: '20MiB', mem: '4GiB' }, { cpu: 2, net: '5MiB', mem: [[0, 3 * GiB], [3000, 3 * GiB], [7000, 8 * GiB]] }, 0.01),
      steady('db', 'h1', 3, '10MiB', '5GiB', { cpu: 4, net: '40MiB', mem: '5632MiB' }),
      steady('queue', 'h1', 1, '10MiB', '3GiB', { cpu: 2, net: '20MiB', mem: '3584MiB' }),
      steady('web', 'h2', 2, '20MiB', '4GiB', { cpu: 4, net: '40MiB', mem: '5GiB' }),
      steady('mail', 'h3', 1, '5MiB', '2GiB', { cpu: 2, net: '10MiB', mem: '3GiB' }),
    ]),
  'flash-crowd': scenario('flash-crowd',
    'three shop front-ends, two on h1 and one on h2, go from 1.5 to 5 cores each at 4 s together; both hosts go hot, h1 past its 12 cores so that its shops miss their SLA, until the manager spreads the shops over h3 and h4 (24 cores each), two migrations at a time',
    [HOST, HOST, BIG, BIG], [
      shop('shop1', 'h1'),
      shop('shop2', 'h1'),
      steady('search', 'h1', 3, '10MiB', '3GiB', { cpu: 4, net: '30MiB', mem: '4GiB' }),
      shop('shop3', 'h2'),
      steady('orders', 'h2', 6.5, '10MiB', '4GiB', { cpu: 8, net: '30MiB', mem: '5GiB' }),
      steady('mail', 'h3', 1, '5MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
      steady('ci', 'h4', 1.5, '5MiB', '2GiB', { cpu: 4, net: '10MiB', mem: '3GiB' }),
    ], { concurrent: 2 }),
  'night-consolidation': scenario('night-consolidation',
    'night-time load on four hosts, each a quarter used or less; the manager packs the guests onto as few hosts as the thresholds allow and names the hosts that can power off',
    [HOST, HOST, HOST, HOST], [
      steady('web', 'h1', 1, '5MiB', '2GiB', { cpu: 4, net: '20MiB', mem: '3GiB' }),
      steady('db', 'h1', 1.5, '5MiB', '3GiB', { cpu: 4, net: '20MiB', mem: '4GiB' }),
      steady('mail', 'h2', 0.5, '2MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
      steady('ci', 'h3', 1, '2MiB', '2GiB', { cpu: 4, net: '10MiB', mem: '3GiB' }),
      steady('wiki', 'h4', 0.5, '2MiB', '1GiB', { cpu: 2, net: '10MiB', mem: '2GiB' }),
    ], { consolidate: true, window: 4 }),
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
