// The admin API from the page: the session cookie goes along by itself;
// this adds the CSRF token to every call that changes something, turns
// OpenAI-shaped errors into ApiError, and sends the user to the login
// page when the session has ended.

export class ApiError extends Error {
  constructor(status, error = {}, headers = null) {
    super(error.message || `The proxy answered ${status}.`);
    this.status = status;
    this.code = error.code || '';
    this.param = error.param || '';
    this.headers = headers;
  }
}

// session is who is signed in: { user, role, csrf } or null.
export const session = { user: null, role: '', csrf: '' };

export function setSession(s) {
  session.user = s ? s.user : null;
  session.role = s ? s.role : '';
  session.csrf = s ? s.csrf_token || '' : '';
}

export const isAdmin = () => session.role === 'admin';

// onSessionEnded is called on a 401 (set by main.js).
let sessionEnded = () => {};
export function onSessionEnded(fn) { sessionEnded = fn; }

const safe = new Set(['GET', 'HEAD']);

// api calls the admin API. body: a plain object (sent as JSON) or a Blob
// (sent as it is, with its type). Resolves to the parsed JSON answer.
export async function api(path, { method = 'GET', body, signal, contentType } = {}) {
  const headers = {};
  const init = { method, headers, credentials: 'same-origin', signal };
  if (body instanceof Blob) {
    init.body = body;
    headers['Content-Type'] = contentType || body.type || 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  if (!safe.has(method) && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { message: 'The proxy did not answer. Is it running? Retrying when it is back.' });
  }
  const text = await res.text();
  let data = null;
  if (text && (res.headers.get('Content-Type') || '').includes('json')) {
    try { data = JSON.parse(text); } catch { /* reported below */ }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, (data && data.error) || { message: text || res.statusText }, res.headers);
    if (res.status === 401 && path !== '/api/login') {
      setSession(null);
      sessionEnded(err);
    }
    throw err;
  }
  return data;
}

// query builds "?a=1&b=2" from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
