// Compression that adapts, on a link slower than the compressor and on one faster: a 64 MiB guest of
// text-like pages (mixed fill, idle) over a 100 Mbit/s link (the source's --max-bandwidth 12.5 MB/s;
// a shaped veth between namespaces is the next step) and over unthrottled loopback, with --compress
// auto, none and lz4 interleaved run by run. Reports the median total time and bytes on the wire.

import { migrateOnce, type MigrationRun } from './e2e.bench.js';
import { gbPerCpuSecond, median, printTable, type Row } from './util.js';

const MODES = ['auto', 'none', 'lz4'] as const;
const LINKS = [
  { name: '100 Mbit/s (rate-limited)', args: ['--max-bandwidth', '12500000'] },
  { name: 'loopback, unthrottled', args: [] as string[] },
];

export async function benchCompression(runs: number): Promise<void> {
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    for (const link of LINKS) {
      for (const mode of MODES) {
        const m = await migrateOnce(
          ['--memory', '64MiB', '--seed', '3', '--fill', 'mixed', '--workload', 'idle', '--warmup', '200', '--compress', mode, ...link.args],
          ['--memory', '64MiB', '--prealloc'],
        );
        const key = `${link.name}/${mode}`;
        results.set(key, [...(results.get(key) ?? []), m]);
      }
    }
  }
  const rows: Row[] = [];
  for (const link of LINKS) {
    for (const mode of MODES) {
      const ms = results.get(`${link.name}/${mode}`)!;
      const first = ms[0].source.iterations[0].compression;
      rows.push({
        name: `${link.name}, --compress ${mode}`,
        'total ms': median(ms.map((m) => m.source.totalTimeMs)),
        'MB on the wire': median(ms.map((m) => m.source.bytesTransferred / 1e6)),
        'LZ4 pages': median(ms.map((m) => m.source.pagesByEncoding.lz4)),
        'GB per CPU-s': median(ms.map(gbPerCpuSecond)),
        'pass 1 decision (first run)': `${first.lz4 ? 'on' : 'off'}: ${first.reason.replace(/^LZ4 (on|off): /, '')}`,
      });
    }
  }
  printTable(`A 64 MiB guest of text-like pages, --compress auto | none | lz4, interleaved, median of ${runs} runs`, rows);
}
