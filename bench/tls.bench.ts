// What TLS costs: a live migration of a 1 GiB random, idle guest to a prepared destination
// (`dest --memory 1GiB --prealloc`), plaintext (--insecure) against TLS 1.3 with a pre-shared key
// (TLS_AES_128_GCM_SHA256), runs interleaved A B A B … so that drift on a noisy machine hits both
// alike. Reports the median first-pass throughput and GB moved per CPU-second of both processes, and
// the ratio TLS / plaintext measured in the same run.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatPskFile, generatePsk, type Report } from '../src/index.js';
import { gbPerCpuSecond, median, printTable, type Row } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const GUEST = '1GiB';

function run(args: string[]): { done: Promise<number>; stdout: () => string } {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', () => undefined);
  return { done: new Promise((r) => p.on('close', (c) => r(c ?? 1))), stdout: () => out };
}

interface Pair {
  source: Report;
  dest: Report;
}

async function migrateWith(security: string[], dir: string): Promise<Pair> {
  const dest = run(['dest', '--listen', '127.0.0.1:0', '--quiet', '--memory', GUEST, '--prealloc', '--report', join(dir, 'd.json'), ...security]);
  let port = 0;
  for (let i = 0; i < 3000 && port === 0; i++) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(dest.stdout());
    if (m) port = Number(m[1]);
    else await new Promise((r) => setTimeout(r, 10));
  }
  const source = run([
    'source', '--connect', `127.0.0.1:${port}`, '--quiet', '--report', join(dir, 's.json'), ...security,
    '--memory', GUEST, '--seed', '1', '--fill', 'random', '--workload', 'idle', '--warmup', '200',
  ]);
  const [sc, dc] = await Promise.all([source.done, dest.done]);
  if (sc !== 0 || dc !== 0) throw new Error(`migration failed: source exit ${sc}, destination exit ${dc}`);
  return {
    source: JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as Report,
    dest: JSON.parse(readFileSync(join(dir, 'd.json'), 'utf8')) as Report,
  };
}

const pass1 = (m: Pair): number => m.source.iterations[0].bytes / m.source.iterations[0].ms / 1e6;

export async function benchTls(runs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-bench-tls-'));
  try {
    const { psk } = generatePsk('bench');
    const keyFile = join(dir, 'bench.psk');
    writeFileSync(keyFile, formatPskFile(psk.identity, psk.key), { mode: 0o600 });
    const cases = [
      { name: 'plaintext (--insecure)', args: ['--insecure'] },
      { name: 'TLS 1.3, pre-shared key', args: ['--psk-file', keyFile] },
    ];
    const results = cases.map(() => [] as Pair[]);
    for (let r = 0; r < runs; r++) {
      for (let i = 0; i < cases.length; i++) results[i].push(await migrateWith(cases[i].args, dir));
    }
    const rows: Row[] = cases.map((c, i) => ({
      name: c.name,
      'pass 1 GB/s': median(results[i].map(pass1)),
      'GB per cpu-s': median(results[i].map(gbPerCpuSecond)),
      'total ms': median(results[i].map((m) => m.source.totalTimeMs)),
      'downtime ms': median(results[i].map((m) => m.source.downtimeMs ?? NaN)),
    }));
    rows.push({
      name: 'ratio TLS / plaintext',
      'pass 1 GB/s': (rows[1]['pass 1 GB/s'] as number) / (rows[0]['pass 1 GB/s'] as number),
      'GB per cpu-s': (rows[1]['GB per cpu-s'] as number) / (rows[0]['GB per cpu-s'] as number),
      'total ms': (rows[1]['total ms'] as number) / (rows[0]['total ms'] as number),
      'downtime ms': '',
    });
    printTable(`Live migration of a ${GUEST} random idle guest to a prepared destination, plaintext vs TLS (interleaved, median of ${runs} runs each; both processes' CPU counted)`, rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
