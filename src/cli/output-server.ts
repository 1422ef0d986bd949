// Where a simulated guest's outputs go out (`replicate --serve`, `standby --serve`): a TCP port that
// streams each released output as a "STEP WORD" line. Outputs released while no client is connected
// wait for the next one (up to a bound), so one client that reconnects misses nothing; each client
// gets every output from its connection on.

import net from 'node:net';
import { formatAddress, listen, type Address } from '../index.js';
import { formatOutput, type GuestOutput } from '../sim/index.js';

/** Lines kept for the next client while none is connected. */
const MAX_WAITING = 1 << 20;

export class OutputServer {
  private readonly clients = new Set<net.Socket>();
  private waiting: string[] = [];
  released = 0;

  private constructor(private readonly server: net.Server, readonly address: Address) {
    server.on('connection', (socket: net.Socket) => {
      socket.on('error', () => this.clients.delete(socket));
      socket.on('close', () => this.clients.delete(socket));
      socket.resume();
      this.clients.add(socket);
      if (this.waiting.length > 0) socket.write(this.waiting.join(''));
      this.waiting = [];
    });
  }

  static async open(at: string): Promise<OutputServer> {
    const { server, address } = await listen(at);
    return new OutputServer(server, address);
  }

  /** Sends `outputs` to every client (or keeps them for the next one). */
  publish(outputs: readonly GuestOutput[]): void {
    if (outputs.length === 0) return;
    this.released += outputs.length;
    const text = outputs.map((o) => `${formatOutput(o)}\n`).join('');
    if (this.clients.size === 0) {
      if (this.waiting.length < MAX_WAITING) this.waiting.push(text);
      return;
    }
    for (const c of this.clients) c.write(text);
  }

  get where(): string {
    return formatAddress(this.address);
  }

  /** Stops accepting, ends every client once what was written to it is flushed. */
  async close(): Promise<void> {
    for (const c of this.clients) {
      c.end();
      setTimeout(() => c.destroy(), 1000).unref();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
