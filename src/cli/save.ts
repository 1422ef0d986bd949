// `memshift save`: starts a simulated guest (every guest flag `source` takes), lets it run, and saves
// it to a file (RAM, vCPU state; layout in protocol/save-file.ts): suspended by default, or `--live`
// with passes while it runs and the last one paused. The guest then stops, as a guest suspended to
// disk; `memshift restore` runs it again in another process. The report (`--report`) names the steps
// the guest had run when it paused (`guestSteps`), which `replay` reproduces.

import { saveGuest } from '../index.js';
import { SimulatedGuest, formatBytes, parseSize } from '../sim/index.js';
import { checkOutputPaths, parseCommand, parseInteger, requireString, writeReportFile, type Flags } from './args.js';
import { guestConfigFrom, guestFlags } from './guest-flags.js';
import { storageFlags, storageFrom } from './storage-flags.js';

export const saveFlags: Flags = {
  to: { type: 'string', value: 'FILE', help: 'the save file (created or replaced)' },
  ...guestFlags,
  ...storageFlags,
  live: { type: 'boolean', help: 'write passes while the guest runs, the last one paused (default: pause, then write)' },
  'max-passes': { type: 'string', value: 'N', help: 'live: most passes while the guest runs', default: '8' },
  warmup: { type: 'string', value: 'MS', help: 'let the guest run this long before saving', default: '300' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary line' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runSave(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'save', 'Start a simulated guest and save it (RAM, vCPU state, local disks; disks on shared storage by reference) to a file that `memshift restore` runs.', saveFlags);
  if (a === null) return 0;
  const to = requireString(a, 'to');
  const config = guestConfigFrom(a);
  const storage = storageFrom(a, config.disks.length);
  // On shared storage the file refers to the images (their lease goes with the runner); local disks are saved in the file.
  const warmupMs = parseInteger(requireString(a, 'warmup'), '--warmup');
  const maxPasses = parseInteger(requireString(a, 'max-passes'), '--max-passes', 1);
  checkOutputPaths(a, ['report']);
  const guest = SimulatedGuest.create(config, { maxSlabBytes: parseSize(requireString(a, 'slab-size'), '--slab-size') }, { storage });
  try {
    await guest.resume();
    await new Promise((r) => setTimeout(r, warmupMs));
    const result = await saveGuest(guest, to, { live: a.live === true, maxPasses });
    const report = {
      file: to, live: a.live === true, guestSteps: guest.steps, fileBytes: result.fileBytes, pagesWritten: result.pagesWritten,
      passes: result.passes, totalMs: result.totalMs, pausedMs: result.pausedMs, digest: result.digest.toString(16).padStart(16, '0'),
      throughputBytesPerSec: result.passes.reduce((n, p) => n + p.bytes, 0) / Math.max(1e-3, result.totalMs / 1000),
    };
    writeReportFile(a, report);
    if (!a.quiet) {
      console.error(`save: ${report.guestSteps} steps, ${result.passes.length} passes, ${formatBytes(result.passes.reduce((n, p) => n + p.bytes, 0))} of pages in ${result.totalMs.toFixed(0)} ms (paused ${result.pausedMs.toFixed(1)} ms) → ${to}`);
    }
    return 0;
  } finally {
    await guest.close();
  }
}
