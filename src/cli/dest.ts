// `memshift dest`: waits for one migration, resumes the guest, optionally lets it run K more steps,
// then pauses it, dumps its RAM and writes the report. Connections that fail the handshake (TLS
// authentication included) are logged and the wait goes on. The first line on stdout is "listening on HOST:PORT" (useful with port 0).
// The received guest is a simulated one (memshift/sim), shaped by the source's regions and state; with
// --memory it is allocated (and with --prealloc pre-touched) before listening, as a destination
// hypervisor starts with its RAM, and only a source with exactly that guest is accepted.

import { GuestMemory, formatAddress, formatReport, listen, receive, type Region } from '../index.js';
import { GUEST_DEFAULTS, MAX_RAM_REGIONS, SimulatedGuest, parseSize, ramRegionIds, ramRegions } from '../sim/index.js';
import {
  checkOutputPaths, formatDigest, parseCommand, holdPausedPostcopy, optionalString, parseInteger, requireString, writeReportFile, type Flags,
} from './args.js';
import { exitStatusOf } from './exit-status.js';
import { securityFlags, securityFrom } from './security-flags.js';
import { progressPrinter } from './progress.js';
import { openEvents } from './events-file.js';
import { storageFlags, storageFrom } from './storage-flags.js';
import { nicDeviceFlag, onResumeFlag, runOnResume } from './network-flags.js';
import { destinationTimeoutFlags, destinationTimeoutsFrom } from './migration-flags.js';

