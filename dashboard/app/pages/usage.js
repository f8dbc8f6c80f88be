// Usage and cost: GET /api/usage per hour or day, grouped by model, key or
// provider; a chart of the biggest groups over time and a table of every
// group's totals.

import { api, query } from '../api.js';
import { Chart } from '../chart.js';
import { banner, empty, Errors, h, pageHead, replace, table } from '../dom.js';
import * as fmt from '../format.js';
import { tryRequest } from '../hints.js';
import { keyLabel, keyNames } from '../lookups.js';

export const title = 'Usage and cost';

const ranges = {
  '24h': { label: 'Last 24 hours', bucket: 'hour', step: 3600, span: 86400 },
  '7d': { label: 'Last 7 days', bucket: 'day', step: 86400, span: 7 * 86400 },
  '30d': { label: 'Last 30 days', bucket: 'day', step: 86400, span: 30 * 86400 },
};
const groups = { model: 'Model', key: 'Key', provider: 'Provider' };
const metrics = {
  requests: { label: 'Requests', of: (r) => r.requests, fmt: fmt.int, integer: true },
  tokens: { label: 'Tokens', of: (r) => r.prompt_tokens + r.completion_tokens, fmt: fmt.tokens, integer: true },
  cost: { label: 'Cost', of: (r) => r.cost_usd, fmt: fmt.money },
};
const topGroups = 6;

function segmented(label, options, current, onPick) {
  return h('div', { class: 'segmented', role: 'group', 'aria-label': label },
    Object.entries(options).map(([k, v]) => h('button', {
      type: 'button', 'aria-pressed': String(k === current), onclick: () => onPick(k),
    }, typeof v === 'string' ? v : v.label)));
}

export async function render(view) {
  const q = view.query;
  const range = ranges[q.get('range')] ? q.get('range') : '24h';
  const group = groups[q.get('group')] ? q.get('group') : 'model';
  const metric = metrics[q.get('metric')] ? q.get('metric') : 'requests';
  const r = ranges[range];
  const m = metrics[metric];
  const go = (patch) => view.navigate(`/usage${query({ range, group, metric, ...patch })}`, { replace: true });
  const errors = new Errors();
  const body = h('div', {});
  replace(view.main,
    pageHead('Usage and cost', 'Requests, tokens and cost over time, by model, key or provider.'),
    h('div', { class: 'toolbar' },
      segmented('Time range', ranges, range, (k) => go({ range: k })),
      segmented('Group by', groups, group, (k) => go({ group: k })),
      segmented('Chart', metrics, metric, (k) => go({ metric: k }))),
    errors.el, body);

  const now = Math.floor(Date.now() / 1000);
  const start = Math.floor((now - r.span) / r.step) * r.step + r.step;
  let rows;
  let names;
  try {
    [rows, names] = await Promise.all([
      api(`/api/usage${query({ bucket: r.bucket, group_by: group, from: new Date(start * 1000).toISOString() })}`, { signal: view.signal }).then((x) => x.data || []),
      keyNames(),
    ]);
  } catch (e) {
    if (e.name !== 'AbortError') errors.show(e);
    return;
  }
  if (!rows.length) {
    replace(body, empty(`No requests in the ${r.label.toLowerCase()}`, tryRequest()));
    return;
  }
  const label = (g) => (group === 'key' ? keyLabel(names, g) : g || '(not routed)');

  // Totals per group, biggest first by the chosen metric.
  const totals = new Map();
  for (const row of rows) {
    const t = totals.get(row.group || '') || { group: row.group || '', requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, cost_usd: 0 };
    for (const k of ['requests', 'errors', 'prompt_tokens', 'completion_tokens', 'cached_tokens', 'cost_usd']) t[k] += row[k] || 0;
    totals.set(t.group, t);
  }
  const ordered = [...totals.values()].sort((a, b) => m.of(b) - m.of(a) || b.requests - a.requests);
  const allCost = ordered.reduce((s, t) => s + t.cost_usd, 0);

  // The chart: the biggest groups, the rest added up as "others".
  const shown = ordered.slice(0, topGroups).map((t) => t.group);
  const xs = [];
  for (let t = start; t <= now; t += r.step) xs.push(t);
  const index = new Map(xs.map((x, i) => [x, i]));
  const lines = shown.map(() => xs.map(() => 0));
  const others = xs.map(() => 0);
  for (const row of rows) {
    const i = index.get(Date.parse(row.bucket) / 1000);
    if (i === undefined) continue;
    const s = shown.indexOf(row.group || '');
    (s >= 0 ? lines[s] : others)[i] += m.of(row) || 0;
  }
  const series = shown.map((g) => ({ label: label(g) }));
  const data = [xs, ...lines];
  if (ordered.length > topGroups) {
    series.push({ label: `${ordered.length - topGroups} others` });
    data.push(others);
  }
  const chart = new Chart({ title: `${m.label} per ${r.bucket} by ${groups[group].toLowerCase()}`, series, yFmt: m.fmt, integer: !!m.integer });
  view.onLeave(() => chart.destroy());

  const cols = [
    { label: groups[group], value: (t) => label(t.group) },
    { label: 'Requests', num: true, value: (t) => fmt.int(t.requests) },
    { label: 'Errors', num: true, value: (t) => `${fmt.int(t.errors)} (${fmt.percent(t.requests ? t.errors / t.requests : 0)})` },
    { label: 'Prompt tokens', num: true, value: (t) => fmt.tokens(t.prompt_tokens) },
    { label: 'Cached', num: true, value: (t) => fmt.tokens(t.cached_tokens) },
    { label: 'Completion tokens', num: true, value: (t) => fmt.tokens(t.completion_tokens) },
    { label: 'Cost', num: true, value: (t) => fmt.money(t.cost_usd) },
    { label: 'Share of cost', num: true, value: (t) => (allCost ? fmt.percent(t.cost_usd / allCost) : '—') },
  ];
  const noPrices = allCost === 0 && ordered.some((t) => t.prompt_tokens + t.completion_tokens > 0)
    ? banner('info', h('span', {}, 'Cost is zero because no prices are configured for these models. Add them to config.toml as ',
      h('code', {}, '[prices."MODEL"] input = …, output = …'), ' (US dollars per million tokens).'))
    : null;
  replace(body, noPrices, chart.el, h('h2', {}, `By ${groups[group].toLowerCase()}, ${r.label.toLowerCase()}`),
    table(cols, ordered, { caption: `Totals by ${groups[group].toLowerCase()}` }));
  chart.set(data, `${ordered.length} ${ordered.length === 1 ? 'group' : 'groups'}; the largest is ${label(ordered[0].group)} with ${m.fmt(m.of(ordered[0]))}`);
}
