// memshift: live migration of VM memory over TCP. This facade is the library's public surface: what a
// hypervisor integrator needs (migrate, receive, guest memory and its dirty log, the post-copy page
// gate, reports, errors); the engines behind it are private, and the simulated guest lives apart in
// memshift/sim (src/sim/). Every option is checked here, and an error names the option.
//
//   const security = loadTlsFiles({ cert: 'src.crt', key: 'src.key', ca: 'ca.crt' });   // or loadPskFile(…), or 'insecure'
//   const report = await migrate(source, '10.0.0.2:7000', { security, mode: 'live', downtimeLimitMs: 300 });
//   const { report, target } = await receive({ listen: '0.0.0.0:7000', security, createTarget });

import './wasm/webassembly-types.js';
import net from 'node:net';
import { ErrorCode, MemshiftError, invalidArgument } from './errors.js';
import type { MemorySource, MemoryTarget, Region } from './memory/types.js';
import { DEFAULT_POLICY, STALL_POLICIES, type ConvergencePolicy, type StallPolicy } from './migration/convergence.js';
import { DEFAULT_ADMISSION } from './migration/destination/admission.js';
import { COMPRESS_MODES, DELTA_MODES, type CompressMode, type DeltaMode } from './migration/compression.js';
import { receiveMigration } from './migration/destination/accept.js';
import { pretouchRam } from './migration/destination/phases/setup.js';
import { preparedTarget } from './migration/destination/prepared-target.js';
import type { DestinationResult } from './migration/destination/driver.js';
import type { LogLevel } from './migration/destination/run.js';
import type { Progress } from './migration/progress.js';
import type { Report } from './migration/report.js';
import { runSource } from './migration/source/driver.js';
import { MAX_ENCODERS } from './pipeline/pool.js';
import { Limits, MIGRATION_MODES, type MigrationMode } from './protocol/constants.js';
import { boundAddress, listen as listenTcp, parseAddress, type Address } from './transport/tcp.js';
import { resolveSecurity, type Security } from './transport/security.js';
import { replicate as runPrimary, type ReplicateOptions as PrimaryOptions, type PrimaryReport } from './replication/primary.js';
import { standby as runStandby, type StandbyOptions as StandbyRunOptions, type StandbyReport } from './replication/standby.js';

export { ErrorCode, MemshiftError, errorCode, isMemshiftError } from './errors.js';
export type { ErrorCodeValue, ErrorDetails } from './errors.js';
export type { Region, RegionKind, RegionFile, MemorySource, MemoryTarget, GuestMemoryView, SharedStorage } from './memory/types.js';
export { GuestMemory } from './memory/guest-memory.js';
export type { GuestMemoryOptions, RegionSpec } from './memory/guest-memory.js';
export type { Slab } from './memory/slab.js';
export { Mailbox, createPageGateInit, createPageGate, readFaultLog } from './memory/page-gate.js';
export type { PageGateInit, PageGate } from './memory/page-gate.js';
export { formatReport, REPORT_SCHEMA_VERSION } from './migration/report.js';
export { queryMigrate, type QueryMigrate, type QueryMigrateRam } from './migration/qmp-view.js';
export { REPORT_JSON_SCHEMA } from './migration/report-schema.js';
export type { MigrationEvent } from './migration/events.js';
export type { PreparedEncoders };
import { PreparedEncoders } from './migration/source/prepared-encoders.js';
import type { MigrationEvent } from './migration/events.js';
export type { Report, Outcome, DowntimeBreakdown, PostcopyStats, GuestStepRate, Recovery } from './migration/report.js';
export type { Progress } from './migration/progress.js';
export type { IterationRecord, EncodingCounts } from './migration/metrics.js';
export type { StallPolicy, ConvergencePolicy, Decision, RuleName } from './migration/convergence.js';
export { MIGRATION_MODES, PROTOCOL_VERSION } from './protocol/constants.js';
export { saveGuest, type SaveOptions, type SaveResult, type SavePass } from './migration/save.js';
export { restoreGuest, type RestoreResult } from './migration/restore.js';
export { SAVE_VERSION } from './protocol/save-file.js';
export { readLease, takeLease, renewLease, handOverLease, releaseLease, breakLease, holdsLease, type LeaseRecord } from './storage/lease.js';
export { announce, ANNOUNCE_DEFAULTS, type AnnounceOptions, type Announcement } from './net/announce.js';
export { LeasedImages, UnnamedImages, DEFAULT_LEASE_TTL_MS, runnerName, type RunnerHooks } from './storage/leased-images.js';
export { COMPRESS_MODES, DELTA_MODES, type CompressMode, type DeltaMode } from './migration/compression.js';
export type { MigrationMode } from './protocol/constants.js';
export { parseAddress, formatAddress } from './transport/tcp.js';
export type { Address } from './transport/tcp.js';
export { loadTlsFiles, loadPskFile, parsePskFile, formatPskFile, generatePsk, MIN_PSK_BYTES } from './transport/security.js';
export type { Security, TlsCredentials, PskCredentials } from './transport/security.js';

