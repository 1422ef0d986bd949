// Validates report files against the published JSON Schema (src/migration/report-schema.ts) with Ajv,
// a full draft 2020-12 validator: every end-to-end migration and every campaign trial checks its
// reports this way, so the schema and the reports cannot drift apart.

import { Ajv2020 } from 'ajv/dist/2020.js';
import { REPORT_JSON_SCHEMA } from '../../src/index.js';

const ajv = new Ajv2020({ allErrors: true, strict: true });
// ISO 8601 UTC as Date.prototype.toISOString writes it (Ajv's formats live in another package).
ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
const validate = ajv.compile(REPORT_JSON_SCHEMA);

/** Null when `report` (parsed JSON) matches the schema, else the first errors, readable. */
export function reportSchemaErrors(report: unknown): string | null {
  if (validate(report)) return null;
  return (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`).join('; ');
}
