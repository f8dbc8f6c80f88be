// Client API keys: list, create (the secret is shown once), rotate and
// revoke. Viewers see the list only; the server refuses them changes
// whatever the page shows.

import { api, isAdmin } from '../api.js';
import { badge, banner, busy, confirmDialog, copyButton, empty, Errors, field, h, pageHead, replace, table, toast } from '../dom.js';
import * as fmt from '../format.js';
import { forgetKeys } from '../lookups.js';

export const title = 'Keys';

const expiries = [['', 'Never'], ['1', 'In 1 day'], ['7', 'In 7 days'], ['30', 'In 30 days'], ['90', 'In 90 days'], ['365', 'In a year'], ['date', 'On a date…']];

// limitInputs are the fields of a key's limits, filled from k if given.
function limitInputs(k = {}) {
  const num = (name, step, label, hint) => {
    const input = h('input', { type: 'number', min: '0', step, name, id: `key-${name}`, value: k[name] || '', placeholder: 'no limit' });
    return [input, field(label, input, hint)];
  };
  const [rpm, rpmF] = num('rpm', '1', 'Requests per minute', '');
  const [tpm, tpmF] = num('tpm', '1', 'Tokens per minute', 'Estimated at the start (body ÷ 4 + max_tokens), then the reported usage.');
  const [par, parF] = num('max_parallel', '1', 'Requests at once', '');
  const [budget, budgetF] = num('budget_usd', '0.01', 'Budget (USD)', 'From the price table.');
  const period = h('select', { name: 'budget_period', id: 'key-budget_period' },
    h('option', { value: 'month' }, 'per month'), h('option', { value: 'day' }, 'per day'));
  period.value = k.budget_period || 'month';
  return {
    el: h('div', { class: 'formrow' }, rpmF, tpmF, parF, budgetF, field('Budget period', period)),
    values: () => ({
      rpm: Number(rpm.value) || 0, tpm: Number(tpm.value) || 0, max_parallel: Number(par.value) || 0,
      budget_usd: Number(budget.value) || 0, budget_period: period.value,
    }),
  };
}

// limitsCell shows a key's use against each of its limits.
function limitsCell(k) {
  const u = k.usage || {};
  const parts = [];
  if (k.rpm) parts.push(`${fmt.int(u.requests_last_minute || 0)} / ${fmt.int(k.rpm)} req/min`);
  if (k.tpm) parts.push(`${fmt.int(u.tokens_last_minute || 0)} / ${fmt.int(k.tpm)} tok/min`);
  if (k.max_parallel) parts.push(`${fmt.int(u.in_flight || 0)} / ${fmt.int(k.max_parallel)} at once`);
  if (k.budget_usd) {
    parts.push(h('span', { title: u.budget_resets_at ? `resets ${fmt.dateTime(u.budget_resets_at)}` : '' },
      `${fmt.money(u.spent_usd || 0)} / ${fmt.money(k.budget_usd)} per ${k.budget_period}`));
  }
  if (!parts.length) return h('span', { class: 'hint' }, 'none');
  return h('ul', { class: 'plain' }, ...parts.map((p) => h('li', {}, p)));
}

function keyState(k) {
  if (k.revoked_at) return ['revoked', 'err'];
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return ['expired', 'warn'];
  return ['active', 'ok'];
}

// secretPanel shows a new secret once, with a copy button and how to use it.
function secretPanel(k, what) {
  const panel = h('section', { class: 'secret', role: 'status', 'aria-labelledby': 'secret-title', tabindex: '-1' },
    h('h2', { id: 'secret-title' }, `${what}: ${k.name}`),
    h('p', {}, h('strong', {}, 'Copy it now: this is the only time the proxy shows it. '), 'Only its hash is stored.'),
    h('div', { class: 'keyline' }, h('code', { id: 'new-key' }, k.key), copyButton(k.key)),
    h('p', { class: 'hint' }, 'Use it with any OpenAI SDK: base URL ', h('code', {}, `${location.origin}/v1`), ', API key as above.'),
    h('button', { type: 'button', class: 'small', onclick: () => panel.remove() }, 'I have copied it'));
  return panel;
}

