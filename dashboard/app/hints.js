// Next steps for empty pages: a request the operator can paste to see
// something happen.

import { api } from './api.js';
import { copyButton, h } from './dom.js';

let modelPromise = null;

// someModel is a model one of the providers serves ("MODEL" when none).
function someModel() {
  if (!modelPromise) {
    modelPromise = api('/api/providers')
      .then((r) => {
        const p = (r.data || []).find((x) => x.models && x.models.length && !x.error);
        return p ? p.models[0] : 'MODEL';
      })
      .catch(() => 'MODEL');
  }
  return modelPromise;
}

// tryRequest is a copyable curl command for a first request, with the
// model filled in once the providers are known.
export function tryRequest() {
  const text = (model) => `curl ${location.origin}/v1/chat/completions \\
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
  -d '{"model":"${model}","messages":[{"role":"user","content":"Hello"}]}'`;
  const code = h('code', {}, text('MODEL'));
  const box = h('div', {}, h('pre', {}, code));
  someModel().then((m) => {
    code.textContent = text(m);
    box.append(copyButton(text(m), 'Copy command'));
  });
  return h('div', {},
    h('p', {}, 'Send one with a key from the ', h('a', { href: '/keys' }, 'Keys'), ' page (or the admin key) as KEY:'),
    box);
}
