// `memshift standby`: holds a replicated guest (`memshift replicate`) as of its last committed epoch and
// runs it when the primary is gone (replication/standby.ts). After a failover: with --run-steps K it
// runs exactly K steps, pauses, dumps and exits 0; without, it runs until SIGINT / SIGTERM. With
// --serve its outputs go out on that port from the failover on. A primary that ends on purpose leaves
// the guest held, never run (exit 0, outcome `ended`). A guest whose disks are on shared storage
// (--storage shared --disk-dir) runs here only under their lease: the failover waits for the primary's
// to be freed or to expire. A guest with a network identity (replicate --guest-ip) plugs it into
// --guest-dev here when it fails over, and announces it by gratuitous ARP. The first line on stdout is "listening on
// HOST:PORT"; with --serve the second is "serving on HOST:PORT".

import { formatAddress, listen, standby, type StandbyReport } from '../index.js';
import { SimulatedGuest, parseSize, ramRegionIds } from '../sim/index.js';
import { checkOutputPaths, formatDigest, optionalString, parseCommand, parseInteger, requireString, waitForSignal, writeReportFile, type Flags } from './args.js';
import { OutputServer } from './output-server.js';
import { securityFlags, securityFrom } from './security-flags.js';
import { storageFlags, storageFrom } from './storage-flags.js';
import { nicDeviceFlag } from './network-flags.js';

export const standbyFlags: Flags = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'address to wait on for the primary (port 0: any free port)' },
  ...securityFlags,
  ...storageFlags,
  ...nicDeviceFlag,
  'dump-disk': { type: 'string', value: 'DIR', help: 'guests with disks: copy the disk images here (disk0.img, …) once the guest paused' },
  'failover-timeout': { type: 'string', value: 'MS', help: 'nothing heard from the primary for this long: fail over (a closed link fails over at once)', default: '1000' },
  serve: { type: 'string', value: 'HOST:PORT', help: 'after a failover, serve the guest\'s outputs here, a "STEP WORD" line each' },
  'run-steps': { type: 'string', value: 'K', help: 'after a failover, run exactly K steps, pause, dump and exit (default: run until SIGINT/SIGTERM)' },
  'dump-memory': { type: 'string', value: 'FILE', help: 'write the RAM image (all RAM regions, in order) once the guest paused (or as held, when the primary ended)' },
  'slab-size': { type: 'string', value: 'SIZE', help: 'most guest RAM per shared memory slab', default: '3GiB' },
  report: { type: 'string', value: 'FILE', help: 'write the JSON report here' },
  quiet: { type: 'boolean', help: 'no summary or log lines' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function runStandby(argv: readonly string[]): Promise<number> {
  const a = parseCommand(argv, 'standby', 'Hold a replicated guest and run it when its primary is gone. Security: exactly one of --tls-cert/--tls-key/--tls-ca, --psk-file or --insecure.', standbyFlags);
  if (a === null) return 0;
  const security = securityFrom(a);
  const failoverTimeoutMs = parseInteger(requireString(a, 'failover-timeout'), '--failover-timeout', 10);
  const runSteps = optionalString(a, 'run-steps');
  const k = runSteps === undefined ? null : parseInteger(runSteps, '--run-steps');
  const maxSlabBytes = parseSize(requireString(a, 'slab-size'), '--slab-size');
  checkOutputPaths(a, ['report', 'dump-memory']);
  const storage = storageFrom(a, null);
  const { server, address } = await listen(requireString(a, 'listen'));
  console.log(`listening on ${formatAddress(address)}`);
  const serveAt = optionalString(a, 'serve');
  const outputs = serveAt === undefined ? null : await OutputServer.open(serveAt);
  if (outputs !== null) console.log(`serving on ${outputs.where}`);
  const log = (line: string): void => {
    if (!a.quiet) console.error(`memshift standby: ${line}`);
  };
  let guest: SimulatedGuest | null = null;
  let drain: NodeJS.Timeout | null = null;
  let report: StandbyReport;
  try {
    const result = await standby<SimulatedGuest>({
      listen: server, security, failoverTimeoutMs, onLog: log,
      createTarget: (regions) => (guest = SimulatedGuest.receiving(regions, { maxSlabBytes }, {
        outputs: outputs !== null, storage, nicDevice: optionalString(a, 'guest-dev') ?? null,
        nicEvents: { onError: (message) => console.error(`memshift standby: ${message}`) },
      })),
      beforeResume: (g) => {
        if (k !== null) g.limitRunAfterResume(k);
        // Outputs leave from the failover on; a full ring would stop the guest.
        if (outputs !== null) drain = setInterval(() => outputs.publish(g.takeOutputs()), 5);
      },
    });
    report = result.report;
    const g = result.target;
    if (report.outcome === 'failover' && g !== null) {
      if (k !== null) await g.finishLimitedRun();
      else {
        log('the guest runs here; SIGINT or SIGTERM pauses it and ends');
        await waitForSignal();
        await g.pause();
      }
      outputs?.publish(g.takeOutputs());
      report.guestSteps = g.steps;
    }
    if (g !== null && report.outcome !== 'failed') {
      const dump = optionalString(a, 'dump-memory');
      if (dump !== undefined) g.memory.writeImage(ramRegionIds(g.regions), dump);
      const disks = optionalString(a, 'dump-disk');
      if (disks !== undefined) g.dumpDisks(disks);
      writeReportFile(a, { ...report, contentDigest: formatDigest(g.memory.contentDigest()) });
    } else {
      writeReportFile(a, report);
    }
  } finally {
    if (drain !== null) clearInterval(drain);
    server.close();
    await outputs?.close();
    await (guest as SimulatedGuest | null)?.close();
  }
  if (!a.quiet) {
    const f = report.failoverMs === null ? '' : `, failover ${report.failoverMs.toFixed(1)} ms (resume ${report.resumeMs!.toFixed(1)} ms)`;
    console.error(`standby: ${report.outcome}: ${report.epochsCommitted} epochs committed, guest at step ${report.guestSteps}${f}${report.tornPages > 0 ? `, ${report.tornPages} pages of a torn epoch dropped` : ''} (${report.cause ?? ''})`);
  }
  if (report.error !== null) console.error(`memshift standby: ${report.error.code}: ${report.error.message}`);
  return report.outcome === 'failed' ? 1 : 0;
}
