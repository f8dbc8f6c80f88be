// Numbers for people, in the browser's locale.

const cache = new Map();
function nf(opts) {
  const key = JSON.stringify(opts);
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(undefined, opts));
  return cache.get(key);
}

const dash = '—';
const bad = (n) => n === null || n === undefined || Number.isNaN(n);

// int: 12,345.
export function int(n) {
  return bad(n) ? dash : nf({ maximumFractionDigits: 0 }).format(n);
}

// decimal: up to `digits` fraction digits.
export function decimal(n, digits = 1) {
  return bad(n) ? dash : nf({ maximumFractionDigits: digits }).format(n);
}

// fixed: exactly `digits` fraction digits (0.0, 2.5, 1,234.0).
export function fixed(n, digits = 1) {
  return bad(n) ? dash : nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}

// tokens: 950, 1.2k, 3.4M, 1.1B.
export function tokens(n) {
  if (bad(n)) return dash;
  const abs = Math.abs(n);
  for (const [size, unit] of [[1e9, 'B'], [1e6, 'M'], [1e3, 'k']]) {
    if (abs >= size) return nf({ maximumFractionDigits: abs >= size * 100 ? 0 : 1 }).format(n / size) + unit;
  }
  return int(n);
}

// money in US dollars: $0, $0.000026, $0.0123, $1.50, $1,234.56. Amounts
// under a dollar keep three significant digits, so a cheap request does
// not read as $0.00.
export function money(usd) {
  if (bad(usd)) return dash;
  if (usd === 0) return nf({ style: 'currency', currency: 'USD', maximumFractionDigits: 0 }).format(0);
  if (Math.abs(usd) < 1) {
    return nf({ style: 'currency', currency: 'USD', maximumSignificantDigits: 3 }).format(usd);
  }
  return nf({ style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(usd);
}

// duration from milliseconds: 0.42 ms, 2.5 ms, 850 ms, 1.2 s, 2 min 5 s, 3 h 10 min.
export function duration(ms) {
  if (bad(ms)) return dash;
  if (ms < 1) return `${decimal(ms, 2)} ms`;
  if (ms < 10) return `${decimal(ms, 1)} ms`;
  if (ms < 1000) return `${int(ms)} ms`;
  if (ms < 60_000) return `${decimal(ms / 1000, ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) {
    const m = Math.floor(ms / 60_000);
    const s = Math.round((ms % 60_000) / 1000);
    return s ? `${m} min ${s} s` : `${m} min`;
  }
  const hr = Math.floor(ms / 3_600_000);
  const m = Math.round((ms % 3_600_000) / 60_000);
  return m ? `${hr} h ${m} min` : `${hr} h`;
}

// percent from a fraction: 0.0123 -> 1.2%.
export function percent(x) {
  if (bad(x)) return dash;
  return nf({ style: 'percent', maximumFractionDigits: x !== 0 && Math.abs(x) < 0.1 ? 1 : 0 }).format(x);
}

// bytes: 512 B, 64 KiB, 3.9 MiB.
export function bytes(n) {
  if (bad(n)) return dash;
  if (n < 1024) return `${int(n)} B`;
  if (n < 1024 ** 2) return `${decimal(n / 1024)} KiB`;
  return `${decimal(n / 1024 ** 2)} MiB`;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeFmt = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

// dateTime: a time in the reader's zone; today's times without the date.
export function dateTime(t) {
  if (!t) return dash;
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return dash;
  const now = new Date();
  return d.toDateString() === now.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

const rel = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// ago: "5 minutes ago", "in 3 days".
export function ago(t) {
  if (!t) return dash;
  const diff = (new Date(t).getTime() - Date.now()) / 1000;
  const abs = Math.abs(diff);
  if (abs < 45) return rel.format(Math.round(diff), 'second');
  if (abs < 2700) return rel.format(Math.round(diff / 60), 'minute');
  if (abs < 64800) return rel.format(Math.round(diff / 3600), 'hour');
  if (abs < 86400 * 45) return rel.format(Math.round(diff / 86400), 'day');
  return dateTime(t);
}

// shortHash: the first 12 hex digits of a sha256.
export const shortHash = (s) => (s ? s.slice(0, 12) : dash);