export interface MigrateOptions {
  /**
   * Required: how every channel is secured. `{ tls }`: TLS 1.3 with mutual certificates; `{ psk }`:
   * TLS 1.3 with a pre-shared key; 'insecure': plaintext, as an explicit choice.
   */
  security: Security;
  /** live (default), cold, warm, postcopy or hybrid. */
  mode?: MigrationMode;
  /** Switch over when expected downtime is at most this (default 300 ms). */
  downtimeLimitMs?: number;
  /** Pre-copy iteration cap (default 30). */
  maxIterations?: number;
  /** Pre-copy time cap (default 300 s). */
  maxTimeMs?: number;
  /** What to do when pre-copy stalls (default throttle). */
  onStall?: StallPolicy;
  /** Hybrid: switch to post-copy after this many iterations. */
  postcopyAfter?: number;
  /** Auto-converge: first throttle percentage (default 20, as QEMU's cpu-throttle-initial). */
  throttleInitial?: number;
  /** Auto-converge: added per further stalled iteration (default 10, as QEMU's cpu-throttle-increment). */
  throttleStep?: number;
  /**
   * XBZRLE deltas for pages sent before: 'auto' (default) uses them while the link measured in pass 1
   * is slower than deltas move pages (sampled on this host and guest at the start) and never again once
   * off; 'on' (or true) always, 'off' (or false) never.
   */
  xbzrle?: DeltaMode | boolean;
  /**
   * LZ4 for raw pages: 'auto' (default) switches it on while the measured link is slower than what the
   * encoders compress (sampled from the guest at the start) and off when not; 'lz4' always, 'none' never.
   */
  compress?: CompressMode;
  /** Encoder threads; 0: the main thread encodes each batch as it writes it (default on hosts of up to 2 cores: 0, or 1 when post-copy may come; else cores − 1). */
  encoders?: number;
  /** Cap on bytes per second sent (default: none). */
  maxBandwidth?: number;
  connectTimeoutMs?: number;
  /** Longest wait for each answer from the destination (default 60 s). */
  answerTimeoutMs?: number;
  /** The longest the destination may take no bytes while some are queued for it (default 20 s). */
  stallTimeoutMs?: number;
  /**
   * Link lost after a stop-and-copy SWITCHOVER: how long to keep asking the destination (over new
   * connections to the same address, same security) whether it resumed the guest before giving up
   * with MS_ERR_SWITCHOVER_IN_DOUBT (default 10 s). Not used over a caller's socket, nor in post-copy.
   */
  resolveTimeoutMs?: number;
  /**
   * A link that failed (lost, silent, or a page that arrived corrupt): how long to keep reconnecting to
   * the same address with the same security to recover it. Before SWITCHOVER the interrupted pass
   * resumes (the pages the destination never got go again); in post-copy the pages it still lacks are
   * pushed (default 0: no recovery; a pass fails, post-copy stays paused with MS_ERR_POSTCOPY_PAUSED).
   * The destination must wait as long (`receive`'s recoverTimeoutMs). Not used over a caller's socket.
   */
  recoverTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** What happened, once each: states entered, passes ended, the switchover decision, the outcome. */
  onEvent?: (e: MigrationEvent) => void;
  /**
   * Encoder threads started beforehand with `prepareEncoders(source)` (then `encoders` is theirs): the
   * migration's setup is then the handshake alone. Taken by this migration and closed when it ends.
   */
  prepared?: PreparedEncoders;
}

