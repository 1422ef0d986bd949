// `memshift replay`: the reference run. Runs the simulated guest uninterrupted for exactly N steps on
// one thread, as fast as it can, and writes its RAM image. Every end-to-end test compares a migrated
// guest against this.

import { replay, resolveGuestConfig, parseSize, RAM_REGION_ID, type FillKind, type WorkloadKind } from '../index.js';
import { parseCommand, parseInteger, requireString, optionalString, type Flags } from './args.js';

export const replayFlags: Flags = {
  memory: { type: 'string', value: 'SIZE', help: 'guest RAM size (KiB, MiB, GiB)' },
  fill: { type: 'string', value: 'mixed|zero|random', help: 'initial contents', default: 'mixed' },
  workload: { type: 'string', value: 'idle|uniform|hotset', help: 'what the vCPU does', default: 'hotset' },
  'hot-size': { type: 'string', value: 'SIZE', help: 'hot working set (hotset workload; default memory/16)' },
  seed: { type: 'string', value: 'N', help: 'seed of fill and workload' },
  steps: { type: 'string', value: 'N', help: 'steps to run' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image here' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runReplay(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'replay', 'Run the simulated guest for exactly --steps steps and dump its RAM.', replayFlags);
  if (a === null) return 0;
  const memoryBytes = parseSize(requireString(a, 'memory'), '--memory');
  const hot = optionalString(a, 'hot-size');
  const config = resolveGuestConfig({
    memoryBytes,
    fill: requireString(a, 'fill') as FillKind,
    workload: requireString(a, 'workload') as WorkloadKind,
    hotBytes: hot === undefined ? undefined : parseSize(hot, '--hot-size'),
    seed: parseInteger(requireString(a, 'seed'), '--seed'),
  });
  const steps = parseInteger(requireString(a, 'steps'), '--steps');
  const out = requireString(a, 'dump-memory');
  const t0 = performance.now();
  const memory = replay(config, steps);
  memory.writeImage(RAM_REGION_ID, out);
  const ms = performance.now() - t0;
  console.error(`replay: ${steps} steps, ${memoryBytes} bytes written to ${out} in ${ms.toFixed(0)} ms`);
  return 0;
}
