// Providers: those of config.toml (read-only here) and those kept in the
// database (added, changed and removed here). Secrets are write-only: the
// API shows whether one is set and at most its last four characters. A
// connection test asks the upstream for its models through the plugin.

import { api, isAdmin } from '../api.js';
import { badge, banner, busy, confirmDialog, empty, Errors, field, h, pageHead, replace, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Providers';

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

function keyText(p) {
  const k = p.api_key || {};
  const ks = p.api_keys || [];
  if (ks.length > 1) {
    const states = p.key_states || [];
    return h('ul', { class: 'plain' }, ...ks.map((x, i) => {
      const st = states[i] || {};
      return h('li', { 'data-key-index': String(i) },
        x.hint ? `ending ${x.hint.replace(/^…/, '')}` : `key ${i + 1}`,
        st.weight > 1 || (p.api_key_weights || []).length ? ` · weight ${fmt.int(st.weight || (p.api_key_weights || [])[i] || 1)}` : '',
        st.requests != null ? ` · ${fmt.int(st.requests)} requests, ${fmt.int(st.refused || 0)} refused` : '',
        st.resting_until ? [' · ', badge('resting', 'warn'), ` until ${fmt.dateTime(st.resting_until)}`] : '');
    }));
  }
  if (p.source === 'config') {
    if (!p.api_key_env) return 'none (no key configured)';
    return k.set ? `from $${p.api_key_env}` : `$${p.api_key_env} is not set`;
  }
  if (!k.set) return 'none';
  return k.hint ? `set, ending ${k.hint.replace(/^…/, '')}` : 'set';
}

export async function render(view) {
  const errors = new Errors();
  const admin = isAdmin();
  const formBox = h('div', {});
  const cards = h('div', { class: 'grid2' });
  let pluginNames = [];

  const addButton = admin ? h('button', { type: 'button', class: 'primary', onclick: () => openForm(null) }, 'Add a provider') : null;
  replace(view.main,
    pageHead('Providers', 'Where requests go. Providers from config.toml change with the file and a restart; those added here are stored in the database, served at once, and their keys are kept encrypted.', addButton),
    errors.el, formBox, cards);

  function openForm(p) {
    const editing = !!p;
    // Most providers speak OpenAI's API, so its plugin comes first.
    const v = p || { name: '', plugin: pluginNames.includes('openai') ? 'openai' : pluginNames[0] || 'openai', base_url: '', models: [], allow_private_network: false, allow_image_fetch: false, extra_hosts: [] };
    const name = h('input', { name: 'name', id: 'prov-name', required: true, value: v.name, disabled: editing, pattern: '[a-z0-9][a-z0-9._\\-]*' });
    const plugin = h('select', { name: 'plugin', id: 'prov-plugin' },
      [...new Set([...pluginNames, v.plugin])].map((n) => h('option', { value: n }, n)));
    plugin.value = v.plugin;
    const base = h('input', { name: 'base_url', id: 'prov-base', type: 'url', required: true, value: v.base_url, placeholder: 'https://api.example.com/v1' });
    const models = h('input', { name: 'models', id: 'prov-models', required: true, value: (v.models || []).join(', ') });
    // Several keys, one per line, share the traffic; a rate-limited one
    // rests while the others serve. The textarea masks its text with CSS
    // (.secretbox) and is cleared as soon as the form is sent.
    const key = h('textarea', { name: 'api_key', id: 'prov-key', rows: '2', autocomplete: 'off', spellcheck: 'false', class: 'secretbox', placeholder: editing ? 'unchanged' : 'one key per line' });
    const weights = h('input', { name: 'api_key_weights', id: 'prov-weights', value: (v.api_key_weights || []).join(', '), placeholder: 'equal turns', inputmode: 'numeric' });
    const clearKey = editing && v.api_key && v.api_key.set ? h('input', { type: 'checkbox', name: 'clear_key', id: 'prov-clear' }) : null;
    const priv = h('input', { type: 'checkbox', name: 'allow_private_network', id: 'prov-private', checked: v.allow_private_network });
    const images = h('input', { type: 'checkbox', name: 'allow_image_fetch', id: 'prov-images', checked: v.allow_image_fetch });
    const hosts = h('input', { name: 'extra_hosts', id: 'prov-hosts', value: (v.extra_hosts || []).join(', ') });
    const quota = (name) => h('input', { type: 'number', min: '0', step: '1', name, id: `prov-${name}`, value: v[name] || '', placeholder: 'no limit' });
    const rpm = quota('rpm');
    const tpm = quota('tpm');
    const par = quota('max_parallel');
    const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save changes' : 'Add provider');
    const f = h('form', { class: 'form card', 'aria-labelledby': 'prov-form-title' },
      h('h2', { id: 'prov-form-title' }, editing ? `Change ${v.name}` : 'Add a provider'),
      field('Name', name, 'Lowercase letters, digits, dots, dashes. Clients can ask for name/model.'),
      field('Plugin', plugin),
      field('Base URL', base, 'https://, or http:// with private network allowed.'),
      field('Models', models, 'Comma-separated; requests for these models go to this provider.'),
      field('API keys', key, editing ? 'Leave empty to keep the stored keys. Several, one per line, take turns.' : 'Stored encrypted; never shown again, never given to the plugin. Several, one per line, take turns; one the upstream rate-limits rests while the others serve.'),
      field('Key weights', weights, 'Comma-separated, one per key in order: 3, 1 sends three requests with the first key for one with the second. Empty for equal turns.'),
      clearKey ? h('label', { class: 'inline' }, clearKey, 'Remove the stored key') : null,
      h('label', { class: 'inline' }, priv, 'Allow private and loopback addresses (Ollama, vLLM on your network)'),
      h('label', { class: 'inline' }, images, 'Fetch images that requests link to (public addresses only; for plugins such as gemini that send images inline)'),
      field('Extra hosts', hosts, 'Comma-separated host names the plugin may reach besides the base URL\'s.'),
      h('div', { class: 'formrow' },
        field('Requests per minute', rpm), field('Tokens per minute', tpm), field('Requests at once', par)),
      h('p', { class: 'hint' }, 'Limits that protect this provider\'s own quota, over all clients: a request over one goes to its route\'s next target, or gets 429.'),
      h('div', { class: 'formrow' }, submit, h('button', { type: 'button', onclick: () => formBox.replaceChildren() }, 'Cancel')));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { plugin: plugin.value, base_url: base.value.trim(), models: list(models.value), allow_private_network: priv.checked, allow_image_fetch: images.checked, extra_hosts: list(hosts.value),
        rpm: Number(rpm.value) || 0, tpm: Number(tpm.value) || 0, max_parallel: Number(par.value) || 0 };
      const keys = key.value.split('\n').map((k) => k.trim()).filter(Boolean);
      key.value = '';
      if (keys.length === 1) body.api_key = keys[0];
      else if (keys.length > 1) body.api_keys = keys;
      else if (clearKey && clearKey.checked) body.api_key = '';
      // Weights go with new keys, or alone when they changed.
      const ws = list(weights.value).map(Number);
      if (keys.length || ws.join(',') !== (v.api_key_weights || []).join(',')) body.api_key_weights = ws;
      busy(submit, async () => {
        try {
          if (editing) await api(`/api/providers/${encodeURIComponent(v.name)}`, { method: 'PATCH', body });
          else await api('/api/providers', { method: 'POST', body: { name: name.value.trim(), ...body } });
          errors.clear();
          formBox.replaceChildren();
          toast(editing ? `Saved ${v.name}.` : `Added ${name.value.trim()}; it serves from the next request.`, 'ok');
          await load();
        } catch (err) { errors.show(err); }
      });
    });
    replace(formBox, f);
    (editing ? base : name).focus();
  }

  async function test(p, out, btn) {
    await busy(btn, async () => {
      replace(out, h('p', { class: 'hint' }, 'Testing…'));
      try {
        const r = await api(`/api/providers/${encodeURIComponent(p.name)}/test`, { method: 'POST' });
        if (r.ok) {
          const ms = r.models || [];
          replace(out, banner('ok', `Connected in ${fmt.duration(r.latency_ms)}. The upstream lists ${fmt.int(ms.length)} ${ms.length === 1 ? 'model' : 'models'}${ms.length ? `: ${ms.slice(0, 8).join(', ')}${ms.length > 8 ? ', …' : ''}` : ''}.`));
        } else {
          replace(out, banner('error', `Failed after ${fmt.duration(r.latency_ms)}: ${(r.error && r.error.message) || 'no answer'}`));
        }
      } catch (err) { replace(out, banner('error', err.message)); }
    });
  }

  async function remove(p) {
    if (!await confirmDialog(`Remove ${p.name}?`, `Requests for its models (${(p.models || []).join(', ')}) get 404 from the next one on. Its stored key is deleted.`, 'Remove', { danger: true })) return;
    try {
      await api(`/api/providers/${encodeURIComponent(p.name)}`, { method: 'DELETE' });
      toast(`Removed ${p.name}.`, 'ok');
      await load();
    } catch (err) { errors.show(err); }
  }

  function card(p) {
    const out = h('div', { 'aria-live': 'polite' });
    const testBtn = h('button', { type: 'button', disabled: !admin, title: admin ? null : 'Only admins can run a connection test' }, 'Test connection');
    testBtn.addEventListener('click', () => test(p, out, testBtn));
    const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    return h('section', { class: 'card', 'data-provider': p.name, 'aria-labelledby': `prov-${p.name}` },
      h('div', { class: 'cardhead' },
        h('h2', { id: `prov-${p.name}` }, p.name),
        badge(p.source === 'config' ? 'config.toml' : 'database', p.source === 'config' ? '' : 'info'),
        h('div', { class: 'actions' },
          testBtn,
          admin && p.source === 'database' ? h('button', { type: 'button', onclick: () => openForm(p) }, 'Change') : null,
          admin && p.source === 'database' ? h('button', { type: 'button', class: 'danger', onclick: () => remove(p) }, 'Remove') : null)),
      p.error ? banner('error', p.error) : null,
      h('dl', { class: 'facts' },
        fact('Plugin', p.plugin),
        fact('Base URL', h('code', {}, p.base_url)),
        fact('Models', (p.models || []).join(', ') || '—'),
        fact('API key', keyText(p)),
        fact('Private network', p.allow_private_network ? 'allowed' : 'refused'),
        fact('Image fetching', p.allow_image_fetch ? 'allowed' : 'refused'),
        p.extra_hosts && p.extra_hosts.length ? fact('Extra hosts', p.extra_hosts.join(', ')) : null,
        p.rpm || p.tpm || p.max_parallel ? fact('Limits', [p.rpm ? `${fmt.int(p.rpm)} req/min` : '', p.tpm ? `${fmt.int(p.tpm)} tok/min` : '', p.max_parallel ? `${fmt.int(p.max_parallel)} at once` : ''].filter(Boolean).join(' · ')) : null,
        p.updated_at ? fact('Changed', fmt.dateTime(p.updated_at)) : null,
        fact('Health', healthList(p.health || []))),
      out);
  }

  async function load() {
    try {
      const [r, pl] = await Promise.all([
        api('/api/providers', { signal: view.signal }),
        api('/api/plugins', { signal: view.signal }).catch(() => ({ data: [] })),
      ]);
      pluginNames = [...new Set((pl.data || []).map((x) => x.name).filter(Boolean))].sort();
      errors.clear();
      const ps = r.data || [];
      if (!ps.length) {
        replace(cards, empty('No providers yet', h('p', {}, admin
          ? 'Add one with the button above, or add a [[providers]] block to config.toml and restart.'
          : 'An admin can add one here, or in config.toml.')));
        return;
      }
      replace(cards, ps.map(card));
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }
  // A breaker that opens or closes redraws the cards.
  view.on('breaker.changed', load);
  view.on('resync', load);
  await load();
}

const stateKind = { closed: 'ok', half_open: 'warn', open: 'err' };

// healthList shows the circuit breaker of each target (model) of a
// provider that has served requests.
function healthList(hs) {
  if (!hs.length) return 'no requests yet';
  return h('ul', { class: 'plain' }, ...hs.map((t) => h('li', { 'data-target': t.target, 'data-state': t.state },
    badge(t.state.replace('_', '-'), stateKind[t.state] || ''), ' ',
    h('code', {}, t.target.slice(t.target.indexOf('/') + 1)),
    ` · ${t.ttfb_ms ? `${fmt.duration(t.ttfb_ms)} to first byte` : 'no answer yet'} · ${Math.round(t.error_rate * 100)}% errors of ${fmt.int(t.outcomes)}`,
    t.open_until ? ` · resting until ${fmt.dateTime(t.open_until)}` : '')));
}
