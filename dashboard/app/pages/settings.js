// Settings: how long request logs are kept and whether bodies are stored
// (GET/PATCH /api/settings), and the signed-in user's own password.

import { api, isAdmin, session } from '../api.js';
import { banner, busy, Errors, field, h, pageHead, replace, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Settings';

export async function render(view) {
  const errors = new Errors();
  const admin = isAdmin();
  const logsBox = h('section', { class: 'card', 'aria-labelledby': 'set-logs' }, h('h2', { id: 'set-logs' }, 'Request log'));
  replace(view.main,
    pageHead('Settings', admin ? 'Changes apply at once.' : 'Your account is read-only; an admin can change these.'),
    errors.el,
    h('div', { class: 'grid2' }, logsBox, session.user ? passwordCard() : null));

  let s;
  try {
    s = await api('/api/settings', { signal: view.signal });
  } catch (e) {
    if (e.name !== 'AbortError') errors.show(e);
    return;
  }
  const days = h('input', { type: 'number', id: 'set-retention', name: 'retention_days', min: '0', max: '3650', step: '1', value: String(s.retention_days), required: true, disabled: !admin });
  const bodies = h('input', { type: 'checkbox', id: 'set-bodies', name: 'log_bodies', checked: s.log_bodies, disabled: !admin });
  const origin = h('p', { class: 'hint' });
  const showOrigin = () => {
    origin.textContent = s.changed && s.changed.length
      ? `Set here, overriding config.toml: ${s.changed.join(', ')}.`
      : 'Both come from config.toml until changed here.';
  };
  showOrigin();
  const save = h('button', { type: 'submit', class: 'primary', disabled: !admin }, 'Save');
  const f = h('form', { class: 'form' },
    field('Keep request logs for (days)', days, 'Older rows are removed every hour; 0 keeps them forever.'),
    h('label', { class: 'inline' }, bodies, 'Store request and response bodies'),
    h('p', { class: 'hint' },
      `Bodies are cut at ${fmt.bytes(s.max_body_bytes)}`,
      s.redact_fields && s.redact_fields.length ? [', and these fields are redacted before storing: ', h('code', {}, s.redact_fields.join(', '))] : '',
      '. Stored bodies appear in each request\'s detail under Logs.'),
    origin,
    admin ? h('div', {}, save) : null);
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, async () => {
      try {
        // Only what changed, so the rest keeps following config.toml.
        const body = {};
        if (Number(days.value) !== s.retention_days) body.retention_days = Number(days.value);
        if (bodies.checked !== s.log_bodies) body.log_bodies = bodies.checked;
        s = await api('/api/settings', { method: 'PATCH', body });
        errors.clear();
        days.value = String(s.retention_days);
        bodies.checked = s.log_bodies;
        showOrigin();
        toast('Settings saved.', 'ok');
      } catch (err) { errors.show(err); }
    });
  });
  logsBox.append(f);
}

function passwordCard() {
  const out = h('div', { 'aria-live': 'polite' });
  const current = h('input', { type: 'password', id: 'pw-current', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', id: 'pw-new', autocomplete: 'new-password', minlength: '8', maxlength: '72', required: true });
  const again = h('input', { type: 'password', id: 'pw-again', autocomplete: 'new-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  const f = h('form', { class: 'form' },
    field('Current password', current),
    field('New password', next, '8 to 72 characters. Your other sessions end.'),
    field('New password again', again),
    h('div', {}, submit));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    if (next.value !== again.value) {
      replace(out, banner('error', 'The new passwords differ.'));
      again.focus();
      return;
    }
    busy(submit, async () => {
      try {
        const s = await api('/api/session/password', { method: 'POST', body: { current_password: current.value, new_password: next.value } });
        f.reset();
        toast('Password changed.', 'ok');
        // The old session (and its live connection) ended; carry on with the new one.
        document.dispatchEvent(new CustomEvent('sessionrenewed', { detail: s }));
      } catch (err) { replace(out, banner('error', err.message)); }
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': 'set-pw' },
    h('h2', { id: 'set-pw' }, `Your password (${session.user.username})`), out, f);
}
