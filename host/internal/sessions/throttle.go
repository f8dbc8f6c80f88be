package sessions

import (
	"sync"
	"time"
)

// throttle counts failed logins per key (an account name or a client
// address) in a fixed window that starts at the first failure. Once a key
// has limit failures in its window, it is blocked until the window ends.
//
// The table is bounded: when it holds maxKeys entries, ended windows are
// swept out, and if it is still full the oldest window is dropped. An
// attacker cycling through addresses can therefore push a key out early,
// but never make the table grow without bound.
type throttle struct {
	limit   int
	window  time.Duration
	maxKeys int

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	start time.Time // first failure of the window
	n     int
}

func newThrottle(limit int, window time.Duration, maxKeys int) *throttle {
	return &throttle{limit: limit, window: window, maxKeys: maxKeys, keys: map[string]*failures{}}
}

// blocked reports whether key may not try now, and for how long.
func (t *throttle) blocked(key string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil {
		return 0, false
	}
	end := f.start.Add(t.window)
	if !now.Before(end) {
		delete(t.keys, key)
		return 0, false
	}
	if f.n < t.limit {
		return 0, false
	}
	return end.Sub(now), true
}

// fail counts one failure for key.
func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f != nil && !now.Before(f.start.Add(t.window)) {
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
}

// reset forgets key's failures (after a successful login).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.keys, key)
	t.mu.Unlock()
}

// sweep drops ended windows and, if the table is still full, the oldest
// one. The caller holds t.mu.
func (t *throttle) sweep(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, f := range t.keys {
		if !now.Before(f.start.Add(t.window)) {
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
