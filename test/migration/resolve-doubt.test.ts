// migrate() and receive() in one process over TLS (as secure-receive.test.ts), the source talking
// through a proxy: the target's resume resets every connection (after starting the guest, or instead
// of it), so the switchover is lost with its link and the source must ask over a new connection. The
// query is bound to the bulk channel's session and TLS peer: another certificate from the same CA is
// turned away, and the real source is then answered.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode } from '../../src/errors.js';
import { listen, migrate, receive, type MemshiftError, type Security } from '../../src/index.js';
import type { Region } from '../../src/memory/types.js';
import { ChannelRole, FrameType, Limits } from '../../src/protocol/constants.js';
import { decodeError } from '../../src/protocol/control.js';
import type { Frame } from '../../src/protocol/frame-reader.js';
import { encodeHello } from '../../src/protocol/handshake.js';
import { Channel } from '../../src/transport/channel.js';
import { resolveSecurity } from '../../src/transport/security.js';
import { MirrorSource, MirrorTarget, PAGE, ramRegions, until, within } from '../_support/mirror-guest.js';
import { makeCredentials } from '../_support/credentials.js';
import { Proxy } from '../_support/proxy.js';

const creds = makeCredentials();
test.after(() => creds.remove());

const PAGES = 128;

/**
 * A target whose resume first resets the source's connection through `proxy` (and with `hold`, turns
 * the source's next connections away too), then starts (or fails to).
 */
class CuttingTarget extends MirrorTarget {
  constructor(regions: readonly Region[], private readonly proxy: Proxy, private readonly fails: boolean, private readonly hold: boolean) {
    super(regions);
  }

  override async resume(): Promise<void> {
    this.proxy.refuseNew = this.hold;
    this.proxy.resetConnections();
    if (this.fails) throw new Error('vCPU would not start');
    await super.resume();
  }
}

async function lostSwitchover(o: { source: Security; dest: Security; fails: boolean; whileLingering?: (port: number, session: Uint8Array) => Promise<void> }) {
  const { server, address } = await listen('127.0.0.1:0');
  const proxy = await Proxy.start(address.port);
  const log: string[] = [];
  try {
    let target: CuttingTarget | null = null;
    const dest = receive({
      listen: server, security: o.dest, confirmTimeoutMs: 20_000, onLog: (l) => log.push(l),
      createTarget: (r) => (target = new CuttingTarget(r, proxy, o.fails, o.whileLingering !== undefined)),
    });
    const source = new MirrorSource(PAGES);
    for (let p = 0; p < PAGES; p += 3) source.write(p, (p % 250) + 1);
    if (o.whileLingering !== undefined) {
      // The source finds the address, not the destination, until the test has asked its own question.
      const hook = o.whileLingering;
      const ready = until(() => log.some((l) => /after SWITCHOVER of session/.test(l)), 20_000, 'linger');
      void ready.then(async () => {
        const session = Buffer.from(/session ([0-9a-f]{32})/.exec(log.find((l) => /after SWITCHOVER of session/.test(l))!)![1], 'hex');
        await hook(address.port, new Uint8Array(session));
        proxy.refuseNew = false;
      });
    }
    const migrated = within(migrate(source, `127.0.0.1:${proxy.port}`, { security: o.source, mode: 'warm', resolveTimeoutMs: 20_000 }), 40_000, 'migrate')
      .then((report) => ({ report, error: null as MemshiftError | null }), (error: MemshiftError) => ({ report: error.details.report!, error }));
    const src = await migrated;
    const end = await within(dest, 40_000, 'receive');
    return { src, end, source, target: target as CuttingTarget | null, log, proxy };
  } finally {
    proxy.cut();
    server.close();
  }
}

const psk = () => creds.pskOf(creds.psk.good);

test('PSK: RESUMED lost with the link; asked over a new TLS connection the destination confirms, and both complete', async () => {
  const { src, end, source, target, log } = await lostSwitchover({ source: psk(), dest: psk(), fails: false });
  assert.is(src.error, null, src.error?.message);
  assert.is(src.report.outcome, 'completed');
  assert.match(src.report.switchoverReason!.reason, /the destination confirmed it resumed over a new connection/);
  assert.is(end.report.outcome, 'completed');
  assert.is(end.report.digest, src.report.digest);
  assert.ok(log.some((l) => /confirmed over a query that it released the guest/.test(l)), log.join('\n'));
  assert.is(source.resumes, 0, 'the source guest never runs again');
  assert.ok(target!.resumed);
  for (let p = 0; p < PAGES; p++) {
    assert.ok(Buffer.compare(Buffer.from(target!.page(p)), Buffer.from(source.ram.subarray(p * PAGE, (p + 1) * PAGE))) === 0, `page ${p}`);
  }
});

test('PSK: the destination could not resume and lost the link: asked, it answers NOT_RESUMED and the source guest runs again', async () => {
  const { src, end, source, target } = await lostSwitchover({ source: psk(), dest: psk(), fails: true });
  assert.is(src.report.outcome, 'failed');
  assert.is(src.error?.code, ErrorCode.NOT_RESUMED);
  assert.is(src.report.error?.code, ErrorCode.NOT_RESUMED);
  assert.is(source.paused, false);
  assert.is(source.resumes, 1);
  assert.is(end.report.outcome, 'failed');
  assert.not.ok(target!.resumed);
});

test('mutual TLS: a query from another certificate of the same CA is turned away; the real source is then answered', async () => {
  const answers: { code: string | null }[] = [];
  const { src, end, log } = await lostSwitchover({
    source: creds.tls(creds.source), dest: creds.tls(creds.dest), fails: false,
    whileLingering: async (port, session) => {
      const ch = await Channel.connect({ host: '127.0.0.1', port }, { maxBody: Limits.MAX_CONTROL_BODY_BYTES, security: resolveSecurity(creds.tls(creds.dest)), timeoutMs: 10_000 });
      const answer = new Promise<Frame | null>((resolve) => ch.setHandlers({ onFrame: (f) => resolve(f), onClosed: () => resolve(null) }));
      await ch.send(encodeHello({ session, role: ChannelRole.QUERY, mode: 'warm', capabilities: 0, regions: ramRegions(PAGES) }));
      const f = await within(answer, 10_000, 'answer to the intruder');
      answers.push({ code: f !== null && f.type === FrameType.ERROR ? decodeError(f.buf, f.bodyOffset, f.bodyLength).code : null });
      ch.destroy();
    },
  });
  assert.equal(answers, [{ code: ErrorCode.HANDSHAKE_REJECTED }], 'the other certificate learns nothing');
  assert.ok(log.some((l) => /rejected connection .*MS_ERR_HANDSHAKE_REJECTED: no session [0-9a-f]{32} answers queries from this peer/.test(l)), log.join('\n'));
  assert.is(src.report.outcome, 'completed', src.error?.message);
  assert.is(end.report.outcome, 'completed');
});

test.run();
