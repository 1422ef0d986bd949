// The HTTP plumbing a host's control port, the manager's client and the dashboard share: bind a
// server and learn its port, close it with its connections, read a message whole up to a size.

import type http from 'node:http';
import type net from 'node:net';
import type { Address } from '../index.js';

/** Listens on `listen` (port 0: any free port); the address bound. */
export async function bindHttp(server: http.Server, listen: Address): Promise<Address> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return { host: listen.host, port: (server.address() as net.AddressInfo).port };
}

/** Stops listening and ends every connection, kept-alive ones too. */
export function closeHttp(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** A request's or a reply's body as text; `tooBig()` is thrown (and the message destroyed) past `maxBytes`. */
export function readMessage(message: http.IncomingMessage, maxBytes: number, tooBig: () => Error): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    message.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        const err = tooBig();
        reject(err);
        message.destroy(err);
      } else chunks.push(c);
    });
    message.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    message.on('error', reject);
  });
}
