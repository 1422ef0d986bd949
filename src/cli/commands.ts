// The memshift command: argv → subcommand (main.ts, the entry, loads this module). Each subcommand
// lives in its own file and talks to the library only through src/index.ts (memshift) and to the
// simulated guest only through src/sim/index.ts (memshift/sim). Exit status: 0 success, 1
// migration/runtime failure, 2 usage.

import { readFileSync } from 'node:fs';
import { PROTOCOL_VERSION, errorCode, isMemshiftError } from '../index.js';
import { runReplay } from './replay.js';
import { runSourceCommand } from './source.js';
import { runDestCommand } from './dest.js';
import { runDemo } from './demo.js';
import { runReport } from './report.js';
import { runSave } from './save.js';
import { runRestore } from './restore.js';
import { runLease } from './lease.js';
import { runReplicate } from './replicate.js';
import { runStandby } from './standby.js';
import { runManager } from './manager.js';
import { runHost } from './host.js';
import { runClusterCommand } from './cluster.js';
import { runQemuSourceCommand } from './qemu-source.js';
import { runQemuDestCommand } from './qemu-dest.js';
import { messageWithFlag } from './args.js';

const COMMANDS: Record<string, { run: (argv: readonly string[]) => Promise<number>; summary: string }> = {
  source: { run: runSourceCommand, summary: 'start a simulated guest and migrate it to a destination' },
  dest: { run: runDestCommand, summary: 'wait for one migration and run the received guest' },
  demo: { run: runDemo, summary: 'migrate a simulated guest between two processes on 127.0.0.1 and check the result' },
  replay: { run: runReplay, summary: 'run the simulated guest for N steps and dump its RAM (the reference run)' },
  report: { run: runReport, summary: 'show a report file: for a person, as JSON, or as QEMU query-migrate (--format qmp)' },
  save: { run: runSave, summary: 'start a simulated guest and save it to a file (suspended, or --live)' },
  restore: { run: runRestore, summary: 'run a guest from a save file, checked whole first' },
  lease: { run: runLease, summary: 'show or break the single-runner lease of a shared image' },
  replicate: { run: runReplicate, summary: 'start a simulated guest and replicate it, epoch by epoch, to a standby' },
  standby: { run: runStandby, summary: 'hold a replicated guest and run it when its primary is gone' },
  'qemu-source': { run: runQemuSourceCommand, summary: 'migrate a running QEMU guest: RAM over memshift, devices over QEMU' },
  'qemu-dest': { run: runQemuDestCommand, summary: 'receive a QEMU guest into a QEMU started with -incoming defer' },
  manager: { run: runManager, summary: 'decide when and where to migrate (Sandpiper) over running hosts, or --simulate a large cluster' },
  host: { run: runHost, summary: 'stand for one host of a cluster: guests, /metrics, migrations on the manager\'s word' },
  cluster: { run: runClusterCommand, summary: 'play a scenario (hosts and the manager) on 127.0.0.1: cluster run NAME|FILE, list, show' },
};

/** The package's version, from the package.json next to dist/ (also in an installed package). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function usage(): string {
  const lines = ['usage: memshift <command> [flags]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(11)} ${c.summary}`);
  lines.push('', 'memshift <command> --help lists the flags of a command; memshift --version prints the version.');
  return lines.join('\n');
}

/** Runs the command `argv` names; resolves to the exit status. */
export async function runCommand(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === 'version') {
    console.log(`memshift ${packageVersion()} (wire protocol ${PROTOCOL_VERSION})`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    console.error(`memshift: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    const code = errorCode(err);
    const message = isMemshiftError(err) ? messageWithFlag(err as { message: string; details?: { field?: string } }) : err instanceof Error ? err.message : String(err);
    console.error(`memshift ${name}: ${code ?? 'error'}: ${message}`);
    return code === 'MS_ERR_INVALID_ARGUMENT' ? 2 : 1;
  }
}
