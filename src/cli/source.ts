// `memshift source`: starts a simulated guest, lets it run, and migrates it to a waiting destination.
// Exit 0 when the guest runs on the destination; 1 with a one-line error naming the cause otherwise
// (the guest then kept running here, except after a switchover in doubt).

import {
  COMPRESS_MODES, DELTA_MODES, ErrorCode, formatReport, migrate, prepareEncoders, errorCode, MIGRATION_MODES, type MigrationMode, type Report, type StallPolicy,
} from '../index.js';
import { SimulatedGuest, parseSize, ramRegionIds } from '../sim/index.js';
import {
  checkOutputPaths, formatDigest, parseChoice, parseCommand, holdPausedPostcopy, optionalString, parseInteger, requireString, writeReportFile, type Flags,
} from './args.js';
import { guestConfigFrom, guestFlags } from './guest-flags.js';
import { securityFlags, securityFrom, serverNameFlag } from './security-flags.js';
import { ExitStatus, exitStatusOf } from './exit-status.js';
import { progressPrinter } from './progress.js';
import { openEvents } from './events-file.js';
import { storageFlags, storageFrom } from './storage-flags.js';
import { guestNetworkFlags, guestNetworkFrom, nicDeviceFlag } from './network-flags.js';
import { convergenceFlags, convergenceFrom, sourceTimeoutFlags, sourceTimeoutsFrom } from './migration-flags.js';

