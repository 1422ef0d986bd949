// `memshift replicate`: starts a simulated guest and keeps a standby (`memshift standby`) no more than
// one epoch behind it (Remus-style: pause, stage the dirty pages, resume, send; replication/primary.ts).
// With --serve, the guest's outputs go out on that port only once the standby holds the epoch that
// made them. Ends after --duration, or at SIGINT / SIGTERM, with a last committed epoch and the guest
// paused (exit 0); a lost standby stops the guest (MS_ERR_STANDBY_LOST, exit 1). Local disks replicate
// with the epochs, block by block. Disks on shared storage stay where they are: this process holds
// their lease while its guest runs and frees it when the guest stops; a lease lost to a standby that
// took over stops the guest too (MS_ERR_LEASE_LOST). With --serve, the
// first line on stdout is "serving on HOST:PORT".

import { replicate, type PrimaryReport } from '../index.js';
import { SimulatedGuest, parseSize, type GuestOutput } from '../sim/index.js';
import { checkOutputPaths, optionalString, parseCommand, parseInteger, requireString, usageError, writeReportFile, type Flags } from './args.js';
import { guestConfigFrom, guestFlags } from './guest-flags.js';
import { OutputServer } from './output-server.js';
import { securityFlags, securityFrom, serverNameFlag } from './security-flags.js';
import { storageFlags, storageFrom } from './storage-flags.js';
import { guestNetworkFlags, guestNetworkFrom, nicDeviceFlag } from './network-flags.js';

export const replicateFlags: Flags = {
  connect: { type: 'string', value: 'HOST:PORT', help: 'the standby to replicate to' },
  ...securityFlags,
  ...serverNameFlag,
  ...guestFlags,
  ...storageFlags,
  ...guestNetworkFlags,
  ...nicDeviceFlag,
  'epoch-ms': { type: 'string', value: 'MS', help: 'milliseconds between epochs (checkpoints)', default: '25' },
  duration: { type: 'string', value: 'S', help: 'replicate this many seconds, then end with a last committed epoch (default: until SIGINT/SIGTERM)' },
  'standby-timeout': { type: 'string', value: 'MS', help: 'nothing heard from the standby for this long: it is lost, and the guest stops', default: '1000' },
  serve: { type: 'string', value: 'HOST:PORT', help: 'serve the guest\'s outputs here, a "STEP WORD" line each, released once their epoch is committed' },
  warmup: { type: 'string', value: 'MS', help: 'let the guest run alone this long first (the report\'s guestStepRateBefore)', default: '300' },
  'cache-size': { type: 'string', value: 'SIZE', help: 'pages kept as last sent, so that a page written again goes as an XOR delta (0: every page raw)', default: '256MiB' },
  'staging-size': { type: 'string', value: 'SIZE', help: 'most pages staged per epoch (a larger epoch is sent with the guest paused)', default: '1GiB' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary line' },
  help: { type: 'boolean', help: 'show this help' },
};

/** An answer of the guest's service, waiting for its epoch to be committed. */
interface HeldReply {
  reply: () => void;
}

export async function runReplicate(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'replicate', 'Start a simulated guest and replicate it, epoch by epoch, to a standby. Security: exactly one of --tls-cert/--tls-key/--tls-ca, --psk-file or --insecure.', replicateFlags);
  if (a === null) return 0;
  const connect = requireString(a, 'connect');
  const security = securityFrom(a);
  const config = guestConfigFrom(a);
  // Local disks replicate with the epochs; on shared storage the standby reaches the same images and
  // takes their lease when it fails over.
  const storage = storageFrom(a, config.disks.length);
  const epochMs = parseInteger(requireString(a, 'epoch-ms'), '--epoch-ms', 1, 60_000);
  const duration = optionalString(a, 'duration');
  const durationMs = duration === undefined ? null : Math.round(Number(duration) * 1000);
  if (durationMs !== null && !(durationMs > 0)) throw usageError('--duration', 'must be a positive number of seconds', duration);
  const standbyTimeoutMs = parseInteger(requireString(a, 'standby-timeout'), '--standby-timeout', 10);
  const stagingBytes = parseSize(requireString(a, 'staging-size'), '--staging-size');
  const warmupMs = parseInteger(requireString(a, 'warmup'), '--warmup');
  const cacheSize = requireString(a, 'cache-size');
  const cacheBytes = cacheSize.trim() === '0' ? 0 : parseSize(cacheSize, '--cache-size');
  checkOutputPaths(a, ['report']);
  const serveAt = optionalString(a, 'serve');
  const server = serveAt === undefined ? null : await OutputServer.open(serveAt);
  if (server !== null) console.log(`serving on ${server.where}`);
  // Output commit covers the service's answers too: each waits, with the guest's outputs of the same
  // epoch, for the standby to hold that epoch.
  const heldReplies: HeldReply[] = [];
  const guest = SimulatedGuest.create(config, { maxSlabBytes: parseSize(requireString(a, 'slab-size'), '--slab-size') }, {
    outputs: server !== null, storage, network: guestNetworkFrom(a), nicDevice: optionalString(a, 'guest-dev') ?? null,
    nicEvents: { onError: (message) => console.error(`memshift replicate: ${message}`) },
    replicated: { holdReply: (reply) => heldReplies.push({ reply }) },
  });
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`memshift replicate: ${signal}: ending with a last committed epoch`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let report: PrimaryReport & { guestStepRateBefore: number | null };
  try {
    await guest.resume();
    // The guest alone first: the rate replication is measured against.
    const t = performance.now();
    await new Promise((r) => setTimeout(r, warmupMs));
    const guestStepRateBefore = warmupMs > 0 ? (guest.steps * 1000) / (performance.now() - t) : null;
    report = { guestStepRateBefore, ...await replicate<GuestOutput | HeldReply>(guest, connect, {
      security, epochMs, durationMs, standbyTimeoutMs, stagingBytes, cacheBytes, signal: stop.signal,
      takeOutputs: () => [...guest.takeOutputs(), ...heldReplies.splice(0)],
      release: (outputs) => {
        for (const o of outputs) if ('reply' in o) o.reply();
        server?.publish(outputs.filter((o): o is GuestOutput => !('reply' in o)));
      },
    }) };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await guest.close();
    await server?.close();
  }
  writeReportFile(a, report);
  if (!a.quiet) {
    const p = report.pausedMs;
    console.error(`replicate: ${report.outcome}: ${report.epochs} epochs (${report.epochsCommitted} committed, ${report.epochsPerSecond.toFixed(1)}/s, ${report.sustainedEpochsPerSecond.toFixed(1)}/s sustained), paused p50 ${p.p50.toFixed(2)} ms p99 ${p.p99.toFixed(2)} ms, commit p50 ${report.commitMs.p50.toFixed(1)} ms; guest ${report.guestSteps} steps (${Math.round(report.guestStepRate)}/s${report.guestStepRateBefore === null ? '' : `, ${Math.round(report.guestStepRateBefore)}/s alone`}), ${report.outputsReleased} outputs released, ${report.outputsHeld} held`);
  }
  if (report.error !== null) console.error(`memshift replicate: ${report.error.code}: ${report.error.message}`);
  return report.outcome === 'ended' ? 0 : 1;
}
