// The live connection: GET /api/ws as a WebSocket. Events arrive as
// {"type","time","data"}, several to a message, one per line. When the connection drops it comes back by
// itself, after 0.5 s, 1 s, 2 s ... up to 30 s (with jitter, so many open
// pages do not reconnect in step); each reconnection is announced as a
// "resync" event so pages catch up from the API on what they missed.
//
// Close codes from the server: 4001 the session ended (sign in again),
// 4002 this page fell behind (reconnect at once and catch up).

import { api } from './api.js';

const maxDelay = 30_000;

export class Live {
  constructor() {
    this.handlers = new Map(); // type -> Set of functions
    this.state = 'connecting'; // connecting | live | reconnecting | stopped
    this.attempt = 0;
    this.connectedOnce = false;
    this.ws = null;
    this.timer = null;
    this.wake = () => { if (this.state === 'reconnecting') this.connectSoon(0); };
  }

  // on registers fn for an event type ("request.started", "resync",
  // "state" ...) and returns the function that removes it.
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, data, ev) {
    for (const fn of this.handlers.get(type) || []) {
      try { fn(data, ev); } catch (e) { console.error(`live ${type} handler`, e); }
    }
  }

  setState(s) {
    this.state = s;
    this.emit('state', s);
  }

  start() {
    window.addEventListener('online', this.wake);
    document.addEventListener('visibilitychange', this.wake);
    this.connect();
  }

  stop() {
    window.removeEventListener('online', this.wake);
    document.removeEventListener('visibilitychange', this.wake);
    clearTimeout(this.timer);
    this.setState('stopped');
    if (this.ws) this.ws.close(1000, 'signed out');
    this.ws = null;
  }

  connect() {
    clearTimeout(this.timer);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/api/ws`);
    this.ws = ws;
    // A message carries one or more events, one JSON object per line.
    ws.onmessage = (m) => {
      for (const line of String(m.data).split('\n')) {
        if (!line.trim()) continue;
        let ev;
        try { ev = JSON.parse(line); } catch { continue; }
        if (ev.type === 'hello') {
          this.attempt = 0;
          this.setState('live');
          if (this.connectedOnce) this.emit('resync');
          this.connectedOnce = true;
        }
        this.emit(ev.type, ev.data, ev);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws || this.state === 'stopped') return;
      this.ws = null;
      if (e.code === 4001) {
        this.stop();
        this.emit('ended');
        return;
      }
      this.setState('reconnecting');
      this.connectSoon(e.code === 4002 && this.attempt === 0 ? 0 : this.backoff());
    };
  }

  backoff() {
    const base = Math.min(maxDelay, 500 * 2 ** this.attempt);
    this.attempt++;
    return base / 2 + Math.random() * base / 2;
  }

  connectSoon(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (this.state === 'stopped') return;
      // A refused upgrade tells the page nothing about why. Ask: a 401
      // here sends the user to the login page (api.js) and stops this.
      if (this.attempt > 1) {
        try { await api('/api/session'); } catch (e) { if (e.status === 401) return; }
      }
      if (this.state !== 'stopped') this.connect();
    }, delay);
  }
}
