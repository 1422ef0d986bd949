// The baseline every transfer figure is divided by: raw loopback TCP between two Node processes on
// this machine, now. The receiver reads with `onread` into one static buffer (the destination's own
// receive path); the sender writes 4 MiB buffers and keeps 7 in flight (the source's chunking).
//
// The guest-sized variant (`rawMemoryToMemory`) sends every 4 MiB of a buffer as large as the guest
// and reads into another as large, each byte once: the memory traffic any migration pays (read the
// source's RAM once, write the destination's once) and raw TCP from a warm 28 MiB does not.

import { spawn } from 'node:child_process';
import net from 'node:net';

/** The receiving process: into a static 32 MiB buffer, or (`span` > 0) through a touched buffer of `span` bytes. */
const receiver = (span: number): string => `
const net = require('net');
const span = ${span};
const buf = Buffer.alloc(span > 0 ? span + (4 << 20) : 32 << 20);
for (let i = 0; i < buf.length; i += 4096) buf[i] = 1;
let n = 0, at = 0;
const server = net.createServer({ pauseOnConnect: true }, (c) => {
  const c0 = process.cpuUsage();
  const h = c._handle; c._handle = null;
  const into = span > 0 ? () => buf.subarray(at, at + (4 << 20)) : buf;
  const s = new net.Socket({ handle: h, onread: { buffer: into, callback: (k) => { n += k; at = (at + k) % span || 0; } } });
  s.on('end', () => { const u = process.cpuUsage(c0); process.stdout.write('bytes ' + n + ' cpu ' + (u.user + u.system) / 1e6 + '\\n'); s.end(); });
  s.resume();
});
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));`;

/** GB/s for `bytes` sent over loopback to a receiving Node process. */
export async function rawLoopbackGBps(bytes: number): Promise<number> {
  return (await rawLoopback(bytes, 0)).gbps;
}

/**
 * Raw loopback TCP of a guest-sized buffer into another (`bytes`, a multiple of 4 MiB, at most 4 GiB):
 * GB/s, and CPU-seconds per GB of both processes (from the connection on).
 */
export async function rawMemoryToMemory(bytes: number): Promise<{ gbps: number; cpuPerGB: number }> {
  return rawLoopback(bytes, bytes);
}

async function rawLoopback(bytes: number, span: number): Promise<{ gbps: number; cpuPerGB: number }> {
  const child = spawn(process.execPath, ['-e', receiver(span)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(/port (\d+)/.exec(d.toString())![1])));
    });
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const chunk = 4 << 20;
    const sourceBytes = span > 0 ? span : 7 * chunk;
    const pages = Math.ceil(sourceBytes / 65536);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    new Uint8Array(memory.buffer).fill(0x5a);
    const buffers = Array.from({ length: sourceBytes / chunk }, (_, i) => Buffer.from(memory.buffer as ArrayBuffer, i * chunk, chunk));
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let sent = 0;
    let inflight = 0;
    let i = 0;
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (inflight < 7 && sent < bytes) {
          inflight++;
          sent += chunk;
          socket.write(buffers[i++ % buffers.length], () => {
            inflight--;
            if (sent >= bytes && inflight === 0) resolve();
            else pump();
          });
        }
      };
      pump();
    });
    const receiverCpu = new Promise<number>((resolve) => child.stdout!.on('data', (d: Buffer) => {
      const m = /cpu ([\d.]+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    }));
    socket.end();
    const cpu = await receiverCpu;
    const ms = performance.now() - t0;
    const own = process.cpuUsage(c0);
    return { gbps: bytes / ms / 1e6, cpuPerGB: ((own.user + own.system) / 1e6 + cpu) / (bytes / 1e9) };
  } finally {
    child.kill();
  }
}
