// Recovering a lost link, against the same migration without a cut, interleaved run by run: a 64 MiB
// random guest over a link held to 128 MiB/s, cut (both directions reset; the address keeps answering)
// once half of it went through a proxy. Live: the interrupted pass 1 resumes from the destination's
// page hashes, so what goes again is what was in flight, not the guest (a restart would send the 32 MiB
// already there once more). Post-copy: the push goes on with exactly the pages the destination lacks.
// Reports medians: total time, the time from the loss to the new link taking over, and the bytes.

import { Proxy } from '../test/_support/proxy.js';
import { migrateOnce, type Middle, type MigrationRun } from './e2e.bench.js';
import { median, printTable, type Row } from './util.js';

const GUEST_BYTES = 64 * 2 ** 20;
const RECOVER = ['--recover-timeout', '10000'];

function cutAt(bytes: number): Middle & { close(): void } {
  let proxy: (Proxy & { port: number }) | null = null;
  return {
    async port(destPort) {
      proxy = await Proxy.start(destPort);
      return proxy.port;
    },
    async during() {
      await proxy!.holdAfter(bytes);
      proxy!.resetConnections();
      proxy!.release();
    },
    close() {
      proxy?.cut();
    },
  };
}

async function once(mode: 'live' | 'postcopy', cut: boolean): Promise<MigrationRun> {
  const source = ['--memory', '64MiB', '--seed', '9', '--fill', 'random', '--workload', mode === 'live' ? 'idle' : 'uniform', '--warmup', '100',
    '--mode', mode, '--max-bandwidth', '128MiB', ...RECOVER];
  const dest = ['--memory', '64MiB', '--prealloc', ...RECOVER];
  if (!cut) return migrateOnce(source, dest);
  const middle = cutAt(GUEST_BYTES / 2);
  try {
    return await migrateOnce(source, dest, middle);
  } finally {
    middle.close();
  }
}

export async function benchRecovery(runs: number): Promise<void> {
  const cases = [
    { name: 'live, no cut', mode: 'live', cut: false },
    { name: 'live, cut in pass 1 at 32 MiB: the pass resumes', mode: 'live', cut: true },
    { name: 'post-copy, no cut', mode: 'postcopy', cut: false },
    { name: 'post-copy, cut mid-push at 32 MiB: post-copy goes on', mode: 'postcopy', cut: true },
  ] as const;
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    for (const c of cases) results.set(c.name, [...(results.get(c.name) ?? []), await once(c.mode, c.cut)]);
  }
  const rows: Row[] = cases.map((c) => {
    const ms = results.get(c.name)!;
    const recovered = ms.filter((m) => m.source.recoveries.length > 0);
    return {
      name: c.name,
      'total ms': median(ms.map((m) => m.source.totalTimeMs)),
      'MB on the wire': median(ms.map((m) => m.source.bytesTransferred / 1e6)),
      recovered: c.cut ? `${recovered.length} of ${ms.length}` : '',
      'loss → new link ms': recovered.length > 0 ? median(recovered.map((m) => m.source.recoveries[0].pausedMs)) : '',
      'pages sent again': recovered.length > 0 ? median(recovered.map((m) => m.source.recoveries[0].missingPages)) : '',
    };
  });
  printTable(`Recovering a lost link: 64 MiB random guest at 128 MiB/s, --recover-timeout on both, interleaved, median of ${runs} runs`, rows);
}
