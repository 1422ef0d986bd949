// `memshift host`: a process that stands for a physical machine. It runs simulated guests (each a real
// SimulatedGuest whose vCPU writes its RAM), shares its capacity among their demands every tick (the
// nucleus, host-model.ts), serves what it measures in the Prometheus text format on GET /metrics, and
// moves guests with the engine when told to:
//
//   POST /incoming  {spec, allocation}           → {port}: a listener that takes one migration of that guest
//   POST /migrate   {guest, to, mode, downtimeLimitMs} → the migration's summary once the guest runs there
//   POST /allocation {guest, allocation}         → a new allocation in place (memory only as far as it is free)
//   GET  /guests                                 → the guests here, as JSON (the manager's report and tests)
//   GET  /metrics                                → the exposition (black-box for every guest, gray-box for
//                                                  guests that run the daemon)
//
// Control requests are authenticated as control-auth.ts says; migrations use the same security.

import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { ErrorCode, MemshiftError, errorCode, formatAddress, listen as listenMigration, migrate, receive, type Address, type MigrationMode, type Report, type Security } from '../index.js';
import { SimulatedGuest, resolveGuestConfig } from '../sim/index.js';
import { RESOURCES, type Vector } from '../manager/resources.js';
import { HOST_HEADER, NONCE_HEADER, REPLY_MAC_HEADER, RequestVerifier, isNonce, pskKey, signReply } from './control-auth.js';
import { bindHttp, closeHttp, readMessage } from './http-io.js';
import { controlTls } from './host-client.js';
import { demandAt } from './demand.js';
import { shareHost, type GuestShare } from './host-model.js';
import { EXPOSITION_CONTENT_TYPE, renderMetrics, type MetricFamily, type Sample } from './metrics-text.js';
import { parseGuestSpec, parseVector, type ScenarioGuest } from './scenario.js';

/** A guest as it travels between hosts: everything but where it is. */
export type GuestSpec = Omit<ScenarioGuest, 'host'>;

export interface HostOptions {
  /** Default: the control address once bound (HOST:PORT). */
  name?: string;
  capacity: Vector;
  security: Security;
  /** Epoch ms at which the scenario's clock reads 0: demand is read at now − epochMs. */
  epochMs: number;
  /** Epoch ms after which SLA violation-seconds stop counting (the scenario's end; default never). */
  untilEpochMs?: number;
  /** Nucleus period (default 100 ms). */
  tickMs?: number;
  log?: (line: string) => void;
}

export interface MigrationSummary {
  guest: string;
  from: string;
  to: string;
  mode: MigrationMode;
  outcome: Report['outcome'];
  error: { code: string; message: string } | null;
  startedAtEpochMs: number;
  totalMs: number;
  downtimeMs: number | null;
  bytes: number;
  passes: number;
  /** Each pass: pages, bytes, its time, the bandwidth and the guest's dirty rate while it ran (the dashboard's timeline). */
  iterations: { iteration: number; pages: number; bytes: number; ms: number; endedAtMs: number; bandwidthBytesPerSec: number; dirtyPagesPerSec: number }[];
  digest: string;
}

/** A guest as GET /guests lists it. */
export interface HostedGuestInfo {
  name: string;
  spec: GuestSpec;
  allocation: Vector;
  migrating: boolean;
  /** Set when a migration that ended in doubt or paused left the guest here, not to be run or moved. */
  held: 'in-doubt' | 'paused' | null;
  slaViolationSeconds: number;
  steps: number;
  running: boolean;
}

interface Hosted {
  spec: GuestSpec;
  allocation: Vector;
  guest: SimulatedGuest;
  migrating: boolean;
  /** A migration that ended in doubt or paused left it here, not to be run or moved (null: normal). */
  held: 'in-doubt' | 'paused' | null;
  demand: Vector;
  share: GuestShare | null;
  cpuSeconds: number;
  netBytes: number;
  swapBytes: number;
  slaViolationSeconds: number;
  /** Dirtied pages per second, measured from the vCPU's steps over the last second. */
  dirtyPagesPerSec: number;
  stepsMark: { steps: number; at: number };
}