export const destFlags: Flags = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'address to wait on (port 0: any free port)' },
  ...securityFlags,
  ...storageFlags,
  ...nicDeviceFlag,
  ...onResumeFlag,
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  events: { type: 'string', value: 'FILE|-', help: 'write events and progress as NDJSON here (- for stdout, after the listening line)' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image (all RAM regions, in order) after the guest paused' },
  'dump-disk': { type: 'string', value: 'DIR', help: 'guests with disks: copy the disk images here (disk0.img, …) after the guest paused' },
  'run-steps': { type: 'string', value: 'K', help: 'run exactly K guest steps from its resume here, then pause it (the dump and the report\'s guestSteps are at resume + K)' },
  memory: { type: 'string', value: 'SIZE', help: 'allocate the guest now (only a source of exactly this guest is accepted)' },
  'ram-regions': { type: 'string', value: 'N', help: `with --memory: RAM regions, 1..${MAX_RAM_REGIONS}`, default: '1' },
  prealloc: { type: 'boolean', help: 'touch all guest memory before receiving (like -mem-prealloc); with --memory, before listening' },
  'max-memory': { type: 'string', value: 'SIZE', help: 'largest guest accepted (default: three quarters of the memory available at the HELLO)' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  ...destinationTimeoutFlags,
  'recover-timeout': { type: 'string', value: 'MS', help: 'link lost or corrupted: wait this long for the source to reconnect and resume (else: fail, or in post-copy stay paused, exit 4); 0: off', default: '0' },
  quiet: { type: 'boolean', help: 'no progress line, summary or routine log line (refusals and lost links are still printed)' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runDestCommand(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'dest', 'Wait for one migration and run the received guest. Security: exactly one of --tls-cert/--tls-key/--tls-ca (mutual TLS), --psk-file (pre-shared key) or --insecure (plaintext).', destFlags);
  if (a === null) return 0;
  const security = securityFrom(a);
  const runSteps = optionalString(a, 'run-steps');
  const k = runSteps === undefined ? 0 : parseInteger(runSteps, '--run-steps');
  const maxMemory = optionalString(a, 'max-memory');
  const maxSlabBytes = parseSize(requireString(a, 'slab-size'), '--slab-size');
  // Checked now, not when the first source connects: a bad value is a usage error, not a refused guest.
  GuestMemory.checkOptions({ maxSlabBytes });
  checkOutputPaths(a, ['report', 'dump-memory', 'events']);
  const host = {
    storage: storageFrom(a, null), nicDevice: optionalString(a, 'guest-dev') ?? null,
    nicEvents: { onError: (message: string) => console.error(`memshift dest: ${message}`) },
  };
  const onResume = optionalString(a, 'on-resume');
  let onResumeRan = false;
  const memory = optionalString(a, 'memory');
  let prepared: SimulatedGuest | null = null;
  if (memory !== undefined) {
    const regions = ramRegions({
      memoryBytes: parseSize(memory, '--memory'), pageSize: GUEST_DEFAULTS.pageSize,
      ramRegions: parseInteger(requireString(a, 'ram-regions'), '--ram-regions', 1, MAX_RAM_REGIONS),
    });
    prepared = SimulatedGuest.receiving(regions, { maxSlabBytes }, host);
    if (k > 0) prepared.limitRunAfterResume(k);
  }
  const receiving = (regions: readonly Region[]): SimulatedGuest => {
    const guest = SimulatedGuest.receiving(regions, { maxSlabBytes }, host);
    received = guest;
    if (k > 0) guest.limitRunAfterResume(k);
    return guest;
  };
  let received: SimulatedGuest | null = prepared;
  const { server, address } = await listen(requireString(a, 'listen'));
  const printer = progressPrinter();
  const events = openEvents(optionalString(a, 'events'));
  let result;
  try {
    const waiting = receive({
      listen: server,
      security,
      ...(prepared !== null ? { target: prepared } : { createTarget: receiving }),
      prealloc: a.prealloc === true,
      ...destinationTimeoutsFrom(a),
      recoverTimeoutMs: parseInteger(requireString(a, 'recover-timeout'), '--recover-timeout', 0),
      maxGuestBytes: maxMemory === undefined ? undefined : parseSize(maxMemory, '--max-memory'),
      onProgress: a.quiet && events === null ? undefined : (p) => {
        events?.progress(p);
        if (!a.quiet) printer.update(p);
      },
      onEvent: (e) => {
        events?.event(e);
        // Once, when the guest first runs here (a post-copy recovery re-enters postcopy-running).
        if (onResume !== undefined && !onResumeRan && e.type === 'state' && ['running', 'postcopy-running', 'postcopy-confirming'].includes(e.state)) {
          onResumeRan = true;
          const identity = received?.config?.network;
          runOnResume(onResume, {
            MEMSHIFT_STATE: e.state, MEMSHIFT_GUEST_IP: identity?.ip ?? '', MEMSHIFT_GUEST_MAC: identity?.mac ?? '',
          }, (line) => console.error(`memshift dest: ${line}`));
        }
      },
      onLog: (line, level) => {
        if (a.quiet && level !== 'notice') return;
        printer.done();
        console.error(`memshift dest: ${line}`);
      },
    });
    // receive() has pre-touched a prepared guest by now: only then is this destination ready.
    console.log(`listening on ${formatAddress(address)}`);
    result = await waiting;
  } finally {
    printer.done();
    events?.close();
    server.close();
  }
  const { report, target } = result;
  const guest = target instanceof SimulatedGuest ? target : null;
  if (report.outcome === 'paused') {
    // What arrived so far (the rest is on the source): dumped now, before waiting to be stopped.
    const held = optionalString(a, 'dump-memory');
    if (held !== undefined && guest !== null) guest.memory.writeImage(ramRegionIds(guest.regions), held);
    const status = await holdPausedPostcopy(a, 'dest', report, 'the paused guest and every received page');
    await guest?.close();
    return status;
  }
  try {
    if (report.outcome === 'completed' && guest !== null) {
      // It stops itself at resume + K (serving its network until then), or pauses now without a limit.
      if (guest.stopAtAfterResume !== null) await guest.finishLimitedRun();
      else await guest.pause();
      report.guestSteps = guest.steps;
      report.contentDigest = formatDigest(guest.memory.contentDigest());
      const dump = optionalString(a, 'dump-memory');
      if (dump !== undefined) guest.memory.writeImage(ramRegionIds(guest.regions), dump);
      const disks = optionalString(a, 'dump-disk');
      if (disks !== undefined) guest.dumpDisks(disks);
    }
    writeReportFile(a, report);
    if (!a.quiet) console.error(formatReport(report));
  } finally {
    await guest?.close();
  }
  if (report.outcome !== 'completed') {
    console.error(`memshift dest: ${report.error?.code ?? 'MS_ERR'}: ${report.error?.message ?? report.outcome}`);
  }
  return exitStatusOf(report.outcome);
}
