// Telling the LAN where a guest now runs: gratuitous ARP from the guest's NIC, several rounds with a
// growing gap, as QEMU's self-announce does after a migration (its defaults: 5 rounds, 50 ms first
// gap, +100 ms each round, at most 550 ms). Each round makes the switches relearn the guest's MAC on
// the port it now sits behind, and the neighbours refresh their ARP entry for its address. The raw
// frames come from `arping` (Thomas Habets' arping, Debian package `arping`), which is maintained and
// needs no privileges beyond the raw socket a hypervisor host has anyway.

import { execFile } from 'node:child_process';

export interface AnnounceOptions {
  rounds?: number;
  initialMs?: number;
  stepMs?: number;
  maxMs?: number;
  /** The arping to run (default `arping` on PATH). */
  arping?: string;
}

export interface Announcement {
  /** When each round's frame went out, ms after the announce began. */
  roundsAtMs: number[];
  /** Rounds that could not be sent, with why (arping missing, device down). */
  failures: string[];
}

export const ANNOUNCE_DEFAULTS = { rounds: 5, initialMs: 50, stepMs: 100, maxMs: 550 };

/**
 * Sends `rounds` gratuitous ARP requests for `ip` from `device` (whose MAC is the guest's), the first at
 * once. Resolves when the last round went out; never rejects (a round that failed is in `failures`).
 */
export async function announce(device: string, ip: string, options: AnnounceOptions = {}): Promise<Announcement> {
  const o = { ...ANNOUNCE_DEFAULTS, ...options };
  const t0 = performance.now();
  const result: Announcement = { roundsAtMs: [], failures: [] };
  let gap = o.initialMs;
  for (let round = 0; round < o.rounds; round++) {
    if (round > 0) {
      await new Promise((r) => setTimeout(r, gap));
      gap = Math.min(o.maxMs, gap + o.stepMs);
    }
    const error = await gratuitousArp(o.arping ?? 'arping', device, ip);
    if (error === null) result.roundsAtMs.push(performance.now() - t0);
    else result.failures.push(`round ${round + 1}: ${error}`);
  }
  return result;
}

/** One unsolicited ARP request (sender and target: `ip`), not waiting for a reply that never comes. */
function gratuitousArp(arping: string, device: string, ip: string): Promise<string | null> {
  return new Promise((resolve) => {
    // -U unsolicited, -S the address announced, -w 0: send and exit (its exit status is 1: no reply).
    execFile(arping, ['-q', '-U', '-c', '1', '-w', '0', '-i', device, '-S', ip, ip], { timeout: 5000 }, (err, _out, stderr) => {
      // Exit status 1 with nothing on stderr is "no reply", which an announce never gets.
      const code = (err as (Error & { code?: number | string }) | null)?.code;
      const why = String(stderr).trim();
      if (err === null || (code === 1 && why === '')) resolve(null);
      else resolve(`${arping}: ${why || err.message}`);
    });
  });
}
