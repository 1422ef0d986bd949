// Both drivers over an in-memory link (test/_support/link-pair.ts): no sockets, no processes, so what
// the drivers do with each frame, failure and refusal is exact and quick to show. The source driver
// runs against the real destination driver, or a destination's end is scripted frame by frame.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, MemshiftError } from '../../src/errors.js';
import { DEFAULT_POLICY } from '../../src/migration/convergence.js';
import { SWITCHOVER_COST_MS } from '../../src/migration/eta.js';
import { Session, type SessionEnd } from '../../src/migration/destination/driver.js';
import type { DestinationOptions } from '../../src/migration/destination/run.js';
import { runSource, type SourceResult } from '../../src/migration/source/driver.js';
import type { MigrationMode } from '../../src/protocol/constants.js';
import { Capability, ChannelRole, FrameType, PageEncoding } from '../../src/protocol/constants.js';
import { decodeError, encodeMissingPages } from '../../src/protocol/control.js';
import type { Frame } from '../../src/protocol/frame-reader.js';
import { decodeHello, encodeHello } from '../../src/protocol/handshake.js';
import { encodeBatchFrame } from '../../src/protocol/page-batch.js';
import { linkPair, type Tap } from '../_support/link-pair.js';
import { INSECURE } from '../../src/transport/security.js';
import { MirrorSource, MirrorTarget, PAGE, PostcopyMirrorTarget, ramRegions, within } from '../_support/mirror-guest.js';
import type { Region } from '../../src/memory/types.js';

const PAGES = 256;

function destinationOptions(createTarget: (r: readonly Region[]) => MirrorTarget): DestinationOptions {
  // A short linger: these sessions have no accept loop to route a query to them.
  return { createTarget, prealloc: false, handshakeTimeoutMs: 10_000, security: INSECURE, confirmTimeoutMs: 200 };
}

/** Runs the real destination on `link`: the first frame must be HELLO, as accept.ts checks it. */
function destinationOn(link: ReturnType<typeof linkPair>['b'], options: DestinationOptions): Promise<SessionEnd> {
  return new Promise((resolve) => {
    link.setHandlers({
      onFrame: (f: Frame) => {
        const hello = decodeHello(f.buf, f.bodyOffset, f.bodyLength);
        new Session(link, hello, options, resolve);
      },
      onClosed: () => undefined,
    });
  });
}

function sourceOn(link: ReturnType<typeof linkPair>['a'], source: MirrorSource, mode: MigrationMode): Promise<SourceResult> {
  return runSource(source, {
    address: { host: '127.0.0.1', port: 1 }, link, mode, security: INSECURE, policy: { ...DEFAULT_POLICY, downtimeLimitMs: 10_000 },
    xbzrle: 'on', compress: 'none', encoders: 1, maxBandwidth: null, connectTimeoutMs: 10_000, answerTimeoutMs: 10_000,
  });
}

async function migrateOverLink(mode: MigrationMode, tap?: Tap, target: (r: readonly Region[]) => MirrorTarget = (r) => new MirrorTarget(r)) {
  const { a, b } = linkPair(tap);
  const source = new MirrorSource(PAGES);
  for (let p = 0; p < PAGES; p += 5) source.write(p, (p % 200) + 1);
  let made: MirrorTarget | null = null;
  const dest = destinationOn(b, destinationOptions((r) => (made = target(r))));
  const src = await within(sourceOn(a, source, mode), 30_000, 'source driver');
  const end = await within(dest, 30_000, 'destination driver');
  return { source, src, end, target: made as MirrorTarget | null, a, b };
}

