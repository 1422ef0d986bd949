// One LAN in network namespaces, for the test of a guest's network following it: a switch (a Linux
// bridge in its own namespace), a source host, a destination host and a client, each host on its own
// bridge port. Each host has its own address on 10.78.1.0/24 (the migration's link) and a macvlan `g0`
// on its port, down, for the guest's NIC; the guest's network is 10.78.0.0/24, where the client is.
// Hosts answer ARP only for addresses on the interface asked (arp_ignore=1), as hypervisor hosts are
// set, so that only the guest's NIC answers for the guest. Made by the test, removed on every exit path.
//
//              ns <p>sw: br0 ── <p>hs ── ns <p>hs  e0 10.78.1.1/24, g0 (guest NIC, macvlan)
//                           ├── <p>hd ── ns <p>hd  e0 10.78.1.2/24, g0 (guest NIC, macvlan)
//                           └── <p>hc ── ns <p>hc  e0 10.78.0.100/24 (the client)

import { execFileSync } from 'node:child_process';

export interface Lan {
  switchNs: string;
  source: string;
  dest: string;
  client: string;
  sourceAddress: string;
  destAddress: string;
  clientAddress: string;
  /** The bridge port each host's namespace sits behind. */
  portOf: { source: string; dest: string; client: string };
  /** The bridge port the switch has learned `mac` on, or null. */
  portOfMac(mac: string): string | null;
  remove(): void;
}

function run(args: string[]): string {
  return execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export function createLan(prefix = `l${process.pid % 100000}`): Lan {
  const ns = { switchNs: `${prefix}sw`, source: `${prefix}hs`, dest: `${prefix}hd`, client: `${prefix}hc` };
  const portOf = { source: `${prefix}s`, dest: `${prefix}d`, client: `${prefix}c` };
  const lan: Lan = {
    ...ns,
    sourceAddress: '10.78.1.1', destAddress: '10.78.1.2', clientAddress: '10.78.0.100',
    portOf,
    portOfMac(mac) {
      const line = run(['ip', 'netns', 'exec', ns.switchNs, 'bridge', 'fdb', 'show', 'br', 'br0']).split('\n').find((l) => l.startsWith(`${mac} `));
      return line === undefined ? null : (/ dev (\S+)/.exec(line)?.[1] ?? null);
    },
    remove() {
      for (const n of [ns.source, ns.dest, ns.client, ns.switchNs]) {
        try {
          run(['ip', 'netns', 'del', n]);
        } catch {
          // Not made (a failed setup) or already gone.
        }
      }
    },
  };
  try {
    for (const n of Object.values(ns)) run(['ip', 'netns', 'add', n]);
    run(['ip', '-n', ns.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    run(['ip', '-n', ns.switchNs, 'link', 'set', 'br0', 'up']);
    const hosts: [string, string, string][] = [[ns.source, portOf.source, '10.78.1.1/24'], [ns.dest, portOf.dest, '10.78.1.2/24'], [ns.client, portOf.client, '10.78.0.100/24']];
    for (const [host, port, address] of hosts) {
      run(['ip', 'link', 'add', port, 'netns', ns.switchNs, 'type', 'veth', 'peer', 'name', 'e0', 'netns', host]);
      run(['ip', '-n', ns.switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
      run(['ip', '-n', host, 'addr', 'add', address, 'dev', 'e0']);
      run(['ip', '-n', host, 'link', 'set', 'e0', 'up']);
      run(['ip', '-n', host, 'link', 'set', 'lo', 'up']);
      run(['ip', 'netns', 'exec', host, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
      if (host !== ns.client) run(['ip', '-n', host, 'link', 'add', 'g0', 'link', 'e0', 'type', 'macvlan', 'mode', 'bridge']);
    }
  } catch (err) {
    lan.remove();
    throw err;
  }
  return lan;
}
