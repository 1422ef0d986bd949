// The baseline every transfer figure is divided by: raw loopback TCP between two Node processes on
// this machine, now. The receiver reads with `onread` into one static buffer (the destination's own
// receive path); the sender writes 4 MiB buffers and keeps 7 in flight (the source's chunking).

import { spawn } from 'node:child_process';
import net from 'node:net';

const RECEIVER = `
const net = require('net');
const buf = Buffer.alloc(32 << 20);
let n = 0;
const server = net.createServer({ pauseOnConnect: true }, (c) => {
  const h = c._handle; c._handle = null;
  const s = new net.Socket({ handle: h, onread: { buffer: buf, callback: (k) => { n += k; } } });
  s.on('end', () => { process.stdout.write('bytes ' + n + '\\n'); s.end(); });
  s.resume();
});
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));`;

/** GB/s for `bytes` sent over loopback to a receiving Node process. */
export async function rawLoopbackGBps(bytes: number): Promise<number> {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(/port (\d+)/.exec(d.toString())![1])));
    });
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const memory = new WebAssembly.Memory({ initial: 512, maximum: 512, shared: true });
    new Uint8Array(memory.buffer).fill(0x5a);
    const chunk = 4 << 20;
    const buffers = Array.from({ length: 7 }, (_, i) => Buffer.from(memory.buffer as ArrayBuffer, i * chunk, chunk));
    const t0 = performance.now();
    let sent = 0;
    let inflight = 0;
    let i = 0;
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (inflight < buffers.length && sent < bytes) {
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
    const done = new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('bytes')) resolve(); }));
    socket.end();
    await done;
    return bytes / (performance.now() - t0) / 1e6;
  } finally {
    child.kill();
  }
}
