// A small argv parser: `--name value`, `--name=value` and boolean `--name`, checked against a
// per-command spec so that an unknown or malformed flag is a usage error naming it (exit 2, main.ts),
// and the helpers the commands share: flag values, reports, post-copy holds.

import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ExitStatus } from './exit-status.js';
import { ErrorCode, MemshiftError } from '../index.js';

/** A usage error that names the flag; main.ts exits 2 on MS_ERR_INVALID_ARGUMENT. */
export function usageError(flag: string, requirement: string, value?: unknown): MemshiftError {
  const got = value === undefined ? '' : ` (got ${typeof value === 'string' ? JSON.stringify(value) : String(value)})`;
  return new MemshiftError(ErrorCode.INVALID_ARGUMENT, `${flag} ${requirement}${got}`, { field: flag, value });
}

/** Checks that `--flag` is one of `choices` and returns it. */
export function parseChoice<T extends string>(text: string, flag: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) throw usageError(flag, `must be one of ${choices.join('|')}`, text);
  return text as T;
}

export interface FlagSpec {
  /** 'string' takes a value; 'boolean' does not. */
  type: 'string' | 'boolean';
  help: string;
  /** Shown in --help as the value's name. */
  value?: string;
  default?: string;
  /** The flag may be given several times; its values are kept joined by commas. */
  repeatable?: boolean;
}

export type Flags = Record<string, FlagSpec>;
export type Parsed = Record<string, string | boolean | undefined>;

export function parseArgs(argv: readonly string[], spec: Flags): Parsed {
  const out: Parsed = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw usageError('argument', 'is not a --flag', arg);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const s = spec[name];
    if (s === undefined) throw usageError(`--${name}`, 'is not a flag of this command (see --help)');
    if (s.type === 'boolean') {
      if (eq >= 0) throw usageError(`--${name}`, 'takes no value');
      out[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw usageError(`--${name}`, `needs a value (${s.value ?? 'value'})`);
    out[name] = s.repeatable === true && typeof out[name] === 'string' ? `${out[name] as string},${value}` : value;
  }
  for (const [name, s] of Object.entries(spec)) if (out[name] === undefined && s.default !== undefined) out[name] = s.default;
  return out;
}

/** Parses a command's flags, or prints its help and returns null when --help was given. */
export function parseCommand(argv: readonly string[], command: string, summary: string, spec: Flags): Parsed | null {
  const parsed = parseArgs(argv, spec);
  if (parsed.help) {
    console.log(helpText(command, summary, spec));
    return null;
  }
  return parsed;
}

export function helpText(command: string, summary: string, spec: Flags): string {
  const lines = [`usage: memshift ${command} [flags]`, '', summary, '', 'flags:'];
  for (const [name, s] of Object.entries(spec)) {
    const left = `  --${name}${s.type === 'string' ? ` ${s.value ?? 'VALUE'}` : ''}`;
    lines.push(`${left.padEnd(34)} ${s.help}${s.repeatable === true ? ' (repeatable)' : ''}${s.default !== undefined ? ` (default ${s.default})` : ''}`);
  }
  return lines.join('\n');
}

export function requireString(p: Parsed, name: string): string {
  const v = p[name];
  if (typeof v !== 'string') throw usageError(`--${name}`, 'is required');
  return v;
}

export function optionalString(p: Parsed, name: string): string | undefined {
  const v = p[name];
  return typeof v === 'string' ? v : undefined;
}

export function parseInteger(text: string, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text.trim())) throw usageError(flag, 'must be a whole number', text);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw usageError(flag, `must be in [${min}, ${max}]`, text);
  return n;
}

/** Library option names → the flags that set them, so CLI errors name what the user typed. */
const FLAG_OF_FIELD: Record<string, string> = {
  memory: '--memory',
  fill: '--fill',
  workload: '--workload',
  hotSize: '--hot-size',
  hotPermille: '--hot-share',
  seed: '--seed',
  dirtyRate: '--dirty-rate',
  pageSize: '--page-size',
  maxSlabBytes: '--slab-size',
  ramRegions: '--ram-regions',
  disk: '--disk',
  disks: '--disk',
  diskFill: '--disk-fill',
  'options.downtimeLimitMs': '--downtime-limit',
  'options.maxIterations': '--max-iterations',
  'options.maxTimeMs': '--max-time',
  'options.onStall': '--on-stall',
  'options.mode': '--mode',
  'options.encoders': '--encoders',
  'options.maxBandwidth': '--max-bandwidth',
  'options.throttleInitial': '--throttle-initial',
  'options.throttleStep': '--throttle-step',
  'options.postcopyAfter': '--postcopy-after',
  to: '--connect',
  listen: '--listen',
};

/** The error's message with a library field name replaced by its flag (unchanged otherwise). */
export function messageWithFlag(err: { message: string; details?: { field?: string } }): string {
  const field = err.details?.field;
  const flag = field === undefined ? undefined : FLAG_OF_FIELD[field];
  if (flag === undefined || field === undefined || !err.message.startsWith(field)) return err.message;
  return flag + err.message.slice(field.length);
}

/** A 64-bit digest as the report prints its `digest` (16 hex digits), for `contentDigest`. */
export function formatDigest(d: bigint): string {
  return BigInt.asUintN(64, d).toString(16).padStart(16, '0');
}

/**
 * Checks that the files named by `flags` (e.g. --report, --dump-memory) can be written, before any
 * migration starts: finding out after a successful one loses its report.
 */
export function checkOutputPaths(p: Parsed, flags: readonly string[]): void {
  for (const flag of flags) {
    const file = optionalString(p, flag);
    if (file === undefined) continue;
    const target = existsSync(file) ? file : dirname(resolve(file));
    try {
      accessSync(target, constants.W_OK);
    } catch (cause) {
      throw usageError(`--${flag}`, `must name a file this process can write (${(cause as Error).message})`, file);
    }
  }
}

/** Writes `report` as JSON to the file named by --report, if given. */
export function writeReportFile(p: Parsed, report: unknown): void {
  const file = optionalString(p, 'report');
  if (file !== undefined) writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
}

/** Resolves on SIGINT or SIGTERM (the process stays up, with its memory, until then). */
export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const done = (): void => {
      clearInterval(keepAlive);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/**
 * A post-copy that lost its link: the guest's only complete copy is split across both hosts, so this
 * side keeps everything and waits to be stopped. Returns the exit status.
 */
export async function holdPausedPostcopy(p: Parsed, command: string, report: { error: { code: string; message: string } | null }, what: string): Promise<number> {
  // Handlers first: a supervisor may signal as soon as it reads the lines below.
  const stopped = waitForSignal();
  writeReportFile(p, report);
  console.error(`memshift ${command}: ${report.error?.code}: ${report.error?.message}`);
  console.error(`memshift ${command}: keeping ${what} until this process is stopped`);
  await stopped;
  return ExitStatus.PAUSED;
}