const MAX_BODY = 1 << 20;
/** Both ends of a migration wait this long for a lost link to come back (post-copy keeps every page meanwhile). */
const RECOVER_MS = 5000;

export class ClusterHost {
  private readonly guests = new Map<string, Hosted>();
  /** Guests on their way here, with the allocation reserved for them (counted as committed). */
  private readonly incoming = new Map<string, Vector>();
  /** Ledgers of guests that left: their SLA violation-seconds here stay counted. */
  private readonly departed: { name: string; slaViolationSeconds: number }[] = [];
  private readonly verifier: RequestVerifier | null;
  private readonly timer: NodeJS.Timeout;
  private lastTick = performance.now();
  private nucleusSeconds = 0;
  private readonly migrations = { in: 0, out: 0, failed: 0 };
  private readonly pending = new Set<AbortController>();
  private closed = false;

  readonly options: HostOptions & { name: string };

  private constructor(options: HostOptions, private readonly server: http.Server, readonly address: Address) {
    this.options = { ...options, name: options.name ?? formatAddress(address) };
    const key = pskKey(options.security);
    this.verifier = key === null ? null : new RequestVerifier(key, this.options.name);
    this.timer = setInterval(() => this.tick(), this.options.tickMs ?? 100);
    server.on('request', (req, res) => void this.handle(req, res));
  }

  /** Binds the control port (HTTPS with mutual certificates under TLS security, else HTTP). */
  static async start(listen: Address, options: HostOptions): Promise<ClusterHost> {
    const tls = controlTls(options.security);
    const server = tls !== null ? https.createServer({ ...tls, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }) : http.createServer();
    return new ClusterHost(options, server, await bindHttp(server, listen));
  }

  /** Starts a guest here (the scenario's initial placement), with the allocation its spec gives. */
  async addGuest(spec: GuestSpec): Promise<void> {
    if (this.guests.has(spec.name) || this.incoming.has(spec.name)) throw refused(`guest ${spec.name} is already on ${this.options.name}`);
    const guest = SimulatedGuest.create(resolveGuestConfig({
      memoryBytes: spec.ram, seed: spec.seed, fill: 'mixed', workload: 'hotset', stepsPerSecond: spec.dirtyPagesPerSec,
    }));
    await guest.resume();
    this.admit(spec, spec.allocation, guest);
  }

  private admit(spec: GuestSpec, allocation: Vector, guest: SimulatedGuest, held: Hosted['held'] = null): void {
    const now = performance.now();
    this.guests.set(spec.name, {
      spec, allocation, guest, migrating: false, held, demand: { cpu: 0, net: 0, mem: 0 }, share: null,
      cpuSeconds: 0, netBytes: 0, swapBytes: 0, slaViolationSeconds: 0, dirtyPagesPerSec: 0, stepsMark: { steps: guest.steps, at: now },
    });
  }

  /** The guests the nucleus shares the host among and a manager sees: all but the held. */
  private active(): Hosted[] {
    return [...this.guests.values()].filter((h) => h.held === null);
  }

  /** Memory allocated here: to every guest but `except`, and reserved for guests on their way. */
  private committedMemory(except: Hosted | null): number {
    let sum = 0;
    for (const h of this.guests.values()) if (h !== except) sum += h.allocation.mem;
    for (const a of this.incoming.values()) sum += a.mem;
    return sum;
  }

