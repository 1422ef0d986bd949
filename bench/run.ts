// `npm run bench`: every benchmark, each against a baseline measured in the same run.
//   node dist/bench/run.js [--only kernels,e2e,postcopy,visibility,tls,compression,scale,recovery,save,disk,replication,qemu] [--runs N]   (default: all, 3 runs)
//   node dist/bench/run.js --peer qemu [--runs N]      QEMU 7.2 and memshift side by side (peer.bench.ts)

import { benchKernels } from './kernels.bench.js';
import { benchE2e } from './e2e.bench.js';
import { benchPostcopy } from './postcopy.bench.js';
import { benchVisibility } from './visibility.bench.js';
import { benchPeerQemu } from './peer.bench.js';
import { benchTls } from './tls.bench.js';
import { benchCompression } from './compression.bench.js';
import { benchScale } from './scale.bench.js';
import { benchRecovery } from './recovery.bench.js';
import { benchSave } from './save.bench.js';
import { benchDisk } from './disk.bench.js';
import { benchReplication } from './replication.bench.js';
import { benchQemuAdapter } from './qemu-adapter.bench.js';

const args = process.argv.slice(2);
/** The value of `--name V` or `--name=V`, if given. */
function flag(name: string): string | undefined {
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  if (eq !== undefined) return eq.slice(name.length + 3);
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}
const only = (flag('only') ?? '').split(',').filter(Boolean);
const runs = Number(flag('runs') ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer (got ${flag('runs')})`);

const suites: Record<string, (runs: number) => Promise<void>> = {
  kernels: benchKernels,
  e2e: benchE2e,
  postcopy: benchPostcopy,
  visibility: benchVisibility,
  tls: benchTls,
  compression: benchCompression,
  scale: benchScale,
  recovery: benchRecovery,
  save: benchSave,
  disk: benchDisk,
  replication: benchReplication,
  qemu: benchQemuAdapter,
};

const peer = flag('peer');
if (peer !== undefined && peer !== 'qemu') throw new Error(`--peer takes qemu (got ${peer})`);

for (const [name, run] of Object.entries(suites)) {
  if (peer !== undefined) break;
  if (only.length > 0 && !only.includes(name)) continue;
  await run(runs);
}

if (peer === 'qemu') await benchPeerQemu(runs);
