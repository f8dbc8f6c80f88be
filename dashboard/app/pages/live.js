// Live requests: every request as it starts (request.started) and when it
// finishes (request.finished, a log row), newest on top. The page opens
// with the latest rows of GET /api/logs and reads them again after each
// reconnection, so nothing missed while offline stays missing.

import { api } from '../api.js';
import { empty, Errors, h, pageHead, replace, statusBadge } from '../dom.js';
import * as fmt from '../format.js';
import { tryRequest } from '../hints.js';
import { forgetKeys, keyLabel, keyNames } from '../lookups.js';

export const title = 'Live requests';

const maxRows = 200;

const opLabel = (op, stream) => {
  const base = { chat: 'chat', chat_stream: 'chat', embeddings: 'embeddings', models: 'models' }[op] || op || 'chat';
  return stream ? `${base} · stream` : base;
};

export async function render(view) {
  const errors = new Errors();
  const rows = new Map(); // id -> { data, tr }
  let names = await keyNames();
  let paused = false;
  const held = [];

  const tbody = h('tbody', {});
  const tableBox = h('div', { class: 'tablewrap' }, h('table', {},
    h('caption', { class: 'sr-only' }, 'Requests, newest first'),
    h('thead', {}, h('tr', {},
      ['Time', 'Status', 'Model', 'Key', 'Kind'].map((l) => h('th', { scope: 'col' }, l)),
      ['Latency', 'Tokens in / out', 'Cost'].map((l) => h('th', { scope: 'col', class: 'num' }, l)))),
    tbody));
  const waiting = empty('Waiting for requests', h('p', {}, 'Requests show up here the moment they start.'), tryRequest());
  const counter = h('span', { class: 'hint', 'aria-live': 'polite' });
  const pause = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) held.splice(0).forEach(([type, d]) => apply(type, d));
    count();
  });

  replace(view.main,
    pageHead('Live requests', 'Requests as they start and finish. Select one for its details.', counter, pause),
    errors.el, waiting, tableBox);

  function count() {
    counter.textContent = paused && held.length ? `${fmt.int(held.length)} new while paused` : '';
    const any = rows.size > 0;
    waiting.hidden = any;
    tableBox.hidden = !any;
  }

  function cells(d) {
    const done = d.status !== undefined && d.status !== null;
    return [
      h('td', { class: 'nowrap' }, h('a', { href: `/logs/${encodeURIComponent(d.id)}` }, fmt.dateTime(d.ts))),
      h('td', {}, statusBadge(done ? d.status : 0)),
      h('td', {}, d.model || '—'),
      h('td', {}, keyLabel(names, d.key_id)),
      h('td', {}, opLabel(d.op, d.stream)),
      h('td', { class: 'num' }, done ? fmt.duration(d.latency_ms) : '…'),
      h('td', { class: 'num' }, done ? `${fmt.tokens(d.prompt_tokens)} / ${fmt.tokens(d.completion_tokens)}` : '…'),
      h('td', { class: 'num' }, done ? fmt.money(d.cost_usd) : '…'),
    ];
  }

  function draw(id, d, { fresh = false } = {}) {
    const done = d.status !== undefined && d.status !== null;
    let r = rows.get(id);
    if (r) {
      r.data = { ...r.data, ...d };
      r.tr.replaceChildren(...cells(r.data));
      r.tr.dataset.state = done ? 'finished' : 'running';
      return;
    }
    const tr = h('tr', { class: fresh ? 'clickable fresh' : 'clickable', 'data-request-id': id, 'data-state': done ? 'finished' : 'running' });
    tr.addEventListener('click', (e) => { if (!e.target.closest('a')) view.navigate(`/logs/${encodeURIComponent(id)}`); });
    tr.append(...cells(d));
    r = { data: d, tr };
    rows.set(id, r);
    // Rows are kept newest first by their start time.
    const t = Date.parse(d.ts) || 0;
    let before = null;
    for (const other of tbody.children) {
      if ((Date.parse(rows.get(other.dataset.requestId)?.data.ts) || 0) <= t) { before = other; break; }
    }
    tbody.insertBefore(tr, before);
    while (tbody.children.length > maxRows) {
      const last = tbody.lastElementChild;
      rows.delete(last.dataset.requestId);
      last.remove();
    }
  }

  function apply(type, d) {
    if (type === 'request.started') draw(d.id, d, { fresh: true });
    else draw(d.id, d, { fresh: !rows.has(d.id) });
    count();
  }

  const onEvent = (type) => (d) => {
    if (paused) { held.push([type, d]); count(); } else apply(type, d);
  };
  view.on('request.started', onEvent('request.started'));
  view.on('request.finished', onEvent('request.finished'));
  view.on('key.created', async () => { forgetKeys(); names = await keyNames(); });

  async function catchUp() {
    try {
      const page = await api('/api/logs?limit=50', { signal: view.signal });
      errors.clear();
      for (const row of page.data.slice().reverse()) draw(row.id, row);
      count();
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }
  view.on('resync', catchUp);
  count();
  await catchUp();
}
