// The JSON Schema (draft 2020-12) of a report file (report.ts Report, as JSON.stringify writes it: a
// non-finite number becomes null). Every object is closed (additionalProperties: false), so a field
// added to the Report without its schema fails the tests that validate real reports against this.
// `memshift report --schema` prints it.

import { REPORT_SCHEMA_VERSION } from './report.js';

const num = { type: 'number' } as const;
const count = { type: 'integer', minimum: 0 } as const;
const numOrNull = { type: ['number', 'null'] } as const;
const closed = (properties: Record<string, unknown>, optional: readonly string[] = []): Record<string, unknown> => ({
  type: 'object',
  additionalProperties: false,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
});

const encodingCounts = closed({ zero: count, raw: count, xbzrle: count, lz4: count });

const iteration = closed({
  iteration: count, pages: count, bytes: count, ms: num, bandwidthBytesPerSec: num, dirtyPages: count, dirtyPagesPerSec: num,
  // Infinity when nothing was measured yet: null in JSON.
  expectedDowntimeMs: numOrNull,
  throttlePercent: num, pagesByEncoding: encodingCounts, endedAtMs: num, etaMs: numOrNull, guestStepsPerSec: numOrNull,
  compression: closed({ lz4: { type: 'boolean' }, reason: { type: 'string' }, xbzrle: { type: 'boolean' }, xbzrleReason: { type: 'string' } }, ['xbzrle', 'xbzrleReason']),
  blocks: closed({ sent: count, bytes: count, ms: num, dirty: count }),
}, ['blocks']);

const downtimeBreakdown = closed({
  pauseMs: num, finalPagesMs: num, finalPages: count, deviceStateMs: num, destinationApplyMs: num, digestCheckMs: num, resumeMs: num, otherMs: num,
});

const postcopy = closed({
  faults: count, faultLatencyUs: closed({ p50: num, p99: num, max: num }), pagesRequested: count, pagesPushed: count, postcopyTimeMs: num,
  pagesAnswered: count, duplicates: count, pushedBeforeFirstAnswer: count, blocksMissing: count, blockFaults: count,
}, ['pagesAnswered', 'duplicates', 'pushedBeforeFirstAnswer', 'blocksMissing', 'blockFaults']);

const recovery = closed({ phase: { enum: ['precopy', 'stop-and-copy', 'receiving', 'postcopy-running'] }, lostAtMs: num, pausedMs: num, missingPages: count, blocksAgain: count, attempts: count, cause: { type: 'string' } }, ['blocksAgain']);

const nullable = (schema: Record<string, unknown>): Record<string, unknown> => ({ anyOf: [schema, { type: 'null' }] });

export const REPORT_JSON_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: `https://memshift.dev/schema/report-v${REPORT_SCHEMA_VERSION}.json`,
  title: 'memshift migration report',
  ...closed({
    schemaVersion: { const: REPORT_SCHEMA_VERSION },
    sessionId: { type: ['string', 'null'], pattern: '^[0-9a-f]+$' },
    startedAt: { type: 'string', format: 'date-time' },
    endedAt: { type: 'string', format: 'date-time' },
    role: { enum: ['source', 'destination'] },
    mode: { enum: ['live', 'cold', 'warm', 'postcopy', 'hybrid'] },
    outcome: { enum: ['completed', 'failed', 'aborted', 'cancelled', 'in-doubt', 'paused'] },
    error: nullable(closed({ code: { type: 'string', pattern: '^MS_ERR_' }, message: { type: 'string' } })),
    totalTimeMs: num,
    downtimeMs: numOrNull,
    downtimeBreakdown: nullable(downtimeBreakdown),
    pausedAtEpochMs: numOrNull,
    resumedAtEpochMs: numOrNull,
    setupTimeMs: num,
    guestBytes: count,
    bytesTransferred: count,
    pagesTransferred: count,
    pagesByEncoding: encodingCounts,
    iterations: { type: 'array', items: iteration },
    receivedPasses: { type: 'array', items: closed({ iteration: count, pages: count, bytes: count, ms: num, applyMs: num, endedAtMs: num }) },
    converged: { type: 'boolean' },
    switchoverReason: nullable(closed({
      rule: { enum: ['downtime-limit', 'postcopy-after', 'max-iterations', 'max-time', 'dirty-rate', 'no-progress', 'converging', 'mode'] },
      action: { enum: ['continue', 'switchover', 'throttle', 'abort', 'postcopy'] },
      forced: { type: 'boolean' },
      reason: { type: 'string' },
    })),
    predictedDowntimeMs: numOrNull,
    throttlePercent: num,
    guestSteps: count,
    digest: { type: 'string', pattern: '^[0-9a-f]{16}$' },
    throughputBytesPerSec: num,
    postcopy: nullable(postcopy),
    recoveries: { type: 'array', items: recovery },
    prealloc: nullable(closed({ enabled: { type: 'boolean' }, ms: num, beforeMigration: { type: 'boolean' } })),
    contentDigest: { type: ['string', 'null'] },
    cpuMs: nullable(closed({ user: num, system: num })),
    peakRssBytes: { type: ['integer', 'null'], minimum: 0 },
    completedAtMs: numOrNull,
    guestStepsPerSec: closed({ beforeMigration: numOrNull, perPass: { type: 'array', items: num }, afterResume: numOrNull }),
    hypervisor: closed({ kind: { const: 'qemu' }, stopToResumeMs: num, deviceLoadMs: num, deviceStateBytes: count }),
  }, ['hypervisor']),
} as const;