  /** One period of the nucleus: every guest's demand now, the host shared among them, the ledgers advanced. */
  private tick(): void {
    const t0 = performance.now();
    const dt = (t0 - this.lastTick) / 1000;
    this.lastTick = t0;
    const now = Date.now();
    const at = now - this.options.epochMs;
    // The ledgers count the scenario's time only (before its clock starts and after its end, nothing).
    const counting = at >= 0 && (this.options.untilEpochMs === undefined || now <= this.options.untilEpochMs);
    const list = this.active();
    for (const h of list) h.demand = demandAt(h.spec.demand, at, h.spec.seed);
    const shares = shareHost(this.options.capacity, list.map((h) => ({ allocation: h.allocation, demand: h.demand, sla: h.spec.sla })));
    list.forEach((h, i) => {
      const s = shares[i];
      h.share = s;
      h.cpuSeconds += s.used.cpu * dt;
      h.netBytes += s.used.net * dt;
      h.swapBytes += s.swapBytesPerSec * dt;
      if (s.slaViolated && counting) h.slaViolationSeconds += dt;
      if (t0 - h.stepsMark.at >= 1000) {
        const steps = h.guest.steps;
        h.dirtyPagesPerSec = ((steps - h.stepsMark.steps) * 1000) / (t0 - h.stepsMark.at);
        h.stepsMark = { steps, at: t0 };
      }
    });
    this.nucleusSeconds += (performance.now() - t0) / 1000;
  }

  metrics(): string {
    const host = this.options.name;
    // Held guests (a migration in doubt or paused) neither run nor move: not offered to a manager.
    const list = this.active();
    const held = this.guests.size - list.length;
    const family = (name: string, help: string, type: 'gauge' | 'counter', samples: Sample[]): MetricFamily => ({ name, help, type, samples });
    const per = (f: (h: Hosted) => number, only: (h: Hosted) => boolean = () => true): Sample[] =>
      list.filter(only).map((h) => ({ labels: { host, guest: h.spec.name }, value: f(h) }));
    const gray = (h: Hosted): boolean => h.spec.graybox;
    const share = (h: Hosted): GuestShare => h.share ?? { given: h.allocation, used: { cpu: 0, net: 0, mem: 0 }, swappedBytes: 0, swapBytesPerSec: 0, responseMs: h.spec.sla.serviceMs, slaViolated: false };
    return renderMetrics([
      family('memshift_host_capacity', 'What this host has: cpu in cores, net in bytes per second, mem in bytes.', 'gauge',
        RESOURCES.map((r) => ({ labels: { host, resource: r }, value: this.options.capacity[r] }))),
      family('memshift_host_guests', 'Guests running here (migrating ones included).', 'gauge', [{ labels: { host }, value: list.length }]),
      family('memshift_host_guests_held', 'Guests held here after a migration that ended in doubt or paused: not run, not moved, until an operator settles them.', 'gauge', [{ labels: { host }, value: held }]),
      family('memshift_host_migrations_total', 'Migrations this host took part in, by direction and outcome.', 'counter', [
        { labels: { host, direction: 'in' }, value: this.migrations.in },
        { labels: { host, direction: 'out' }, value: this.migrations.out },
        { labels: { host, direction: 'failed' }, value: this.migrations.failed },
      ]),
      family('memshift_host_nucleus_seconds_total', 'Time the nucleus spent measuring and sharing (its monitoring cost).', 'counter', [{ labels: { host }, value: this.nucleusSeconds }]),
      family('memshift_guest_allocation', 'What the guest is allocated: cpu cores, net bytes per second, mem bytes.', 'gauge',
        list.flatMap((h) => RESOURCES.map((r) => ({ labels: { host, guest: h.spec.name, resource: r }, value: h.allocation[r] })))),
      family('memshift_guest_cpu_cores', 'Black-box: CPU the guest used over the last tick, in cores.', 'gauge', per((h) => share(h).used.cpu)),
      family('memshift_guest_cpu_given_cores', 'Black-box: CPU the guest could have used (its allocation, or its fair share of a full host).', 'gauge', per((h) => share(h).given.cpu)),
      family('memshift_guest_cpu_seconds_total', 'Black-box: CPU time the guest used.', 'counter', per((h) => h.cpuSeconds)),
      family('memshift_guest_net_bytes_per_second', 'Black-box: bytes per second sent and received.', 'gauge', per((h) => share(h).used.net)),
      family('memshift_guest_net_given_bytes_per_second', 'Black-box: network the guest could have used.', 'gauge', per((h) => share(h).given.net)),
      family('memshift_guest_net_bytes_total', 'Black-box: bytes sent and received.', 'counter', per((h) => h.netBytes)),
      family('memshift_guest_swap_bytes_per_second', 'Black-box: swap traffic of the guest (memory demand above its allocation).', 'gauge', per((h) => share(h).swapBytesPerSec)),
      family('memshift_guest_swap_bytes_total', 'Black-box: bytes swapped.', 'counter', per((h) => h.swapBytes)),
      family('memshift_guest_ram_bytes', 'RAM a migration of the guest moves.', 'gauge', per((h) => h.spec.ram)),
      family('memshift_guest_dirty_pages_per_second', 'Black-box: pages the guest wrote per second (its dirty log), over the last second.', 'gauge', per((h) => h.dirtyPagesPerSec)),
      family('memshift_guest_migrating', '1 while the guest is being migrated away.', 'gauge', per((h) => (h.migrating ? 1 : 0))),
      family('memshift_guest_os_cpu_demand_cores', 'Gray-box (daemon in the guest): CPU its OS has work for, in cores.', 'gauge', per((h) => h.demand.cpu, gray)),
      family('memshift_guest_os_memory_used_bytes', 'Gray-box: memory its OS uses (swapped pages included).', 'gauge', per((h) => h.demand.mem, gray)),
      family('memshift_guest_response_p95_ms', 'Gray-box: p95 response time in the application\'s log.', 'gauge', per((h) => share(h).responseMs, gray)),
      family('memshift_guest_sla_response_ms', 'Gray-box: the SLA\'s p95 response time.', 'gauge', per((h) => h.spec.sla.responseMs, gray)),
      family('memshift_guest_sla_violation_seconds_total', 'Seconds the guest\'s p95 response time was over its SLA (the ledger scenarios are judged by; a manager reads it only for gray-box guests).', 'counter', per((h) => h.slaViolationSeconds)),
    ]);
  }

