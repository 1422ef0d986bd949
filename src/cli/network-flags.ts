// The guest's network, for `source` and `dest`: its identity (source only: it travels in the device
// state) and the host device its NIC plugs into while it runs here (each host's own). `dest` also
// takes --on-resume, a command run once the guest resumed there, for sites that re-point traffic by
// other means than ARP (a load balancer, a DNS record, an SDN controller).

import { spawn } from 'node:child_process';
import { parseIpv4, parseMac, type GuestNetwork } from '../sim/cpu-state.js';
import { optionalString, parseInteger, requireString, usageError, type Flags, type Parsed } from './args.js';

export const guestNetworkFlags: Flags = {
  'guest-ip': { type: 'string', value: 'IP/LEN', help: 'the guest\'s IPv4 address and prefix (its network identity travels with it)' },
  'guest-mac': { type: 'string', value: 'MAC', help: 'the guest NIC\'s MAC', default: '52:54:00:12:34:56' },
  'guest-port': { type: 'string', value: 'PORT', help: 'the guest\'s service: answers each TCP connection with its step count (0: none)', default: '7000' },
};

export const nicDeviceFlag: Flags = {
  'guest-dev': { type: 'string', value: 'DEV', help: 'host device the guest\'s NIC plugs into while it runs here (gets its MAC and address; announced by gratuitous ARP on resume)' },
};

export const onResumeFlag: Flags = {
  'on-resume': { type: 'string', value: 'CMD', help: 'run CMD (sh -c) once the guest resumed here; env MEMSHIFT_STATE (running|postcopy-running), MEMSHIFT_GUEST_IP, MEMSHIFT_GUEST_MAC' },
};

export function guestNetworkFrom(a: Parsed): GuestNetwork | null {
  const cidr = optionalString(a, 'guest-ip');
  if (cidr === undefined) return null;
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (m === null) throw usageError('--guest-ip', 'must be IP/LEN, e.g. 10.78.0.50/24', cidr);
  const mac = requireString(a, 'guest-mac').toLowerCase();
  try {
    parseIpv4(m[1]);
    parseMac(mac);
  } catch (err) {
    throw usageError('--guest-ip/--guest-mac', (err as Error).message.replace(/^device state: /, ''));
  }
  if ((parseMac(mac)[0] & 1) !== 0) throw usageError('--guest-mac', 'must be a unicast MAC', mac);
  return { ip: m[1], prefixLength: parseInteger(m[2], '--guest-ip prefix', 1, 32), mac, servicePort: parseInteger(requireString(a, 'guest-port'), '--guest-port', 0, 65535) };
}

/** Runs the --on-resume command without waiting for it; `log` gets how it ended. */
export function runOnResume(command: string, env: Record<string, string>, log: (line: string) => void): void {
  const child = spawn('sh', ['-c', command], { stdio: 'ignore', env: { ...process.env, ...env } });
  child.on('error', (err) => log(`--on-resume could not start: ${err.message}`));
  child.on('exit', (code, signal) => {
    if (code !== 0) log(`--on-resume exited ${signal ?? code}`);
  });
}