export async function render(view) {
  const errors = new Errors();
  const top = h('div', {});
  const list = h('section', { 'aria-label': 'Keys' });
  const admin = isAdmin();

  const form = admin ? createForm() : null;
  replace(view.main,
    pageHead('Keys', 'Client API keys for /v1. Each key can be limited to some models and can expire; revoking one takes effect at once.'),
    errors.el, top,
    admin ? h('details', { class: 'card', id: 'create-key', open: true }, h('summary', {}, h('strong', {}, 'Create a key')), form) : banner('info', 'Your account is read-only: an admin can create, rotate and revoke keys.'),
    h('h2', {}, 'All keys'), list);

  function createForm() {
    const name = h('input', { name: 'name', id: 'key-name', required: true, maxlength: '100', placeholder: 'e.g. ci, alice-laptop' });
    const models = h('input', { name: 'models', id: 'key-models', list: 'key-model-list', placeholder: 'every model' });
    const expires = h('select', { name: 'expires', id: 'key-expires' }, expiries.map(([v, l]) => h('option', { value: v }, l)));
    const date = h('input', { type: 'date', name: 'date', id: 'key-date' });
    const dateField = field('Expiry date', date);
    dateField.hidden = true;
    expires.addEventListener('change', () => { dateField.hidden = expires.value !== 'date'; });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create key');
    const lim = limitInputs();
    const list = h('datalist', { id: 'key-model-list' });
    api('/api/providers').then((r) => {
      const models = [...new Set((r.data || []).flatMap((p) => p.models || []))].sort();
      list.replaceChildren(...models.map((m) => h('option', { value: m })));
    }).catch(() => {});
    const f = h('form', { class: 'form' },
      field('Name', name, 'What the key is for; shown in logs and usage.'),
      field('Allowed models', models, 'Comma-separated. Empty: every model.'),
      list,
      h('div', { class: 'formrow' }, field('Expires', expires), dateField),
      lim.el,
      h('div', {}, submit));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { name: name.value.trim(), ...lim.values() };
      const ms = models.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (ms.length) body.models = ms;
      if (expires.value === 'date' && date.value) body.expires_at = new Date(`${date.value}T23:59:59`).toISOString();
      else if (expires.value && expires.value !== 'date') body.expires_at = new Date(Date.now() + Number(expires.value) * 86400e3).toISOString();
      busy(submit, async () => {
        try {
          const k = await api('/api/keys', { method: 'POST', body });
          errors.clear();
          forgetKeys();
          f.reset();
          dateField.hidden = true;
          const panel = secretPanel(k, 'New key');
          replace(top, panel);
          panel.focus();
          await load();
        } catch (err) {
          errors.show(err);
        }
      });
    });
    return f;
  }

  function editLimits(k) {
    const lim = limitInputs(k);
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save limits');
    const f = h('form', { class: 'form card', 'aria-labelledby': 'limits-title' },
      h('h2', { id: 'limits-title' }, `Limits of ${k.name}`), lim.el,
      h('div', { class: 'formrow' }, save, h('button', { type: 'button', onclick: () => top.replaceChildren() }, 'Cancel')));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(save, async () => {
        try {
          await api(`/api/keys/${encodeURIComponent(k.id)}`, { method: 'PATCH', body: lim.values() });
          errors.clear();
          top.replaceChildren();
          toast(`Saved the limits of ${k.name}.`, 'ok');
          await load();
        } catch (err) { errors.show(err); }
      });
    });
    replace(top, f);
    f.querySelector('input').focus();
  }

  async function rotate(k) {
    if (!await confirmDialog(`Rotate “${k.name}”?`, 'The key gets a new secret and the old one stops working at once. Clients must switch to the new secret.', 'Rotate')) return;
    try {
      const nk = await api(`/api/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST' });
      errors.clear();
      const panel = secretPanel(nk, 'New secret');
      replace(top, panel);
      panel.focus();
      await load();
    } catch (err) { errors.show(err); }
  }

  async function revoke(k) {
    if (!await confirmDialog(`Revoke “${k.name}”?`, 'Requests with this key get 401 from now on. This cannot be undone.', 'Revoke', { danger: true })) return;
    try {
      await api(`/api/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      errors.clear();
      forgetKeys();
      toast(`Revoked ${k.name}.`, 'ok');
      await load();
    } catch (err) { errors.show(err); }
  }

  async function load() {
    let keys;
    try {
      keys = (await api('/api/keys', { signal: view.signal })).data || [];
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
      return;
    }
    if (!keys.length) {
      replace(list, empty('No keys yet', h('p', {}, admin
        ? 'Create one above and give it to a client instead of the admin key. Each key can be limited to some models and revoked on its own.'
        : 'An admin can create keys for clients.')));
      return;
    }
    const cols = [
      { label: 'Name', value: (k) => h('strong', {}, k.name) },
      { label: 'Key', value: (k) => h('code', {}, `${k.prefix}…`) },
      { label: 'Models', value: (k) => (k.models && k.models.length ? k.models.join(', ') : h('span', { class: 'hint' }, 'every model')) },
      { label: 'Created', value: (k) => fmt.dateTime(k.created_at), class: 'nowrap' },
      { label: 'Expires', value: (k) => (k.expires_at ? fmt.dateTime(k.expires_at) : 'never'), class: 'nowrap' },
      { label: 'Last used', value: (k) => (k.last_used_at ? h('span', { title: fmt.dateTime(k.last_used_at) }, fmt.ago(k.last_used_at)) : 'never'), class: 'nowrap' },
      { label: 'Limits', value: limitsCell },
      { label: 'State', value: (k) => { const [s, c] = keyState(k); return badge(s, c); } },
    ];
    if (admin) {
      cols.push({
        label: 'Actions',
        class: 'nowrap',
        value: (k) => (k.revoked_at ? '' : [
          h('button', { type: 'button', class: 'small', onclick: () => editLimits(k), 'aria-label': `Limits of ${k.name}` }, 'Limits'), ' ',
          h('button', { type: 'button', class: 'small', onclick: () => rotate(k), 'aria-label': `Rotate ${k.name}` }, 'Rotate'), ' ',
          h('button', { type: 'button', class: 'small danger', onclick: () => revoke(k), 'aria-label': `Revoke ${k.name}` }, 'Revoke'),
        ]),
      });
    }
    replace(list, table(cols, keys, { caption: 'Client API keys', rowAttrs: (k) => ({ 'data-key-id': k.id, 'data-state': keyState(k)[0] }) }));
  }

  for (const type of ['key.created', 'key.revoked', 'key.rotated', 'key.updated']) {
    view.on(type, () => { forgetKeys(); load(); });
  }
  view.on('resync', load);
  await load();
}
