// Logs: GET /api/logs with filters, a page at a time (newest first), and
// export of everything that matches as CSV or JSON
// (GET /api/logs/export). The filters live in the address, so a filtered
// view can be bookmarked or shared and the back button undoes a change.

import { api, query } from '../api.js';
import { empty, Errors, field, h, pageHead, replace, statusBadge, table } from '../dom.js';
import * as fmt from '../format.js';
import { tryRequest } from '../hints.js';
import { apiLabel, keyLabel, keyNames } from '../lookups.js';

export const title = 'Logs';

const ranges = { '': 'Any time', '1h': 'Last hour', '24h': 'Last 24 hours', '7d': 'Last 7 days', '30d': 'Last 30 days', custom: 'Between…' };
const rangeMs = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
const statuses = [['', 'Any status'], ['2xx', 'Succeeded (2xx)'], ['4xx', 'Refused (4xx)'], ['5xx', 'Failed (5xx)'],
  ['401', '401'], ['403', '403'], ['404', '404'], ['429', '429'], ['502', '502'], ['503', '503'], ['504', '504']];
const filterNames = ['range', 'from', 'to', 'key', 'model', 'provider', 'status', 'limit'];

// Cursors of the pages already seen, so "Newer" can step back.
let trail = { filter: '', cursors: [] };

// apiFilters turns the address's filters into the API's parameters.
function apiFilters(q) {
  const f = {
    key: q.get('key') || '', model: q.get('model') || '', provider: q.get('provider') || '', status: q.get('status') || '',
  };
  const range = q.get('range') || '';
  if (rangeMs[range]) f.from = new Date(Date.now() - rangeMs[range]).toISOString();
  if (range === 'custom') {
    const from = q.get('from');
    const to = q.get('to');
    if (from) f.from = new Date(from).toISOString();
    if (to) f.to = new Date(to).toISOString();
  }
  return f;
}

