// `memshift qemu-source`: migrates a running QEMU guest to a `memshift qemu-dest`. memshift carries
// the guest's RAM (the files of its shared memory backends, hash-scanned for what changed); QEMU's own
// migration carries the vCPUs and devices (x-ignore-shared), inside memshift's session. Exit 0 when the
// guest runs on the destination QEMU (this QEMU is then left stopped, as after QEMU's own migration);
// 1 with a one-line error otherwise, the guest still running here when the failure came before the
// destination resumed it.

import { COMPRESS_MODES, ErrorCode, errorCode, formatReport, migrate, prepareEncoders, type MigrationMode, type Report, type StallPolicy } from '../index.js';
import { QemuSource } from '../qemu/qemu-source.js';
import { checkOutputPaths, parseChoice, parseCommand, optionalString, parseInteger, requireString, writeReportFile, type Flags } from './args.js';
import { ExitStatus, exitStatusOf } from './exit-status.js';
import { openEvents } from './events-file.js';
import { progressPrinter } from './progress.js';
import { securityFlags, securityFrom, serverNameFlag } from './security-flags.js';
import { convergenceFlags, convergenceFrom, sourceTimeoutFlags, sourceTimeoutsFrom } from './migration-flags.js';

/**
 * Modes the adapter runs. Post-copy and hybrid need the destination's vCPUs to wait for pages memshift
 * has not delivered yet; QEMU's vCPUs fault only through QEMU's own userfaultfd, which no Node package
 * reaches.
 */
export const QEMU_MODES = ['live', 'warm', 'cold'] as const;

export const qemuSourceFlags: Flags = {
  connect: { type: 'string', value: 'HOST:PORT', help: 'the memshift qemu-dest to migrate to' },
  qmp: { type: 'string', value: 'SOCKET', help: 'QMP unix socket of the QEMU to migrate (-qmp unix:SOCKET,server,nowait)' },
  ...securityFlags,
  ...serverNameFlag,
  mode: { type: 'string', value: QEMU_MODES.join('|'), help: 'migration mode (post-copy needs QEMU\'s own page faults: see the README)', default: 'live' },
  ...convergenceFlags,
  'on-stall': { type: 'string', value: 'force|throttle|abort', help: 'what to do when pre-copy does not converge (throttle: stop the guest a share of every 100 ms)', default: 'throttle' },
  compress: { type: 'string', value: 'auto|lz4|none', help: 'LZ4 for raw pages (none by default: on a fast link the destination\'s file writes bound the rate, which auto would read as a slow link)', default: 'none' },
  encoders: { type: 'string', value: 'N', help: 'encoder (and hash-scan) threads; 0: the main thread does both (default on hosts of up to 2 cores: 0, or 1 when post-copy may come; else cores - 1)' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  events: { type: 'string', value: 'FILE|-', help: 'write events and progress as NDJSON here (- for stdout)' },
  ...sourceTimeoutFlags,
  quiet: { type: 'boolean', help: 'no progress line or summary' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runQemuSourceCommand(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'qemu-source', 'Migrate a running QEMU guest (RAM in memory-backend-file,share=on) to a memshift qemu-dest. Security: exactly one of --tls-cert/--tls-key/--tls-ca, --psk-file or --insecure.', qemuSourceFlags);
  if (a === null) return 0;
  const connect = requireString(a, 'connect');
  const qmpPath = requireString(a, 'qmp');
  const security = securityFrom(a);
  const mode: MigrationMode = parseChoice(requireString(a, 'mode'), '--mode', QEMU_MODES);
  const onStall = parseChoice(requireString(a, 'on-stall'), '--on-stall', ['force', 'throttle', 'abort'] as const) as StallPolicy;
  const compress = parseChoice(requireString(a, 'compress'), '--compress', COMPRESS_MODES);
  const encoders = optionalString(a, 'encoders');
  const options = { ...convergenceFrom(a), ...sourceTimeoutsFrom(a) };
  checkOutputPaths(a, ['report', 'events']);
  const guest = await QemuSource.open(qmpPath);
  const printer = progressPrinter();
  let events: ReturnType<typeof openEvents> = null;
  let report: Report;
  let failure: { code: string; message: string } | null = null;
  try {
    events = openEvents(optionalString(a, 'events'));
    const prepared = await prepareEncoders(guest, { encoders: encoders === undefined ? undefined : parseInteger(encoders, '--encoders', 0) });
    try {
      report = await migrate(guest, connect, {
        security, mode, onStall, compress, prepared, xbzrle: 'off', ...options,
        onProgress: (p) => {
          events?.progress(p);
          if (!a.quiet) printer.update(p);
        },
        onEvent: events === null ? undefined : (e) => events?.event(e),
      });
    } catch (err) {
      const r = (err as { details?: { report?: Report } }).details?.report;
      if (r === undefined) throw err;
      report = r;
      failure = { code: errorCode(err) ?? 'MS_ERR', message: (err as Error).message };
    }
    printer.done();
    writeReportFile(a, report);
    if (!a.quiet) console.error(formatReport(report));
  } finally {
    printer.done();
    events?.close();
    await guest.close();
  }
  if (failure !== null) {
    console.error(`memshift qemu-source: ${failure.code}: ${failure.message}`);
    return failure.code === ErrorCode.INVALID_ARGUMENT ? ExitStatus.USAGE : exitStatusOf(report!.outcome);
  }
  if (!a.quiet) console.error('memshift qemu-source: the guest runs on the destination QEMU; this QEMU stays stopped (quit it when done)');
  return ExitStatus.COMPLETED;
}
