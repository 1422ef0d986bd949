// `memshift qemu-dest`: receives a QEMU guest from `memshift qemu-source` into a QEMU started with
// `-incoming defer` and the same shared memory backends: pages go straight into its RAM files, QEMU
// loads the device state memshift carried, and `cont` runs the guest. The first line on stdout is
// "listening on HOST:PORT". The report adds QEMU's own view of the downtime (`hypervisor`).

import { formatAddress, formatReport, listen, receive } from '../index.js';
import { QemuTarget } from '../qemu/qemu-target.js';
import { checkOutputPaths, parseCommand, optionalString, requireString, writeReportFile, type Flags } from './args.js';
import { exitStatusOf } from './exit-status.js';
import { openEvents } from './events-file.js';
import { progressPrinter } from './progress.js';
import { securityFlags, securityFrom } from './security-flags.js';
import { destinationTimeoutFlags, destinationTimeoutsFrom } from './migration-flags.js';

export const qemuDestFlags: Flags = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'address to wait on (port 0: any free port)' },
  qmp: { type: 'string', value: 'SOCKET', help: 'QMP unix socket of the QEMU started with -incoming defer' },
  ...securityFlags,
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  events: { type: 'string', value: 'FILE|-', help: 'write events and progress as NDJSON here (- for stdout, after the listening line)' },
  ...destinationTimeoutFlags,
  quiet: { type: 'boolean', help: 'no progress line, summary or routine log line' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runQemuDestCommand(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'qemu-dest', 'Receive a QEMU guest from memshift qemu-source into a QEMU waiting with -incoming defer. Security: exactly one of --tls-cert/--tls-key/--tls-ca, --psk-file or --insecure.', qemuDestFlags);
  if (a === null) return 0;
  const security = securityFrom(a);
  checkOutputPaths(a, ['report', 'events']);
  const timeouts = destinationTimeoutsFrom(a);
  const target = await QemuTarget.open(requireString(a, 'qmp'));
  const printer = progressPrinter();
  let events: ReturnType<typeof openEvents> = null;
  try {
    events = openEvents(optionalString(a, 'events'));
    const { server, address } = await listen(requireString(a, 'listen'));
    let result;
    try {
      const waiting = receive({
        listen: server, security, target, ...timeouts,
        onProgress: a.quiet && events === null ? undefined : (p) => {
          events?.progress(p);
          if (!a.quiet) printer.update(p);
        },
        onEvent: events === null ? undefined : (e) => events?.event(e),
        onLog: (line, level) => {
          if (a.quiet && level !== 'notice') return;
          printer.done();
          console.error(`memshift qemu-dest: ${line}`);
        },
      });
      console.log(`listening on ${formatAddress(address)}`);
      result = await waiting;
    } finally {
      printer.done();
      server.close();
    }
    const { report } = result;
    const r = target.resumed;
    if (r !== null) {
      report.hypervisor = { kind: 'qemu', stopToResumeMs: (r.resumedAtMicros - r.stoppedAtMicros) / 1000, deviceLoadMs: r.deviceLoadMs, deviceStateBytes: r.deviceStateBytes };
    }
    writeReportFile(a, report);
    if (!a.quiet) console.error(formatReport(report));
    if (report.outcome !== 'completed') console.error(`memshift qemu-dest: ${report.error?.code ?? 'MS_ERR'}: ${report.error?.message ?? report.outcome}`);
    return exitStatusOf(report.outcome);
  } finally {
    events?.close();
    await target.close();
  }
}
