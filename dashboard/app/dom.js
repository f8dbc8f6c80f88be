// Building the page without innerHTML: every value reaches the DOM as text,
// so nothing a client sent (a model name, a stored body) can become markup.

// h builds an element. attrs: "class", "for", "on<event>" handlers,
// booleans (true sets the attribute, false/null/undefined leaves it out),
// anything else as an attribute. Children: nodes, strings, numbers,
// arrays of those; null and false are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// replace empties el and fills it with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// pageHead is a page's title row: an h1 that takes focus after navigation
// (so screen readers announce the new page), a line of explanation, and
// optional action buttons.
export function pageHead(title, lede, ...actions) {
  return h('div', { class: 'pagehead' },
    h('h1', { tabindex: '-1' }, title),
    actions.length ? h('div', { class: 'actions' }, actions) : null,
    lede ? h('p', { class: 'lede' }, lede) : null);
}

// banner is a message box; errors are announced (role=alert).
export function banner(kind, message, { onClose } = {}) {
  const el = h('div', { class: `banner ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('div', { class: 'text' }, message));
  if (onClose) {
    el.append(h('button', { type: 'button', class: 'small', 'aria-label': 'Dismiss', onclick: () => { el.remove(); onClose(); } }, '×'));
  }
  return el;
}

// Errors shows API errors at the top of a page: one banner at a time,
// replaced by the next, cleared on success.
export class Errors {
  constructor() { this.el = h('div', { class: 'errors' }); }
  show(err) {
    const msg = err && err.message ? err.message : String(err);
    // A page that refreshes by itself meets the same error again: keep the
    // banner shown (and the focus on its button) rather than redraw it.
    const shown = this.el.querySelector('.banner .text');
    if (shown && shown.textContent === msg) return;
    replace(this.el, banner('error', msg, { onClose: () => {} }));
  }
  clear() { this.el.replaceChildren(); }
}

// empty is an empty state: what is missing and what to do about it.
export function empty(title, ...body) {
  return h('div', { class: 'empty' }, h('h2', {}, title), body);
}

// table builds a table from column definitions:
// { label, value(row) -> node|string, num: bool, class }.
export function table(columns, rows, { caption, rowAttrs } = {}) {
  const thead = h('thead', {}, h('tr', {}, columns.map((c) =>
    h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label))));
  const tbody = h('tbody', {}, rows.map((r) => row(columns, r, rowAttrs)));
  return h('div', { class: 'tablewrap' },
    h('table', {}, caption ? h('caption', { class: 'sr-only' }, caption) : null, thead, tbody));
}

export function row(columns, r, rowAttrs) {
  return h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c) =>
    h('td', { class: [c.num ? 'num' : '', c.class || ''].join(' ').trim() || null }, c.value(r))));
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}` }, text);
}

// statusBadge colours an HTTP status.
export function statusBadge(status) {
  if (!status) return badge('running', 'info');
  return badge(String(status), status < 400 ? 'ok' : status < 500 ? 'warn' : 'err');
}

// copyButton copies text to the clipboard and says so.
export function copyButton(text, label = 'Copy') {
  const btn = h('button', { type: 'button', class: 'small' }, label);
  btn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = 'Copied';
    } catch {
      // No clipboard (plain http on another host): select the text instead.
      const code = btn.parentElement && btn.parentElement.querySelector('code');
      if (code) window.getSelection().selectAllChildren(code);
      btn.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { btn.textContent = label; }, 2000);
  });
  return btn;
}

// confirmDialog asks a yes/no question in a modal dialog (Escape cancels)
// and resolves to true or false.
export function confirmDialog(title, text, yes = 'Confirm', { danger = false } = {}) {
  return new Promise((resolve) => {
    const d = h('dialog', { 'aria-labelledby': 'dlg-title' },
      h('h2', { id: 'dlg-title' }, title),
      h('p', {}, text),
      h('form', { method: 'dialog', class: 'buttons' },
        h('button', { value: 'no' }, 'Cancel'),
        h('button', { value: 'yes', class: danger ? 'danger' : 'primary' }, yes)));
    d.addEventListener('close', () => { d.remove(); resolve(d.returnValue === 'yes'); });
    document.body.append(d);
    d.showModal();
  });
}

// toast shows a short notice in the corner, read out politely.
export function toast(text, kind = '') {
  let box = document.querySelector('.toasts');
  if (!box) {
    box = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const t = h('div', { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

// field is a labelled input.
export function field(label, input, hint) {
  return h('label', {}, label, input, hint ? h('span', { class: 'hint' }, hint) : null);
}

// formValues reads a form's named fields into an object (checkboxes as
// booleans).
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    out[el.name] = el.type === 'checkbox' ? el.checked : el.value;
  }
  return out;
}

// busy disables a button while a promise runs.
export async function busy(button, fn) {
  button.disabled = true;
  try { return await fn(); } finally { button.disabled = false; }
}