// localInput formats an ISO time for a datetime-local input.
function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export async function render(view) {
  const q = view.query;
  const errors = new Errors();
  const [names, providers] = await Promise.all([
    keyNames(),
    api('/api/providers', { signal: view.signal }).then((r) => r.data || []).catch(() => []),
  ]);

  // ---- the filter form ----
  const sel = (name, options, label) => {
    const s = h('select', { name, id: `f-${name}` }, options.map(([v, l]) => h('option', { value: v }, l)));
    s.value = q.get(name) || '';
    return field(label, s);
  };
  const range = sel('range', Object.entries(ranges), 'Time');
  const from = h('input', { type: 'datetime-local', name: 'from', id: 'f-from', value: localInput(q.get('from')) });
  const to = h('input', { type: 'datetime-local', name: 'to', id: 'f-to', value: localInput(q.get('to')) });
  const custom = h('div', { class: 'formrow' }, field('From', from), field('To (not included)', to));
  const showCustom = () => { custom.hidden = range.querySelector('select').value !== 'custom'; };
  range.querySelector('select').addEventListener('change', showCustom);
  showCustom();
  const keyOptions = [['', 'Any key'], ['admin', 'admin key'],
    ...[...names.values()].map((k) => [k.id, `${k.name} (${k.prefix}…)`])];
  const models = [...new Set(providers.flatMap((p) => p.models || []))].sort();
  const modelInput = h('input', { name: 'model', id: 'f-model', list: 'f-models', value: q.get('model') || '', placeholder: 'Any model' });
  const form = h('form', { class: 'card form wide', role: 'search', 'aria-label': 'Filter the logs' },
    h('div', { class: 'formrow' },
      range,
      sel('key', keyOptions, 'Key'),
      field('Model', modelInput),
      h('datalist', { id: 'f-models' }, models.map((m) => h('option', { value: m }))),
      sel('provider', [['', 'Any provider'], ...providers.map((p) => [p.name, p.name])], 'Provider'),
      sel('status', statuses, 'Status'),
      sel('limit', [['', '50 a page'], ['100', '100 a page'], ['200', '200 a page'], ['500', '500 a page']], 'Rows')),
    custom,
    h('div', { class: 'formrow' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('a', { class: 'btn', href: '/logs' }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const n of filterNames) next[n] = data.get(n) || '';
    if (next.range !== 'custom') { next.from = ''; next.to = ''; }
    view.navigate(`/logs${query(next)}`);
  });

  // ---- the rows ----
  const filters = apiFilters(q);
  const filtered = Object.values(filters).some(Boolean);
  const exportQuery = (format) => `/api/logs/export${query({ format, ...filters })}`;
  const exports = [
    h('a', { class: 'btn', href: exportQuery('csv'), download: '', id: 'export-csv' }, 'Export CSV'),
    h('a', { class: 'btn', href: exportQuery('json'), download: '', id: 'export-json' }, 'Export JSON'),
  ];
  const results = h('section', { 'aria-label': 'Results', 'aria-live': 'polite' });

  replace(view.main,
    pageHead('Logs', 'Every request the proxy served. Filter, page through, open one for its timings and bodies, or export what matches (up to 100,000 rows).', ...exports),
    errors.el, form, h('h2', { class: 'sr-only' }, 'Results'), results);

  const filterKey = JSON.stringify([...filterNames].map((n) => q.get(n)));
  if (trail.filter !== filterKey) trail = { filter: filterKey, cursors: [] };
  const cursor = q.get('cursor') || '';
  const at = trail.cursors.indexOf(cursor);
  if (at >= 0) trail.cursors.length = at;

  let page;
  try {
    page = await api(`/api/logs${query({ ...filters, limit: q.get('limit') || '', cursor })}`, { signal: view.signal });
  } catch (e) {
    if (e.name !== 'AbortError') errors.show(e);
    return;
  }
  if (!page.data.length) {
    replace(results, filtered || cursor
      ? empty('No requests match these filters', h('p', {}, 'Widen the time range or ', h('a', { href: '/logs' }, 'clear the filters'), '.'))
      : empty('No requests logged yet', tryRequest()));
    return;
  }
  const cols = [
    { label: 'Time', value: (r) => h('a', { href: `/logs/${encodeURIComponent(r.id)}` }, fmt.dateTime(r.ts)), class: 'nowrap' },
    { label: 'Status', value: (r) => statusBadge(r.status) },
    { label: 'Model', value: (r) => r.model || '—' },
    { label: 'API', value: (r) => apiLabel(r.api) },
    { label: 'Provider', value: (r) => r.provider || '—' },
    { label: 'Key', value: (r) => keyLabel(names, r.key_id) },
    { label: 'Latency', num: true, value: (r) => fmt.duration(r.latency_ms) },
    { label: 'First byte', num: true, value: (r) => fmt.duration(r.ttfb_ms) },
    { label: 'Tokens in / out', num: true, value: (r) => `${fmt.tokens(r.prompt_tokens)} / ${fmt.tokens(r.completion_tokens)}` },
    { label: 'Cost', num: true, value: (r) => fmt.money(r.cost_usd) },
  ];
  const pageNo = trail.cursors.length + 1;
  const go = (c) => {
    const next = {};
    for (const n of filterNames) next[n] = q.get(n) || '';
    next.cursor = c;
    view.navigate(`/logs${query(next)}`);
  };
  const newer = h('button', { type: 'button', disabled: !cursor }, '← Newer');
  newer.addEventListener('click', () => go(trail.cursors.length ? trail.cursors[trail.cursors.length - 1] : ''));
  const older = h('button', { type: 'button', disabled: !page.next_cursor }, 'Older →');
  older.addEventListener('click', () => { trail.cursors.push(cursor); go(page.next_cursor); });
  replace(results,
    table(cols, page.data, {
      caption: 'Requests, newest first',
      rowAttrs: (r) => ({ class: 'clickable', 'data-request-id': r.id }),
    }),
    h('div', { class: 'pager' }, newer, older,
      h('span', { class: 'hint' }, `Page ${fmt.int(pageNo)} · ${fmt.int(page.data.length)} rows`)));
  results.querySelector('tbody').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (tr && !e.target.closest('a')) view.navigate(`/logs/${encodeURIComponent(tr.dataset.requestId)}`);
  });
}