  /** The guests here, for reports. */
  guestList(): HostedGuestInfo[] {
    return [...this.guests.values()].map((h) => ({
      name: h.spec.name, spec: h.spec, allocation: h.allocation, migrating: h.migrating, held: h.held, slaViolationSeconds: h.slaViolationSeconds, steps: h.guest.steps, running: h.guest.running,
    }));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    let reply: { status: number; body: string; type: string };
    try {
      reply = await this.route(req, path);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : errorCode(err) === ErrorCode.HOST_REFUSED ? 409 : 500;
      reply = { status, body: JSON.stringify({ error: { code: errorCode(err) ?? ErrorCode.HOST_REFUSED, message: (err as Error).message } }), type: 'application/json' };
    }
    const headers: Record<string, string | number> = { 'content-type': reply.type, 'content-length': Buffer.byteLength(reply.body) };
    // Under a PSK, a reply to a request that sent a nonce carries the host's name and MAC (control-auth.ts).
    const nonce = req.headers[NONCE_HEADER];
    const key = pskKey(this.options.security);
    if (key !== null && isNonce(nonce)) {
      headers[HOST_HEADER] = this.options.name;
      headers[REPLY_MAC_HEADER] = signReply(key, this.options.name, nonce, reply.status, reply.body);
    }
    res.writeHead(reply.status, headers);
    res.end(reply.body);
  }

  private async route(req: http.IncomingMessage, path: string): Promise<{ status: number; body: string; type: string }> {
    const json = (v: unknown): { status: number; body: string; type: string } => ({ status: 200, body: JSON.stringify(v), type: 'application/json' });
    const body = await readMessage(req, MAX_BODY, () => new HttpError(413, `request body over ${MAX_BODY} bytes`));
    if (req.method === 'GET' && path === '/metrics') return { status: 200, body: this.metrics(), type: EXPOSITION_CONTENT_TYPE };
    if (req.method === 'GET' && path === '/guests') return json({ host: this.options.name, guests: this.guestList(), departed: this.departed });
    if (req.method !== 'POST' || !['/incoming', '/migrate', '/allocation'].includes(path)) {
      throw new HttpError(404, `no ${req.method} ${path} here (GET /metrics, GET /guests, POST /incoming, POST /migrate, POST /allocation)`);
    }
    if (this.verifier !== null) {
      const why = this.verifier.verify(req.headers.authorization, req.method, path, body);
      if (why !== null) throw new HttpError(401, why);
    }
    const request = parseJson(body);
    if (path === '/incoming') return json(await this.prepareIncoming(request));
    if (path === '/allocation') return json(this.reallocate(request));
    return json(await this.migrateOut(request));
  }

