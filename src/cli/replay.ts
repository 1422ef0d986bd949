// `memshift replay`: the reference run. Runs the simulated guest uninterrupted for exactly N steps on
// one thread, as fast as it can, and writes its RAM image (every RAM region, in order). Every
// end-to-end test compares a migrated guest against this. It takes every guest flag `source` takes
// (guest-flags.ts); those that do not change memory contents (--dirty-rate) are accepted and unused.

import { writeFileSync } from 'node:fs';
import { OutputList, formatOutput, ramRegionIds, replay } from '../sim/index.js';
import { optionalString, parseCommand, parseInteger, requireString, usageError, type Flags } from './args.js';
import { guestConfigFrom, guestFlags } from './guest-flags.js';

export const replayFlags: Flags = {
  ...guestFlags,
  steps: { type: 'string', value: 'N', help: 'steps to run' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image here (all RAM regions, in order)' },
  'dump-disk': { type: 'string', value: 'DIR', help: 'guests with disks: write the disk images here (disk0.img, …)' },
  outputs: { type: 'string', value: 'FILE', help: 'write the guest\'s outputs here, a "STEP WORD" line each (what `replicate --serve` serves)' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runReplay(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'replay', 'Run the simulated guest for exactly --steps steps and dump its RAM.', replayFlags);
  if (a === null) return 0;
  const config = guestConfigFrom(a);
  const steps = parseInteger(requireString(a, 'steps'), '--steps');
  const out = requireString(a, 'dump-memory');
  const diskDir = optionalString(a, 'dump-disk') ?? null;
  if (config.disks.length > 0 && diskDir === null) throw usageError('--dump-disk', 'is required for a guest with disks');
  const t0 = performance.now();
  const outputsFile = optionalString(a, 'outputs');
  const outputs = outputsFile === undefined ? null : new OutputList();
  const memory = replay(config, steps, {}, diskDir, outputs);
  memory.writeImage(ramRegionIds(memory.regions), out);
  if (outputsFile !== undefined) writeFileSync(outputsFile, outputs!.outputs.map((o) => `${formatOutput(o)}\n`).join(''));
  const ms = performance.now() - t0;
  console.error(`replay: ${steps} steps, ${config.memoryBytes} bytes written to ${out} in ${ms.toFixed(0)} ms`);
  return 0;
}
