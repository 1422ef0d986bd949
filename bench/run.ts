// `npm run bench`: every benchmark, each against a baseline measured in the same run.
//   node dist/bench/run.js [--only kernels,e2e,...] [--runs N]

import { benchKernels } from './kernels.bench.js';
import { benchE2e } from './e2e.bench.js';
import { benchPostcopy } from './postcopy.bench.js';

const args = process.argv.slice(2);
const only = (args.find((a) => a.startsWith('--only='))?.slice(7) ?? args[args.indexOf('--only') + 1] ?? '').split(',').filter(Boolean);
const runsArg = args.find((a) => a.startsWith('--runs='))?.slice(7) ?? (args.includes('--runs') ? args[args.indexOf('--runs') + 1] : undefined);
const runs = runsArg === undefined ? 5 : Number(runsArg);

const suites: Record<string, (runs: number) => Promise<void>> = {
  kernels: benchKernels,
  e2e: benchE2e,
  postcopy: benchPostcopy,
};

for (const [name, run] of Object.entries(suites)) {
  if (only.length > 0 && !only.includes(name)) continue;
  await run(runs);
}
