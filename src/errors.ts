// Every error memshift raises is a MemshiftError with a stable `code`. Callers match on the code,
// never on the class or the message: errors cross worker threads by structured clone (which drops
// the prototype) and may come from another copy of the package. The README lists every code.


import type { Report } from './migration/report.js';

export const ErrorCode = {
  /** An option or argument is missing, of the wrong type or out of range; `field` names it. */
  INVALID_ARGUMENT: 'MS_ERR_INVALID_ARGUMENT',
  /** A WASM kernel trapped (a bug: wrappers check arguments before every call). */
  WASM_TRAP: 'MS_ERR_WASM_TRAP',
  /** The kernels could not be loaded or do not match this version of the codec. */
  WASM_UNAVAILABLE: 'MS_ERR_WASM_UNAVAILABLE',
  /** Guest memory could not be allocated. */
  MEMORY_ALLOCATION: 'MS_ERR_MEMORY_ALLOCATION',
  /** A frame declares a body larger than the limit for its type. */
  FRAME_TOO_LARGE: 'MS_ERR_FRAME_TOO_LARGE',
  /** A frame's checksum does not match its bytes. */
  FRAME_CHECKSUM: 'MS_ERR_FRAME_CHECKSUM',
  /** A frame has a type byte this version does not know. */
  FRAME_TYPE_UNKNOWN: 'MS_ERR_FRAME_TYPE_UNKNOWN',
  /** A frame's body does not follow its grammar (bad length, field or count). */
  FRAME_MALFORMED: 'MS_ERR_FRAME_MALFORMED',
  /** The peer did not start with memshift's magic: not a memshift peer. */
  HANDSHAKE_MAGIC: 'MS_ERR_HANDSHAKE_MAGIC',
  /** The peer speaks a protocol version this one does not accept. */
  HANDSHAKE_VERSION: 'MS_ERR_HANDSHAKE_VERSION',
  /** The handshake was well formed but refused (regions, capabilities or session do not match). */
  HANDSHAKE_REJECTED: 'MS_ERR_HANDSHAKE_REJECTED',
  /** A page batch names a region the session does not have. */
  BATCH_REGION_UNKNOWN: 'MS_ERR_BATCH_REGION_UNKNOWN',
  /** A page batch names a page outside its region. */
  BATCH_PAGE_RANGE: 'MS_ERR_BATCH_PAGE_RANGE',
  /** A page batch uses an encoding this version does not know, or a size that encoding cannot have. */
  BATCH_ENCODING: 'MS_ERR_BATCH_ENCODING',
  /** A decoded page does not hash to the value its entry carries. */
  PAGE_HASH_MISMATCH: 'MS_ERR_PAGE_HASH_MISMATCH',
  /** An XBZRLE delta is malformed (truncated, over-long run length, run past the page end). */
  DELTA_MALFORMED: 'MS_ERR_DELTA_MALFORMED',
  /** An LZ4 payload is malformed or does not decompress to one page. */
  LZ4_MALFORMED: 'MS_ERR_LZ4_MALFORMED',
  /** Device (vCPU) state could not be decoded or does not fit this guest. */
  DEVICE_STATE_INVALID: 'MS_ERR_DEVICE_STATE_INVALID',
  /** A message arrived in a state that does not accept it. */
  UNEXPECTED_MESSAGE: 'MS_ERR_UNEXPECTED_MESSAGE',
  /** The final memory digests of source and destination differ. */
  DIGEST_MISMATCH: 'MS_ERR_DIGEST_MISMATCH',
  /** A connection could not be made or was refused. */
  CONNECTION_FAILED: 'MS_ERR_CONNECTION_FAILED',
  /** The destination turned a connection away unread: too many are in their handshake (in all, or from its address). */
  CONNECTION_LIMIT: 'MS_ERR_CONNECTION_LIMIT',
  /**
   * The peer failed authentication (TLS certificate not from the trusted CA, host name mismatch, no
   * client certificate, wrong pre-shared key, a peer that does not speak TLS): nothing was exchanged.
   */
  AUTH_FAILED: 'MS_ERR_AUTH_FAILED',
  /** The peer closed or reset the connection before the migration ended. */
  CONNECTION_CLOSED: 'MS_ERR_CONNECTION_CLOSED',
  /** The peer did not answer within the time allowed. */
  TIMEOUT: 'MS_ERR_TIMEOUT',
  /** The peer sent an error frame; `peerCode` carries its code. */
  PEER_ERROR: 'MS_ERR_PEER_ERROR',
  /** Convergence policy `abort` fired: the migration was abandoned and the source guest kept running. */
  MIGRATION_ABORTED: 'MS_ERR_MIGRATION_ABORTED',
  /** The caller cancelled the migration (AbortSignal). */
  CANCELLED: 'MS_ERR_CANCELLED',
  /** The link broke during post-copy: both sides hold their pages and wait for recovery. */
  POSTCOPY_PAUSED: 'MS_ERR_POSTCOPY_PAUSED',
  /** A worker thread failed or exited unexpectedly. */
  WORKER_FAILED: 'MS_ERR_WORKER_FAILED',
  /** A file could not be read or written. */
  IO: 'MS_ERR_IO',
  /**
   * The link failed after SWITCHOVER was sent and before RESUMED arrived: the destination may be
   * running the guest, so the source guest stays paused rather than fork it. Check the destination.
   */
  SWITCHOVER_IN_DOUBT: 'MS_ERR_SWITCHOVER_IN_DOUBT',
  /** Not a memshift save file, or one whose header this build refuses (version, shape, offsets). */
  SAVE_FILE_INVALID: 'MS_ERR_SAVE_FILE_INVALID',
  /** A save file shorter than its header says, or without its trailer (the save never finished). */
  SAVE_FILE_TRUNCATED: 'MS_ERR_SAVE_FILE_TRUNCATED',
  /** A saved page, hash table or trailer does not match: the file was damaged after the save. */
  SAVE_FILE_CORRUPT: 'MS_ERR_SAVE_FILE_CORRUPT',
  /** A shared image's lease is held by another runner (storage/lease.ts): this one must not run the guest. */
  LEASE_HELD: 'MS_ERR_LEASE_HELD',
  /** A runner no longer holds the lease it took (expired, handed over, broken): it must stop running the guest. */
  LEASE_LOST: 'MS_ERR_LEASE_LOST',
  /** A lease file that is not a lease record (break it once nobody runs the guest). */
  LEASE_INVALID: 'MS_ERR_LEASE_INVALID',
  /**
   * The destination's answer to a query after a lost switchover: it did not resume the session and
   * never will (its switchover failed), so the source guest may resume.
   */
  NOT_RESUMED: 'MS_ERR_NOT_RESUMED',
  /**
   * A replicating primary lost its standby (link closed, or silent past the timeout): it stops its guest
   * rather than run on with outputs nobody will ever commit, since the standby may be taking over.
   */
  STANDBY_LOST: 'MS_ERR_STANDBY_LOST',
  /** A standby lost its primary before the first epoch was committed: there is no state to fail over to. */
  NO_CHECKPOINT: 'MS_ERR_NO_CHECKPOINT',
  /**
   * QEMU (over QMP) refused a command, went away, or runs a guest the adapter cannot move (RAM not in a
   * shared file backend, a destination not waiting for an incoming migration).
   */
  QEMU: 'MS_ERR_QEMU',
  /** A cluster scenario file that is not valid JSON or breaks the format (the message names the field). */
  SCENARIO_INVALID: 'MS_ERR_SCENARIO_INVALID',
  /**
   * A host's control request refused: missing or wrong authentication, a request from too long ago, an
   * unknown guest, a guest already migrating, or one that does not fit (the message says which).
   */
  HOST_REFUSED: 'MS_ERR_HOST_REFUSED',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Structured fields an error may carry (all optional; each names a value the message also shows). */
export interface ErrorDetails {
  field?: string;
  value?: unknown;
  limit?: number;
  frameType?: number;
  offset?: number;
  regionId?: number;
  page?: number;
  peer?: string;
  phase?: string;
  peerCode?: string;
  /** The migration report, on errors that end a migration. */
  report?: Report;
  cause?: unknown;
}

export class MemshiftError extends Error {
  readonly code: ErrorCodeValue;
  readonly details: ErrorDetails;

  constructor(code: ErrorCodeValue, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'MemshiftError';
    this.code = code;
    this.details = details;
  }
}

/** True for any memshift error, including one that crossed a thread (matches on the code). */
export function isMemshiftError(err: unknown): err is { code: ErrorCodeValue; message: string } {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' &&
    (err as { code: string }).code.startsWith('MS_ERR_');
}

/** The code of `err`, or undefined when it is not a memshift error. */
export function errorCode(err: unknown): ErrorCodeValue | undefined {
  return isMemshiftError(err) ? err.code : undefined;
}

export function invalidArgument(field: string, requirement: string, value?: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.INVALID_ARGUMENT, `${field} ${requirement}${value === undefined ? '' : ` (got ${formatValue(value)})`}`, { field, value });
}

