// `memshift demo`: a live migration on this machine, end to end. The destination runs as a separate
// process on 127.0.0.1, its RAM allocated and pre-touched before it listens (as a destination
// hypervisor starts); the source guest runs here with a live progress line. Afterwards both reports
// are summarised, and the destination's memory is checked against an uninterrupted replay of the same
// guest: bit for bit, by digest. Both channels run over TLS 1.3 with a pre-shared key made for this
// run: the default path is the secure one. The destination reads it from a file (mode 0600) in the
// demo's private temporary directory, removed at the end.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPskFile, formatReport, generatePsk, migrate, MIGRATION_MODES, errorCode, parseAddress, type MigrationMode, type Report, type StallPolicy } from '../index.js';
import { SimulatedGuest, replay } from '../sim/index.js';
import { formatDigest, parseCommand, parseInteger, requireString, type Flags } from './args.js';
import { usageError } from './args.js';
import { guestConfigFrom, guestFlags } from './guest-flags.js';
import { progressPrinter } from './progress.js';
import { CLI_ENTRY, listeningAddress } from './spawned.js';

export const demoFlags: Flags = {
  ...guestFlags,
  memory: { ...guestFlags.memory, default: '1GiB' },
  'hot-size': { ...guestFlags['hot-size'], default: '64MiB' },
  seed: { ...guestFlags.seed, default: '42' },
  // A guest that keeps a 64 MiB working set busy at 200 000 page writes a second: it needs a few
  // pre-copy passes to converge, and a replay of its steps takes seconds, not minutes.
  'dirty-rate': { ...guestFlags['dirty-rate'], default: '200000' },
  mode: { type: 'string', value: MIGRATION_MODES.join('|'), help: 'migration mode', default: 'live' },
  'downtime-limit': { type: 'string', value: 'MS', help: 'switch over when expected downtime is at most this', default: '300' },
  'on-stall': { type: 'string', value: 'force|throttle|abort|postcopy', help: 'what to do when pre-copy does not converge', default: 'throttle' },
  'run-steps': { type: 'string', value: 'K', help: 'steps the guest runs on the destination before the check', default: '200000' },
  verify: { type: 'string', value: 'on|off', help: 'compare the destination with a replay of the same guest', default: 'on' },
  quiet: { type: 'boolean', help: 'no progress line (the narration and the reports still print)' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runDemo(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'demo', 'Migrate a simulated guest between two processes on 127.0.0.1 and check the result.', demoFlags);
  if (a === null) return 0;
  const config = guestConfigFrom(a);
  if (config.disks.length > 0) throw usageError('--disk', 'is not supported by demo yet (source and replay take disks)');
  const mode = requireString(a, 'mode') as MigrationMode;
  const runSteps = parseInteger(requireString(a, 'run-steps'), '--run-steps');
  const dir = mkdtempSync(join(tmpdir(), 'memshift-demo-'));
  const destReportFile = join(dir, 'dest.json');
  const security = generatePsk('memshift-demo');
  const pskFile = join(dir, 'demo.psk');
  writeFileSync(pskFile, formatPskFile(security.psk.identity, security.psk.key), { mode: 0o600 });
  // The destination is started as a destination hypervisor is, with its RAM allocated and touched
  // before anything connects (--memory, --prealloc): it does that while this process fills the guest.
  const memory = requireString(a, 'memory');
  const dest = spawn(process.execPath, [
    CLI_ENTRY, 'dest', '--listen', '127.0.0.1:0', '--psk-file', pskFile, '--report', destReportFile, '--run-steps', String(runSteps),
    '--memory', memory, '--ram-regions', String(config.ramRegions), '--prealloc', '--quiet',
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const destExit = new Promise<number>((resolve) => dest.on('close', (code) => resolve(code ?? 1)));
  // Touching memory costs ~10 µs a page on some hosts: up to 30 s a GiB before it listens.
  const listening = listeningAddress(dest, 'the destination', 30_000 * Math.max(1, config.memoryBytes / 2 ** 30));
  listening.catch(() => undefined);
  let guest: SimulatedGuest | null = null;
  try {
    console.log(`memshift demo: ${mode} migration of a ${memory} ${config.workload} guest (fill ${config.fill}, seed ${config.seed}) over TLS 1.3 with a pre-shared key made for this run, to a destination process that pre-allocates its ${memory} meanwhile`);
    const t = performance.now();
    guest = SimulatedGuest.create(config, { cacheBytes: 64 * 2 ** 20 });
    console.log(`guest filled in ${(performance.now() - t).toFixed(0)} ms`);
    const { port } = parseAddress(await listening, 'destination');
    console.log(`destination ready on 127.0.0.1:${port} after ${(performance.now() - t).toFixed(0)} ms; running the guest for 500 ms before migrating`);
    await guest.resume();
    await new Promise((r) => setTimeout(r, 500));
    // Progress for humans goes to stderr, as in source and dest; the narration and reports to stdout.
    const printer = progressPrinter();
    let source: Report;
    let failed: string | null = null;
    try {
      source = await migrate(guest, { host: '127.0.0.1', port }, {
        security,
        mode,
        downtimeLimitMs: parseInteger(requireString(a, 'downtime-limit'), '--downtime-limit', 1),
        onStall: requireString(a, 'on-stall') as StallPolicy,
        onProgress: a.quiet === true ? undefined : (p) => printer.update(p),
      });
    } catch (err) {
      const r = (err as { details?: { report?: Report } }).details?.report;
      if (r === undefined) throw err;
      source = r;
      failed = `${errorCode(err)}: ${(err as Error).message}`;
    }
    printer.done();
    console.log(`\n${formatReport(source)}`);
    const code = await destExit;
    const destination = JSON.parse(readFileSync(destReportFile, 'utf8')) as Report;
    console.log(`\n${formatReport(destination)}`);
    if (failed !== null || code !== 0) {
      console.log(`\nmigration failed: ${failed ?? destination.error?.message ?? `destination exited ${code}`}`);
      return 1;
    }
    if (requireString(a, 'verify') === 'on') {
      const t0 = performance.now();
      const expected = formatDigest(replay(config, destination.guestSteps).contentDigest());
      const ok = expected === destination.contentDigest;
      console.log(`\nverify: replayed the guest for ${destination.guestSteps} steps without migrating it (${(performance.now() - t0).toFixed(0)} ms):`);
      console.log(`  destination memory ${destination.contentDigest}, uninterrupted run ${expected}: ${ok ? 'bit-identical' : 'DIFFERENT'}`);
      if (!ok) return 1;
    }
    return 0;
  } finally {
    if (dest.exitCode === null) dest.kill('SIGKILL');
    await guest?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
