// `memshift host`: stands for one physical machine of a cluster (src/cluster/host.ts): runs simulated
// guests, shares its capacity among their demands, serves /metrics in the Prometheus format, and moves
// guests with the engine when a manager tells it to. Its guests come from a scenario (`--scenario FILE
// --name NAME`: the guests placed on NAME, demand read on the scenario's clock from --epoch) or arrive
// by migration. The first line on stdout is "listening on HOST:PORT"; it runs until SIGINT or SIGTERM.

import { readFileSync } from 'node:fs';
import { parseAddress } from '../index.js';
import { ClusterHost } from '../cluster/host.js';
import { parseScenario } from '../cluster/scenario.js';
import type { Vector } from '../manager/resources.js';
import { parseSize } from '../sim/index.js';
import { parseCommand, optionalString, parseInteger, requireString, usageError, type Flags } from './args.js';
import { securityFlags, securityFrom } from './security-flags.js';

export const hostFlags: Flags = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'control port: /metrics, /guests and the manager\'s requests (port 0: any free port)' },
  name: { type: 'string', value: 'NAME', help: 'this host\'s name (with --scenario: which of its hosts this is; default: its control address)' },
  capacity: { type: 'string', value: 'cpu=N,mem=SIZE,net=RATE', help: 'what this host has (cores, bytes, bytes per second); default with --scenario: the scenario\'s' },
  scenario: { type: 'string', value: 'FILE', help: 'start the guests the scenario places on --name' },
  epoch: { type: 'string', value: 'MS', help: 'epoch milliseconds at which the scenario\'s clock reads 0 (default: now)' },
  until: { type: 'string', value: 'MS', help: 'epoch milliseconds after which SLA violation-seconds stop counting (the scenario\'s end)' },
  ...securityFlags,
  lifeline: { type: 'boolean', help: 'exit when stdin closes (a supervisor that dies takes its hosts with it)' },
  quiet: { type: 'boolean', help: 'no log lines' },
  help: { type: 'boolean', help: 'show this help' },
};

/** "cpu=12,mem=16GiB,net=125MiB" → capacity; every resource required. */
export function parseCapacity(text: string): Vector {
  const out: Partial<Vector> = {};
  for (const part of text.split(',')) {
    const [k, v] = part.split('=');
    if ((k !== 'cpu' && k !== 'mem' && k !== 'net') || v === undefined || out[k] !== undefined) throw usageError('--capacity', 'must be cpu=N,mem=SIZE,net=RATE, each once', text);
    const n = k === 'cpu' ? Number(v) : parseSize(v, `--capacity ${k}`);
    if (!Number.isFinite(n) || n <= 0) throw usageError('--capacity', `${k} must be more than 0`, v);
    out[k] = n;
  }
  if (out.cpu === undefined || out.mem === undefined || out.net === undefined) throw usageError('--capacity', 'needs cpu, mem and net', text);
  return out as Vector;
}

export async function runHost(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'host', 'Stand for one host of a cluster: run simulated guests, serve their metrics, migrate them when the manager says. Security as for source/dest; it also authenticates control requests.', hostFlags);
  if (a === null) return 0;
  const listen = parseAddress(requireString(a, 'listen'), '--listen');
  const security = securityFrom(a);
  const scenarioFile = optionalString(a, 'scenario');
  const scenario = scenarioFile === undefined ? null : parseScenario(JSON.parse(readFileSync(scenarioFile, 'utf8')) as unknown, scenarioFile);
  const name = optionalString(a, 'name');
  if (name === undefined && scenario !== null) throw usageError('--name', 'is required with --scenario (which of its hosts this is)');
  const entry = scenario?.hosts.find((h) => h.name === name);
  if (scenario !== null && entry === undefined) throw usageError('--name', `must be one of the scenario's hosts (${scenario.hosts.map((h) => h.name).join(', ')})`, name);
  const capacityText = optionalString(a, 'capacity');
  const capacity = capacityText !== undefined ? parseCapacity(capacityText) : entry?.capacity;
  if (capacity === undefined) throw usageError('--capacity', 'is required without --scenario');
  const epoch = optionalString(a, 'epoch');
  const until = optionalString(a, 'until');
  let host: ClusterHost | null = null;
  const log = a.quiet === true ? undefined : (line: string): void => console.error(`memshift host ${host?.options.name ?? name ?? ''}: ${line}`);
  host = await ClusterHost.start(listen, {
    name, capacity, security, epochMs: epoch === undefined ? Date.now() : parseInteger(epoch, '--epoch'),
    untilEpochMs: until === undefined ? undefined : parseInteger(until, '--until'), log,
  });
  try {
    for (const g of scenario?.guests.filter((x) => x.host === name) ?? []) {
      const { host: _placed, ...spec } = g;
      await host.addGuest(spec);
    }
    // Armed once the guests run: a guest that fails to start ends the process with the error.
    const stopped = waitForStop(a.lifeline === true);
    console.log(`listening on ${host.controlAddress}`);
    log?.(`${capacity.cpu} cores, ${capacity.mem} bytes, ${capacity.net} bytes/s; guests: ${host.guestList().map((g) => g.name).join(', ') || 'none'}`);
    await stopped;
  } finally {
    await host.close();
  }
  return 0;
}

/** Resolves on SIGINT or SIGTERM, or with `lifeline` when stdin closes; the process stays up until then. */
function waitForStop(lifeline: boolean): Promise<void> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const done = (): void => {
      clearInterval(keepAlive);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      if (lifeline) process.stdin.destroy();
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    if (lifeline) {
      process.stdin.on('data', () => undefined);
      process.stdin.once('end', done);
      process.stdin.once('close', done);
      process.stdin.resume();
    }
  });
}
