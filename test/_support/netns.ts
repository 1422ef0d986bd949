// Two network namespaces joined by a veth pair, for tests that need a real link between source and
// destination (shaped with tc, taken down and up): made by the test, removed on every exit path. Needs
// root and iproute2 (.ci/run installs it). Addresses are private to the namespaces, never the host's.
//
//   ns <name>-s  [veth <tag>s 10.77.0.1/30] ══ link ══ [veth <tag>d 10.77.0.2/30]  ns <name>-d

import { execFileSync } from 'node:child_process';

export interface NetnsPair {
  source: string;
  dest: string;
  sourceAddress: string;
  destAddress: string;
  /** Shapes both ends of the link with a token bucket (e.g. '100mbit'). */
  shape(rate: string): void;
  /** Takes the link down (both ends: packets are dropped, nothing is reset) or brings it back up. */
  setLink(up: boolean): void;
  remove(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function inNs(ns: string, command: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, ...command], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates the pair (names carry this process's PID, so parallel runs do not collide). */
export function createNetnsPair(name = `ms${process.pid}`): NetnsPair {
  const source = `${name}-s`;
  const dest = `${name}-d`;
  // Interface names are at most 15 bytes.
  const tag = `v${process.pid % 100000}`;
  const pair: NetnsPair = {
    source, dest, sourceAddress: '10.77.0.1', destAddress: '10.77.0.2',
    shape(rate) {
      for (const [ns, dev] of [[source, `${tag}s`], [dest, `${tag}d`]]) {
        inNs(ns, ['tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '32kb', 'latency', '50ms']);
      }
    },
    setLink(up) {
      for (const [ns, dev] of [[source, `${tag}s`], [dest, `${tag}d`]]) inNs(ns, ['ip', 'link', 'set', dev, up ? 'up' : 'down']);
    },
    remove() {
      for (const ns of [source, dest]) {
        try {
          ip(['netns', 'del', ns]);
        } catch {
          // Not made (a failed setup) or already gone.
        }
      }
    },
  };
  try {
    ip(['netns', 'add', source]);
    ip(['netns', 'add', dest]);
    ip(['link', 'add', `${tag}s`, 'netns', source, 'type', 'veth', 'peer', 'name', `${tag}d`, 'netns', dest]);
    inNs(source, ['ip', 'addr', 'add', '10.77.0.1/30', 'dev', `${tag}s`]);
    inNs(dest, ['ip', 'addr', 'add', '10.77.0.2/30', 'dev', `${tag}d`]);
    for (const [ns, dev] of [[source, `${tag}s`], [dest, `${tag}d`]]) {
      inNs(ns, ['ip', 'link', 'set', dev, 'up']);
      inNs(ns, ['ip', 'link', 'set', 'lo', 'up']);
    }
  } catch (err) {
    pair.remove();
    throw err;
  }
  return pair;
}
