// `memshift report [--format text|json|qmp|html] FILE`: a report written by `source` or `dest --report`,
// shown for a person (text), as it is (json, checked against this build's schema version), as QEMU's
// query-migrate would show the same migration (qmp, src/migration/qmp-view.ts), for tools that already
// read that, or as a standalone page with its timeline (html, report-html.ts; `--html` for short).

import { readFileSync } from 'node:fs';
import { formatReport, queryMigrate, REPORT_JSON_SCHEMA, REPORT_SCHEMA_VERSION, type Report } from '../index.js';
import { invalidArgument } from '../errors.js';
import { parseCommand, requireString, type Flags } from './args.js';
import { reportHtml } from './report-html.js';

export const reportFlags: Flags = {
  format: { type: 'string', value: 'text|json|qmp|html', help: 'how to show the report (html: a standalone page with its timeline, drawn in the browser)', default: 'text' },
  html: { type: 'boolean', help: 'the same as --format html' },
  schema: { type: 'boolean', help: 'print the JSON Schema of report files (no FILE)' },
  help: { type: 'boolean', help: 'show this help' },
};

const FORMATS = ['text', 'json', 'qmp', 'html'] as const;

export async function runReport(argv: readonly string[]): Promise<number> {
  // The report file is the one positional argument (last, or first).
  const positional = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1] === '--format'));
  const a = parseCommand(argv.filter((a) => !positional.includes(a)), 'report', 'Show a migration report: for a person, as JSON, or in QEMU query-migrate terms. Usage: memshift report [--format F] FILE', reportFlags);
  if (a === null) return 0;
  if (a.schema === true) {
    console.log(JSON.stringify(REPORT_JSON_SCHEMA, null, 2));
    return 0;
  }
  const format = a.html === true ? 'html' : requireString(a, 'format');
  if (!(FORMATS as readonly string[]).includes(format)) throw invalidArgument('--format', `must be one of ${FORMATS.join(', ')}`, format);
  if (positional.length !== 1) throw invalidArgument('FILE', `one report file is needed (got ${positional.length})`);
  const file = positional[0];
  let report: Report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8')) as Report;
  } catch (err) {
    throw invalidArgument('FILE', `cannot read a report from ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (report === null || typeof report !== 'object' || typeof report.schemaVersion !== 'number') {
    throw invalidArgument('FILE', `${file} is not a memshift report (no schemaVersion)`);
  }
  if (report.schemaVersion > REPORT_SCHEMA_VERSION) {
    throw invalidArgument('FILE', `${file} has report schema version ${report.schemaVersion}; this build reads up to ${REPORT_SCHEMA_VERSION}`);
  }
  if (format === 'html') process.stdout.write(reportHtml(report));
  else if (format === 'text') console.log(formatReport(report));
  else console.log(JSON.stringify(format === 'qmp' ? queryMigrate(report) : report, null, 2));
  return 0;
}
