// Prometheus text exposition format (version 0.0.4), both ways: a host writes its metrics with
// `renderMetrics` for any Prometheus to scrape, and the manager reads them back with `parseMetrics`,
// so the manager sees exactly what a scraper sees. Pure.

export type MetricType = 'gauge' | 'counter';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** A sample value as the format writes it: a decimal float, NaN, +Inf or -Inf (not 0x1F, not Infinity). */
const VALUE = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$/;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function renderMetrics(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (!NAME.test(f.name)) throw new Error(`metric name ${JSON.stringify(f.name)} is not valid in the exposition format`);
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => {
        if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`label name ${JSON.stringify(k)} of ${f.name} is not valid`);
        return `${k}="${escapeLabel(v)}"`;
      });
      out.push(`${f.name}${labels.length > 0 ? `{${labels.join(',')}}` : ''} ${formatValue(s.value)}`);
    }
  }
  return `${out.join('\n')}\n`;
}

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of an exposition (comments skipped); throws naming the line on anything malformed. */
export function parseMetrics(text: string): ParsedSample[] {
  const samples: ParsedSample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    // [^] so that a label value may hold any character the writer leaves unescaped (\r, U+2028, …).
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^]*\})?\s+(\S+)(\s+-?\d+)?$/.exec(line);
    if (m === null) throw new Error(`metrics line ${i + 1} is malformed: ${line.slice(0, 80)}`);
    if (!VALUE.test(m[3])) throw new Error(`metrics line ${i + 1}: value ${m[3]} is not a number`);
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels: m[2] === undefined ? {} : parseLabels(m[2], i + 1), value });
  }
  return samples;
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 1;
  const end = text.length - 1;
  while (i < end) {
    const m = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(text.slice(i));
    if (m === null) throw new Error(`metrics line ${line}: labels are malformed`);
    i += m[0].length;
    let value = '';
    for (;;) {
      if (i >= end) throw new Error(`metrics line ${line}: a label value is not closed`);
      const c = text[i++];
      if (c === '"') break;
      if (c === '\\') {
        const e = text[i++];
        if (e !== 'n' && e !== '\\' && e !== '"') throw new Error(`metrics line ${line}: escape \\${e ?? ''} in a label value (only \\\\, \\" and \\n exist)`);
        value += e === 'n' ? '\n' : e;
      } else value += c;
    }
    if (Object.hasOwn(labels, m[1])) throw new Error(`metrics line ${line}: label ${m[1]} twice`);
    labels[m[1]] = value;
    const rest = /^\s*,?\s*/.exec(text.slice(i))!;
    i += rest[0].length;
  }
  return labels;
}
