// The manager's dashboard (`--dashboard HOST:PORT` on `memshift manager --hosts` and `memshift cluster
// run`): a local web page that shows the hosts and their guests, each host's load over time, the
// hotspots, and every migration with its timeline (passes, bandwidth against the guest's dirty rate,
// downtime), with the decision log. One static page with uPlot (the npm package, inlined: the page
// fetches nothing from the network) that polls this server's own /state once a second. Every text of
// the state is set as text, never as markup.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { formatAddress, type Address } from '../index.js';
import { bindHttp, closeHttp } from './http-io.js';
import type { ManagerRunReport } from './live-manager.js';

export interface DashboardState {
  title: string;
  /** What is running: "cluster run cpu-surge, manager on", say. */
  subtitle: string;
  /** The manager's report so far (LiveManager.snapshot()), or null before it starts. */
  manager: ManagerRunReport | null;
}

/** What the page draws of a long run: the newest load points and decisions (the report file keeps them all). */
const SHOWN_LOAD_POINTS = 600;
const SHOWN_DECISIONS = 200;

function shown(state: DashboardState): DashboardState {
  const m = state.manager;
  return m === null ? state : { ...state, manager: { ...m, load: m.load.slice(-SHOWN_LOAD_POINTS), decisions: m.decisions.slice(-SHOWN_DECISIONS) } };
}

const require = createRequire(import.meta.url);