  /** Opens a listener for one migration of the guest `spec` names; the guest is admitted once it runs here. */
  private async prepareIncoming(json: Record<string, unknown>): Promise<{ port: number }> {
    let spec: GuestSpec;
    let allocation: Vector;
    try {
      spec = parseGuestSpec(json.spec, 'POST /incoming', 'spec', 1);
      allocation = parseVector(json.allocation, 'POST /incoming', 'allocation');
    } catch (err) {
      throw new HttpError(400, (err as Error).message);
    }
    if (this.guests.has(spec.name) || this.incoming.has(spec.name)) throw refused(`guest ${spec.name} is already on ${this.options.name}`);
    const committed = this.committedMemory(null);
    if (committed + allocation.mem > this.options.capacity.mem) {
      throw refused(`${this.options.name} cannot allocate ${allocation.mem} bytes to ${spec.name}: ${committed} of ${this.options.capacity.mem} are allocated`);
    }
    this.incoming.set(spec.name, allocation);
    let listening;
    try {
      listening = await listenMigration({ host: this.address.host, port: 0 });
    } catch (err) {
      this.incoming.delete(spec.name);
      throw err;
    }
    const { server, address } = listening;
    const abort = new AbortController();
    this.pending.add(abort);
    // A source that never comes: the listener goes after a minute (not once a session has begun).
    const expiry = setTimeout(() => abort.abort(), 60_000);
    void receive({
      listen: server, security: this.options.security, signal: abort.signal, maxGuestBytes: spec.ram, recoverTimeoutMs: RECOVER_MS,
      createTarget: (regions) => SimulatedGuest.receiving(regions),
      onEvent: () => clearTimeout(expiry),
    }).then(({ report, target }) => {
      if ((report.outcome === 'completed' || report.outcome === 'paused') && target instanceof SimulatedGuest && !this.closed) {
        this.migrations.in++;
        // Paused: a post-copy that lost its source for good; the guest's pages here are all there is of it.
        this.admit(spec, allocation, target, report.outcome === 'paused' ? 'paused' : null);
        this.options.log?.(report.outcome === 'paused'
          ? `${spec.name} arrived in post-copy and its source is gone: held here, paused, with every page it has`
          : `${spec.name} arrived from a migration (${report.downtimeMs?.toFixed(1) ?? '?'} ms downtime) and runs here`);
      } else {
        if (target instanceof SimulatedGuest) void target.close();
        this.options.log?.(`incoming ${spec.name} ended ${report.outcome}${report.error === null ? '' : `: ${report.error.code}`}`);
      }
    }, (err: unknown) => {
      this.options.log?.(`incoming ${spec.name} failed: ${(err as Error).message}`);
    }).finally(() => {
      clearTimeout(expiry);
      this.pending.delete(abort);
      this.incoming.delete(spec.name);
      server.close();
    });
    return { port: address.port };
  }

  /** Gives a guest here a new allocation (memory only as far as the host's is not allocated to others). */
  private reallocate(json: Record<string, unknown>): { guest: string; allocation: Vector } {
    const h = typeof json.guest === 'string' ? this.guests.get(json.guest) : undefined;
    if (h === undefined) throw refused(`no guest ${String(json.guest)} on ${this.options.name}`);
    let allocation: Vector;
    try {
      allocation = parseVector(json.allocation, 'POST /allocation', 'allocation');
    } catch (err) {
      throw new HttpError(400, (err as Error).message);
    }
    if (h.held !== null) throw refused(`${h.spec.name} is ${h.held} here`);
    const others = this.committedMemory(h);
    if (others + allocation.mem > this.options.capacity.mem) {
      throw refused(`${this.options.name} cannot give ${h.spec.name} ${allocation.mem} bytes: ${others} of ${this.options.capacity.mem} are allocated to other guests`);
    }
    h.allocation = allocation;
    this.options.log?.(`${h.spec.name} reallocated: cpu ${allocation.cpu.toFixed(2)}, net ${allocation.net.toFixed(0)} B/s, mem ${allocation.mem.toFixed(0)} B`);
    return { guest: h.spec.name, allocation };
  }