for (const mode of ['live', 'warm', 'cold'] as const) {
  test(`${mode} over an in-memory link: both drivers complete and the destination holds the source's memory`, async () => {
    const { source, src, end, target } = await migrateOverLink(mode);
    assert.is(src.report.outcome, 'completed', src.error?.message);
    assert.is(end.result.report.outcome, 'completed');
    assert.is(end.result.report.digest, src.report.digest);
    assert.ok(target!.resumed);
    for (let p = 0; p < PAGES; p++) {
      assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
    }
    assert.ok(src.report.downtimeMs !== null && src.report.downtimeBreakdown !== null);
    const b = src.report.downtimeBreakdown!;
    // The measured parts do not overlap (source before SWITCHOVER, destination between it and RESUMED, one
    // clock in one process): together they fit in the downtime, and `otherMs` is exactly what is left.
    const measured = b.pauseMs + b.finalPagesMs + b.deviceStateMs + b.destinationApplyMs + b.digestCheckMs + b.resumeMs;
    assert.ok(measured <= src.report.downtimeMs! + 1e-6, `parts ${measured} ms within the downtime ${src.report.downtimeMs} ms`);
    assert.ok(Math.abs(measured + b.otherMs - src.report.downtimeMs!) < 1e-6, 'the breakdown adds up to the downtime');
    // Every pass has an ETA made at its end; the last (stop-and-copy) leaves only the switchover.
    const its = src.report.iterations;
    for (const it of its) assert.ok(it.etaMs !== null && it.etaMs >= 0, `pass ${it.iteration} eta ${it.etaMs}`);
    assert.is(its[its.length - 1].etaMs, SWITCHOVER_COST_MS);
    assert.equal(its.map((it) => it.endedAtMs).sort((x, y) => x - y), its.map((it) => it.endedAtMs), 'estimates in pass order');
    // MirrorSource and MirrorTarget expose no steps: no step rate anywhere.
    assert.equal(src.report.guestStepsPerSec, { beforeMigration: null, perPass: [], afterResume: null });
    assert.equal(end.result.report.guestStepsPerSec, { beforeMigration: null, perPass: [], afterResume: null });
    assert.ok(its.every((it) => it.guestStepsPerSec === null));
    assert.ok(src.report.completedAtMs !== null && src.report.completedAtMs > its[its.length - 1].endedAtMs, 'RESUMED after the last pass');
  });
}

test('a destination that fails to resume refuses the switchover: the source guest resumes', async () => {
  class FailingResume extends MirrorTarget {
    override async resume(): Promise<void> {
      throw new Error('vCPU would not start');
    }
  }
  const { source, src, end } = await migrateOverLink('warm', undefined, (r) => new FailingResume(r));
  assert.is(end.result.report.outcome, 'failed');
  assert.is(src.report.outcome, 'failed');
  assert.is(src.error?.code, ErrorCode.PEER_ERROR);
  assert.is(source.paused, false, 'refused: the source guest runs again');
  assert.is(source.resumes, 1);
  assert.is(src.report.completedAtMs, null, 'the guest never ran on the destination');
});

test('a link cut between SWITCHOVER and RESUMED leaves the switchover in doubt: the source guest stays paused', async () => {
  const { source, src, end } = await migrateOverLink('warm', (type, from) => (from === 'b' && type === FrameType.RESUMED ? 'cut' : 'deliver'));
  assert.is(src.report.outcome, 'in-doubt');
  assert.is(src.report.completedAtMs, null, 'RESUMED never arrived');
  assert.is(source.paused, true);
  assert.is(source.resumes, 0);
  // The destination resumed before its RESUMED was lost: the guest runs there, unconfirmed.
  assert.is(end.result.report.outcome, 'completed');
});

test('a link cut after RESUMED completes the migration unconfirmed instead of failing it', async () => {
  const { source, src, end } = await migrateOverLink('warm', (type, from) => (from === 'a' && type === FrameType.COMPLETE ? 'cut' : 'deliver'));
  assert.is(src.report.outcome, 'completed');
  assert.is(source.resumes, 0, 'the source guest never runs again');
  assert.is(end.result.report.outcome, 'completed');
});

test('post-copy over an in-memory bulk link (urgent channel on loopback): every page arrives, then both complete', async () => {
  const { source, src, end, target } = await migrateOverLink('postcopy', undefined, (r) => new PostcopyMirrorTarget(r));
  assert.is(src.report.outcome, 'completed', src.error?.message);
  assert.is(end.result.report.outcome, 'completed', end.result.report.error?.message);
  assert.is(end.result.report.digest, src.report.digest);
  assert.ok(src.report.postcopy !== null && src.report.postcopy.pagesPushed > 0);
  for (let p = 0; p < PAGES; p++) {
    assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
  }
});

/** Writes a page no one wrote before as it pauses: the write lands after a post-copy's full pass was set up. */
class WritesAsItPauses extends MirrorSource {
  static readonly PAGE = 3;
  constructor(pages: number, readonly unwrittenPagesAreZero: boolean) {
    super(pages);
  }

