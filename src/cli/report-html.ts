// A migration report as one standalone HTML page (`memshift report --format html FILE`): the report's
// JSON embedded, and a small script that draws it in the browser: the summary, a timeline of the
// passes (each pass a bar from its start to its end, as tall as the pages it sent; the switchover and
// its downtime after them), bandwidth against dirty rate per pass, and a table of every pass. No
// network fetch, no library: SVG made by the page itself, so it opens anywhere, offline.

import type { Report } from '../index.js';

/** The page for `report`. The JSON is embedded with `<` escaped, so no report text can end the script. */
export function reportHtml(report: Report): string {
  const json = JSON.stringify(report).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>memshift ${escapeText(report.role)} report: ${escapeText(report.mode)}, ${escapeText(report.outcome)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; }
  h1 { font-size: 20px; margin: 0 0 12px; }
  h2 { font-size: 16px; margin: 24px 0 8px; }
  table { border-collapse: collapse; }
  td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #e3e6ec; }
  td:first-child, th:first-child { text-align: left; }
  .pass { fill: #4f7cc9; }
  .downtime { fill: #d0453d; }
  .bandwidth { stroke: #4f7cc9; fill: none; stroke-width: 2; }
  .dirty { stroke: #d0453d; fill: none; stroke-width: 2; }
  .axis { stroke: #8a93a6; }
  svg text { font-size: 11px; fill: #4a5263; }
</style>
</head>
<body>
<h1 id="title"></h1>
<table id="summary"></table>
<h2>Timeline</h2>
<svg id="timeline" width="900" height="220" role="img" aria-label="passes over time"></svg>
<h2>Bandwidth and dirty rate per pass</h2>
<svg id="rates" width="900" height="200" role="img" aria-label="bandwidth and dirty rate"></svg>
<h2>Passes</h2>
<table id="pass-table"></table>
<script type="application/json" id="report">${json}</script>
<script>
(() => {
  const r = JSON.parse(document.getElementById('report').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const ms = (x) => x === null || x === undefined ? '—' : x.toFixed(1) + ' ms';
  const mb = (x) => (x / 1e6).toFixed(1) + ' MB';
  document.getElementById('title').textContent = r.role + ' of a ' + r.mode + ' migration: ' + r.outcome;
  const rows = [
    ['outcome', r.outcome + (r.error ? ' (' + r.error.code + ': ' + r.error.message + ')' : '')],
    ['total time', ms(r.totalTimeMs)],
    ['downtime', ms(r.downtimeMs)],
    ['predicted downtime', ms(r.predictedDowntimeMs)],
    ['bytes on the wire', mb(r.bytesTransferred)],
    ['guest', mb(r.guestBytes)],
    ['passes', String(r.iterations.length)],
    ['switchover', r.switchoverReason ? r.switchoverReason.reason : '—'],
  ];
  const summary = document.getElementById('summary');
  for (const [k, v] of rows) {
    const tr = summary.insertRow();
    tr.insertCell().textContent = k;
    const td = tr.insertCell();
    td.textContent = v;
    td.id = k.replace(/ /g, '-');
  }
  // Timeline: each pass from (end − duration) to end; height by pages; the downtime after the last.
  const passes = r.iterations;
  const end = Math.max(r.totalTimeMs, ...passes.map((p) => p.endedAtMs));
  const W = 860, H = 180, X0 = 30;
  const x = (t) => X0 + (W * t) / Math.max(1, end);
  const maxPages = Math.max(1, ...passes.map((p) => p.pages));
  const tl = document.getElementById('timeline');
  tl.appendChild(el('line', { class: 'axis', x1: X0, y1: H, x2: X0 + W, y2: H }));
  for (const p of passes) {
    const h = Math.max(2, (H - 20) * p.pages / maxPages);
    const bar = el('rect', { class: 'pass', x: x(p.endedAtMs - p.ms), y: H - h, width: Math.max(1, x(p.endedAtMs) - x(p.endedAtMs - p.ms)), height: h, 'data-iteration': p.iteration, 'data-pages': p.pages });
    bar.appendChild(el('title', {}, 'pass ' + p.iteration + ': ' + p.pages + ' pages in ' + ms(p.ms)));
    tl.appendChild(bar);
  }
  if (r.downtimeMs !== null) {
    const at = end - r.downtimeMs;
    const d = el('rect', { class: 'downtime', x: x(at), y: 10, width: Math.max(2, x(end) - x(at)), height: H - 10, 'data-ms': r.downtimeMs });
    d.appendChild(el('title', {}, 'downtime ' + ms(r.downtimeMs)));
    tl.appendChild(d);
  }
  tl.appendChild(el('text', { x: X0, y: H + 16 }, '0'));
  tl.appendChild(el('text', { x: X0 + W - 60, y: H + 16 }, ms(end)));
  // Rates: bandwidth and dirty rate per pass, one polyline each (the report counts dirty pages; 4 KiB each).
  const pageBytes = 4096;
  const bw = passes.map((p) => p.bandwidthBytesPerSec);
  const dirty = passes.map((p) => p.dirtyPagesPerSec * pageBytes);
  const top = Math.max(1, ...bw, ...dirty);
  const rates = document.getElementById('rates');
  const pts = (vals) => vals.map((v, i) => (X0 + (W * (i + 0.5)) / Math.max(1, vals.length)) + ',' + (170 - 150 * v / top)).join(' ');
  rates.appendChild(el('line', { class: 'axis', x1: X0, y1: 170, x2: X0 + W, y2: 170 }));
  if (passes.length > 0) {
    rates.appendChild(el('polyline', { class: 'bandwidth', points: pts(bw), 'data-points': bw.length }));
    rates.appendChild(el('polyline', { class: 'dirty', points: pts(dirty), 'data-points': dirty.length }));
  }
  rates.appendChild(el('text', { x: X0, y: 190 }, 'blue: bandwidth, red: dirty rate (4 KiB pages); top ' + mb(top) + '/s'));
  const table = document.getElementById('pass-table');
  const head = table.insertRow();
  for (const h of ['pass', 'pages', 'bytes', 'time', 'bandwidth', 'dirtied pages/s', 'expected downtime', 'ETA', 'raw / xbzrle / zero / lz4']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.appendChild(th);
  }
  for (const p of passes) {
    const tr = table.insertRow();
    tr.className = 'pass-row';
    const e = p.pagesByEncoding;
    for (const v of [p.iteration, p.pages, mb(p.bytes), ms(p.ms), mb(p.bandwidthBytesPerSec) + '/s', Math.round(p.dirtyPagesPerSec), ms(p.expectedDowntimeMs), ms(p.etaMs), e.raw + ' / ' + e.xbzrle + ' / ' + e.zero + ' / ' + e.lz4]) {
      tr.insertCell().textContent = String(v);
    }
  }
  document.body.dataset.rendered = 'yes';
})();
</script>
</body>
</html>
`;
}

function escapeText(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
