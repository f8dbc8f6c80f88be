// Start-up: find out who is signed in, draw the frame (top bar and
// navigation), start the live connection and show the page the address
// names. Pages are modules under pages/, loaded when first visited; each
// exports `title` and `render(view)`.

import { api, isAdmin, onSessionEnded, session, setSession } from './api.js';
import { h, replace } from './dom.js';
import { Live } from './live.js';

const routes = [
  { path: '/overview', page: 'overview', nav: 'Overview' },
  { path: '/live', page: 'live', nav: 'Live requests' },
  { path: '/logs', page: 'logs', nav: 'Logs' },
  { path: /^\/logs\/([^/]+)$/, page: 'logdetail', section: '/logs' },
  { path: '/usage', page: 'usage', nav: 'Usage and cost' },
  { path: '/keys', page: 'keys', nav: 'Keys' },
  { path: '/providers', page: 'providers', nav: 'Providers' },
  { path: '/routes', page: 'routes', nav: 'Routes' },
  { path: '/plugins', page: 'plugins', nav: 'Plugins' },
  { path: '/users', page: 'users', nav: 'Users' },
  { path: '/settings', page: 'settings', nav: 'Settings' },
];

const root = document.getElementById('root');
let live = null;
let frame = null; // { main, nav, liveState, who }
let leave = () => {}; // ends the current page
let generation = 0;
let loginNotice = '';
let showingLogin = false;

// ---- theme ----

const themes = ['system', 'light', 'dark'];
const themeLabels = { system: ['◐', 'System theme'], light: ['☀', 'Light theme'], dark: ['☾', 'Dark theme'] };

function currentTheme() {
  const t = localStorage.getItem('llmproxy.theme');
  return themes.includes(t) ? t : 'system';
}

function applyTheme(t) {
  if (t === 'system') document.documentElement.removeAttribute('data-theme');
  else document.documentElement.setAttribute('data-theme', t);
  document.dispatchEvent(new Event('themechange'));
}

function themeButton() {
  const btn = h('button', { type: 'button', class: 'small', 'aria-live': 'polite' });
  const show = () => {
    const [icon, label] = themeLabels[currentTheme()];
    replace(btn, h('span', { 'aria-hidden': 'true' }, icon), h('span', { class: 'label' }, label));
    btn.setAttribute('aria-label', `${label}; switch between the system theme, light and dark`);
    btn.title = 'Switch between the system theme, light and dark';
  };
  btn.addEventListener('click', () => {
    const next = themes[(themes.indexOf(currentTheme()) + 1) % themes.length];
    localStorage.setItem('llmproxy.theme', next);
    applyTheme(next);
    show();
  });
  show();
  return btn;
}

applyTheme(currentTheme());
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => document.dispatchEvent(new Event('themechange')));

// ---- navigation ----

export function navigate(to, { replace: rep = false } = {}) {
  if (to === location.pathname + location.search) rep = true;
  history[rep ? 'replaceState' : 'pushState'](null, '', to);
  route(true);
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/v1/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => route(true));

function match(pathname) {
  for (const r of routes) {
    if (typeof r.path === 'string' && r.path === pathname) return { r, params: [] };
    if (r.path instanceof RegExp) {
      const m = r.path.exec(pathname);
      if (m) return { r, params: m.slice(1).map(decodeURIComponent) };
    }
  }
  return null;
}

