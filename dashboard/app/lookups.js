// Names for ids: the log rows carry key ids, people read key names.

import { api } from './api.js';

let keys = null;

// keyNames resolves to a Map from key id to { name, prefix }; fetched once
// and again after forgetKeys (a key was created or changed).
export function keyNames() {
  if (!keys) {
    keys = api('/api/keys')
      .then((r) => new Map((r.data || []).map((k) => [k.id, k])))
      .catch(() => new Map());
  }
  return keys;
}

export function forgetKeys() { keys = null; }

// keyLabel names the key of a log row: the admin key has no id.
export function keyLabel(names, id) {
  if (!id || id === 'admin') return 'admin key';
  const k = names.get(id);
  return k ? k.name : id;
}

// apiLabel names the API a request's client spoke (a log row's "api").
export function apiLabel(api) {
  switch (api) {
    case 'messages': return 'Anthropic Messages';
    case 'responses': return 'OpenAI Responses';
    case 'openai': case '': case undefined: return 'OpenAI chat';
  }
  return api;
}
