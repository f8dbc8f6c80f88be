// One request: GET /api/logs/{id}, with its timings, tokens, cost and,
// when body logging is on, the stored request and response bodies.

import { api, isAdmin } from '../api.js';
import { copyButton, empty, Errors, h, pageHead, replace, statusBadge } from '../dom.js';
import * as fmt from '../format.js';
import { apiLabel, keyLabel, keyNames } from '../lookups.js';

export const title = 'Request';

// pretty indents a JSON body; other text is shown as it is.
function pretty(body) {
  if (typeof body !== 'string') return JSON.stringify(body, null, 2);
  try { return JSON.stringify(JSON.parse(body), null, 2); } catch { return body; }
}

function bodyBlock(label, body) {
  if (body === null || body === undefined || body === '') {
    return h('div', { class: 'card' }, h('h3', {}, label), h('p', { class: 'hint' }, 'Not stored.'));
  }
  const text = pretty(body);
  return h('div', { class: 'card' },
    h('div', { class: 'cardhead' }, h('h3', {}, label), h('div', { class: 'actions' }, copyButton(text))),
    h('pre', { tabindex: '0', 'aria-label': label }, h('code', {}, text)));
}

export async function render(view) {
  const id = view.params[0];
  const errors = new Errors();
  replace(view.main, h('p', { class: 'hint' }, h('a', { href: '/logs' }, '← Logs')), pageHead('Request', id), errors.el);
  let r;
  try {
    r = await api(`/api/logs/${encodeURIComponent(id)}`, { signal: view.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (e.status === 404 && e.code !== 'unknown_url') {
      view.main.append(empty('No such request', h('p', {}, 'It may be older than the retention period, or still being written: requests reach the log within a second.')));
      return;
    }
    errors.show(e);
    return;
  }
  const names = await keyNames();
  const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  const noBodies = !('request_body' in r) || (r.request_body == null && r.response_body == null);
  replace(view.main,
    h('p', { class: 'hint' }, h('a', { href: '/logs' }, '← Logs')),
    pageHead(`${r.model || 'Request'} · ${r.status}`, null),
    errors.el,
    h('div', { class: 'grid2' },
      h('section', { class: 'card', 'aria-labelledby': 'd-req' }, h('h2', { id: 'd-req' }, 'Request'),
        h('dl', { class: 'facts' },
          fact('ID', h('code', {}, r.id)),
          fact('Time', `${fmt.dateTime(r.ts)} (${fmt.ago(r.ts)})`),
          fact('Status', [statusBadge(r.status), r.error_type ? ` ${r.error_type}` : '']),
          fact('Model', r.model || '—'),
          fact('API', h('span', { 'data-api': r.api || 'openai' }, apiLabel(r.api))),
          fact('Provider', r.provider || '—'),
          fact('Attempts', String(r.attempts || 1)),
          fact('Plugin', r.plugin ? `${r.plugin} ${r.plugin_version || ''}`.trim() : '—'),
          fact('Key', keyLabel(names, r.key_id)),
          fact('Streamed', r.stream ? 'yes' : 'no'),
          fact('Trace', r.trace_id ? h('code', { 'data-trace-id': r.trace_id }, r.trace_id) : 'not traced'))),
      h('section', { class: 'card', 'aria-labelledby': 'd-time' }, h('h2', { id: 'd-time' }, 'Timings, tokens and cost'),
        h('dl', { class: 'facts' },
          fact('Latency', fmt.duration(r.latency_ms)),
          fact('First byte', fmt.duration(r.ttfb_ms)),
          fact('Prompt tokens', fmt.int(r.prompt_tokens)),
          fact('Cached prompt tokens', fmt.int(r.cached_tokens)),
          fact('Completion tokens', fmt.int(r.completion_tokens)),
          fact('Cost', fmt.money(r.cost_usd))))),
    r.attempt_log ? attemptsTable(r.attempt_log) : null,
    h('h2', {}, 'Bodies'),
    noBodies
      ? h('p', { class: 'hint' }, 'No bodies were stored for this request. ',
        isAdmin() ? ['Turn on body logging in ', h('a', { href: '/settings' }, 'Settings'), ' to keep them for new requests.']
          : 'An admin can turn on body logging in Settings.')
      : h('div', { class: 'grid2' }, bodyBlock('Request body', r.request_body), bodyBlock('Response body', r.response_body)));
}

// attemptsTable lists every target a retried or fallen-back request was
// tried on, in order.
function attemptsTable(list) {
  return h('section', { class: 'card', 'aria-labelledby': 'd-attempts' },
    h('h2', { id: 'd-attempts' }, 'Attempts'),
    h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ...['#', 'Provider', 'Model', 'Status', 'Error', 'Waited', 'Took'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...list.map((a, i) => h('tr', {},
        h('td', {}, String(i + 1)),
        h('td', {}, a.provider),
        h('td', {}, a.model),
        h('td', {}, statusBadge(a.status)),
        h('td', {}, a.error || '—'),
        h('td', {}, a.waited_ms ? fmt.duration(a.waited_ms) : '—'),
        h('td', {}, fmt.duration(a.ms)))))));
}