/**
 * Starts the encoder threads a migration of `source` will use, before it begins (as a hypervisor keeps
 * its migration threads): a Node worker takes ~35–40 ms to start here, otherwise part of every setup.
 * With `postcopy: true` the post-copy fault thread is started too (for mode postcopy, hybrid, or
 * onStall postcopy). Pass the result as `migrate(source, to, { prepared })`; `close()` it if no
 * migration follows.
 */
export function prepareEncoders(source: MemorySource, options: { encoders?: number; postcopy?: boolean } = {}): Promise<PreparedEncoders> {
  checkSource(source);
  if (options.encoders !== undefined) positiveInt(options.encoders, 'encoders', 0, MAX_ENCODERS);
  return PreparedEncoders.start(source, options.encoders, options.postcopy === true);
}

function choice<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (!allowed.includes(value as T)) throw invalidArgument(`options.${field}`, `must be one of ${allowed.join(', ')}`, value);
  return value as T;
}

function positiveInt(value: unknown, field: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(`options.${field}`, `must be an integer in [${min}, ${max}]`, value);
  }
  return value;
}

function resolveAddress(to: string | Address | net.Socket, field: string): Address {
  if (typeof to === 'string') return parseAddress(to, field);
  if (isSocket(to)) {
    if (to.remoteAddress === undefined || to.remotePort === undefined) throw invalidArgument(field, 'must be a connected socket');
    return { host: to.remoteAddress, port: to.remotePort };
  }
  if (to === null || typeof to !== 'object' || typeof to.host !== 'string' || !Number.isInteger(to.port)) {
    throw invalidArgument(field, 'must be "HOST:PORT" or {host, port}', to);
  }
  return to;
}

function isSocket(x: unknown): x is net.Socket {
  return x instanceof net.Socket;
}

function checkSource(source: MemorySource): void {
  if (source === null || typeof source !== 'object') throw invalidArgument('source', 'must be a MemorySource');
  for (const m of ['slabsOf', 'pause', 'resume', 'throttle', 'saveState'] as const) {
    if (typeof source[m] !== 'function') throw invalidArgument(`source.${m}`, 'must be a function');
  }
  if (!Array.isArray(source.regions) || source.regions.length === 0) throw invalidArgument('source.regions', 'must list at least one region');
}

/**
 * Migrates `source` to the destination listening at `to` (or over `to`, an already connected socket
 * the caller opened, e.g. through its own tunnel). Resolves with the report when the guest
 * runs on the destination; otherwise rejects with a MemshiftError whose `details.report` is the report
 * (the source guest keeps running, except after MS_ERR_SWITCHOVER_IN_DOUBT). A link lost after a
 * stop-and-copy SWITCHOVER is first resolved by asking the destination (see resolveTimeoutMs).
 */