export const sourceFlags: Flags = {
  connect: { type: 'string', value: 'HOST:PORT', help: 'destination to migrate to' },
  ...securityFlags,
  ...serverNameFlag,
  ...guestFlags,
  ...storageFlags,
  ...guestNetworkFlags,
  ...nicDeviceFlag,
  mode: { type: 'string', value: MIGRATION_MODES.join('|'), help: 'migration mode', default: 'live' },
  ...convergenceFlags,
  'on-stall': { type: 'string', value: 'force|throttle|abort|postcopy', help: 'what to do when pre-copy does not converge', default: 'throttle' },
  'postcopy-after': { type: 'string', value: 'N', help: 'hybrid: switch to post-copy after N pre-copy iterations' },
  'throttle-initial': { type: 'string', value: 'PERCENT', help: 'auto-converge: first throttle', default: '20' },
  'throttle-step': { type: 'string', value: 'PERCENT', help: 'auto-converge: added per stalled iteration', default: '10' },
  warmup: { type: 'string', value: 'MS', help: 'let the guest run this long before migrating', default: '300' },
  xbzrle: { type: 'string', value: 'auto|on|off', help: 'XBZRLE deltas for pages sent before: auto while the link measured in pass 1 is slower than deltas move pages on the cores left idle, or always, or never', default: 'auto' },
  compress: { type: 'string', value: 'auto|lz4|none', help: 'LZ4 for raw pages: auto while the measured link is slower than the encoders compress, or always, or never', default: 'auto' },
  encoders: { type: 'string', value: 'N', help: 'encoder threads; 0: the main thread encodes each batch as it writes it (default on hosts of up to 2 cores: 0, or 1 when post-copy may come; else cores - 1)' },
  'max-bandwidth': { type: 'string', value: 'SIZE', help: 'cap on bytes sent per second, e.g. 100MiB (default: no cap)' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  'cache-size': { type: 'string', value: 'SIZE', help: 'XBZRLE cache', default: '64MiB' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  events: { type: 'string', value: 'FILE|-', help: 'write events and progress as NDJSON here (- for stdout)' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image (all RAM regions, in order) when the guest stops (pause point, or after a failure)' },
  ...sourceTimeoutFlags,
  'recover-timeout': { type: 'string', value: 'MS', help: 'link lost or corrupted: reconnect for up to this long and resume the pass, or post-copy (else: fail, or stay paused, exit 4); 0: off', default: '0' },
  quiet: { type: 'boolean', help: 'no progress line or summary' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runSourceCommand(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'source', 'Start a simulated guest and migrate it to a destination. Security: exactly one of --tls-cert/--tls-key/--tls-ca (mutual TLS), --psk-file (pre-shared key) or --insecure (plaintext).', sourceFlags);
  if (a === null) return 0;
  const connect = requireString(a, 'connect');
  const security = securityFrom(a);
  const config = guestConfigFrom(a);
  const mode = requireString(a, 'mode') as MigrationMode;
  const onStall = requireString(a, 'on-stall') as StallPolicy;
  const xbzrle = parseChoice(requireString(a, 'xbzrle'), '--xbzrle', DELTA_MODES);
  const compress = parseChoice(requireString(a, 'compress'), '--compress', COMPRESS_MODES);
  const encoders = optionalString(a, 'encoders');
  const bandwidth = optionalString(a, 'max-bandwidth');
  const postcopyAfter = optionalString(a, 'postcopy-after');
  const warmupMs = parseInteger(requireString(a, 'warmup'), '--warmup');
  checkOutputPaths(a, ['report', 'dump-memory', 'events']);
  const storage = storageFrom(a, config.disks.length);
  const network = guestNetworkFrom(a);
  const guest = SimulatedGuest.create(config, {
    maxSlabBytes: parseSize(requireString(a, 'slab-size'), '--slab-size'),
    cacheBytes: xbzrle !== 'off' ? parseSize(requireString(a, 'cache-size'), '--cache-size') : 0,
  }, {
    storage, network, nicDevice: optionalString(a, 'guest-dev') ?? null,
    nicEvents: { onError: (message) => console.error(`memshift source: ${message}`) },
  });
  const printer = progressPrinter();
  const events = openEvents(optionalString(a, 'events'));
  let report: Report;
  let failure: { code: string; message: string } | null = null;
  const signals = cancelOnSignal();
  try {
    await guest.resume();
    // The encoder threads start while the guest warms up, as a hypervisor's migration threads exist
    // before `migrate`: the migration's setup is then the handshake.
    const [prepared] = await Promise.all([
      prepareEncoders(guest, { encoders: encoders === undefined ? undefined : parseInteger(encoders, '--encoders', 0), postcopy: mode === 'postcopy' || mode === 'hybrid' || onStall === 'postcopy' }),
      new Promise((r) => setTimeout(r, warmupMs)),
    ]);
    try {
      report = await migrate(guest, connect, {
        security,
        mode,
        ...convergenceFrom(a),
        onStall,
        postcopyAfter: postcopyAfter === undefined ? undefined : parseInteger(postcopyAfter, '--postcopy-after', 1),
        throttleInitial: parseInteger(requireString(a, 'throttle-initial'), '--throttle-initial', 1, 99),
        throttleStep: parseInteger(requireString(a, 'throttle-step'), '--throttle-step', 1, 99),
        xbzrle,
        compress,
        prepared,
        maxBandwidth: bandwidth === undefined ? undefined : parseSize(bandwidth, '--max-bandwidth'),
        signal: signals.cancel,
        ...sourceTimeoutsFrom(a),
        recoverTimeoutMs: parseInteger(requireString(a, 'recover-timeout'), '--recover-timeout', 0),
        onProgress: (p) => {
          signals.phase = p.phase;
          events?.progress(p);
          if (!a.quiet) printer.update(p);
        },
        onEvent: events === null ? undefined : (e) => events.event(e),
      });
    } catch (err) {
      const r = (err as { details?: { report?: Report } }).details?.report;
      if (r === undefined) throw err;
      report = r;
      failure = { code: errorCode(err) ?? 'MS_ERR', message: (err as Error).message };
    }
    printer.done();
    signals.stop();
    if (report.outcome === 'paused') {
      // The pages still here, as they were at the pause: the image the destination is missing part of.
      const held = optionalString(a, 'dump-memory');
      if (held !== undefined) guest.memory.writeImage(ramRegionIds(guest.regions), held);
      return await holdPausedPostcopy(a, 'source', report, 'the paused guest and every page');
    }
    if (failure !== null) {
      // The guest kept running (or stays paused, in doubt): stop it here only to dump a consistent image.
      await guest.pause();
      report.guestSteps = guest.steps;
    }
    report.contentDigest = formatDigest(guest.memory.contentDigest());
    const dump = optionalString(a, 'dump-memory');
    if (dump !== undefined) guest.memory.writeImage(ramRegionIds(guest.regions), dump);
    writeReportFile(a, report);
    if (!a.quiet) console.error(formatReport(report));
  } finally {
    signals.stop();
    printer.done();
    events?.close();
    await guest.close();
  }
  if (failure !== null) {
    console.error(`memshift source: ${failure.code}: ${failure.message}`);
    return failure.code === ErrorCode.INVALID_ARGUMENT ? ExitStatus.USAGE : exitStatusOf(report!.outcome);
  }
  return ExitStatus.COMPLETED;
}

/** The progress phase in which the guest is split across both hosts: a signal must not end it lightly. */
const SPLIT_PHASE = 'postcopy-running';

/**
 * SIGINT / SIGTERM while migrating. Before the switchover they cancel: the guest keeps running here,
 * the destination discards what it got. In post-copy the guest is split across both hosts, so the
 * first signal is refused with a message and a second one pauses both sides, every page kept.
 */
function cancelOnSignal(): { cancel: AbortSignal; phase: string; stop(): void } {
  const controller = new AbortController();
  let refused = false;
  const state = {
    cancel: controller.signal,
    phase: 'setup',
    stop(): void {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (state.phase === SPLIT_PHASE && !refused) {
      refused = true;
      console.error(`memshift source: ${signal} refused: during post-copy the guest is split across both hosts; send it again to pause both sides with every page kept`);
      return;
    }
    console.error(`memshift source: ${signal}: cancelling the migration (${state.phase})`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return state;
}
