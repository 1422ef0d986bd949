// The Prometheus text exposition (cluster/metrics-text.ts): renderMetrics writes HELP and TYPE lines and
// samples with escaped label values (backslash, double quote, newline) and +Inf/-Inf/NaN; parseMetrics
// reads the samples back exactly, and refuses malformed lines naming the line number.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseMetrics, renderMetrics, type MetricFamily } from '../../src/cluster/metrics-text.js';

const FAMILIES: MetricFamily[] = [
  {
    name: 'memshift_host_capacity', help: 'What this host has.', type: 'gauge',
    samples: [
      { labels: { host: 'h1', resource: 'cpu' }, value: 12 },
      { labels: { host: 'h1', resource: 'mem' }, value: 16 * 2 ** 30 },
    ],
  },
  {
    name: 'memshift_guest_cpu_seconds_total', help: 'CPU time used.', type: 'counter',
    samples: [
      { labels: { host: 'h1', guest: 'web' }, value: 0.1 + 0.2 },
      { labels: { host: 'h1', guest: 'db' }, value: -1.5e-7 },
    ],
  },
  { name: 'up', help: 'No labels at all.', type: 'gauge', samples: [{ labels: {}, value: 1 }] },
];

test('renderMetrics: a HELP and a TYPE line before each family’s samples', () => {
  const lines = renderMetrics(FAMILIES).split('\n');
  for (const f of FAMILIES) {
    const help = lines.indexOf(`# HELP ${f.name} ${f.help}`);
    assert.ok(help >= 0, `no HELP line for ${f.name}`);
    assert.is(lines[help + 1], `# TYPE ${f.name} ${f.type}`);
    for (let i = 0; i < f.samples.length; i++) assert.ok(lines[help + 2 + i].startsWith(f.name), `sample ${i} of ${f.name} follows its TYPE line`);
  }
  assert.ok(lines.includes('up 1'), 'a sample without labels has no braces');
  assert.ok(renderMetrics(FAMILIES).endsWith('\n'), 'the exposition ends with a newline');
});

test('round trip: every sample comes back with its name, labels and exact value', () => {
  const parsed = parseMetrics(renderMetrics(FAMILIES));
  const expected = FAMILIES.flatMap((f) => f.samples.map((s) => ({ name: f.name, labels: s.labels, value: s.value })));
  assert.equal(parsed, expected);
});

test('round trip: label values with backslashes, double quotes, newlines, braces, commas and spaces', () => {
  const awkward = ['C:\\path\\to', 'say "hi"', 'two\nlines', 'ends with \\', '\\n is not a newline', 'a}, b="c"} 5', '', 'é ü 漢字'];
  const families: MetricFamily[] = [{
    name: 'odd', help: 'help with a \\ and a\nnewline', type: 'gauge',
    samples: awkward.map((text, i) => ({ labels: { text, i: String(i) }, value: i })),
  }];
  const text = renderMetrics(families);
  const sampleLines = text.split('\n').filter((l) => l.startsWith('odd'));
  assert.is(sampleLines.length, awkward.length, 'one line per sample: newlines are escaped');
  assert.ok(text.includes('# HELP odd help with a \\\\ and a\\nnewline\n'), 'HELP text escapes backslash and newline');
  const parsed = parseMetrics(text);
  assert.equal(parsed.map((s) => s.labels.text), awkward);
  assert.equal(parsed.map((s) => s.labels.i), awkward.map((_, i) => String(i)));
  assert.equal(parsed.map((s) => s.value), awkward.map((_, i) => i));
});

test('+Inf, -Inf and NaN are written as the format spells them and read back', () => {
  const text = renderMetrics([{ name: 'x', help: 'h', type: 'gauge', samples: [
    { labels: { k: 'a' }, value: Infinity }, { labels: { k: 'b' }, value: -Infinity }, { labels: { k: 'c' }, value: NaN },
  ] }]);
  assert.ok(text.includes('x{k="a"} +Inf\n'));
  assert.ok(text.includes('x{k="b"} -Inf\n'));
  assert.ok(text.includes('x{k="c"} NaN\n'));
  const [a, b, c] = parseMetrics(text);
  assert.is(a.value, Infinity);
  assert.is(b.value, -Infinity);
  assert.ok(Number.isNaN(c.value));
});