export async function migrate(source: MemorySource, to: string | Address | net.Socket, options: MigrateOptions): Promise<Report> {
  checkSource(source);
  if (options === null || typeof options !== 'object') throw invalidArgument('options', "must be an object with at least { security } ({ tls }, { psk } or 'insecure')");
  const security = resolveSecurity(options.security, 'options.security');
  const address = resolveAddress(to, 'to');
  const socket = isSocket(to) ? to : undefined;
  const mode = options.mode ?? 'live';
  if (!MIGRATION_MODES.includes(mode)) throw invalidArgument('options.mode', `must be one of ${MIGRATION_MODES.join('|')}`, mode);
  if (options.onStall !== undefined && !STALL_POLICIES.includes(options.onStall)) throw invalidArgument('options.onStall', `must be one of ${STALL_POLICIES.join('|')}`, options.onStall);
  // Post-copy after N passes is what hybrid means; any other mode would reach it un-negotiated.
  if (options.postcopyAfter !== undefined && mode !== 'hybrid') throw invalidArgument('options.postcopyAfter', `applies to mode hybrid only (mode is ${mode})`, options.postcopyAfter);
  const policy: ConvergencePolicy = {
    ...DEFAULT_POLICY,
    downtimeLimitMs: options.downtimeLimitMs === undefined ? DEFAULT_POLICY.downtimeLimitMs : positiveInt(options.downtimeLimitMs, 'downtimeLimitMs'),
    maxIterations: options.maxIterations === undefined ? DEFAULT_POLICY.maxIterations : positiveInt(options.maxIterations, 'maxIterations', 1, 10_000),
    maxTimeMs: options.maxTimeMs === undefined ? DEFAULT_POLICY.maxTimeMs : positiveInt(options.maxTimeMs, 'maxTimeMs'),
    // Hybrid always ends in post-copy: when pre-copy converges, and when it stalls.
    onStall: mode === 'hybrid' ? 'postcopy' : (options.onStall ?? DEFAULT_POLICY.onStall),
    switchoverTo: mode === 'hybrid' ? 'postcopy' : 'stop-and-copy',
    postcopyAfter: options.postcopyAfter === undefined ? null : positiveInt(options.postcopyAfter, 'postcopyAfter', 1, 10_000),
    throttleInitial: options.throttleInitial === undefined ? DEFAULT_POLICY.throttleInitial : positiveInt(options.throttleInitial, 'throttleInitial', 1, 99),
    throttleStep: options.throttleStep === undefined ? DEFAULT_POLICY.throttleStep : positiveInt(options.throttleStep, 'throttleStep', 1, 99),
  };
  if (options.encoders !== undefined) positiveInt(options.encoders, 'encoders', 0, MAX_ENCODERS);
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalidArgument('options.signal', 'must be an AbortSignal');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidArgument('options.onProgress', 'must be a function');
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw invalidArgument('options.onEvent', 'must be a function');
  if (options.prepared !== undefined && !(options.prepared instanceof PreparedEncoders)) throw invalidArgument('options.prepared', 'must come from prepareEncoders()');
  const { report, error } = await runSource(source, {
    address, socket, mode, policy, security,
    xbzrle: options.xbzrle === undefined ? 'auto' : options.xbzrle === true ? 'on' : options.xbzrle === false ? 'off' : choice(options.xbzrle, DELTA_MODES, 'xbzrle'),
    compress: options.compress === undefined ? 'auto' : choice(options.compress, COMPRESS_MODES, 'compress'),
    encoders: options.encoders,
    prepared: options.prepared,
    maxBandwidth: options.maxBandwidth === undefined ? null : positiveInt(options.maxBandwidth, 'maxBandwidth', 1024),
    connectTimeoutMs: options.connectTimeoutMs === undefined ? 10_000 : positiveInt(options.connectTimeoutMs, 'connectTimeoutMs'),
    answerTimeoutMs: options.answerTimeoutMs === undefined ? 60_000 : positiveInt(options.answerTimeoutMs, 'answerTimeoutMs'),
    stallTimeoutMs: options.stallTimeoutMs === undefined ? undefined : positiveInt(options.stallTimeoutMs, 'stallTimeoutMs'),
    resolveTimeoutMs: options.resolveTimeoutMs === undefined ? undefined : positiveInt(options.resolveTimeoutMs, 'resolveTimeoutMs'),
    recoverTimeoutMs: options.recoverTimeoutMs === undefined ? undefined : positiveInt(options.recoverTimeoutMs, 'recoverTimeoutMs', 0),
    signal: options.signal,
    onProgress: options.onProgress,
    onEvent: options.onEvent,
  });
  if (report.outcome === 'completed') return report;
  const code = report.outcome === 'in-doubt' ? ErrorCode.SWITCHOVER_IN_DOUBT : (error?.code ?? ErrorCode.CONNECTION_FAILED);
  const message = report.outcome === 'in-doubt'
    ? `switchover in doubt: ${error?.message}; the destination may be running the guest, so the source guest stays paused`
    : (error?.message ?? `migration ${report.outcome}`);
  // The cause's details (the peer's code, the frame, the page) stay readable on the error itself.
  throw new MemshiftError(code, message, { ...error?.details, report, cause: error ?? undefined });
}

