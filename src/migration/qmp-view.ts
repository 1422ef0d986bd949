// A report in the words management stacks already speak: QEMU's `query-migrate` (MigrationInfo in
// qapi/migration.json), field names and units as QEMU gives them, for every field that has a
// counterpart here. A pure function of the report; `memshift report --format qmp FILE` prints it.
//
//   Report.outcome  → status        completed, failed (also aborted), cancelled, postcopy-paused, and
//                                   "in-doubt", which QEMU has no word for: the guest may run on the
//                                   destination and the source copy must stay paused; mapping it to
//                                   "failed" would tell a manager to resume the source, so it is kept.
//   totalTimeMs     → total-time    ms, as integers (QEMU's unit)
//   ram.*           → bytes, pages, pages per second; mbps is megabits per second over the whole
//                     migration (QEMU gives the latest iteration's)
//
// Fields QEMU has and memshift does not measure (xbzrle-cache, skipped, multifd-bytes, the per-phase
// byte split) are left out rather than filled with zeros.

import type { Report } from './report.js';

export interface QueryMigrateRam {
  transferred: number;
  remaining?: number;
  total: number;
  /** Zero pages (sent as a flag, no payload). */
  duplicate: number;
  /** Pages sent whole (raw or LZ4). */
  normal: number;
  'dirty-pages-rate': number;
  mbps: number;
  'dirty-sync-count': number;
  'postcopy-requests': number;
  'pages-per-second': number;
}

export interface QueryMigrate {
  status: 'completed' | 'failed' | 'cancelled' | 'postcopy-paused' | 'in-doubt';
  'total-time': number;
  downtime?: number;
  'expected-downtime'?: number;
  'setup-time': number;
  ram: QueryMigrateRam;
  'cpu-throttle-percentage'?: number;
  'error-desc'?: string;
}

const STATUS: Record<Report['outcome'], QueryMigrate['status']> = {
  completed: 'completed',
  failed: 'failed',
  aborted: 'failed',
  cancelled: 'cancelled',
  paused: 'postcopy-paused',
  'in-doubt': 'in-doubt',
};

/** The source's report as QEMU's query-migrate would show the same migration once it ended. */
export function queryMigrate(r: Report): QueryMigrate {
  const ms = Math.round;
  const seconds = r.totalTimeMs / 1000;
  const last = r.iterations.at(-1);
  const q: QueryMigrate = {
    status: STATUS[r.outcome],
    'total-time': ms(r.totalTimeMs),
    'setup-time': ms(r.setupTimeMs),
    ram: {
      transferred: r.bytesTransferred,
      total: r.guestBytes,
      duplicate: r.pagesByEncoding.zero,
      normal: r.pagesByEncoding.raw + r.pagesByEncoding.lz4,
      'dirty-pages-rate': Math.round(last?.dirtyPagesPerSec ?? 0),
      mbps: seconds > 0 ? (r.bytesTransferred * 8) / 1e6 / seconds : 0,
      'dirty-sync-count': r.iterations.length,
      'postcopy-requests': r.postcopy?.pagesRequested ?? 0,
      'pages-per-second': seconds > 0 ? Math.round(r.pagesTransferred / seconds) : 0,
    },
  };
  // Every page is on the destination once it completed; otherwise how much is left is not known exactly.
  if (r.outcome === 'completed') q.ram.remaining = 0;
  if (r.downtimeMs !== null) q.downtime = ms(r.downtimeMs);
  if (r.predictedDowntimeMs !== null) q['expected-downtime'] = ms(r.predictedDowntimeMs);
  if (r.throttlePercent > 0) q['cpu-throttle-percentage'] = r.throttlePercent;
  if (r.error !== null) q['error-desc'] = `${r.error.code}: ${r.error.message}`;
  return q;
}
