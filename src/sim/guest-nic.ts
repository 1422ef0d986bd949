// The simulated guest's NIC on the host that runs it: its identity (MAC, IPv4 address, service port)
// travels in the device state; the host device it sits on (`--guest-dev`, e.g. a macvlan on the host's
// bridge port) is each host's own. Plugged when the guest resumes here, unplugged when it pauses, so
// that the address lives on exactly the host whose vCPU runs:
//
//   plug:    device gets the guest's MAC, the address, link up ─► the service listens ─► announce (ARP)
//   unplug:  the service closes (its connections too) ─► address removed, link down
//
// The service is the guest's: a TCP port that answers each connection with the guest's step count and
// a newline, so a client can tell which host answered and how far the guest had run. Steps run in
// order on a promise chain: a pause right after a resume unplugs after the plug finished.

import { execFile } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { announce, type Announcement } from '../net/announce.js';
import type { GuestNetwork } from './cpu-state.js';

export interface NicEvents {
  /** A step failed (a missing device, `ip` refused): the guest runs on, unreachable. */
  onError?(message: string): void;
  /** The announce after a plug finished. */
  onAnnounced?(a: Announcement): void;
}

export class GuestNic {
  private chain: Promise<void> = Promise.resolve();
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private plugged = false;

  /**
   * `hold`: output commit (a replicating primary): each answer is handed to it instead of being sent,
   * and sent when it calls `reply`, once the state that made it is safe on the standby.
   */
  constructor(
    readonly identity: GuestNetwork,
    readonly device: string,
    private readonly steps: () => number,
    private readonly events: NicEvents = {},
    private readonly hold: ((reply: () => void) => void) | null = null,
  ) {}

  /** Puts the guest on the LAN here (once running); returns when plugged, before the announce ends. */
  plug(): Promise<void> {
    return this.then(async () => {
      if (this.plugged) return;
      // Plugged from the first step on: an unplug undoes whatever part of it was done.
      this.plugged = true;
      const { mac, ip, prefixLength } = this.identity;
      await runIp(['link', 'set', 'dev', this.device, 'address', mac]);
      await runIp(['addr', 'replace', `${ip}/${prefixLength}`, 'dev', this.device]);
      await runIp(['link', 'set', 'dev', this.device, 'up']);
      if (this.identity.servicePort > 0) await this.listen();
      void announce(this.device, ip).then((a) => {
        if (a.failures.length > 0) this.events.onError?.(`announce of ${ip} on ${this.device}: ${a.failures.join('; ')}`);
        this.events.onAnnounced?.(a);
      });
    });
  }

  /** Takes the guest off the LAN here (paused, released, or gone). */
  unplug(): Promise<void> {
    return this.then(async () => {
      if (!this.plugged) return;
      this.plugged = false;
      const server = this.server;
      this.server = null;
      for (const s of this.sockets) s.destroy();
      if (server !== null) await new Promise<void>((r) => server.close(() => r()));
      // Each step on its own: the address must go even if the link cannot be set down, and the other way round.
      const failures: string[] = [];
      await runIp(['addr', 'del', `${this.identity.ip}/${this.identity.prefixLength}`, 'dev', this.device]).catch((e: Error) => failures.push(e.message));
      await runIp(['link', 'set', 'dev', this.device, 'down']).catch((e: Error) => failures.push(e.message));
      if (failures.length === 2) throw new Error(failures.join('; '));
    });
  }

  private then(step: () => Promise<void>): Promise<void> {
    const p = this.chain.then(step).catch((err: Error) => this.events.onError?.(`guest NIC on ${this.device}: ${err.message}`));
    this.chain = p;
    return p;
  }

  private listen(): Promise<void> {
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const answer = `${this.steps()}\n`;
      if (this.hold === null) socket.end(answer);
      else this.hold(() => socket.end(answer));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.identity.ip, port: this.identity.servicePort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }
}

function runIp(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 5000 }, (err, _out, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`ip ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
    });
  });
}
