// Overview: the last hour (per minute) or day (per hour) from
// GET /api/overview, kept current by the live connection: requests in
// flight move with every start and finish, and the figures are fetched
// again shortly after requests finish (and every 30 s, as the window
// slides).

import { api } from '../api.js';
import { Chart } from '../chart.js';
import { Errors, empty, h, pageHead, replace } from '../dom.js';
import * as fmt from '../format.js';
import { tryRequest } from '../hints.js';

export const title = 'Overview';

const ranges = {
  '1h': { label: 'Last hour', per: 'minute', minutes: 60 },
  '24h': { label: 'Last 24 hours', per: 'hour', minutes: 1440 },
};

export async function render(view) {
  const range = ranges[view.query.get('range')] ? view.query.get('range') : '1h';
  const r = ranges[range];
  const errors = new Errors();
  const picker = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' },
    Object.entries(ranges).map(([k, v]) => h('button', {
      type: 'button', 'aria-pressed': String(k === range),
      onclick: () => view.navigate(k === '1h' ? '/overview' : `/overview?range=${k}`, { replace: true }),
    }, v.label)));

  const tile = (name, label) => {
    const value = h('div', { class: 'value' }, '—');
    const sub = h('div', { class: 'sub' });
    return { el: h('div', { class: 'tile', 'data-tile': name }, h('div', { class: 'label' }, label), value, sub), value, sub };
  };
  const tiles = {
    rpm: tile('rpm', 'Requests per minute'),
    tokens: tile('tokens', 'Tokens'),
    cost: tile('cost', 'Cost'),
    errors: tile('errors', 'Error rate'),
    latency: tile('latency', 'Latency p50 / p95'),
    inflight: tile('inflight', 'In flight now'),
  };
  tiles.inflight.el.setAttribute('aria-live', 'polite');

  const per = r.per;
  const charts = [
    new Chart({ title: `Requests per ${per}`, series: [{ label: 'Requests' }, { label: 'Errors', color: 4 }], yFmt: fmt.int, integer: true }),
    new Chart({ title: `Tokens per ${per}`, series: [{ label: 'Prompt' }, { label: 'Completion', color: 2 }], yFmt: fmt.tokens, integer: true }),
    new Chart({ title: `Cost per ${per}`, series: [{ label: 'Cost', color: 1 }], yFmt: fmt.money }),
    new Chart({ title: 'Latency', series: [{ label: 'p50' }, { label: 'p95', color: 3 }], yFmt: fmt.duration, dots: true }),
  ];
  view.onLeave(() => charts.forEach((c) => c.destroy()));
  const chartBox = h('div', { class: 'charts' }, charts.map((c) => c.el));
  const emptyBox = h('div', {});

  replace(view.main,
    pageHead('Overview', `Traffic through the proxy over the ${r.label.toLowerCase()}, updated live.`, picker),
    errors.el,
    h('section', { class: 'tiles', 'aria-label': 'Totals' }, Object.values(tiles).map((t) => t.el)),
    emptyBox,
    chartBox);

  let inFlight = 0;
  const showInFlight = () => {
    tiles.inflight.value.textContent = fmt.int(inFlight);
    tiles.inflight.sub.textContent = inFlight === 1 ? 'request being served' : 'requests being served';
  };

  async function load() {
    let o;
    try {
      o = await api(`/api/overview?range=${range}`, { signal: view.signal });
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
      return;
    }
    errors.clear();
    const t = o.totals || {};
    const reqs = t.requests || 0;
    tiles.rpm.value.textContent = fmt.decimal(reqs / r.minutes, reqs / r.minutes < 10 ? 1 : 0);
    tiles.rpm.sub.textContent = `${fmt.int(reqs)} ${reqs === 1 ? 'request' : 'requests'}`;
    tiles.tokens.value.textContent = fmt.tokens((t.prompt_tokens || 0) + (t.completion_tokens || 0));
    tiles.tokens.sub.textContent = `${fmt.tokens(t.prompt_tokens)} in · ${fmt.tokens(t.completion_tokens)} out` +
      (t.cached_tokens ? ` · ${fmt.tokens(t.cached_tokens)} cached` : '');
    tiles.cost.value.textContent = fmt.money(t.cost_usd || 0);
    tiles.cost.sub.textContent = `in the ${r.label.toLowerCase()}`;
    tiles.errors.value.textContent = reqs ? fmt.percent((t.errors || 0) / reqs) : '—';
    tiles.errors.sub.textContent = `${fmt.int(t.errors || 0)} ${t.errors === 1 ? 'error' : 'errors'} (status 400 or more)`;
    // Non-breaking spaces keep "1.2 s" whole when the tile wraps at "/".
    const nb = (x) => x.replace(/ /g, '\u00a0');
    tiles.latency.value.textContent = reqs ? `${nb(fmt.duration(t.p50_ms))} / ${nb(fmt.duration(t.p95_ms))}` : '—';
    tiles.latency.sub.textContent = 'time to the last byte';
    inFlight = o.in_flight || 0;
    showInFlight();

    if (!reqs) {
      replace(emptyBox, empty(`No requests in the ${r.label.toLowerCase()}`, tryRequest()));
      chartBox.hidden = true;
      return;
    }
    emptyBox.replaceChildren();
    chartBox.hidden = false;
    const s = o.series || [];
    const xs = s.map((b) => Date.parse(b.t) / 1000);
    const col = (k) => s.map((b) => b[k] || 0);
    const lat = (k) => s.map((b) => (b.requests ? b[k] : null));
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    charts[0].set([xs, col('requests'), col('errors')], `${fmt.int(reqs)} requests, ${fmt.int(t.errors || 0)} errors`);
    charts[1].set([xs, col('prompt_tokens'), col('completion_tokens')],
      `${fmt.tokens(sum(col('prompt_tokens')))} prompt and ${fmt.tokens(sum(col('completion_tokens')))} completion tokens`);
    charts[2].set([xs, col('cost_usd')], `${fmt.money(t.cost_usd || 0)} in all`);
    charts[3].set([xs, lat('p50_ms'), lat('p95_ms')], `p50 ${fmt.duration(t.p50_ms)}, p95 ${fmt.duration(t.p95_ms)}`);
  }

  // Finished requests are folded in by fetching again, at most every 2 s.
  let pending = null;
  const soon = () => {
    if (!pending) pending = setTimeout(() => { pending = null; load(); }, 2000);
  };
  view.onLeave(() => clearTimeout(pending));
  view.on('request.started', () => { inFlight++; showInFlight(); });
  view.on('request.finished', () => { inFlight = Math.max(0, inFlight - 1); showInFlight(); soon(); });
  view.on('resync', load);
  view.every(30_000, load);
  await load();
}