/** The page: uPlot's script and style inlined, then the page's own. */
export function dashboardPage(): string {
  const uplotJs = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>memshift manager</title>
<style>${uplotCss}</style>
<style>
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .hot { color: #b00; } .ok { color: #070; }
table.passes { margin: 2px 0 6px 24px; font-size: 12px; color: #444; }
#decisions { max-height: 240px; overflow: auto; font-size: 12px; }
</style>
<script>${uplotJs.replace(/<\/script/gi, '<\\/script')}</script>
</head><body data-rendered="no">
<h1 id="title">memshift manager</h1><div id="subtitle"></div>
<h2>Hosts</h2><table id="hosts"><thead><tr><th>host</th><th>cpu</th><th>net</th><th>mem</th><th>guests</th></tr></thead><tbody></tbody></table>
<h2>Load over time (utilisation, % of capacity)</h2><div class="charts"><div id="chart-cpu"></div><div id="chart-net"></div><div id="chart-mem"></div></div>
<h2>Hotspots</h2><table id="hotspots"><thead><tr><th>host</th><th>resources</th><th>trigger</th><th>onset s</th><th>detected s</th><th>resolved</th><th>moved</th></tr></thead><tbody></tbody></table>
<h2>Migrations</h2><table id="migrations"><thead><tr><th>guest</th><th>from → to</th><th>why</th><th>mode</th><th>at s</th><th>total ms</th><th>downtime ms</th><th>passes</th><th>MiB</th><th>outcome</th></tr></thead><tbody></tbody></table>
<div class="charts"><div id="chart-migration"></div></div>
<h2>Decisions</h2><ol id="decisions"></ol>
<script>
'use strict';
const RESOURCES = ['cpu', 'net', 'mem'];
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const charts = {};
let updates = 0;
function cell(tr, text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }
function chart(id, title, labels, data, xLabel, yLabel) {
  const key = id + ':' + labels.join(',');
  const el = document.getElementById(id);
  if (charts[id] && charts[id].key === key) { charts[id].plot.setData(data); return; }
  if (charts[id]) charts[id].plot.destroy();
  const series = [{ label: xLabel }].concat(labels.map((l, i) => ({ label: l, stroke: COLOURS[i % COLOURS.length], width: 2 })));
  const plot = new uPlot({ title, width: 380, height: 200, series, scales: { x: { time: false } }, axes: [{ label: xLabel }, { label: yLabel }] }, data, el);
  charts[id] = { key, plot };
}
function render(state) {
  document.getElementById('title').textContent = state.title;
  document.getElementById('subtitle').textContent = state.subtitle;
  const m = state.manager;
  if (!m) return;
  const load = m.load || [];
  const last = load[load.length - 1];
  const hosts = last ? Object.keys(last.hosts).sort() : [];
  const hostBody = document.querySelector('#hosts tbody');
  hostBody.replaceChildren();
  for (const h of hosts) {
    const tr = document.createElement('tr'); tr.className = 'host-row'; tr.dataset.host = h;
    cell(tr, h);
    for (const r of RESOURCES) { const u = last.hosts[h][r]; cell(tr, (u * 100).toFixed(0) + ' %', 'num ' + (u > 0.75 ? 'hot' : 'ok')); }
    cell(tr, Object.keys(last.placement).filter((g) => last.placement[g] === h).sort().join(', '));
    hostBody.appendChild(tr);
  }
  const xs = load.map((p) => p.atMs / 1000);
  for (const r of RESOURCES) chart('chart-' + r, r, hosts, [xs].concat(hosts.map((h) => load.map((p) => (p.hosts[h] ? p.hosts[h][r] * 100 : null)))), 's on the scenario clock', '%');
  const hotBody = document.querySelector('#hotspots tbody');
  hotBody.replaceChildren();
  for (const h of m.hotspots) {
    const tr = document.createElement('tr'); tr.className = 'hotspot-row'; tr.dataset.host = h.host;
    cell(tr, h.host); cell(tr, h.resources.join(', ')); cell(tr, h.trigger);
    cell(tr, (h.onsetAtMs / 1000).toFixed(1), 'num'); cell(tr, (h.detectedAtMs / 1000).toFixed(1), 'num');
    cell(tr, h.resolvedAtMs === null ? 'not yet' : ((h.resolvedAtMs - h.onsetAtMs) / 1000).toFixed(1) + ' s after onset', h.resolvedAtMs === null ? 'hot' : 'ok');
    cell(tr, h.migrations.join(', '));
    hotBody.appendChild(tr);
  }
  const migBody = document.querySelector('#migrations tbody');
  migBody.replaceChildren();
  let latest = null;
  for (const x of m.migrations) {
    const s = x.summary;
    const tr = document.createElement('tr'); tr.className = 'migration-row'; tr.dataset.guest = x.guest;
    cell(tr, x.guest); cell(tr, x.from + ' → ' + x.to); cell(tr, x.kind); cell(tr, x.mode); cell(tr, (x.plannedAtMs / 1000).toFixed(1), 'num');
    cell(tr, s ? s.totalMs.toFixed(0) : '', 'num'); cell(tr, s && s.downtimeMs !== null ? s.downtimeMs.toFixed(1) : '', 'num downtime');
    cell(tr, s ? String(s.passes) : '', 'num'); cell(tr, s ? (s.bytes / 1048576).toFixed(1) : '', 'num');
    cell(tr, x.error !== null ? 'failed: ' + x.error : s ? s.outcome : 'running', x.error !== null ? 'hot' : '');
    tr.title = x.reason;
    migBody.appendChild(tr);
    if (s && s.iterations) {
      latest = x;
      const row = document.createElement('tr'); const td = document.createElement('td'); td.colSpan = 10; row.appendChild(td);
      const t = document.createElement('table'); t.className = 'passes';
      for (const it of s.iterations) {
        const p = document.createElement('tr'); p.className = 'pass-row'; p.dataset.guest = x.guest; p.dataset.iteration = String(it.iteration);
        cell(p, 'pass ' + it.iteration); cell(p, it.pages + ' pages', 'num'); cell(p, it.ms.toFixed(1) + ' ms', 'num');
        cell(p, (it.bandwidthBytesPerSec / 1e6).toFixed(0) + ' MB/s', 'num'); cell(p, Math.round(it.dirtyPagesPerSec) + ' dirty pages/s', 'num');
        t.appendChild(p);
      }
      const d = document.createElement('tr'); d.className = 'pass-row downtime-row'; cell(d, 'downtime'); cell(d, s.downtimeMs === null ? '' : s.downtimeMs.toFixed(1) + ' ms', 'num');
      t.appendChild(d);
      td.appendChild(t); migBody.appendChild(row);
    }
  }
  if (latest) {
    const its = latest.summary.iterations;
    chart('chart-migration', latest.guest + ' ' + latest.from + ' → ' + latest.to + ': per pass', ['bandwidth MB/s', 'dirty MB/s'],
      [its.map((it) => it.endedAtMs), its.map((it) => it.bandwidthBytesPerSec / 1e6), its.map((it) => it.dirtyPagesPerSec * 4096 / 1e6)], 'ms into the migration (end of each pass)', 'MB/s');
  }
  const list = document.getElementById('decisions');
  list.replaceChildren();
  for (const d of m.decisions.slice(-100)) { const li = document.createElement('li'); li.textContent = '[' + (d.atMs / 1000).toFixed(1) + ' s] ' + d.text; list.appendChild(li); }
  updates++;
  document.body.dataset.updates = String(updates);
  document.body.dataset.rendered = 'yes';
}
async function poll() {
  try { render(await (await fetch('/state', { cache: 'no-store' })).json()); } catch (e) { document.getElementById('subtitle').textContent = 'no answer from the manager: ' + e; }
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
`;
}

/** Serves the page on GET / and `state()` on GET /state. */
export class DashboardServer {
  private constructor(private readonly server: http.Server, readonly address: Address) {}

  static async start(listen: Address, state: () => DashboardState): Promise<DashboardServer> {
    const page = dashboardPage();
    let hosts: string[] = [];
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      // Only requests addressed to this server by its own address: a page elsewhere that rebinds a
      // name of its own to this address cannot read the state.
      if (!hosts.includes(req.headers.host ?? '')) {
        res.writeHead(421, { 'content-type': 'text/plain' });
        res.end('the dashboard answers only requests for its own address\n');
      } else if (req.method === 'GET' && path === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:" });
        res.end(page);
      } else if (req.method === 'GET' && path === '/state') {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(shown(state())));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('GET / or GET /state\n');
      }
    });
    const address = await bindHttp(server, listen);
    hosts = [formatAddress(address), `localhost:${address.port}`];
    return new DashboardServer(server, address);
  }

  get url(): string {
    return `http://${formatAddress(this.address)}/`;
  }

  close(): Promise<void> {
    return closeHttp(this.server);
  }
}
