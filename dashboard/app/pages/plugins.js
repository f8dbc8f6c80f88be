// Plugins: every file in the plugins folder with its version, hash, state,
// reloads and last error, updated live by plugin.* events. An admin can
// upload a .wasm (PUT /api/plugins/{file}); the server writes it into the
// folder, so it loads exactly as a file dropped there would.

import { api, isAdmin } from '../api.js';
import { badge, banner, busy, copyButton, empty, Errors, field, h, pageHead, replace, table, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Plugins';

const stateKinds = { ready: 'ok', loading: 'info', failed: 'err', unloaded: '' };
const eventWords = { 'plugin.loaded': 'loaded', 'plugin.reloaded': 'reloaded', 'plugin.failed': 'failed to load', 'plugin.removed': 'removed' };

export async function render(view) {
  const errors = new Errors();
  const notice = h('div', { 'aria-live': 'polite' });
  const list = h('section', { 'aria-label': 'Loaded plugins' });
  const plugins = new Map(); // file -> entry
  const admin = isAdmin();

  replace(view.main,
    pageHead('Plugins', 'Provider plugins compiled to WebAssembly. A new or replaced file in the plugins folder loads within a second, without a restart; requests already running finish on the old version.'),
    errors.el, notice,
    admin ? uploadForm() : null,
    h('h2', {}, 'Loaded plugins'), list);

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

  function draw() {
    if (!plugins.size) {
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
      { label: 'Loaded', value: (p) => (p.loaded_at ? h('span', { title: fmt.dateTime(p.loaded_at) }, fmt.ago(p.loaded_at)) : '—'), class: 'nowrap' },
      { label: 'Reloads', num: true, value: (p) => h('span', { class: 'reloads' }, fmt.int(p.reloads || 0)) },
      { label: 'Last error', value: (p) => (p.last_error ? [h('span', { class: 'errtext' }, p.last_error), p.last_error_at ? h('div', { class: 'hint' }, fmt.ago(p.last_error_at)) : null] : h('span', { class: 'hint' }, 'none')) },
      { label: 'Instances busy / idle', num: true, value: (p) => (p.instances ? `${fmt.int(p.instances.busy)} / ${fmt.int(p.instances.idle)}` : '—') },
      { label: 'Calls (failed)', num: true, value: (p) => (p.instances ? `${fmt.int(p.instances.calls)} (${fmt.int(p.instances.failures)})` : '—') },
    ];
    const rows = [...plugins.values()].sort((a, b) => a.file.localeCompare(b.file));
    replace(list, table(cols, rows, {
      caption: 'Plugins',
      rowAttrs: (p) => ({ 'data-plugin-file': p.file, 'data-version': p.version || '', 'data-state': p.state }),
    }));
  }

  async function load() {
    try {
      const r = await api('/api/plugins', { signal: view.signal });
      errors.clear();
      plugins.clear();
      for (const p of r.data || []) plugins.set(p.file, p);
      draw();
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }

  for (const type of Object.keys(eventWords)) {
    view.on(type, (p) => {
      if (!p || !p.file) return;
      if (type === 'plugin.removed') plugins.delete(p.file);
      else plugins.set(p.file, p);
      draw();
      const what = `${p.name || p.file} ${eventWords[type]}${type === 'plugin.removed' ? '' : `: version ${p.version || '?'}`}`;
      toast(type === 'plugin.failed' ? `${what}. ${p.last_error}` : `${what}.`, type === 'plugin.failed' ? 'err' : 'ok');
    });
  }
  view.on('resync', load);
  view.every(15_000, load); // instance counts move without events
  await load();
}