/** Wraps anything thrown into a MemshiftError, keeping a memshift code that crossed a thread. */
export function toMemshiftError(err: unknown, fallback: ErrorCodeValue, context: string): MemshiftError {
  if (err instanceof MemshiftError) return err;
  if (isMemshiftError(err)) {
    const e = new MemshiftError(err.code, err.message, { cause: err });
    return e;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new MemshiftError(fallback, `${context}: ${message}`, { cause: err });
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  return String(v);
}

/**
 * Failures of the link rather than of either end: a connection lost or silent, or bytes that arrived
 * altered (a checksum, a hash, a length or an encoding that does not hold). Reconnecting can cure
 * these; an end's own refusal, a cancel, or a local fault cannot.
 */
const LINK_FAILURES: ReadonlySet<string> = new Set<string>([
  ErrorCode.CONNECTION_CLOSED, ErrorCode.CONNECTION_FAILED, ErrorCode.TIMEOUT, ErrorCode.FRAME_CHECKSUM, ErrorCode.FRAME_MALFORMED,
  ErrorCode.FRAME_TOO_LARGE, ErrorCode.FRAME_TYPE_UNKNOWN, ErrorCode.UNEXPECTED_MESSAGE, ErrorCode.BATCH_REGION_UNKNOWN,
  ErrorCode.BATCH_PAGE_RANGE, ErrorCode.BATCH_ENCODING, ErrorCode.PAGE_HASH_MISMATCH, ErrorCode.DELTA_MALFORMED, ErrorCode.LZ4_MALFORMED,
]);

export function isLinkFailure(err: { code: string }): boolean {
  return LINK_FAILURES.has(err.code);
}
