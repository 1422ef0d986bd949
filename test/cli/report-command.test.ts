// `memshift report`: a report file from a real migration shown as text, as JSON, and as QEMU's
// query-migrate; the schema it prints is the one the file matches; a file that is not a report, or a
// format it does not know, is a usage error naming what is wrong.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { queryMigrate, REPORT_JSON_SCHEMA, type Report } from '../../src/index.js';
import { deadline } from '../_support/deadline.js';
import { killAll, memshift, startDestination } from '../_support/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'memshift-report-cmd-'));
const file = join(dir, 'source.json');
test.after.each(killAll);
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('a real source report: qmp view equals queryMigrate of the file, text names the session, json is the file', deadline(60_000, async () => {
  const dest = await startDestination([]);
  const s = await memshift(['source', '--connect', `127.0.0.1:${dest.port}`, '--memory', '16MiB', '--seed', '5', '--workload', 'hotset', '--dirty-rate', '20000', '--quiet', '--report', file]).done;
  assert.is(s.code, 0, s.stderr);
  const report = JSON.parse(readFileSync(file, 'utf8')) as Report;
  const qmp = await memshift(['report', '--format', 'qmp', file]).done;
  assert.is(qmp.code, 0, qmp.stderr);
  const q = JSON.parse(qmp.stdout) as ReturnType<typeof queryMigrate>;
  assert.equal(q, queryMigrate(report));
  assert.equal([q.status, q.ram.total, q.ram.remaining], ['completed', 16 * 2 ** 20, 0]);
  const text = await memshift(['report', file]).done;
  assert.ok(text.stdout.startsWith('source live migration: completed'), text.stdout);
  assert.ok(text.stdout.includes(`session ${report.sessionId}`), 'the session id is shown');
  const json = await memshift(['report', file, '--format', 'json']).done;
  assert.equal(JSON.parse(json.stdout), report);
  const schema = await memshift(['report', '--schema']).done;
  assert.equal(JSON.parse(schema.stdout), JSON.parse(JSON.stringify(REPORT_JSON_SCHEMA)));
}));

test('not a report, or an unknown format, exits 2 naming the problem', async () => {
  const bogus = join(dir, 'bogus.json');
  writeFileSync(bogus, '{"hello": 1}');
  const notReport = await memshift(['report', bogus]).done;
  assert.is(notReport.code, 2);
  assert.match(notReport.stderr, /MS_ERR_INVALID_ARGUMENT: .*not a memshift report/);
  const format = await memshift(['report', '--format', 'yaml', bogus]).done;
  assert.is(format.code, 2);
  assert.match(format.stderr, /--format/);
  const none = await memshift(['report']).done;
  assert.is(none.code, 2);
  assert.match(none.stderr, /one report file is needed/);
});

test.run();