export interface ReceiveOptions {
  /** "HOST:PORT" to listen on, or a listening server (see `listen`). */
  listen: string | Address | net.Server;
  /**
   * Required: how every channel is secured, as for migrate(). With `{ tls }` a source must present a
   * certificate signed by `ca`; a connection that fails authentication is dropped before anything
   * is read from it, and the wait goes on.
   */
  security: Security;
  /** Allocates the target for the regions the source announces (throw to refuse them). */
  createTarget?: (regions: readonly Region[]) => MemoryTarget;
  /**
   * Or: a target allocated before the migration, as a destination hypervisor starts with its RAM. Only
   * a source with exactly its regions is accepted (others are refused and the wait goes on); with
   * `prealloc`, its RAM is pre-touched before waiting, so the migration's setup is the handshake only.
   */
  target?: MemoryTarget;
  /** Touch all target memory before receiving (default false): at once for `target`, else during setup. */
  prealloc?: boolean;
  handshakeTimeoutMs?: number;
  /** While the source is due to send, the longest silence accepted before failing (default 20 s). */
  idleTimeoutMs?: number;
  /**
   * The link lost after a stop-and-copy SWITCHOVER arrived: how long the session lingers answering the
   * source's QUERY connections (RESUMED, or MS_ERR_NOT_RESUMED) before it ends (default 10 s).
   */
  confirmTimeoutMs?: number;
  /**
   * A link that failed: how long the session waits, every page kept (in post-copy the guest held on its
   * missing pages), for the source to reconnect (HELLO role RECOVER, same session and TLS peer) before
   * it ends: failed before SWITCHOVER, paused in post-copy (default 0: at once).
   */
  recoverTimeoutMs?: number;
  /**
   * Largest guest accepted, in bytes. Default: with `target`, no cap beyond the target itself (only its
   * own guest is accepted, and its memory is already held); otherwise three quarters of the memory
   * available when a HELLO arrives.
   */
  maxGuestBytes?: number;
  /** Most RAM regions accepted in one guest (default 16: each reserves about 10 GiB of address space). */
  maxRegions?: number;
  /**
   * Connections in their handshake (TLS, then HELLO) at once: in all, and from one address (default 64
   * and 8). More are closed unread, so a peer that opens many and says nothing cannot shut the real
   * source out.
   */
  maxPendingConnections?: { total?: number; perAddress?: number };
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** What happened, once each: states entered and the outcome (for each session this destination runs). */
  onEvent?: (e: MigrationEvent) => void;
  /** Lines worth logging: rejected connections, accepted sessions. */
  onLog?: (line: string, level: LogLevel) => void;
}

/** Listens on `address` (port 0 picks one); returns the server and the address it is bound to. */
export async function listen(address: string | Address): Promise<{ server: net.Server; address: Address }> {
  const server = await listenTcp(resolveAddress(address, 'listen'));
  return { server, address: boundAddress(server) };
}

/**
 * Waits for one migration and receives it. Resolves with the report and the target (running when
 * the report's outcome is 'completed'). Connections that fail the handshake are logged and skipped.
 */
export async function receive(options: ReceiveOptions): Promise<DestinationResult> {
  if (options === null || typeof options !== 'object') throw invalidArgument('options', 'must be an object');
  const prepared = options.target;
  const security = resolveSecurity(options.security, 'options.security');
  if ((prepared === undefined) === (options.createTarget === undefined)) throw invalidArgument('options', 'needs exactly one of createTarget and target');
  if (options.createTarget !== undefined && typeof options.createTarget !== 'function') throw invalidArgument('options.createTarget', 'must be a function');
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw invalidArgument('options.onEvent', 'must be a function');
  if (prepared !== undefined && (prepared === null || typeof prepared !== 'object' || !Array.isArray(prepared.regions) || typeof prepared.slabsOf !== 'function')) {
    throw invalidArgument('options.target', 'must be a MemoryTarget');
  }
  let preallocatedMs: number | undefined;
  if (prepared !== undefined && options.prealloc === true) {
    const t = performance.now();
    await pretouchRam(prepared);
    preallocatedMs = performance.now() - t;
  }
  const own = !(typeof options.listen === 'object' && options.listen !== null && 'listening' in options.listen);
  const server = own ? (await listen(options.listen as string | Address)).server : (options.listen as net.Server);
  try {
    return await receiveMigration(server, {
      createTarget: prepared !== undefined ? preparedTarget(prepared) : options.createTarget!,
      prealloc: options.prealloc ?? false,
      preallocatedMs,
      security,
      handshakeTimeoutMs: options.handshakeTimeoutMs === undefined ? 10_000 : positiveInt(options.handshakeTimeoutMs, 'handshakeTimeoutMs'),
      idleTimeoutMs: options.idleTimeoutMs === undefined ? undefined : positiveInt(options.idleTimeoutMs, 'idleTimeoutMs'),
      confirmTimeoutMs: options.confirmTimeoutMs === undefined ? undefined : positiveInt(options.confirmTimeoutMs, 'confirmTimeoutMs'),
      recoverTimeoutMs: options.recoverTimeoutMs === undefined ? undefined : positiveInt(options.recoverTimeoutMs, 'recoverTimeoutMs', 0),
      // A prepared target takes exactly its own guest (prepared-target.ts refuses any other, naming why, before
      // anything is allocated); the free-memory default would count that guest's held memory against it.
      maxGuestBytes: options.maxGuestBytes !== undefined ? positiveInt(options.maxGuestBytes, 'maxGuestBytes') : prepared !== undefined ? Number.POSITIVE_INFINITY : undefined,
      maxRegions: options.maxRegions === undefined ? undefined : positiveInt(options.maxRegions, 'maxRegions', 1, Limits.MAX_REGIONS),
      admission: {
        pending: options.maxPendingConnections?.total === undefined ? DEFAULT_ADMISSION.pending : positiveInt(options.maxPendingConnections.total, 'maxPendingConnections.total'),
        pendingPerAddress: options.maxPendingConnections?.perAddress === undefined ? DEFAULT_ADMISSION.pendingPerAddress : positiveInt(options.maxPendingConnections.perAddress, 'maxPendingConnections.perAddress'),
      },
      signal: options.signal,
      onProgress: options.onProgress,
      onEvent: options.onEvent,
      onLog: options.onLog,
    });
  } finally {
    if (own) server.close();
  }
}

