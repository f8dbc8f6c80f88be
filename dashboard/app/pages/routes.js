// Routes: public model names that map to one or more provider targets,
// tried in order (fallback), drawn by weight, or by latency. Those of
// config.toml are read-only here; those kept in the database are added,
// changed and removed here and serve from the next request. Each target
// shows its circuit breaker, live.

import { api, isAdmin } from '../api.js';
import { badge, banner, busy, confirmDialog, empty, Errors, field, h, pageHead, replace, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Routes';

const strategies = {
  fallback: 'Fallback: in order, the next one when a target fails',
  weighted: 'Weighted: drawn by weight, the others as fallbacks',
  least_latency: 'Least latency: the faster of two drawn at random',
};

const stateKind = { closed: 'ok', half_open: 'warn', open: 'err' };

export async function render(view) {
  const errors = new Errors();
  const admin = isAdmin();
  const formBox = h('div', {});
  const cards = h('div', { class: 'grid2' });
  let providerNames = [];

  const addButton = admin ? h('button', { type: 'button', class: 'primary', onclick: () => openForm(null) }, 'Add a route') : null;
  replace(view.main,
    pageHead('Routes', 'A route is a model name clients ask for, served by one or more provider targets. Point a route at another model to move traffic without touching clients. Routes from config.toml change with the file; those added here serve from the next request.', addButton),
    errors.el, formBox, cards);

  function providerSelect(value, id, label) {
    const names = [...new Set([...providerNames, value].filter(Boolean))];
    const s = h('select', { id, 'aria-label': label }, names.map((n) => h('option', { value: n }, n)));
    s.value = value || names[0] || '';
    return s;
  }

  function openForm(r) {
    const editing = !!r;
    const v = r || { model: '', strategy: 'fallback', targets: [{ provider: providerNames[0] || '', model: '', weight: 1 }], max_attempts: 0, context_window_fallback: null };
    const model = h('input', { name: 'model', id: 'route-model', required: true, value: v.model, disabled: editing, placeholder: 'smart' });
    const strategy = h('select', { name: 'strategy', id: 'route-strategy' },
      Object.entries(strategies).map(([k, label]) => h('option', { value: k }, label)));
    strategy.value = v.strategy;
    const attempts = h('input', { type: 'number', min: '0', max: '10', step: '1', name: 'max_attempts', id: 'route-attempts', value: v.max_attempts || '', placeholder: 'default' });

    // One row per target: provider, upstream model, weight, remove.
    const rows = h('ol', { class: 'targets', id: 'route-targets' });
    const addRow = (t) => {
      const i = rows.children.length;
      const li = h('li', { class: 'formrow', 'data-target-row': '' },
        providerSelect(t.provider, `route-t${i}-provider`, `Target ${i + 1} provider`),
        h('input', { class: 'target-model', id: `route-t${i}-model`, required: true, value: t.model, placeholder: 'upstream model', 'aria-label': `Target ${i + 1} model` }),
        h('input', { class: 'target-weight', id: `route-t${i}-weight`, type: 'number', min: '1', step: '1', value: t.weight || 1, 'aria-label': `Target ${i + 1} weight`, title: 'Weight (weighted strategy)' }),
        h('button', { type: 'button', class: 'small', 'aria-label': `Remove target ${i + 1}`, onclick: () => { if (rows.children.length > 1) li.remove(); } }, '×'));
      rows.append(li);
    };
    v.targets.forEach(addRow);
    const more = h('button', { type: 'button', class: 'small', id: 'route-add-target', onclick: () => addRow({ provider: providerNames[0] || '', model: '', weight: 1 }) }, 'Add a target');

    const fb = v.context_window_fallback;
    const fbOn = h('input', { type: 'checkbox', id: 'route-fb-on', checked: !!fb });
    const fbProvider = providerSelect(fb ? fb.provider : providerNames[0], 'route-fb-provider', 'Fallback provider');
    const fbModel = h('input', { id: 'route-fb-model', value: fb ? fb.model : '', placeholder: 'a model with a longer context', 'aria-label': 'Fallback model' });

    const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save changes' : 'Add route');
    const f = h('form', { class: 'form card', 'aria-labelledby': 'route-form-title' },
      h('h2', { id: 'route-form-title' }, editing ? `Change ${v.model}` : 'Add a route'),
      field('Model name', model, 'What clients ask for. It takes precedence over a provider\'s model of the same name.'),
      field('Strategy', strategy),
      h('fieldset', {}, h('legend', {}, 'Targets: provider, upstream model, weight'), rows, more),
      field('Attempts', attempts, 'Attempts per request over all targets, the first included; empty for the [routing] default.'),
      h('label', { class: 'inline' }, fbOn, 'When a prompt is too long for the model\'s context window, send it to:'),
      h('div', { class: 'formrow' }, fbProvider, fbModel),
      h('div', { class: 'formrow' }, submit, h('button', { type: 'button', onclick: () => formBox.replaceChildren() }, 'Cancel')));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      const targets = [...rows.children].map((li) => ({
        provider: li.querySelector('select').value,
        model: li.querySelector('.target-model').value.trim(),
        weight: Number(li.querySelector('.target-weight').value) || 1,
      }));
      const body = { strategy: strategy.value, targets, max_attempts: Number(attempts.value) || 0,
        context_window_fallback: fbOn.checked ? { provider: fbProvider.value, model: fbModel.value.trim() } : null };
      busy(submit, async () => {
        try {
          if (editing) await api(`/api/routes/${routePath(v.model)}`, { method: 'PATCH', body });
          else await api('/api/routes', { method: 'POST', body: { model: model.value.trim(), ...body } });
          errors.clear();
          formBox.replaceChildren();
          toast(editing ? `Saved ${v.model}.` : `Added ${model.value.trim()}; it serves from the next request.`, 'ok');
          await load();
        } catch (err) { errors.show(err); }
      });
    });
    replace(formBox, f);
    (editing ? strategy : model).focus();
  }

  async function remove(r) {
    if (!await confirmDialog(`Remove the route ${r.model}?`, 'Requests for this model get 404 from the next one on, unless a provider lists a model of that name.', 'Remove', { danger: true })) return;
    try {
      await api(`/api/routes/${routePath(r.model)}`, { method: 'DELETE' });
      toast(`Removed ${r.model}.`, 'ok');
      await load();
    } catch (err) { errors.show(err); }
  }

  function card(r) {
    const fact = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    return h('section', { class: 'card', 'data-route': r.model, 'aria-label': `Route ${r.model}` },
      h('div', { class: 'cardhead' },
        h('h2', {}, h('code', {}, r.model)),
        badge(r.source === 'config' ? 'config.toml' : 'database', r.source === 'config' ? '' : 'info'),
        h('div', { class: 'actions' },
          admin && r.source === 'database' ? h('button', { type: 'button', onclick: () => openForm(r) }, 'Change') : null,
          admin && r.source === 'database' ? h('button', { type: 'button', class: 'danger', onclick: () => remove(r) }, 'Remove') : null)),
      r.error ? banner('error', r.error) : null,
      h('dl', { class: 'facts' },
        fact('Strategy', r.strategy.replace('_', ' ')),
        fact('Attempts', r.max_attempts ? fmt.int(r.max_attempts) : `${fmt.int(r.effective_max_attempts)} (default)`),
        fact('Targets', targetList(r.targets, r.strategy === 'weighted')),
        r.context_window_fallback ? fact('Long prompts', targetList([r.context_window_fallback], false)) : null,
        r.updated_at ? fact('Changed', fmt.dateTime(r.updated_at)) : null));
  }

  async function load() {
    try {
      const [r, ps] = await Promise.all([
        api('/api/routes', { signal: view.signal }),
        api('/api/providers', { signal: view.signal }).catch(() => ({ data: [] })),
      ]);
      providerNames = (ps.data || []).map((p) => p.name);
      errors.clear();
      const rs = r.data || [];
      if (!rs.length) {
        replace(cards, empty('No routes yet', h('p', {}, 'Every model a provider lists is served as it is. ',
          admin ? 'Add a route to give a model several targets, or a name of your own.' : 'An admin can add routes here or in config.toml.')));
        return;
      }
      replace(cards, rs.map(card));
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
    }
  }
  view.on('breaker.changed', load);
  view.on('resync', load);
  await load();
}

// routePath keeps the slashes of a model name (the API takes the rest of
// the path as the name) and escapes everything else.
function routePath(model) {
  return model.split('/').map(encodeURIComponent).join('/');
}

function targetList(ts, weighted) {
  return h('ol', { class: 'plain' }, ...ts.map((t) => {
    const hl = t.health || {};
    return h('li', { 'data-target': `${t.provider}/${t.model}`, 'data-state': hl.state },
      t.served ? badge((hl.state || 'closed').replace('_', '-'), stateKind[hl.state] || '') : badge('no such provider', 'err'), ' ',
      h('code', {}, `${t.provider}/${t.model}`),
      weighted ? ` · weight ${fmt.int(t.weight)}` : '',
      hl.outcomes ? ` · ${fmt.duration(hl.ttfb_ms)} to first byte · ${Math.round(hl.error_rate * 100)}% errors of ${fmt.int(hl.outcomes)}` : '');
  }));
}
