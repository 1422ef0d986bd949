// One QEMU live migration between two qemu-system-x86_64 processes on 127.0.0.1, driven over QMP,
// with the self-checking guest (test/qemu/guest/) in it: the QEMU half of `npm run bench -- --peer qemu`.
// Both processes are started here and ended here by PID (QMP `quit` first), also when a step fails.
//
//   build guest.elf ─► start dst (-incoming defer) + src ─► guest runs ─► caps + params
//     ─► migrate-incoming / migrate ─► poll query-migrate (start post-copy after the first pass)
//     ─► completed: figures, CPU of both processes, the guest's own error count on the destination

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Qmp } from '../../src/qemu/qmp.js';
import type { Report } from '../../src/index.js';

const GUEST_BUILD = fileURLToPath(new URL('../../../test/qemu/guest/build.sh', import.meta.url));
const QEMU = 'qemu-system-x86_64';
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const TICKS_PER_S = 100;

export function qemuInstalled(): boolean {
  return spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
}

export interface QemuShape {
  memMiB: number;
  /** MiB of random bytes loaded at 256 MiB (the rest of RAM is zero). */
  randomMiB: number;
  /** The writer's range (0 = idle) and pace (0 = flat out), at 256 MiB. */
  dirtyMiB: number;
  pagesPerSecond: number;
  downtimeLimitMs: number;
  postcopy: boolean;
  prealloc: boolean;
  /**
   * Who moves the RAM: QEMU's own migration, or memshift (qemu-source → qemu-dest) with the RAM in
   * shared files on /dev/shm and QEMU moving the devices only (x-ignore-shared).
   */
  carrier?: 'qemu' | 'memshift';
}

export interface QemuRun {
  status: string;
  totalMs: number;
  setupMs: number;
  /** Source STOP → destination RESUME, from QEMU's event timestamps (its `downtime` field is wrong after post-copy in 7.2). */
  downtimeMs: number;
  expectedDowntimeMs: number | null;
  transferredBytes: number;
  /** Bytes moved over (total − setup). */
  gbps: number;
  dirtySyncCount: number;
  /** CPU-seconds of both QEMU processes from `migrate` until completion (vCPU threads included). */
  cpuSeconds: number;
  /** QEMU + memshift: both memshift processes' CPU-seconds (in cpuSeconds too), else 0. */
  memshiftCpuSeconds: number;
  /** Errors the guest counted on the destination: in the first sweep it finished there, and in the last (null when it printed none). */
  guestErrors: { first: number; last: number } | null;
}

/** Builds the guest kernel into `dir` (test/qemu/guest/build.sh: gcc -m32, ld); returns its path. */
function buildGuest(dir: string): string {
  const elf = join(dir, 'guest.elf');
  const r = spawnSync('bash', [GUEST_BUILD, elf], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`guest build: ${r.stderr || r.error?.message}`);
  return elf;
}

/**
 * The guest's range over the random data at 256 MiB, ending at least 1 MiB below the top of RAM (the
 * firmware keeps part of the last MiB), and its pace (0: flat out); mib=0 is idle.
 */
function guestCommandLine(shape: QemuShape): string {
  const baseMiB = Math.min(256, shape.memMiB - 1 - shape.dirtyMiB);
  return `base=${baseMiB * 2 ** 20} mib=${shape.dirtyMiB} ${shape.pagesPerSecond === 0 ? 'flat=1' : `rate=${shape.pagesPerSecond}`}`;
}

async function writeRandomFile(path: string, mib: number): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    if (!out.write(randomBytes(2 ** 20))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of the line)
}

/** The files every run shares: the guest kernel and the random data. Remove with `dispose`. */
export class QemuPeer {
  private readonly dir = mkdtempSync(join(tmpdir(), 'memshift-qemu-peer-'));
  private readonly kernel = buildGuest(this.dir);
  private readonly randomFiles = new Map<number, string>();

