// Compression that adapts, on a link slower than the compressor and on one faster: a 64 MiB guest of
// text-like pages (mixed fill, idle) over a 100 Mbit/s veth between two network namespaces (shaped
// with tc tbf; as root only, else the row is left out and said so), over the source's rate limiter at
// the same 12.5 MB/s, and over unthrottled loopback, with --compress auto, none and lz4 interleaved
// run by run. Reports the median total time and bytes on the wire.

import { createNetnsPair, type NetnsPair } from '../test/_support/netns.js';
import { migrateOnce, type Middle, type MigrationRun } from './e2e.bench.js';
import { gbPerCpuSecond, median, printTable, type Row } from './util.js';

const MODES = ['auto', 'none', 'lz4'] as const;

interface Link {
  name: string;
  args: string[];
  middle?: Middle;
}

export async function benchCompression(runs: number): Promise<void> {
  let veth: NetnsPair | null = null;
  const links: Link[] = [];
  if (process.getuid?.() === 0) {
    veth = createNetnsPair(`msb${process.pid}`);
    veth.shape('100mbit');
    links.push({ name: '100 Mbit/s veth (tc tbf, two namespaces)', args: [], middle: { netns: { source: veth.source, dest: veth.dest }, listen: `${veth.destAddress}:7400` } });
  } else {
    console.log('(not root: no network namespaces, so no veth row)');
  }
  links.push({ name: '100 Mbit/s (source rate limit)', args: ['--max-bandwidth', '12500000'] }, { name: 'loopback, unthrottled', args: [] });
  try {
    await compare(links, runs);
  } finally {
    veth?.remove();
  }
}

async function compare(links: readonly Link[], runs: number): Promise<void> {
  const results = new Map<string, MigrationRun[]>();
  for (let r = 0; r < runs; r++) {
    for (const link of links) {
      for (const mode of MODES) {
        const m = await migrateOnce(
          ['--memory', '64MiB', '--seed', '3', '--fill', 'mixed', '--workload', 'idle', '--warmup', '200', '--compress', mode, ...link.args],
          ['--memory', '64MiB', '--prealloc'],
          link.middle,
        );
        const key = `${link.name}/${mode}`;
        results.set(key, [...(results.get(key) ?? []), m]);
      }
    }
  }
  const rows: Row[] = [];
  for (const link of links) {
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