  /** Migrates a guest to the listener `to` opened by POST /incoming on another host; the summary once it ends. */
  private async migrateOut(json: Record<string, unknown>): Promise<MigrationSummary> {
    const name = json.guest;
    const to = json.to;
    const mode = (json.mode ?? 'live') as MigrationMode;
    if (typeof name !== 'string' || typeof to !== 'string') throw new HttpError(400, 'POST /migrate needs {guest, to}');
    const h = this.guests.get(name);
    if (h === undefined) throw refused(`no guest ${name} on ${this.options.name}`);
    if (h.migrating) throw refused(`${name} is already migrating`);
    if (h.held !== null) throw refused(`${name} is ${h.held} here: it cannot move until that is settled`);
    h.migrating = true;
    const startedAtEpochMs = Date.now();
    const abort = new AbortController();
    this.pending.add(abort);
    let report: Report;
    let error: { code: string; message: string } | null = null;
    try {
      report = await migrate(h.guest, to, {
        security: this.options.security, mode, downtimeLimitMs: typeof json.downtimeLimitMs === 'number' ? json.downtimeLimitMs : 50, maxTimeMs: 60_000, signal: abort.signal,
        recoverTimeoutMs: RECOVER_MS,
      });
    } catch (err) {
      const r = (err as { details?: { report?: Report } }).details?.report;
      if (r === undefined) {
        this.migrations.failed++;
        throw err;
      }
      report = r;
      error = { code: errorCode(err) ?? 'MS_ERR', message: (err as Error).message };
    } finally {
      h.migrating = false;
      this.pending.delete(abort);
    }
    if (report.outcome === 'completed') {
      this.migrations.out++;
      this.guests.delete(name);
      this.departed.push({ name, slaViolationSeconds: h.slaViolationSeconds });
      await h.guest.close();
      this.options.log?.(`${name} migrated to ${to} (${mode}): ${report.totalTimeMs.toFixed(0)} ms, ${report.downtimeMs?.toFixed(1) ?? '?'} ms downtime`);
    } else if (report.outcome === 'in-doubt' || report.outcome === 'paused') {
      // In doubt: the destination may run it; paused: it runs there on the pages it has. Either way
      // it must not run or move from here: held (off the nucleus and the metrics) for an operator.
      h.held = report.outcome;
      this.migrations.failed++;
      this.options.log?.(`${name}: migration to ${to} ended ${report.outcome}: held here, not run, not moved`);
    } else {
      // The engine leaves the guest running here on every failure before the switchover.
      this.migrations.failed++;
    }
    return {
      guest: name, from: this.options.name, to, mode, outcome: report.outcome, error, startedAtEpochMs,
      totalMs: report.totalTimeMs, downtimeMs: report.downtimeMs, bytes: report.bytesTransferred, passes: report.iterations.length, digest: report.digest,
      iterations: report.iterations.map((it) => ({
        iteration: it.iteration, pages: it.pages, bytes: it.bytes, ms: it.ms, endedAtMs: it.endedAtMs, bandwidthBytesPerSec: it.bandwidthBytesPerSec, dirtyPagesPerSec: it.dirtyPagesPerSec,
      })),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const a of this.pending) a.abort();
    await closeHttp(this.server);
    await Promise.all([...this.guests.values()].map((h) => h.guest.close()));
    this.guests.clear();
  }

  get controlAddress(): string {
    return formatAddress(this.address);
  }
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function refused(message: string): MemshiftError {
  return new MemshiftError(ErrorCode.HOST_REFUSED, message);
}

function parseJson(body: string): Record<string, unknown> {
  try {
    const v = JSON.parse(body) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // Named below.
  }
  throw new HttpError(400, 'the request body must be a JSON object');
}