test('renderMetrics: refuses invalid metric names and label names (reserved __ included)', () => {
  const family = (name: string, label: string): MetricFamily[] => [{ name, help: 'h', type: 'gauge', samples: [{ labels: { [label]: 'v' }, value: 1 }] }];
  assert.not.throws(() => renderMetrics(family('ok_name:sub', 'ok_label')));
  for (const bad of ['1starts_with_digit', 'has-dash', 'has space', '']) {
    assert.throws(() => renderMetrics(family(bad, 'ok')), /metric name .* is not valid/, `metric name ${JSON.stringify(bad)}`);
  }
  for (const bad of ['1x', 'has-dash', 'a:b', '__reserved', '']) {
    assert.throws(() => renderMetrics(family('ok', bad)), /label name .* is not valid/, `label name ${JSON.stringify(bad)}`);
  }
});

test('parseMetrics: skips comments and blank lines, takes a trailing timestamp, reads exponents', () => {
  const parsed = parseMetrics('# HELP a x\n\n# TYPE a gauge\n  a{b="c"} 1.5e3 1700000000000  \na 2 -5\n');
  assert.equal(parsed, [{ name: 'a', labels: { b: 'c' }, value: 1500 }, { name: 'a', labels: {}, value: 2 }]);
  assert.equal(parseMetrics('a{} 3\n'), [{ name: 'a', labels: {}, value: 3 }]);
});

test('parseMetrics: a malformed line is refused naming its line number', () => {
  const good = '# HELP a x\n# TYPE a gauge\na 1\n';
  for (const [bad, pattern] of [
    ['a', /metrics line 4 is malformed/],
    ['a 1 2 3', /metrics line 4 is malformed/],
    ['9a 1', /metrics line 4 is malformed/],
    ['a{b="c" 1', /metrics line 4 is malformed/],
    ['a one', /metrics line 4: value one is not a number/],
    ['a{b=c} 1', /metrics line 4: labels are malformed/],
    ['a{"c"} 1', /metrics line 4: labels are malformed/],
  ] as const) {
    assert.throws(() => parseMetrics(`${good}${bad}\na 2\n`), pattern, JSON.stringify(bad));
  }
  assert.throws(() => parseMetrics(`a 1\n\n\nb\n`), /metrics line 4 /, 'blank lines count');
});

test('round trip: label values with \\r, U+2028 and U+2029, which the writer leaves as they are', () => {
  const labels = { k: 'a\rb\u2028c\u2029d' };
  assert.equal(parseMetrics(renderMetrics([{ name: 'x', help: 'h', type: 'gauge', samples: [{ labels, value: 1 }] }])), [{ name: 'x', labels, value: 1 }]);
});

test('parseMetrics: refuses a label named twice, an escape the format does not have, and values it does not write', () => {
  assert.throws(() => parseMetrics('a{b="1",b="2"} 1\n'), /metrics line 1: label b twice/);
  assert.throws(() => parseMetrics('a{b="\\x"} 1\n'), /metrics line 1: escape \\x in a label value/);
  for (const v of ['0x1F', 'Infinity', '1e', '--1', '']) assert.throws(() => parseMetrics(`a ${v} \n`.replace('  ', ' ')), /metrics line 1/, v);
  assert.equal(parseMetrics('a -1.5E-3\nb .5\nc +2\n').map((x) => x.value), [-0.0015, 0.5, 2]);
});

test('parseMetrics: an unclosed label value is refused', () => {
  assert.throws(() => parseMetrics('a 1\na{b="c} 1\n'), /metrics line 2: a label value is not closed/);
  assert.throws(() => parseMetrics('a{b="c\\"} 1\n'), /metrics line 1: a label value is not closed/, 'the quote is escaped');
});

test.run();
