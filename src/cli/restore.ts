// `memshift restore FILE`: runs a guest `memshift save` wrote. The file is checked whole (header,
// every page against its hash, the digest, the vCPU state) before the guest runs; then it runs exactly
// `--run-steps` steps, pauses, and its RAM is dumped (`--dump-memory`) for comparison with `replay`.

import { restoreGuest } from '../index.js';
import { SimulatedGuest, parseSize, ramRegionIds } from '../sim/index.js';
import { checkOutputPaths, formatDigest, parseCommand, parseInteger, optionalString, requireString, usageError, writeReportFile, type Flags } from './args.js';
import { storageFlags, storageFrom } from './storage-flags.js';

export const restoreFlags: Flags = {
  lazy: { type: 'boolean', help: 'resume before the pages are read: a page the guest touches is read at once, the rest in the background (post-copy from the file)' },
  'run-steps': { type: 'string', value: 'K', help: 'run exactly K guest steps after the restore, then pause it', default: '0' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image (all RAM regions, in order) once the guest paused' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  ...storageFlags,
  'dump-disk': { type: 'string', value: 'DIR', help: 'guests with disks: copy the disk images here (disk0.img, …) once the guest paused' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary line' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runRestore(argv: readonly string[]): Promise<number> {
  // The file comes first (memshift restore FILE [flags]); the flags parser takes only --flags.
  const named = argv.length > 0 && !argv[0].startsWith('--');
  const a = parseCommand(named ? argv.slice(1) : argv, 'restore FILE', 'Restore a guest from a file `memshift save` wrote (checked whole first), run it, dump it.', restoreFlags);
  if (a === null) return 0;
  if (!named) throw usageError('FILE', 'is required (memshift restore FILE [flags])');
  const file = argv[0];
  const k = parseInteger(requireString(a, 'run-steps'), '--run-steps');
  const maxSlabBytes = parseSize(requireString(a, 'slab-size'), '--slab-size');
  checkOutputPaths(a, ['report', 'dump-memory']);
  const storage = storageFrom(a, null);
  let guest: SimulatedGuest | null = null;
  try {
    const result = await restoreGuest(file, (regions) => {
      guest = SimulatedGuest.receiving(regions, { maxSlabBytes }, { storage });
      return guest;
    }, { lazy: a.lazy === true });
    const g = guest as unknown as SimulatedGuest;
    const t = performance.now();
    const savedSteps = g.steps;
    // Exactly K steps, then paused (with K = 0 the guest does not start: the dump is the saved memory).
    // Lazy: the guest runs while its pages load; a damaged page ends both (the vCPU is then stopped).
    const running = k > 0 ? g.runUntil(savedSteps + k) : Promise.resolve();
    const [, lazy] = await Promise.all([running, result.loaded]);
    const report = {
      file, live: result.live, lazy: a.lazy === true, savedSteps, guestSteps: g.steps, fileBytes: result.fileBytes, pagesSaved: result.pagesSaved,
      readMs: result.readMs, verifyMs: result.verifyMs, restoreMs: result.totalMs, runMs: performance.now() - t,
      // Lazy: restoreMs is the time to a guest ready to run; loadedMs until every page was present.
      loadedMs: lazy?.loadedMs ?? null, faultPages: lazy?.faultPages ?? null, faultLatencyUs: lazy?.faultLatencyUs ?? null,
      digest: formatDigest(result.digest), contentDigest: formatDigest(g.memory.contentDigest()),
    };
    const dump = optionalString(a, 'dump-memory');
    if (dump !== undefined) g.memory.writeImage(ramRegionIds(g.regions), dump);
    const disks = optionalString(a, 'dump-disk');
    if (disks !== undefined) g.dumpDisks(disks);
    writeReportFile(a, report);
    if (!a.quiet && lazy !== null) console.error(`restore: ${file}: guest ready to run in ${result.totalMs.toFixed(1)} ms, every page present after ${lazy.loadedMs.toFixed(0)} ms (${lazy.faultPages} read on a fault); ran ${g.steps - savedSteps} steps to ${g.steps}`);
    else if (!a.quiet) console.error(`restore: ${file} checked and loaded in ${result.totalMs.toFixed(0)} ms (read ${result.readMs.toFixed(0)}, verify ${result.verifyMs.toFixed(0)}); ran ${g.steps - savedSteps} steps to ${g.steps}`);
    return 0;
  } finally {
    await (guest as SimulatedGuest | null)?.close();
  }
}
