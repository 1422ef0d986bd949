// A QMP client (QEMU's JSON machine protocol over a unix socket): the adapter's only way to talk to a
// QEMU. One command in flight at a time per call site, answers matched by id; asynchronous events are
// kept with QEMU's own timestamps (wall clock, µs), so downtime can be measured from QEMU's side.
//
//   connect ─► greeting ─► qmp_capabilities ─► ready ─► execute … │ events (kept in order, with QEMU's time)

import net from 'node:net';
import { ErrorCode, MemshiftError } from '../index.js';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's timestamp of the event, in µs since the epoch. */
  atMicros: number;
}

/** The longest a QMP command may go unanswered. */
const COMMAND_TIMEOUT_MS = 30_000;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  command: string;
}

function qemuError(message: string, cause?: unknown): MemshiftError {
  return new MemshiftError(ErrorCode.QEMU, message, cause === undefined ? {} : { cause });
}

/** Events kept at most; beyond it the older half goes. */
const MAX_EVENTS = 1024;

export class Qmp {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffered = '';
  private closed: Error | null = null;
  /** The newest events (at most MAX_EVENTS: a throttle that stops and continues the guest makes two a cycle). */
  private log: QmpEvent[] = [];
  /** Sequence number of log[0]: marks stay valid when old events go. */
  private firstSeq = 0;

  /** A mark for `eventsSince`: every event received from now on comes after it. */
  get eventMark(): number {
    return this.firstSeq + this.log.length;
  }

  /** The events received since `mark` (those still kept), oldest first. */
  eventsSince(mark = 0): QmpEvent[] {
    return this.log.slice(Math.max(0, mark - this.firstSeq));
  }

  /** The newest event named `name`, if one is kept. */
  lastEvent(name: string): QmpEvent | undefined {
    for (let i = this.log.length - 1; i >= 0; i--) if (this.log[i].event === name) return this.log[i];
    return undefined;
  }

  private constructor(private readonly socket: net.Socket, readonly path: string) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.received(chunk));
    const end = (err?: Error): void => {
      this.closed ??= qemuError(`QMP connection to ${path} closed${err !== undefined ? `: ${err.message}` : ''}`);
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
    };
    socket.on('error', end);
    socket.on('close', () => end());
  }

  /**
   * Connects to QEMU's QMP socket at `path` and leaves capabilities negotiation done. With `retry`, a
   * socket QEMU has not created yet is tried again until `timeoutMs` (a QEMU just started).
   */
  static async connect(path: string, timeoutMs = 10_000, retry = false): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await Qmp.connectOnce(path, Math.max(1, deadline - Date.now()));
      } catch (err) {
        if (!retry || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private static async connectOnce(path: string, timeoutMs: number): Promise<Qmp> {
    const socket = net.createConnection(path);
    const qmp = new Qmp(socket, path);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(qemuError(`no QMP greeting from ${path} within ${timeoutMs} ms`)), timeoutMs);
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(qemuError(`cannot connect to QMP socket ${path}: ${err.message}`, err));
        });
        qmp.greeted = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      await qmp.execute('qmp_capabilities');
    } catch (err) {
      qmp.close();
      throw err;
    }
    return qmp;
  }

  private greeted: (() => void) | null = null;

  private received(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line === '') continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('QMP' in msg) {
        this.greeted?.();
        this.greeted = null;
      } else if ('event' in msg) {
        const ts = msg.timestamp as { seconds: number; microseconds: number } | undefined;
        this.log.push({ event: String(msg.event), data: (msg.data ?? {}) as Record<string, unknown>, atMicros: ts === undefined ? Date.now() * 1000 : ts.seconds * 1e6 + ts.microseconds });
        if (this.log.length > MAX_EVENTS) {
          const drop = this.log.length - MAX_EVENTS / 2;
          this.log = this.log.slice(drop);
          this.firstSeq += drop;
        }
        } else if (typeof msg.id === 'number') {
        const p = this.pending.get(msg.id);
        if (p === undefined) continue;
        this.pending.delete(msg.id);
        if ('error' in msg) {
          const e = msg.error as { class?: string; desc?: string };
          p.reject(qemuError(`QEMU refused ${p.command}: ${e.desc ?? 'error'} (${e.class ?? 'GenericError'})`));
        } else {
          p.resolve(msg.return);
        }
      }
    }
  }

  /**
   * Runs a QMP command; resolves to its `return`, rejects with MS_ERR_QEMU naming the command and
   * QEMU's reason, or when QEMU has not answered within `timeoutMs` (a hung monitor must not hold a
   * stopped guest forever).
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.closed !== null) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(qemuError(`QEMU (${this.path}) did not answer ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = <A extends unknown[]>(f: (...a: A) => void) => (...a: A): void => {
        clearTimeout(timer);
        f(...a);
      };
      this.pending.set(id, { resolve: settle(resolve as (v: unknown) => void), reject: settle(reject), command });
      this.socket.write(`${JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id })}\n`);
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}
