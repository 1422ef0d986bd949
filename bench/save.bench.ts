// Saving a 1 GiB guest to a file and restoring it (`memshift save` / `memshift restore`), next to the
// disk's own sequential write and read rates measured in the same run on the same directory: 1 GiB
// written with 4 MiB writes and an fsync, then read back after the page cache was given the chance to
// keep it (as the save file's is: the restore reads what the save just wrote). Medians of `runs`.

import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, printTable, type Row } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const BYTES = 2 ** 30;

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`memshift ${args[0]} exit ${c}: ${err}`))));
  });
}

/** GB/s of writing `BYTES` sequentially (4 MiB writes, then fsync), and of reading them back. */
function diskRates(path: string): { write: number; read: number } {
  const buf = Buffer.alloc(4 * 2 ** 20, 0x5a);
  let fd = openSync(path, 'w');
  let t = performance.now();
  for (let at = 0; at < BYTES; at += buf.length) writeSync(fd, buf, 0, buf.length, at);
  fsyncSync(fd);
  const write = BYTES / (performance.now() - t) / 1e6;
  closeSync(fd);
  fd = openSync(path, 'r');
  t = performance.now();
  for (let at = 0; at < BYTES; at += buf.length) readSync(fd, buf, 0, buf.length, at);
  const read = BYTES / (performance.now() - t) / 1e6;
  closeSync(fd);
  return { write, read };
}

export async function benchSave(runs: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'memshift-bench-save-'));
  const rows = { diskWrite: [] as number[], diskRead: [] as number[], save: [] as number[], saveLive: [] as number[], restore: [] as number[], paused: [] as number[], pausedLive: [] as number[] };
  try {
    for (let r = 0; r < runs; r++) {
      const disk = diskRates(join(dir, 'disk.bin'));
      rmSync(join(dir, 'disk.bin'));
      rows.diskWrite.push(disk.write);
      rows.diskRead.push(disk.read);
      for (const live of [false, true]) {
        const file = join(dir, 'guest.save');
        const report = join(dir, 'save.json');
        await run(['save', '--to', file, '--memory', '1GiB', '--seed', '1', '--fill', 'random', '--workload', live ? 'hotset' : 'idle', '--dirty-rate', '100000', '--warmup', '200', '--quiet', '--report', report, ...(live ? ['--live'] : [])]);
        const s = JSON.parse(readFileSync(report, 'utf8')) as { totalMs: number; pausedMs: number };
        (live ? rows.saveLive : rows.save).push(BYTES / s.totalMs / 1e6);
        (live ? rows.pausedLive : rows.paused).push(s.pausedMs);
        if (!live) {
          await run(['restore', file, '--quiet', '--report', join(dir, 'restore.json')]);
          rows.restore.push(BYTES / (JSON.parse(readFileSync(join(dir, 'restore.json'), 'utf8')) as { restoreMs: number }).restoreMs / 1e6);
        }
        rmSync(file);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const w = median(rows.diskWrite);
  const rd = median(rows.diskRead);
  const table: Row[] = [
    { name: 'disk: sequential write, 4 MiB writes + fsync (baseline)', 'GB/s': w, '× disk write': 1, 'guest paused ms': '' },
    { name: 'disk: sequential read of what was just written (baseline)', 'GB/s': rd, '× disk write': rd / w, 'guest paused ms': '' },
    { name: 'save, suspended (idle random guest)', 'GB/s': median(rows.save), '× disk write': median(rows.save) / w, 'guest paused ms': median(rows.paused) },
    { name: 'save --live (hot set at 100k pages/s)', 'GB/s': median(rows.saveLive), '× disk write': median(rows.saveLive) / w, 'guest paused ms': median(rows.pausedLive) },
    { name: 'restore: read + verify every page + state', 'GB/s': median(rows.restore), '× disk write': median(rows.restore) / w, 'guest paused ms': '' },
  ];
  printTable(`Save and restore of a 1 GiB guest in ${tmpdir()} (median of ${runs} runs; GB/s = guest bytes ÷ the command's own time)`, table);
}
