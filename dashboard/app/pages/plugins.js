// Plugins: every file in the plugins folder with its version, hash, state,
// reloads and last error, updated live by plugin.* events, and what its
// instances are doing (the "instances" of GET /api/plugins: instances,
// streams, callbacks, failures and each instance's streams and memory),
// read again every 2 s while the page is open and shortly after requests
// start and finish. An admin can upload a .wasm (PUT /api/plugins/{file});
// the server writes it into the folder, so it loads exactly as a file
// dropped there would. Under them, the replicas on this database
// (GET /api/replicas) with the plugins each runs: each replica loads its
// own folder, and a plugin whose hash differs from the other replicas' is
// marked.

import { api, isAdmin } from '../api.js';
import { badge, banner, busy, copyButton, empty, Errors, field, h, pageHead, replace, table, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Plugins';

const stateKinds = { ready: 'ok', loading: 'info', failed: 'err', unloaded: '' };
const eventWords = { 'plugin.loaded': 'loaded', 'plugin.reloaded': 'reloaded', 'plugin.failed': 'failed to load', 'plugin.removed': 'removed' };
const refreshMs = 2000; // how often the instance numbers are read again
const pageBytes = 64 * 1024; // a WebAssembly memory page

const plural = (n, one, many = `${one}s`) => `${fmt.int(n)} ${n === 1 ? one : many}`;
const byFile = (a, b) => a.file.localeCompare(b.file);
// A plugin without a version serving (failed, loading) has no instances to show.
const serving = (p) => !!(p.loaded_at && p.instances);

export async function render(view) {
  const errors = new Errors();
  const notice = h('div', { 'aria-live': 'polite' });
  const list = h('section', { 'aria-label': 'Loaded plugins' });
  const plugins = new Map(); // file -> entry
  const admin = isAdmin();

  const stats = statsTable();
  const fleet = h('section', { 'aria-labelledby': 'replicas-title' });

  replace(view.main,
    pageHead('Plugins', 'Provider plugins compiled to WebAssembly. A new or replaced file in the plugins folder loads within a second, without a restart; requests already running finish on the old version.'),
    errors.el, notice,
    admin ? uploadForm() : null,
    h('h2', {}, 'Loaded plugins'), list,
    h('h2', { id: 'stats-title' }, 'Instances and streams'),
    h('p', { class: 'hint' }, 'An instance serves many streams at once. Instances start when streams need them and close after ',
      h('code', {}, 'idle_timeout'), ' without one, so a plugin with no traffic shows 0 (idle): it is scaled to zero, and the next request starts an instance in a few milliseconds. Updated every 2 seconds.'),
    h('section', { 'aria-labelledby': 'stats-title' }, stats.empty, stats.el),
    h('h2', { id: 'replicas-title' }, 'Replicas'),
    h('p', { class: 'hint' }, 'Every proxy process on this database, with the plugins it runs. Each replica loads its own plugins folder: deploy the same files to each. A plugin whose SHA-256 differs from what most replicas run, or that a replica lacks, is marked.'),
    fleet);

  function uploadForm() {
    const file = h('input', { type: 'file', id: 'plugin-file', name: 'file', accept: '.wasm,application/wasm', required: true });
    const name = h('input', { id: 'plugin-name', name: 'name', placeholder: 'name.wasm' });
    file.addEventListener('change', () => { if (file.files[0]) name.value = file.files[0].name; });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Upload and load');
    const f = h('form', { class: 'form card', 'aria-labelledby': 'upload-title' },
      h('h2', { id: 'upload-title' }, 'Upload a plugin'),
      h('p', { class: 'hint' }, 'The file is saved into the plugins folder under the name below; a file of the same name is replaced, and the previous version keeps serving if the new one fails to load.'),
      h('div', { class: 'formrow' }, field('Plugin file (.wasm)', file), field('Save as', name)),
      h('div', {}, submit));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const blob = file.files[0];
      const target = (name.value || (blob && blob.name) || '').trim();
      if (!blob) { errors.show(new Error('Choose a .wasm file first.')); return; }
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.wasm$/.test(target)) {
        errors.show(new Error('The name must end in .wasm and use only letters, digits, dots, dashes and underscores.'));
        return;
      }
      busy(submit, async () => {
        try {
          const entry = await api(`/api/plugins/${encodeURIComponent(target)}`, { method: 'PUT', body: blob, contentType: 'application/wasm' });
          errors.clear();
          if (entry && entry.last_error) {
            replace(notice, banner('error', `${target} was saved but did not load: ${entry.last_error}`));
          } else if (entry) {
            replace(notice, banner('ok', `${target} is loaded: ${entry.name} ${entry.version}.`));
          }
          f.reset();
          await load();
        } catch (err) { errors.show(err); }
      });
    });
    return f;
  }

  // The plugins table is drawn again only when what it shows changed, so a
  // refresh does not take the focus off its copy buttons; its times
  // ("5 minutes ago") are brought up to date in place.
  let listShows = null;
  const ago = (t) => h('span', { 'data-ago': t, title: fmt.dateTime(t) }, fmt.ago(t));
  function drawList() {
    const rows = [...plugins.values()].sort(byFile);
    const shows = JSON.stringify(rows.map((p) => [p.file, p.name, p.version, p.state, p.sha256, p.reloads,
      p.last_error, p.loaded_at, p.last_error_at]));
    if (shows === listShows) {
      for (const el of list.querySelectorAll('[data-ago]')) {
        const text = fmt.ago(el.dataset.ago);
        if (el.textContent !== text) el.textContent = text;
      }
      return;
    }
    listShows = shows;
    if (!rows.length) {
      replace(list, empty('No plugins loaded',
        h('p', {}, 'Copy a provider plugin (a .wasm file) into the plugins folder, the ', h('code', {}, '[plugins] dir'),
          ' of the config (', h('code', {}, 'bin/plugins'), ' by default)', admin ? ', or upload one above.' : '.'),
        h('p', {}, 'First-party plugins are built with ', h('code', {}, 'go tool task build'), '.')));
      return;
    }
    const cols = [
      { label: 'Plugin', value: (p) => [h('strong', {}, p.name || p.file), h('div', { class: 'hint' }, p.file)] },
      { label: 'Version', value: (p) => h('span', { class: 'version' }, p.version || '—') },
      { label: 'State', value: (p) => badge(p.state, stateKinds[p.state] ?? '') },
      { label: 'SHA-256', value: (p) => (p.sha256 ? [h('code', { title: p.sha256 }, fmt.shortHash(p.sha256)), ' ', copyButton(p.sha256)] : '—'), class: 'nowrap' },
      { label: 'Loaded', value: (p) => (p.loaded_at ? ago(p.loaded_at) : '—'), class: 'nowrap' },
      { label: 'Reloads', num: true, value: (p) => h('span', { class: 'reloads' }, fmt.int(p.reloads || 0)) },
      { label: 'Last error', value: (p) => (p.last_error ? [h('span', { class: 'errtext' }, p.last_error), p.last_error_at ? h('div', { class: 'hint' }, ago(p.last_error_at)) : null] : h('span', { class: 'hint' }, 'none')) },
    ];
    replace(list, table(cols, rows, {
      caption: 'Plugins',
      rowAttrs: (p) => ({ 'data-plugin-file': p.file, 'data-version': p.version || '', 'data-state': p.state }),
    }));
  }

  // The instances table is updated in place every refresh: a row per
  // plugin, and under it a line per instance; a cell is written only when
  // its text changes (no flicker, and a selection in it survives).
  function statsTable() {
    const cols = [
      ['Plugin'], ['Instances', true], ['Streams open', true], ['Callbacks per second', true],
      ['Callbacks', true], ['Instance failures', true], ['Streams total', true],
    ];
    const tbody = h('tbody', {});
    const el = h('div', { class: 'tablewrap' }, h('table', { class: 'pluginstats' },
      h('caption', { class: 'sr-only' }, 'Instances and streams of each plugin'),
      h('thead', {}, h('tr', {}, cols.map(([label, num]) => h('th', { scope: 'col', class: num ? 'num' : null }, label)))),
      tbody));
    const none = h('p', { class: 'hint' }, 'No plugin is loaded.');
    return { el, tbody, empty: none, rows: new Map(), cols: cols.length };
  }

  const shown = new WeakMap(); // element -> the key of what it shows
  function put(el, key, ...children) {
    if (shown.get(el) === key) return;
    shown.set(el, key);
    replace(el, ...children);
  }

  function statsRow(p) {
    const td = (cls) => h('td', { class: cls });
    const cells = {
      plugin: td(''), instances: td('num instances'), streams: td('num streams'), rate: td('num rate'),
      callbacks: td('num callbacks'), failures: td('num failures'), total: td('num streamstotal'),
    };
    const tr = h('tr', { 'data-stats-file': p.file }, Object.values(cells));
    const list = h('ul', { class: 'instlist' });
    const detail = h('tr', { class: 'instrow', 'data-instances-of': p.file, hidden: true },
      h('td', { colspan: String(stats.cols) }, list));
    return { tr, detail, cells, list, items: new Map() };
  }

  function drawStats() {
    const rows = [...plugins.values()].sort(byFile);
    stats.empty.hidden = rows.length > 0;
    stats.el.hidden = rows.length === 0;
    for (const [file, r] of stats.rows) {
      if (!plugins.has(file)) { r.tr.remove(); r.detail.remove(); stats.rows.delete(file); }
    }
    let before = stats.tbody.firstChild;
    for (const p of rows) {
      let r = stats.rows.get(p.file);
      if (!r) { r = statsRow(p); stats.rows.set(p.file, r); }
      // Keep the rows in file order (a new plugin slots in).
      if (r.tr !== before) stats.tbody.insertBefore(r.tr, before);
      if (r.tr.nextSibling !== r.detail) stats.tbody.insertBefore(r.detail, r.tr.nextSibling);
      before = r.detail.nextSibling;
      fillStats(p, r);
    }
  }

  function fillStats(p, r) {
    const c = r.cells;
    put(c.plugin, `${p.name}\n${p.file}`, h('strong', {}, p.name || p.file), h('div', { class: 'hint' }, p.file));
    if (!serving(p)) {
      for (const k of ['instances', 'streams', 'rate', 'callbacks', 'failures', 'total']) put(c[k], '—', '—');
      c.instances.title = 'No version of this plugin is serving.';
      r.tr.dataset.instances = '';
      r.tr.dataset.streams = '';
      r.detail.hidden = true;
      r.tr.classList.remove('withinst');
      return;
    }
    const s = p.instances;
    const n = s.instances || 0;
    const made = `${fmt.int(s.created || 0)} started · ${fmt.int(s.discarded || 0)} closed`;
    put(c.instances, `${n}|${made}`,
      n ? h('span', { class: 'count' }, fmt.int(n)) : h('span', { class: 'count' }, '0', h('span', { class: 'hint' }, ' (idle)')),
      h('div', { class: 'hint' }, made));
    c.instances.title = n ? '' : 'Scaled to zero: no instance is running; the next request starts one.';
    put(c.streams, String(s.streams), fmt.int(s.streams || 0));
    put(c.rate, String(s.callbacks_per_second), fmt.fixed(s.callbacks_per_second || 0, 1));
    put(c.callbacks, String(s.callbacks), fmt.int(s.callbacks || 0));
    put(c.failures, String(s.failures), s.failures ? h('span', { class: 'errtext' }, fmt.int(s.failures)) : '0');
    put(c.total, String(s.streams_total), fmt.int(s.streams_total || 0));
    r.tr.dataset.instances = String(n);
    r.tr.dataset.streams = String(s.streams || 0);

    const per = s.per_instance || [];
    r.detail.hidden = per.length === 0;
    r.tr.classList.toggle('withinst', per.length > 0);
    r.list.setAttribute('aria-label', `Instances of ${p.name || p.file}`);
    const ids = new Set(per.map((i) => i.id));
    for (const [id, li] of r.items) {
      if (!ids.has(id)) { li.remove(); r.items.delete(id); }
    }
    let at = r.list.firstChild;
    for (const i of per) {
      let li = r.items.get(i.id);
      if (!li) { li = h('li', { 'data-instance-id': String(i.id) }); r.items.set(i.id, li); }
      if (li !== at) r.list.insertBefore(li, at);
      at = li.nextSibling;
      const mib = fmt.fixed(((i.memory_pages || 0) * pageBytes) / 1024 ** 2, 1);
      const text = `${plural(i.streams || 0, 'stream')} · ${fmt.int(i.queued || 0)} queued · ${mib} MiB · ${plural(i.callbacks || 0, 'callback')}`;
      li.dataset.draining = String(!!i.draining);
      put(li, `${text}|${!!i.draining}`,
        h('strong', {}, `Instance ${i.id}:`), ' ', text,
        i.draining ? [' ', badge('draining', 'warn')] : null);
      li.title = i.draining ? 'Draining: takes no new stream and closes when its last one ends.' : '';
    }
  }

  function draw() {
    drawList();
    drawStats();
  }

  // drawFleet shows the replicas; like the plugins table, it is drawn
  // again only when what it shows changed.
  let fleetShows = null;
  function drawFleet(replicas) {
    const shows = JSON.stringify(replicas.map((r) => [r.id, r.version, r.self, r.plugins]));
    if (shows === fleetShows) {
      for (const el of fleet.querySelectorAll('[data-ago]')) el.textContent = fmt.ago(el.dataset.ago);
      return;
    }
    fleetShows = shows;
    // The hash most replicas run, per plugin name.
    const counts = new Map();
    for (const r of replicas) {
      for (const p of r.plugins) {
        const c = counts.get(p.name) || new Map();
        c.set(p.sha256, (c.get(p.sha256) || 0) + 1);
        counts.set(p.name, c);
      }
    }
    const usual = new Map([...counts].map(([name, c]) => [name, [...c].sort((a, b) => b[1] - a[1])[0][0]]));
    const pluginCell = (r) => {
      const have = new Map(r.plugins.map((p) => [p.name, p]));
      const items = [...usual.keys()].sort().map((name) => {
        const p = have.get(name);
        if (!p) return h('li', { 'data-plugin': name, 'data-differs': 'missing' }, h('strong', {}, name), ' ', badge('missing', 'err'));
        const differs = replicas.length > 1 && p.sha256 !== usual.get(name);
        return h('li', { 'data-plugin': name, 'data-differs': differs ? 'sha256' : '' },
          h('strong', {}, name), ' ', h('span', { class: 'version' }, p.version || '—'), ' ',
          h('code', { title: p.sha256 }, fmt.shortHash(p.sha256)),
          differs ? [' ', badge('differs', 'warn')] : null);
      });
      return items.length ? h('ul', { class: 'instlist' }, items) : h('span', { class: 'hint' }, 'none');
    };
    const cols = [
      { label: 'Replica', value: (r) => [h('strong', {}, r.hostname), r.self ? [' ', badge('this one', 'info')] : null, h('div', { class: 'hint' }, r.id)] },
      { label: 'Version', value: (r) => h('span', { class: 'version' }, r.version) },
      { label: 'Started', value: (r) => h('span', { 'data-ago': r.started_at, title: fmt.dateTime(r.started_at) }, fmt.ago(r.started_at)), class: 'nowrap' },
      { label: 'Plugins', value: pluginCell },
    ];
    replace(fleet, table(cols, replicas, { caption: 'Replicas', rowAttrs: (r) => ({ 'data-replica': r.id }) }));
  }
  async function loadFleet() {
    try {
      const r = await api('/api/replicas', { signal: view.signal });
      drawFleet(r.data || []);
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }

  // load reads every plugin again. A plugin event that arrives while the
  // answer is on its way may be newer than it: the answer is then dropped
  // and the plugins are read once more.
  let changes = 0;
  let inflight = null;
  let again = false;
  let lastRead = 0;
  async function readOnce() {
    const mark = changes;
    lastRead = Date.now();
    try {
      const r = await api('/api/plugins', { signal: view.signal });
      if (mark !== changes) { again = true; return; }
      errors.clear();
      plugins.clear();
      for (const p of r.data || []) plugins.set(p.file, p);
      draw();
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }
  function load() {
    if (inflight) { again = true; return inflight; }
    inflight = (async () => {
      do {
        again = false;
        await readOnce();
      } while (again && !view.signal.aborted);
    })().finally(() => { inflight = null; });
    return inflight;
  }
  // poll is the periodic read: skipped while a read is on its way or the
  // tab is hidden.
  const poll = () => {
    if (!inflight && !document.hidden) load();
  };
  view.every(refreshMs, () => { if (!document.hidden) loadFleet(); });

  // Requests open and close streams: read again soon after one starts or
  // finishes (at most once a second on top of the 2 s refresh).
  let nudge = null;
  const soon = () => {
    if (nudge) return;
    nudge = setTimeout(() => { nudge = null; poll(); }, Math.max(250, 1000 - (Date.now() - lastRead)));
  };
  view.onLeave(() => clearTimeout(nudge));
  const onVisible = () => { if (!document.hidden) poll(); };
  document.addEventListener('visibilitychange', onVisible);
  view.onLeave(() => document.removeEventListener('visibilitychange', onVisible));

  for (const type of Object.keys(eventWords)) {
    view.on(type, (p) => {
      if (!p || !p.file) return;
      changes++;
      if (type === 'plugin.removed') plugins.delete(p.file);
      else plugins.set(p.file, p);
      draw();
      const what = `${p.name || p.file} ${eventWords[type]}${type === 'plugin.removed' ? '' : `: version ${p.version || '?'}`}`;
      toast(type === 'plugin.failed' ? `${what}. ${p.last_error}` : `${what}.`, type === 'plugin.failed' ? 'err' : 'ok');
    });
  }
  view.on('resync', load);
  view.on('request.started', soon);
  view.on('request.finished', soon);
  view.every(refreshMs, poll); // instance numbers move without events
  await Promise.all([load(), loadFleet()]);
}