  override async pause(): Promise<void> {
    this.write(WritesAsItPauses.PAGE, 0x77);
    await super.pause();
  }
}

/** A fresh post-copy target that holds zeros, so that a source which marks every write may skip the rest. */
class ZeroedPostcopyTarget extends PostcopyMirrorTarget {
  readonly unwrittenPagesAreZero = true;
}

for (const unwrittenZero of [false, true]) {
  test(`post-copy${unwrittenZero ? ', unwritten pages zero on both ends' : ''}: a page first written between the full pass's set-up and the pause still arrives`, async () => {
    const { a, b } = linkPair();
    const source = new WritesAsItPauses(PAGES, unwrittenZero);
    for (let p = 0; p < PAGES; p += 5) source.write(p, (p % 200) + 1);
    let target: PostcopyMirrorTarget | null = null;
    const dest = destinationOn(b, destinationOptions((r) => (target = unwrittenZero ? new ZeroedPostcopyTarget(r) : new PostcopyMirrorTarget(r))));
    const src = await within(sourceOn(a, source, 'postcopy'), 30_000, 'source driver');
    const end = await within(dest, 30_000, 'destination driver');
    assert.is(src.report.outcome, 'completed', src.error?.message);
    assert.is(end.result.report.outcome, 'completed', end.result.report.error?.message);
    assert.is(src.report.pagesTransferred, unwrittenZero ? Math.ceil(PAGES / 5) + 1 : PAGES, 'the full pass: every page, or every written page');
    assert.ok(((target as PostcopyMirrorTarget | null)?.page(WritesAsItPauses.PAGE) ?? []).every((byte) => byte === 0x77), 'the late page holds what was written');
    for (let p = 0; p < PAGES; p++) {
      assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
    }
  });
}

/** A post-copy target whose vCPU threads take a while to load: ready() resolves after READY_MS. */
class SlowToLoadTarget extends PostcopyMirrorTarget {
  static readonly READY_MS = 150;
  readyAt: number | null = null;
  resumedBeforeReady = false;
  ready(): Promise<void> {
    return new Promise((resolve) => setTimeout(() => {
      this.readyAt = performance.now();
      resolve();
    }, SlowToLoadTarget.READY_MS));
  }

  override async resume(): Promise<void> {
    if (this.readyAt === null) this.resumedBeforeReady = true;
    await super.resume();
  }
}

