// A QMP client (QEMU's JSON machine protocol) over a unix socket: one command at a time, answers in
// order, events kept aside with the time they arrived.

import net from 'node:net';

export interface QmpEvent {
  event: string;
  data?: unknown;
  /** QEMU's own timestamp (host wall clock, ms): comparable across two QEMUs on one host. */
  timestampMs: number;
}

export class Qmp {
  readonly events: QmpEvent[] = [];
  private buffered = '';
  private waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.onData(text));
    socket.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('QMP socket closed'));
    });
  }

  /** Connects to `path` (retrying while QEMU creates it, up to `timeoutMs`) and leaves capability negotiation. */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.next(); // the greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        if (performance.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Runs `command` and resolves with its `return` value; rejects with QEMU's error description. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const answer = this.next();
    this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    const reply = (await answer) as { return?: unknown; error?: { class: string; desc: string } };
    if (reply.error !== undefined) throw new Error(`QMP ${command}: ${reply.error.class}: ${reply.error.desc}`);
    return reply.return;
  }

  close(): void {
    this.socket.destroy();
  }

  private next(): Promise<unknown> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private onData(text: string): void {
    this.buffered += text;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line === '') continue;
      const msg = JSON.parse(line) as { event?: string; data?: unknown; timestamp?: { seconds: number; microseconds: number } };
      if (msg.event !== undefined) {
        const t = msg.timestamp ?? { seconds: 0, microseconds: 0 };
        this.events.push({ event: msg.event, data: msg.data, timestampMs: t.seconds * 1000 + t.microseconds / 1000 });
      }
      else this.waiting.shift()?.resolve(msg);
    }
  }
}