export type { DestinationResult, LogLevel };

export type { EpochRecord, PrimaryReport } from './replication/primary.js';
export type { StandbyReport } from './replication/standby.js';

export interface ReplicateOptions<O> extends Omit<PrimaryOptions<O>, 'security'> {
  /** How the link to the standby is secured, as for `migrate`. */
  security: Security;
}

/**
 * Replicates a running guest to a standby (Remus-style epochs, replication/primary.ts) until
 * `durationMs` passes or `signal` aborts (outcome `ended`, the guest left paused after a last committed
 * epoch), or the standby is lost (outcome `failed`, MS_ERR_STANDBY_LOST, the guest paused). Outputs
 * `takeOutputs` hands over at an epoch's pause reach `release` only once the standby holds that epoch.
 */
export async function replicate<O>(source: MemorySource, to: string | Address, options: ReplicateOptions<O>): Promise<PrimaryReport> {
  checkSource(source);
  if (options === null || typeof options !== 'object') throw invalidArgument('options', 'must be an object with at least { security, epochMs, durationMs }');
  const security = resolveSecurity(options.security, 'options.security');
  positiveInt(options.epochMs, 'epochMs', 1, 60_000);
  if (options.durationMs !== null) positiveInt(options.durationMs, 'durationMs');
  if (options.standbyTimeoutMs !== undefined) positiveInt(options.standbyTimeoutMs, 'standbyTimeoutMs', 10);
  if (options.stagingBytes !== undefined) positiveInt(options.stagingBytes, 'stagingBytes', 65536);
  if (options.cacheBytes !== undefined) positiveInt(options.cacheBytes, 'cacheBytes', 0);
  return runPrimary(source, resolveAddress(to, 'to'), { ...options, security });
}

export interface StandbyOptions<T extends MemoryTarget> extends Omit<StandbyRunOptions<T>, 'security' | 'listen'> {
  /** Where to wait for the primary: an address, or a listening server. */
  listen: string | Address | net.Server;
  security: Security;
}

/**
 * Waits for a primary (`replicate`), holds the guest as of its last committed epoch, and runs it when
 * the primary is gone (replication/standby.ts). Resolves with the report and the target: running
 * after a failover; holding the last committed epoch, paused, after the primary ended on purpose.
 */
export async function standby<T extends MemoryTarget>(options: StandbyOptions<T>): Promise<{ report: StandbyReport; target: T | null }> {
  if (options === null || typeof options !== 'object') throw invalidArgument('options', 'must be an object');
  const security = resolveSecurity(options.security, 'options.security');
  if (typeof options.createTarget !== 'function') throw invalidArgument('options.createTarget', 'must be a function');
  if (options.failoverTimeoutMs !== undefined) positiveInt(options.failoverTimeoutMs, 'failoverTimeoutMs', 10);
  const own = !(typeof options.listen === 'object' && options.listen !== null && 'listening' in options.listen);
  const server = own ? (await listen(options.listen as string | Address)).server : (options.listen as net.Server);
  try {
    return await runStandby({ ...options, security, listen: server });
  } finally {
    if (own) server.close();
  }
}
