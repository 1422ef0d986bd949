// Real QEMU guests for the adapter's end-to-end tests: the self-checking kernel (test/qemu/guest/),
// built once per process with gcc into a temporary directory, booted under TCG with its RAM in a
// shared file on /dev/shm (memory-backend-file,share=on), a QMP socket and a serial log. Every QEMU is
// tracked by PID (processes.ts) and its RAM file removed by `removeQemuFiles`.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Qmp } from '../../src/qemu/qmp.js';
import { spawnTracked, type Running } from './processes.js';

const GUEST_SOURCE = fileURLToPath(new URL('../../../test/qemu/guest/', import.meta.url));
let built: string | null = null;
const ramFiles = new Set<string>();

/** The guest kernel, built on first use. */
export function guestKernel(): string {
  if (built !== null && existsSync(built)) return built;
  const dir = mkdtempSync(join(tmpdir(), 'memshift-guest-'));
  const out = join(dir, 'guest.elf');
  execFileSync('bash', [join(GUEST_SOURCE, 'build.sh'), out], { stdio: 'pipe' });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  built = out;
  return out;
}

export interface QemuGuest {
  running: Running;
  qmp: string;
  serial: string;
  ram: string;
}

export interface QemuGuestOptions {
  /** Guest RAM in MiB (default 256). */
  memMiB?: number;
  /** Kernel command line: mib=, rate=, flat= (test/qemu/guest/kernel.c). */
  append: string;
  /** Start waiting for an incoming migration (-incoming defer). */
  incoming?: boolean;
  /** RAM as plain -m (no shared file backend): what the adapter must refuse. */
  plainRam?: boolean;
  /** Two NUMA nodes, each with half the RAM in its own shared file backend (two regions). */
  numa?: boolean;
}

/** Boots a QEMU named `name` with its files in `dir`; resolves once its QMP socket answers. */
export async function startQemu(dir: string, name: string, o: QemuGuestOptions): Promise<QemuGuest> {
  const mem = o.memMiB ?? 256;
  const ram = `/dev/shm/memshift-test-${process.pid}-${name}-${Date.now()}`;
  const half = mem / 2;
  const qmp = join(dir, `${name}.qmp`);
  const serial = join(dir, `${name}.serial`);
  ramFiles.add(ram);
  ramFiles.add(`${ram}.1`);
  const backends = o.plainRam === true ? [] : o.numa === true
    ? [
      '-object', `memory-backend-file,id=node0,size=${half}M,mem-path=${ram},share=on`, '-numa', 'node,nodeid=0,memdev=node0',
      '-object', `memory-backend-file,id=node1,size=${half}M,mem-path=${ram}.1,share=on`, '-numa', 'node,nodeid=1,memdev=node1',
    ]
    : ['-object', `memory-backend-file,id=ram0,size=${mem}M,mem-path=${ram},share=on`, '-machine', 'memory-backend=ram0'];
  const args = [
    '-machine', 'pc', '-accel', 'tcg', '-m', String(mem), '-nographic', '-nodefaults', '-display', 'none',
    ...backends,
    '-kernel', guestKernel(), '-append', o.append, '-serial', `file:${serial}`, '-qmp', `unix:${qmp},server=on,wait=off`,
    ...(o.incoming === true ? ['-incoming', 'defer'] : []),
  ];
  const running = spawnTracked('qemu-system-x86_64', args);
  try {
    (await Qmp.connect(qmp, 20_000, true)).close();
  } catch (err) {
    throw new Error(`QEMU ${name} did not start: ${(err as Error).message}\n${running.stderr()}`);
  }
  return { running, qmp, serial, ram };
}

/** One QMP command to the QEMU, on a connection of its own (QMP takes one client at a time). */
async function ask<T>(guest: QemuGuest, command: string): Promise<T> {
  const qmp = await Qmp.connect(guest.qmp, 2_000);
  try {
    return await qmp.execute<T>(command);
  } finally {
    qmp.close();
  }
}

/** QEMU's run state (query-status), or `gone` when its QMP socket no longer answers. */
export async function qemuStatus(guest: QemuGuest): Promise<string> {
  return (await ask<{ status: string }>(guest, 'query-status').catch(() => ({ status: 'gone' }))).status;
}

/** Whether QEMU's migration capability `name` is on (query-migrate-capabilities). */
export async function qemuCapability(guest: QemuGuest, name: string): Promise<boolean> {
  const caps = await ask<{ capability: string; state: boolean }[]>(guest, 'query-migrate-capabilities');
  return caps.find((c) => c.capability === name)?.state ?? false;
}

export interface GuestStatus {
  t: number;
  sweep: number;
  pages: number;
  errors: number;
}

/** The guest's once-a-second status lines from its serial log, oldest first. */
export function guestStatus(guest: QemuGuest): GuestStatus[] {
  if (!existsSync(guest.serial)) return [];
  const lines = readFileSync(guest.serial, 'latin1').split('\n');
  const out: GuestStatus[] = [];
  for (const l of lines) {
    const m = /^memshift-guest t=(\d+) sweep=(\d+) pages=(\d+) errors=(\d+)/.exec(l);
    if (m !== null) out.push({ t: Number(m[1]), sweep: Number(m[2]), pages: Number(m[3]), errors: Number(m[4]) });
  }
  return out;
}

/** The error lines the guest printed (a page it found not holding what it wrote). */
export function guestErrors(guest: QemuGuest): string[] {
  if (!existsSync(guest.serial)) return [];
  return readFileSync(guest.serial, 'latin1').split('\n').filter((l) => l.startsWith('memshift-guest error'));
}

/** Waits until the guest has printed `count` more status lines than `after`; returns them all. */
export async function nextStatus(guest: QemuGuest, after: number, count: number, timeoutMs = 20_000): Promise<GuestStatus[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = guestStatus(guest);
    if (s.length >= after + count) return s;
    if (Date.now() > deadline) throw new Error(`guest printed ${s.length - after} of ${count} status lines within ${timeoutMs} ms:\n${existsSync(guest.serial) ? readFileSync(guest.serial, 'latin1').slice(-2000) : '(no serial log)'}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Removes every RAM file a QEMU of this process was given (after its QEMU was killed). */
export function removeQemuFiles(): void {
  for (const f of ramFiles) rmSync(f, { force: true });
  ramFiles.clear();
}
process.on('exit', removeQemuFiles);