  async run(shape: QemuShape): Promise<QemuRun> {
    const random = shape.randomMiB > 0 ? await this.randomFile(shape.randomMiB) : null;
    const work = mkdtempSync(join(this.dir, 'run-'));
    const port = await freePort();
    const started: ChildProcess[] = [];
    const qmps: Qmp[] = [];
    const ramFiles: string[] = [];
    const start = (name: string, extra: string[], withData: boolean): { child: ChildProcess; qmp: string; serial: string } => {
      const qmp = join(work, `${name}.qmp`);
      const serial = join(work, `${name}.serial`);
      const ram = shape.carrier === 'memshift' ? `/dev/shm/${work.split('/').pop()}-${name}.ram` : null;
      if (ram !== null) ramFiles.push(ram);
      const args = [
        '-nographic', '-nodefaults', '-display', 'none', '-machine', 'pc', '-accel', 'tcg', '-m', String(shape.memMiB), '-smp', '1',
        ...(ram !== null ? ['-object', `memory-backend-file,id=ram0,size=${shape.memMiB}M,mem-path=${ram},share=on,prealloc=${shape.prealloc ? 'on' : 'off'}`, '-machine', 'memory-backend=ram0'] : []),
        '-kernel', this.kernel, '-append', guestCommandLine(shape),
        '-serial', `file:${serial}`, '-qmp', `unix:${qmp},server=on,wait=off`,
        // Only the source loads the data: a destination's RAM holds nothing of its own (in post-copy,
        // pages it already holds never fault, so loaded data would show through as lost writes).
        ...(random !== null && withData ? ['-device', `loader,file=${random},addr=0x10000000`] : []),
        ...(shape.prealloc && ram === null ? ['-mem-prealloc'] : []),
        ...extra,
      ];
      const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr!.resume();
      started.push(child);
      return { child, qmp, serial };
    };
    try {
      const dst = start('dst', ['-incoming', 'defer'], false);
      const src = start('src', [], true);
      const [qd, qs] = [await Qmp.connect(dst.qmp, 10_000, true), await Qmp.connect(src.qmp, 10_000, true)];
      qmps.push(qd, qs);
      // Let the guest boot and run before the migration, as memshift's --warmup does.
      await new Promise((r) => setTimeout(r, 1500));
      if (shape.carrier === 'memshift') {
        // A QMP socket takes one client at a time: the adapter's, then ours again to quit.
        for (const q of qmps.splice(0)) q.close();
        const run = await this.viaMemshift(work, src, dst, shape);
        qmps.push(await Qmp.connect(dst.qmp, 5_000, true), await Qmp.connect(src.qmp, 5_000, true));
        return run;
      }
      const caps = [{ capability: 'events', state: true }, ...(shape.postcopy ? [{ capability: 'postcopy-ram', state: true }] : [])];
      await qd.execute('migrate-set-capabilities', { capabilities: caps });
      await qs.execute('migrate-set-capabilities', { capabilities: caps });
      // QEMU 7.2 caps bandwidth at 128 MiB/s by default: lift it, as memshift has no cap by default.
      await qs.execute('migrate-set-parameters', { 'max-bandwidth': 100 * 2 ** 30, 'downtime-limit': shape.downtimeLimitMs });
      await qd.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` });
      const cpu0 = cpuTicks(src.child.pid!) + cpuTicks(dst.child.pid!);
      await qs.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      let info = await this.waitForEnd(qs, shape.postcopy);
      const cpu1 = cpuTicks(src.child.pid!) + cpuTicks(dst.child.pid!);
      // QEMU 7.2 sometimes answers `completed` with total-time 0 at first.
      for (let i = 0; i < 10 && info.status === 'completed' && !(Number(info['total-time']) > 0); i++) {
        await new Promise((r) => setTimeout(r, 100));
        info = (await qs.execute('query-migrate')) as Record<string, unknown>;
      }
      // Let the guest run on the destination for a sweep or two, then read what it counted.
      await new Promise((r) => setTimeout(r, shape.dirtyMiB > 0 ? 1500 : 200));
      const ram = (info.ram ?? {}) as Record<string, number>;
      const totalMs = Number(info['total-time'] ?? 0);
      const setupMs = Number(info['setup-time'] ?? 0);
      return {
        status: String(info.status),
        totalMs,
        setupMs,
        downtimeMs: stopToResume(qs, qd),
        expectedDowntimeMs: typeof info['expected-downtime'] === 'number' ? (info['expected-downtime'] as number) : null,
        transferredBytes: ram.transferred ?? 0,
        gbps: (ram.transferred ?? 0) / Math.max(1, totalMs - setupMs) / 1e6,
        dirtySyncCount: ram['dirty-sync-count'] ?? 0,
        cpuSeconds: (cpu1 - cpu0) / TICKS_PER_S,
        memshiftCpuSeconds: 0,
        guestErrors: guestErrorsAfterSwitch(dst.serial),
      };
    } finally {
      for (const q of qmps) {
        try {
          await Promise.race([q.execute('quit'), new Promise((r) => setTimeout(r, 1000))]);
        } catch {
          // Already gone: the PID check below ends it if not.
        }
        q.close();
      }
      await Promise.all(started.map((c) => endByPid(c)));
      rmSync(work, { recursive: true, force: true });
      for (const f of ramFiles) rmSync(f, { force: true });
    }
  }

  /** The same migration with memshift carrying the RAM: qemu-dest and qemu-source, their reports. */
  private async viaMemshift(work: string, src: { child: ChildProcess; qmp: string; serial: string }, dst: { child: ChildProcess; qmp: string; serial: string }, shape: QemuShape): Promise<QemuRun> {
    const destReport = join(work, 'dest.json');
    const sourceReport = join(work, 'source.json');
    const dest = spawn(process.execPath, [CLI, 'qemu-dest', '--listen', '127.0.0.1:0', '--qmp', dst.qmp, '--insecure', '--quiet', '--report', destReport], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    dest.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    dest.stderr!.resume();
    const destDone = new Promise((r) => dest.once('close', r));
    try {
      const deadline = performance.now() + 10_000;
      while (!/listening on 127\.0\.0\.1:(\d+)/.test(out)) {
        if (performance.now() > deadline || dest.exitCode !== null) throw new Error('qemu-dest did not start listening');
        await new Promise((r) => setTimeout(r, 20));
      }
      const port = /listening on 127\.0\.0\.1:(\d+)/.exec(out)![1];
      const cpu0 = cpuTicks(src.child.pid!) + cpuTicks(dst.child.pid!);
      const source = spawn(process.execPath, [CLI, 'qemu-source', '--connect', `127.0.0.1:${port}`, '--qmp', src.qmp, '--insecure', '--quiet', '--report', sourceReport, '--downtime-limit', String(shape.downtimeLimitMs)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      source.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const code = await new Promise<number | null>((r) => source.once('close', r));
      await destDone;
      const cpu1 = cpuTicks(src.child.pid!) + cpuTicks(dst.child.pid!);
      if (code !== 0 || !existsSync(sourceReport) || !existsSync(destReport)) throw new Error(`qemu-source exited ${code}: ${err}`);
      const s = JSON.parse(readFileSync(sourceReport, 'utf8')) as Report;
      const d = JSON.parse(readFileSync(destReport, 'utf8')) as Report;
      await new Promise((r) => setTimeout(r, shape.dirtyMiB > 0 ? 1500 : 200));
      const ours = ((s.cpuMs?.user ?? 0) + (s.cpuMs?.system ?? 0) + (d.cpuMs?.user ?? 0) + (d.cpuMs?.system ?? 0)) / 1000;
      return {
        status: s.outcome,
        totalMs: s.totalTimeMs,
        setupMs: s.setupTimeMs,
        downtimeMs: d.hypervisor?.stopToResumeMs ?? NaN,
        expectedDowntimeMs: s.predictedDowntimeMs,
        transferredBytes: s.bytesTransferred,
        gbps: s.bytesTransferred / Math.max(1, s.totalTimeMs - s.setupTimeMs) / 1e6,
        dirtySyncCount: s.iterations.length,
        cpuSeconds: (cpu1 - cpu0) / TICKS_PER_S + ours,
        memshiftCpuSeconds: ours,
        guestErrors: guestErrorsAfterSwitch(dst.serial),
      };
    } finally {
      await endByPid(dest);
    }
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async randomFile(mib: number): Promise<string> {
    let path = this.randomFiles.get(mib);
    if (path === undefined) {
      path = join(this.dir, `random-${mib}M.bin`);
      await writeRandomFile(path, mib);
      this.randomFiles.set(mib, path);
    }
    return path;
  }

  /** Polls until the migration ends (30 s cap, then cancelled); post-copy starts once the first pass is done. */
  private async waitForEnd(qs: Qmp, postcopy: boolean): Promise<Record<string, unknown>> {
    const deadline = performance.now() + 30_000;
    let postcopyStarted = false;
    for (;;) {
      const info = (await qs.execute('query-migrate')) as Record<string, unknown>;
      const status = String(info.status);
      if (status === 'completed' || status === 'failed' || status === 'cancelled') return info;
      const syncs = ((info.ram ?? {}) as Record<string, number>)['dirty-sync-count'] ?? 0;
      if (postcopy && !postcopyStarted && syncs >= 2 && status === 'active') {
        await qs.execute('migrate-start-postcopy');
        postcopyStarted = true;
      }
      if (performance.now() > deadline && status === 'active') {
        await qs.execute('migrate_cancel');
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function stopToResume(source: Qmp, destination: Qmp): number {
  const stop = source.lastEvent('STOP');
  const resume = destination.eventsSince().find((e) => e.event === 'RESUME' && stop !== undefined && e.atMicros >= stop.atMicros);
  return stop !== undefined && resume !== undefined ? (resume.atMicros - stop.atMicros) / 1000 : NaN;
}

/**
 * The guest's error count (cumulative, printed once a second) in its first and last status line on the
 * destination: a write lost or rolled back by the migration shows in the first.
 */
function guestErrorsAfterSwitch(serial: string): { first: number; last: number } | null {
  if (!existsSync(serial)) return null;
  const errs = [...readFileSync(serial, 'latin1').matchAll(/^memshift-guest t=\d+ .*errors=(\d+)/gm)].map((m) => Number(m[1]));
  return errs.length === 0 ? null : { first: errs[0], last: errs[errs.length - 1] };
}

async function endByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
