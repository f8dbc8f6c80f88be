// Users: dashboard accounts. Admins create them, change roles, disable,
// set passwords and remove them; viewers see the list.

import { api, isAdmin, session } from '../api.js';
import { badge, banner, busy, confirmDialog, empty, Errors, field, h, pageHead, replace, table, toast } from '../dom.js';
import * as fmt from '../format.js';

export const title = 'Users';

export async function render(view) {
  const errors = new Errors();
  const admin = isAdmin();
  const list = h('section', { 'aria-label': 'Accounts' });
  replace(view.main,
    pageHead('Users', 'Who can sign in to this console. Admins change things; viewers read everything and change only their own password.'),
    errors.el,
    admin ? createForm() : banner('info', 'Only admins manage accounts.'),
    h('h2', {}, 'Accounts'), list);

  function createForm() {
    const name = h('input', { name: 'username', id: 'user-name', required: true, maxlength: '64', autocomplete: 'off' });
    const pass = h('input', { name: 'password', id: 'user-pass', type: 'password', required: true, minlength: '8', maxlength: '72', autocomplete: 'new-password' });
    const role = h('select', { name: 'role', id: 'user-role' }, h('option', { value: 'viewer' }, 'viewer (read-only)'), h('option', { value: 'admin' }, 'admin'));
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create account');
    const f = h('form', { class: 'form card', 'aria-labelledby': 'user-form-title' },
      h('h2', { id: 'user-form-title' }, 'Add an account'),
      h('div', { class: 'formrow' }, field('Username', name), field('Password', pass, '8 to 72 characters.'), field('Role', role)),
      h('div', {}, submit));
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      busy(submit, async () => {
        try {
          await api('/api/users', { method: 'POST', body: { username: name.value.trim(), password: pass.value, role: role.value } });
          errors.clear();
          toast(`Created ${name.value.trim()}.`, 'ok');
          f.reset();
          await load();
        } catch (err) { errors.show(err); }
      });
    });
    return f;
  }

  async function patch(u, body, done) {
    try {
      await api(`/api/users/${encodeURIComponent(u.username)}`, { method: 'PATCH', body });
      errors.clear();
      toast(done, 'ok');
      await load();
    } catch (err) { errors.show(err); await load(); }
  }

  async function setPassword(u) {
    const input = h('input', { type: 'password', id: 'reset-pass', minlength: '8', maxlength: '72', required: true, autocomplete: 'new-password' });
    const d = h('dialog', { 'aria-labelledby': 'reset-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'reset-title' }, `New password for ${u.username}`),
        h('p', {}, 'Their sessions end at once.'),
        field('New password', input, '8 to 72 characters.'),
        h('div', { class: 'buttons' }, h('button', { value: 'no', formnovalidate: true }, 'Cancel'), h('button', { value: 'yes', class: 'primary' }, 'Set password'))));
    document.body.append(d);
    d.addEventListener('close', () => {
      d.remove();
      if (d.returnValue === 'yes') patch(u, { password: input.value }, `Password of ${u.username} changed.`);
    });
    d.showModal();
  }

  async function remove(u) {
    if (!await confirmDialog(`Remove ${u.username}?`, 'The account and its sessions end at once.', 'Remove', { danger: true })) return;
    try {
      await api(`/api/users/${encodeURIComponent(u.username)}`, { method: 'DELETE' });
      toast(`Removed ${u.username}.`, 'ok');
      await load();
    } catch (err) { errors.show(err); }
  }

  async function load() {
    let users;
    try {
      users = (await api('/api/users', { signal: view.signal })).data || [];
    } catch (e) {
      if (e.name !== 'AbortError') errors.show(e);
      return;
    }
    if (!users.length) {
      replace(list, empty('No accounts', h('p', {}, 'Create the first admin on the server: ', h('code', {}, 'llm-proxy users create --name NAME --admin'))));
      return;
    }
    const me = session.user ? session.user.username : '';
    const cols = [
      { label: 'Username', value: (u) => [h('strong', {}, u.username), u.username === me ? ' (you)' : ''] },
      {
        label: 'Role',
        value: (u) => {
          if (!admin) return u.role;
          const s = h('select', { 'aria-label': `Role of ${u.username}` }, h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'admin' }, 'admin'));
          s.value = u.role;
          s.addEventListener('change', () => patch(u, { role: s.value }, `${u.username} is now ${s.value === 'admin' ? 'an admin' : 'a viewer'}.`));
          return s;
        },
      },
      { label: 'State', value: (u) => (u.disabled ? badge('disabled', 'warn') : badge('active', 'ok')) },
      { label: 'Created', value: (u) => fmt.dateTime(u.created_at), class: 'nowrap' },
      { label: 'Password changed', value: (u) => fmt.ago(u.password_changed_at), class: 'nowrap' },
    ];
    if (admin) {
      cols.push({
        label: 'Actions',
        class: 'nowrap',
        value: (u) => [
          h('button', { type: 'button', class: 'small', onclick: () => patch(u, { disabled: !u.disabled }, `${u.username} ${u.disabled ? 'enabled' : 'disabled'}.`) }, u.disabled ? 'Enable' : 'Disable'), ' ',
          h('button', { type: 'button', class: 'small', onclick: () => setPassword(u) }, 'Set password'), ' ',
          h('button', { type: 'button', class: 'small danger', onclick: () => remove(u) }, 'Remove'),
        ],
      });
    }
    replace(list, table(cols, users, { caption: 'Dashboard accounts', rowAttrs: (u) => ({ 'data-username': u.username }) }));
  }
  await load();
}
