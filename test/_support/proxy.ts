// A TCP proxy on 127.0.0.1 for cutting a link on purpose: every connection it accepts is forwarded to
// `target`; `cut()` resets both halves of every forwarded connection at once.
//
// It also counts the bytes it forwards from clients to the target, and can hold that direction after
// a given count (`holdAfter`): the proxy stops reading from the client, so back-pressure stalls the
// sender at a known point of the stream (a barrier on bytes, not on time). `release()` reads again.
// The target → client direction is never held, so the target's answers and its close still pass.
// `flipAt(n)` flips one bit of the n-th byte forwarded client → target: corruption at a known point.
// `onReply(type, fn)` watches the target → client frames (plaintext only) and, when one of `type`
// begins, forwards only what came before it and calls `fn` (which typically resets the connections):
// a cut right after the target sent that frame, before the client could read it. `resetConnections()`
// resets every forwarded connection but keeps listening, and `refuseNew` resets new connections at
// once: how a reconnecting client finds the same address again, or not yet.

import net from 'node:net';

export class Proxy {
  private readonly sockets = new Set<net.Socket>();
  private readonly clients = new Set<net.Socket>();
  private hold: { after: number; reached: () => void } | null = null;
  private holding = false;
  private flip: number | null = null;
  private reply: { type: number; fn: () => void } | null = null;
  /** While true, new connections are reset as they arrive (the address is up, the link is not). */
  refuseNew = false;
  connections = 0;
  /** Bytes forwarded client → target, over every connection. */
  forwarded = 0;

  private constructor(private readonly server: net.Server) {}

  static start(targetPort: number): Promise<Proxy & { port: number }> {
    return new Promise((resolve) => {
      const server = net.createServer();
      const proxy = new Proxy(server);
      server.on('connection', (client) => {
        proxy.connections++;
        if (proxy.refuseNew) {
          client.on('error', () => undefined);
          client.resetAndDestroy();
          return;
        }
        const upstream = net.connect(targetPort, '127.0.0.1');
        for (const s of [client, upstream]) {
          proxy.sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => proxy.sockets.delete(s));
        }
        proxy.clients.add(client);
        client.on('close', () => proxy.clients.delete(client));
        client.on('data', (chunk: Buffer) => {
          const at = proxy.flip === null ? -1 : proxy.flip - proxy.forwarded;
          if (at >= 0 && at < chunk.length) {
            chunk[at] ^= 0x10;
            proxy.flip = null;
          }
          proxy.forwarded += chunk.length;
          if (!upstream.write(chunk)) {
            client.pause();
            upstream.once('drain', () => { if (!proxy.holding) client.resume(); });
          }
          proxy.checkHold();
        });
        client.on('end', () => upstream.end());
        let replied = Buffer.alloc(0);
        let nextFrame = 12; // after the preface
        let stopped = false;
        upstream.on('data', (chunk: Buffer) => {
          if (stopped) return;
          const w = proxy.reply;
          if (w === null) {
            client.write(chunk);
            return;
          }
          const start = replied.length;
          replied = Buffer.concat([replied, chunk]);
          // Walk the frame headers that are whole: a header is 16 bytes, its body length the first u32.
          while (replied.length >= nextFrame + 16) {
            if (replied[nextFrame + 4] === w.type) {
              stopped = true;
              proxy.reply = null;
              client.write(chunk.subarray(0, Math.max(0, nextFrame - start)));
              w.fn();
              return;
            }
            nextFrame += 16 + replied.readUInt32LE(nextFrame);
          }
          client.write(chunk);
        });
        upstream.on('end', () => { if (!stopped) client.end(); });
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        if (proxy.holding) client.pause();
      });
      server.listen(0, '127.0.0.1', () => resolve(Object.assign(proxy, { port: (server.address() as net.AddressInfo).port })));
    });
  }

  /**
   * Resolves once at least `bytes` have been forwarded client → target (counting from the start), and
   * from then on stops reading from every client until `release()`. The sender stalls once the
   * kernel buffers between it and the proxy are full.
   */
  holdAfter(bytes: number): Promise<void> {
    return new Promise((resolve) => {
      this.hold = { after: bytes, reached: resolve };
      this.checkHold();
    });
  }

  private checkHold(): void {
    if (this.hold === null || this.forwarded < this.hold.after) return;
    const { reached } = this.hold;
    this.hold = null;
    this.holding = true;
    for (const c of this.clients) c.pause();
    reached();
  }

  /** Flips one bit of the byte at `offset` of the client → target stream (counted from the start). */
  flipAt(offset: number): void {
    this.flip = offset;
  }

  /** Reads from the clients again (a held client that closed meanwhile is noticed now). */
  release(): void {
    this.holding = false;
    for (const c of this.clients) c.resume();
  }

  /** Calls `fn` when a frame of `type` begins on the target → client side (that frame and what follows are not forwarded). */
  onReply(type: number, fn: () => void): void {
    this.reply = { type, fn };
  }

  /**
   * Resets every forwarded connection (both directions) and keeps accepting new ones. A socket that
   * already ended is only destroyed: resetting one that is half closed can leave Node's event loop
   * spinning after the test (seen on Node 20 with the query connections both ends had closed).
   */
  resetConnections(): void {
    for (const s of this.sockets) {
      if (s.readableEnded || s.writableEnded || s.destroyed) s.destroy();
      else s.resetAndDestroy();
    }
  }

  /** Resets every forwarded connection (both directions) and stops accepting. */
  cut(): void {
    this.server.close();
    this.resetConnections();
  }
}