test('the destination answers HELLO_ACK only once its target is ready: a post-copy switchover never waits for vCPU threads to load', async () => {
  let ackAt: number | null = null;
  const { source, src, end, target } = await migrateOverLink('postcopy', (type, from) => {
    if (type === FrameType.HELLO_ACK && from === 'b') ackAt = performance.now();
    return 'deliver';
  }, (r) => new SlowToLoadTarget(r));
  const t = target as SlowToLoadTarget;
  assert.is(src.report.outcome, 'completed', src.error?.message);
  assert.is(end.result.report.outcome, 'completed');
  assert.ok(t.readyAt !== null && ackAt !== null && ackAt >= t.readyAt, `HELLO_ACK at ${ackAt}, ready at ${t.readyAt}`);
  assert.not.ok(t.resumedBeforeReady);
  assert.ok(end.result.report.setupTimeMs! >= SlowToLoadTarget.READY_MS - 1, 'the wait is the setup\'s');
  for (let p = 0; p < PAGES; p++) {
    assert.ok(Buffer.compare(Buffer.from(t.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
  }
});

/** A target that cannot get ready (its vCPU threads failed to start). */
class NeverReadyTarget extends MirrorTarget {
  ready(): Promise<void> {
    return Promise.reject(new Error('vCPU thread failed to start'));
  }
}

test('a target that fails to get ready refuses the migration at the handshake, and the source guest runs on', async () => {
  const { source, src, end } = await migrateOverLink('live', undefined, (r) => new NeverReadyTarget(r));
  assert.is(src.report.outcome, 'failed');
  assert.is(src.error?.code, ErrorCode.PEER_ERROR);
  assert.is((src.error!.details as { peerCode?: string }).peerCode, ErrorCode.HANDSHAKE_REJECTED);
  assert.match(src.error!.message, /did not get ready: .*vCPU thread failed to start/);
  assert.is(end.result.report.outcome, 'failed');
  assert.is(source.paused, false);
});

test('post-copy: a link cut while the missing pages go out, before SWITCHOVER, resumes the source guest', async () => {
  const { source, src, end } = await migrateOverLink('postcopy', (type, from) => (from === 'a' && type === FrameType.MISSING_PAGES ? 'cut' : 'deliver'), (r) => new PostcopyMirrorTarget(r));
  assert.is(src.report.outcome, 'failed');
  assert.is(source.paused, false);
  assert.is(source.resumes, 1);
  assert.is(end.result.report.outcome, 'failed', 'the destination never ran the guest');
});

test('post-copy: a destination that refuses after SWITCHOVER (its resume fails) has the source guest resume', async () => {
  class FailingResume extends PostcopyMirrorTarget {
    override async resume(): Promise<void> {
      throw new Error('vCPU would not start');
    }
  }
  const { source, src, end } = await migrateOverLink('postcopy', undefined, (r) => new FailingResume(r));
  assert.is(end.result.report.outcome, 'failed');
  assert.is(src.report.outcome, 'failed');
  assert.is(src.error?.code, ErrorCode.PEER_ERROR);
  assert.is(source.paused, false);
  assert.is(source.resumes, 1);
});

test('when both ends agree that unwritten pages are zero, the first pass sends only written pages', async () => {
  class ZeroAwareSource extends MirrorSource {
    readonly unwrittenPagesAreZero = true;
  }
  class ZeroAwareTarget extends MirrorTarget {
    readonly unwrittenPagesAreZero = true;
  }
  for (const [targetKnows, expected] of [[true, 10], [false, PAGES]] as const) {
    const { a, b } = linkPair();
    const source = new ZeroAwareSource(PAGES);
    for (let p = 0; p < 10; p++) source.write(p * 25, p + 1);
    let target: MirrorTarget | null = null;
    const dest = destinationOn(b, destinationOptions((r) => (target = targetKnows ? new ZeroAwareTarget(r) : new MirrorTarget(r))));
    const src = await within(sourceOn(a, source, 'cold'), 30_000, 'source driver');
    const end = await within(dest, 30_000, 'destination driver');
    assert.is(src.report.outcome, 'completed');
    assert.is(end.result.report.digest, src.report.digest);
    assert.is(src.report.iterations[0].pages, expected, `target zero-aware: ${targetKnows}`);
    for (let p = 0; p < PAGES; p++) {
      assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
    }
  }
});

// ---- a switchover in doubt, resolved by asking the destination (QUERY over a new in-memory link) ----

/**
 * A migration whose source may reconnect: `reopen` gives it a new in-memory link whose far end is
 * routed, as accept.ts routes a QUERY HELLO, to the destination's session. `answers`: whether the
 * destination's end picks up at all (false: every query link is cut at once, no answer).
 */
async function migrateWithQueries(mode: MigrationMode, o: {
  tap?: Tap; target?: (r: readonly Region[], cut: () => void) => MirrorTarget; answers?: boolean; resolveTimeoutMs?: number; signal?: AbortSignal;
  querySession?: (s: Uint8Array) => Uint8Array;
}) {
  const { a, b } = linkPair(o.tap);
  const source = new MirrorSource(PAGES);
  for (let p = 0; p < PAGES; p += 5) source.write(p, (p % 200) + 1);
  let made: MirrorTarget | null = null;
  let session: Session | null = null;
  const log: string[] = [];
  const refusals: string[] = [];
  const dest = new Promise<SessionEnd>((resolve) => {
    b.setHandlers({
      onFrame: (f: Frame) => { session = new Session(b, decodeHello(f.buf, f.bodyOffset, f.bodyLength), { ...destinationOptions((r) => (made = (o.target ?? ((rr) => new MirrorTarget(rr)))(r, () => a.cut()))), confirmTimeoutMs: 10_000, onLog: (l) => log.push(l) }, resolve); },
      onClosed: () => undefined,
    });
  });
  let queries = 0;
  const reopen = async () => {
    queries++;
    const pair = linkPair();
    if (o.answers === false) {
      setImmediate(() => pair.a.cut());
      return pair.a;
    }
    pair.b.setHandlers({
      onFrame: (f: Frame) => {
        const hello = decodeHello(f.buf, f.bodyOffset, f.bodyLength);
        const asked = o.querySession ? o.querySession(hello.session) : hello.session;
        if (hello.role === ChannelRole.QUERY && session !== null && session.answersQuery(asked, pair.b.peerIdentity)) session.answerQuery(pair.b);
        else {
          refusals.push(Buffer.from(asked).toString('hex'));
          pair.b.fail(new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, 'no session answers this query'));
        }
      },
      onClosed: () => undefined,
    });
    return pair.a;
  };
  const src = await within(runSource(source, {
    address: { host: '127.0.0.1', port: 1 }, link: a, mode, security: INSECURE, policy: { ...DEFAULT_POLICY, downtimeLimitMs: 10_000 },
    xbzrle: 'on', compress: 'none', encoders: 1, maxBandwidth: null, connectTimeoutMs: 10_000, answerTimeoutMs: 10_000,
    reopen, resolveTimeoutMs: o.resolveTimeoutMs ?? 10_000, signal: o.signal,
  }), 30_000, 'source driver');
  // Nothing will confirm: end the linger now rather than wait it out.
  if (o.answers === false || o.signal !== undefined || o.querySession !== undefined) (session as Session | null)?.cancel();
  const end = await within(dest, 30_000, 'destination driver');
  return { source, src, end, target: made as MirrorTarget | null, log, queries: () => queries, refusals };
}

const samePages = (target: MirrorTarget, source: MirrorSource): boolean => {
  for (let p = 0; p < PAGES; p++) {
    if (Buffer.compare(Buffer.from(target.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) !== 0) return false;
  }
  return true;
};

test('RESUMED lost with the link: the source asks over a new link, the destination repeats RESUMED and takes COMPLETE there', async () => {
  let first = true;
  const { source, src, end, target, log } = await migrateWithQueries('warm', {
    tap: (type, from) => (from === 'b' && type === FrameType.RESUMED && first ? ((first = false), 'cut') : 'deliver'),
  });
  assert.is(src.report.outcome, 'completed', src.error?.message);
  assert.match(src.report.switchoverReason!.reason, /link lost after SWITCHOVER; the destination confirmed it resumed over a new connection/);
  assert.is(source.resumes, 0, 'the source guest never runs again');
  assert.is(end.result.report.outcome, 'completed');
  assert.ok(log.some((l) => /confirmed over a query that it released the guest/.test(l)), log.join('\n'));
  assert.not.ok(log.some((l) => /did not confirm/.test(l)), 'confirmed, not timed out');
  assert.is(end.result.report.digest, src.report.digest);
  assert.ok(target!.resumed && samePages(target!, source));
});

test('the destination fails to resume and the link goes with it: asked, it answers NOT_RESUMED and the source guest resumes', async () => {
  class CutThenFail extends MirrorTarget {
    constructor(r: readonly Region[], private readonly cut: () => void) { super(r); }
    override async resume(): Promise<void> {
      this.cut(); // the link is lost before our refusal could go out on it
      throw new Error('vCPU would not start');
    }
  }
  const { source, src, end, target, log } = await migrateWithQueries('warm', { target: (r, cut) => new CutThenFail(r, cut) });
  assert.is(src.report.outcome, 'failed');
  assert.is(src.error?.code, ErrorCode.NOT_RESUMED);
  assert.match(src.error!.message, /link lost after SWITCHOVER .* did not resume the guest and never will/);
  assert.is(source.paused, false, 'NOT_RESUMED: the source guest runs again');
  assert.is(source.resumes, 1);
  assert.is(end.result.report.outcome, 'failed');
  assert.not.ok(target!.resumed);
  assert.ok(log.some((l) => /was not resumed/.test(l)), log.join('\n'));
});

test('no answer to any query within resolveTimeoutMs: the switchover stays in doubt and the source guest paused', async () => {
  const { source, src, queries } = await migrateWithQueries('warm', {
    tap: (type, from) => (from === 'b' && type === FrameType.RESUMED ? 'cut' : 'deliver'), answers: false, resolveTimeoutMs: 600,
  });
  assert.is(src.report.outcome, 'in-doubt');
  assert.match(src.error!.message, /gave no answer within 600 ms of asking/);
  assert.ok(queries() >= 2, `asked ${queries()} times, retrying`);
  assert.is(source.paused, true);
  assert.is(source.resumes, 0);
});

test('a query for another session is turned away: no answer, in doubt', async () => {
  const { source, src, refusals } = await migrateWithQueries('warm', {
    tap: (type, from) => (from === 'b' && type === FrameType.RESUMED ? 'cut' : 'deliver'), resolveTimeoutMs: 400,
    querySession: (s) => s.map((x) => x ^ 0xff),
  });
  assert.is(src.report.outcome, 'in-doubt');
  assert.ok(refusals.length >= 1);
  assert.is(source.resumes, 0);
});

test('cancelled while resolving: in doubt at once, the guest never resumes', async () => {
  const controller = new AbortController();
  const { source, src } = await migrateWithQueries('cold', {
    tap: (type, from) => {
      if (from === 'b' && type === FrameType.RESUMED) {
        setImmediate(() => controller.abort());
        return 'cut';
      }
      return 'deliver';
    },
    answers: false, resolveTimeoutMs: 20_000, signal: controller.signal,
  });
  assert.is(src.report.outcome, 'in-doubt');
  assert.is(src.error?.code, ErrorCode.CANCELLED);
  assert.is(source.paused, true);
  assert.is(source.resumes, 0);
});

/** A scripted source end: sends what the test says and records what comes back. */
function scriptedSource(link: ReturnType<typeof linkPair>['a']) {
  const frames: { type: number; body: Uint8Array }[] = [];
  link.setHandlers({ onFrame: (f) => frames.push({ type: f.type, body: f.buf.slice(f.bodyOffset, f.bodyOffset + f.bodyLength) }), onClosed: () => undefined });
  const hello = (capabilities: number) => encodeHello({ session: new Uint8Array(16).fill(3), role: ChannelRole.BULK, mode: 'live', capabilities, regions: ramRegions(64) });
  return { frames, hello };
}

test('a PAGE_BATCH before the handshake finished is refused while the destination is in setup', async () => {
  const { a, b } = linkPair();
  const script = scriptedSource(a);
  const dest = destinationOn(b, destinationOptions((r) => new MirrorTarget(r)));
  const batch = encodeBatchFrame(0, 1, [{ page: 0, encoding: PageEncoding.ZERO, size: 0, hash: 0n, payload: new Uint8Array(0) }]);
  // One delivery: the batch is read right after HELLO, before setup could answer.
  await a.sendSegments([script.hello(Capability.XBZRLE), batch]);
  const end = await within(dest, 10_000, 'destination');
  assert.is(end.result.report.outcome, 'failed');
  assert.is(end.result.report.error?.code, ErrorCode.UNEXPECTED_MESSAGE);
  assert.match(end.result.report.error!.message, /PAGE_BATCH while the destination is setup/);
  assert.is(end.accepted, false);
  await new Promise((r) => setImmediate(r));
  const error = script.frames.find((f) => f.type === FrameType.ERROR);
  assert.ok(error !== undefined, 'the source is told why');
  assert.is(decodeError(error!.body, 0, error!.body.length).code, ErrorCode.UNEXPECTED_MESSAGE);
});

test('MISSING_PAGES without a negotiated post-copy is refused and marks nothing', async () => {
  const { a, b } = linkPair();
  const script = scriptedSource(a);
  let target: MirrorTarget | null = null;
  const dest = destinationOn(b, destinationOptions((r) => (target = new MirrorTarget(r))));
  await a.send(script.hello(Capability.XBZRLE));
  while (!script.frames.some((f) => f.type === FrameType.HELLO_ACK)) await new Promise((r) => setImmediate(r));
  await a.send(encodeMissingPages({ regionId: 0, firstPage: 0, pageCount: 64, bitmap: new Uint8Array(8).fill(0xff) }));
  const end = await within(dest, 10_000, 'destination');
  assert.is(end.result.report.outcome, 'failed');
  assert.match(end.result.report.error!.message, /MISSING_PAGES outside a post-copy switchover/);
  assert.is(end.accepted, true);
  const s = target!.memory.slabsOf(0)[0];
  assert.is(new Uint8Array(s.memory.buffer, s.layout.present, 8).every((x) => x === 0), true, 'no present bit was touched');
});

test.run();
