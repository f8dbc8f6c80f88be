package sessions

import (
	"net/netip"
	"sync"
	"time"
)

// throttle counts failed logins per key (an account name, a device or a
// client network). It works in one of two ways:
//
//   - blocking (delay nil): once a key has limit failures in a window that
//     starts at its first failure, it is refused until the window ends;
//   - slowing (delay set): after limit failures, each further try must
//     wait delay(n) after the last failure, n counting the failures beyond
//     the limit from 0; the failures are forgotten a window after the last
//     one. Nobody is ever shut out for longer than the largest delay.
//
// The table is bounded: when it holds maxKeys entries, forgotten keys are
// swept out, and if it is still full the oldest one is dropped. An
// attacker cycling through keys can therefore push a key out early, but
// never make the table grow without bound.
type throttle struct {
	limit   int
	window  time.Duration
	delay   func(over int) time.Duration
	maxKeys int

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	start time.Time // first failure
	last  time.Time // latest failure
	n     int
}

func newThrottle(limit int, window time.Duration, maxKeys int) *throttle {
	return &throttle{limit: limit, window: window, maxKeys: maxKeys, keys: map[string]*failures{}}
}

// newSlowdown makes a slowing throttle whose delay starts at base and
// doubles with each failure up to max.
func newSlowdown(limit int, base, max, window time.Duration, maxKeys int) *throttle {
	t := newThrottle(limit, window, maxKeys)
	t.delay = func(over int) time.Duration {
		if over >= 40 {
			return max
		}
		return min(base<<over, max)
	}
	return t
}

// forgets is when f is dropped.
func (t *throttle) forgets(f *failures) time.Time {
	if t.delay != nil {
		return f.last.Add(t.window)
	}
	return f.start.Add(t.window)
}

// blocked reports whether key may not try now, and for how long.
func (t *throttle) blocked(key string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil {
		return 0, false
	}
	if !now.Before(t.forgets(f)) {
		delete(t.keys, key)
		return 0, false
	}
	if f.n < t.limit {
		return 0, false
	}
	until := f.start.Add(t.window)
	if t.delay != nil {
		until = f.last.Add(t.delay(f.n - t.limit))
	}
	if !now.Before(until) {
		return 0, false
	}
	return until.Sub(now), true
}

// fail counts one failure for key.
func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f != nil && !now.Before(t.forgets(f)) {
		f = nil
	}
	if f == nil {
		if len(t.keys) >= t.maxKeys {
			t.sweep(now)
		}
		f = &failures{start: now}
		t.keys[key] = f
	}
	f.n++
	f.last = now
}

// reset forgets key's failures (after a successful login).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.keys, key)
	t.mu.Unlock()
}

// sweep drops forgotten keys and, if the table is still full, the oldest
// one. The caller holds t.mu.
func (t *throttle) sweep(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, f := range t.keys {
		if !now.Before(t.forgets(f)) {
			delete(t.keys, k)
			continue
		}
		if oldestKey == "" || f.start.Before(oldest) {
			oldestKey, oldest = k, f.start
		}
	}
	if len(t.keys) >= t.maxKeys && oldestKey != "" {
		delete(t.keys, oldestKey)
	}
}

// networkKey is the throttling key of a client address: the address itself
// for IPv4, its /64 for IPv6, since one subscriber usually holds a whole
// /64 and could otherwise try from 2^64 addresses.
func networkKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "a:" + addr
	}
	if a = a.Unmap(); a.Is4() {
		return "a:" + a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return "n:" + p.String()
}
