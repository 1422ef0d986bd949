// A TCP proxy on 127.0.0.1 for cutting a link on purpose: every connection it accepts is forwarded to
// `target`; `cut()` resets both halves of every forwarded connection at once.

import net from 'node:net';

export class Proxy {
  private readonly sockets = new Set<net.Socket>();
  connections = 0;

  private constructor(private readonly server: net.Server) {}

  static start(targetPort: number): Promise<Proxy & { port: number }> {
    return new Promise((resolve) => {
      const server = net.createServer();
      const proxy = new Proxy(server);
      server.on('connection', (client) => {
        proxy.connections++;
        const upstream = net.connect(targetPort, '127.0.0.1');
        for (const s of [client, upstream]) {
          proxy.sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => proxy.sockets.delete(s));
        }
        client.pipe(upstream);
        upstream.pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.listen(0, '127.0.0.1', () => resolve(Object.assign(proxy, { port: (server.address() as net.AddressInfo).port })));
    });
  }

  /** Resets every forwarded connection (both directions) and stops accepting. */
  cut(): void {
    this.server.close();
    for (const s of this.sockets) s.resetAndDestroy();
  }
}