async function route(focus = false) {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  if (path === '/login') return showLogin();
  if (!session.user && !session.role) return showLogin();
  if (path === '/') return navigate('/overview', { replace: true });
  ensureFrame();
  leave();
  const gen = ++generation;
  const found = match(path);
  const section = found ? found.r.section || found.r.path : '';
  for (const a of frame.nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const container = h('div', { class: 'page' });
  replace(frame.main, container);
  if (!found) {
    document.title = 'Not found · LLM Proxy';
    replace(container, h('h1', { tabindex: '-1' }, 'Page not found'),
      h('p', {}, 'There is no page at ', h('code', {}, path), '. ', h('a', { href: '/overview' }, 'Go to the overview'), '.'));
    return;
  }
  const cleanups = [];
  const ctrl = new AbortController();
  leave = () => { ctrl.abort(); cleanups.splice(0).forEach((f) => f()); };
  const view = {
    main: container,
    params: found.params,
    query: new URLSearchParams(location.search),
    signal: ctrl.signal,
    navigate,
    on: (type, fn) => cleanups.push(live.on(type, fn)),
    every: (ms, fn) => { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
    onLeave: (fn) => cleanups.push(fn),
    current: () => gen === generation,
  };
  try {
    const mod = await import(`./pages/${found.r.page}.js`);
    if (gen !== generation) return;
    document.title = `${mod.title} · LLM Proxy`;
    await mod.render(view);
  } catch (e) {
    if (e.name === 'AbortError' || gen !== generation) return;
    console.error(e);
    container.prepend(h('div', { class: 'banner error', role: 'alert' }, e.message || String(e)));
  }
  // The first data is on the page (tests wait for this).
  container.dataset.ready = 'true';
  if (focus && gen === generation) {
    const h1 = container.querySelector('h1');
    if (h1) h1.focus();
  }
}

// ---- frame ----

function ensureFrame() {
  if (frame) return;
  const main = h('main', { id: 'main', tabindex: '-1' });
  const nav = h('nav', { class: 'sidenav', 'aria-label': 'Pages' },
    h('ul', {}, routes.filter((r) => r.nav).map((r) => h('li', {}, h('a', { href: r.path }, r.nav)))));
  const liveState = h('span', { class: 'livestate', 'data-state': live.state, role: 'status' }, 'Connecting…');
  const who = h('span', { class: 'who' }, session.user ? session.user.username : 'admin key', ' · ', session.role);
  const signOut = h('button', { type: 'button', class: 'small', onclick: logout }, 'Sign out');
  replace(root,
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('div', { class: 'shell' },
      h('header', { class: 'topbar' },
        h('a', { class: 'brand', href: '/overview' }, h('img', { src: '/favicon.svg', alt: '' }), 'LLM Proxy'),
        liveState,
        h('span', { class: 'spacer' }),
        who,
        isAdmin() ? null : h('span', { class: 'badge', title: 'Viewers can read everything and change nothing' }, 'read-only'),
        themeButton(),
        signOut),
      nav,
      main));
  const showState = (s) => {
    liveState.dataset.state = s;
    liveState.textContent = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', stopped: 'Offline' }[s] || s;
  };
  live.on('state', showState);
  showState(live.state);
  frame = { main, nav };
}

function startSession(s) {
  showingLogin = false;
  setSession(s);
  if (live) live.stop();
  live = new Live();
  live.on('ended', () => sessionOver('Your session has ended; sign in again.'));
  live.start();
  frame = null;
}

function sessionOver(message) {
  if (showingLogin) return; // several calls failed at once: one login page
  leave();
  leave = () => {};
  if (live) live.stop();
  live = null;
  frame = null;
  setSession(null);
  loginNotice = message;
  const here = location.pathname + location.search;
  const next = here.startsWith('/login') ? '' : `?next=${encodeURIComponent(here)}`;
  history.replaceState(null, '', `/login${next}`);
  route();
}

// A password change starts a new session (and ends the live connection's).
document.addEventListener('sessionrenewed', (e) => {
  startSession(e.detail);
  route();
});

onSessionEnded((err) => sessionOver(err.code === 'session_expired' ? err.message : ''));

async function logout() {
  try { await api('/api/logout', { method: 'POST' }); } catch { /* signed out either way */ }
  sessionOver('You are signed out.');
}

async function showLogin() {
  leave();
  leave = () => {};
  frame = null;
  showingLogin = true;
  const mod = await import('./pages/login.js');
  document.title = 'Sign in · LLM Proxy';
  const notice = loginNotice;
  loginNotice = '';
  mod.render(root, {
    notice,
    themeButton,
    signedIn: (s) => {
      startSession(s);
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/overview', { replace: true });
    },
  });
}

// ---- start ----

(async () => {
  try {
    const s = await api('/api/session');
    startSession(s);
    route();
  } catch (e) {
    if (e.status !== 401) {
      replace(root, h('div', { class: 'loginpage' },
        h('div', { class: 'banner error', role: 'alert' }, `The console could not reach the proxy: ${e.message}`)));
    }
    // A 401 has already led to the login page (onSessionEnded).
  }
})();
