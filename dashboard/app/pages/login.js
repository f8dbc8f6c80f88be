// Sign in. The server throttles failed attempts (429 with Retry-After) and
// answers a wrong password and an unknown user alike.

import { api } from '../api.js';
import { banner, h, replace } from '../dom.js';
import { duration } from '../format.js';

export function render(root, { notice, themeButton, signedIn }) {
  const errors = h('div', { 'aria-live': 'assertive' });
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  // POST, so that a password never lands in the address bar even if the
  // script failed to take over the form.
  const form = h('form', { class: 'form card', method: 'post', action: '/api/login' },
    h('label', { for: 'login-username' }, 'Username', user),
    h('label', { for: 'login-password' }, 'Password', pass),
    submit);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errors.replaceChildren();
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const s = await api('/api/login', { method: 'POST', body: { username: user.value, password: pass.value } });
      signedIn(s);
    } catch (err) {
      let msg = err.message;
      if (err.status === 429) {
        const wait = Number(err.headers && err.headers.get('Retry-After'));
        if (wait > 0) msg += ` Try again in ${duration(wait * 1000)}.`;
      }
      errors.replaceChildren(banner('error', msg));
      pass.value = '';
      pass.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  replace(root,
    h('div', { class: 'topright' }, themeButton()),
    h('main', { class: 'loginpage', id: 'main' },
      h('div', { class: 'loginbox' },
        h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '' }), 'LLM Proxy'),
        h('h1', {}, 'Sign in'),
        notice ? banner('info', notice) : null,
        errors,
        form,
        h('p', { class: 'hint' }, 'No account yet? An operator creates the first admin on the server: ',
          h('code', {}, 'llm-proxy users create --name NAME --admin'), '. ',
          h('code', {}, 'go tool task run'), ' makes one named admin, with its password in ',
          h('code', {}, 'data/admin-password'), '.'))));
  user.focus();
}
