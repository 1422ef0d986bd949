// Run as a process by test/sim/process-exit.test.ts: both ends of a migration in this one process, the
// source guest throttled by auto-converge, then the migration cancelled. The script closes what it
// owns (its source guest, its server) and returns; the test checks that the process then exits by
// itself. Prints one line: "<source code> <destination outcome> <throttle seen>".

import { listen, migrate, receive } from '../../src/index.js';
import { SimulatedGuest, resolveGuestConfig } from '../../src/sim/index.js';

const options = { maxSlabBytes: 16 << 20, arenaBytes: 17 << 20 };
const guest = SimulatedGuest.create(resolveGuestConfig({ memoryBytes: 32 * 2 ** 20, seed: 3, fill: 'mixed', workload: 'uniform' }), options);
await guest.resume();
const { server, address } = await listen('127.0.0.1:0');
const cancel = new AbortController();
const destination = receive({ security: 'insecure', listen: server, createTarget: (regions) => SimulatedGuest.receiving(regions, options), signal: cancel.signal });
let throttle = 0;
const code = await migrate(guest, address, {
  security: 'insecure',
  downtimeLimitMs: 1, maxBandwidth: 32 * 2 ** 20, throttleInitial: 50, maxIterations: 1000, signal: cancel.signal,
  onProgress: (p) => {
    if (p.throttlePercent > 0 && throttle === 0) {
      throttle = p.throttlePercent;
      cancel.abort();
    }
  },
}).then(() => 'completed', (e: { code?: string }) => e.code ?? 'unknown');
const received = await destination;
await guest.close();
server.close();
console.log(`${code} ${received.report.outcome} ${throttle}`);
