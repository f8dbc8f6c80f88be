package router_test

import (
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newHealth(cfg router.BreakerConfig) (*router.Health, *clock, *[]string) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := router.NewHealth(cfg, c.Now)
	var changes []string
	h.OnChange = func(th router.TargetHealth) { changes = append(changes, th.Target+":"+th.State) }
	return h, c, &changes
}

func attempt(t *testing.T, h *router.Health, key string, o router.Outcome) {
	t.Helper()
	if !h.Begin(key, false) {
		t.Fatalf("Begin(%s) refused", key)
	}
	h.End(key, o, time.Millisecond, 0)
}

func stateOf(h *router.Health, key string) string {
	for _, th := range h.Snapshot() {
		if th.Target == key {
			return th.State
		}
	}
	return "unknown"
}

func TestBreakerConsecutiveFailures(t *testing.T) {
	t.Parallel()
	h, clk, changes := newHealth(router.BreakerConfig{Failures: 3, Cooldown: 10 * time.Second})
	const k = "p/m"
	attempt(t, h, k, router.Failure)
	attempt(t, h, k, router.Failure)
	attempt(t, h, k, router.Success) // resets the run
	attempt(t, h, k, router.Failure)
	attempt(t, h, k, router.Failure)
	if s := stateOf(h, k); s != "closed" {
		t.Fatalf("after 2 failures in a row: %s", s)
	}
	attempt(t, h, k, router.Failure)
	if s := stateOf(h, k); s != "open" {
		t.Fatalf("after 3 failures in a row: %s", s)
	}
	if h.Begin(k, false) {
		t.Fatal("an open breaker let a request through")
	}
	ts := []router.Target{{Key: k}}
	if cs := h.Candidates(ts); cs[0].Available {
		t.Fatal("open target offered to Plan")
	}
	if until := h.RestingUntil(ts); !until.Equal(clk.Now().Add(10 * time.Second)) {
		t.Fatalf("RestingUntil = %v", until)
	}

	clk.Add(10 * time.Second)
	if cs := h.Candidates(ts); !cs[0].Available {
		t.Fatal("cooldown over, but not offered")
	}
	if !h.Begin(k, false) {
		t.Fatal("the probe was refused")
	}
	if h.Begin(k, false) {
		t.Fatal("a second request went through while the probe is out")
	}
	if s := stateOf(h, k); s != "half_open" {
		t.Fatalf("with the probe out: %s", s)
	}
	h.End(k, router.Failure, 0, 0)
	if s := stateOf(h, k); s != "open" {
		t.Fatalf("failed probe: %s", s)
	}
	clk.Add(10 * time.Second)
	attempt(t, h, k, router.Success)
	if s := stateOf(h, k); s != "closed" {
		t.Fatalf("good probe: %s", s)
	}
	want := []string{"p/m:open", "p/m:half_open", "p/m:open", "p/m:half_open", "p/m:closed"}
	if len(*changes) != len(want) {
		t.Fatalf("changes %v, want %v", *changes, want)
	}
	for i := range want {
		if (*changes)[i] != want[i] {
			t.Fatalf("changes %v, want %v", *changes, want)
		}
	}
}

func TestBreakerErrorRate(t *testing.T) {
	t.Parallel()
	h, _, _ := newHealth(router.BreakerConfig{Failures: 100, ErrorRate: 0.5, Window: 10, Cooldown: time.Second})
	const k = "p/m"
	// Alternate: never two failures in a row, but half of them fail.
	for i := range 9 {
		o := router.Success
		if i%2 == 1 {
			o = router.Failure
		}
		attempt(t, h, k, o)
	}
	if s := stateOf(h, k); s != "closed" {
		t.Fatalf("before the window is full: %s", s)
	}
	attempt(t, h, k, router.Failure) // 5 of 10
	if s := stateOf(h, k); s != "open" {
		t.Fatalf("at half failed: %s", s)
	}
}

func TestIgnoredAndForced(t *testing.T) {
	t.Parallel()
	h, _, _ := newHealth(router.BreakerConfig{Failures: 1, Cooldown: time.Minute})
	const k = "p/m"
	attempt(t, h, k, router.Ignored)
	if s := stateOf(h, k); s != "closed" {
		t.Fatalf("ignored outcome changed the state: %s", s)
	}
	attempt(t, h, k, router.Failure)
	if h.Begin(k, false) {
		t.Fatal("open breaker")
	}
	// A route with no other target forces its way through; a success
	// closes the breaker at once.
	if !h.Begin(k, true) {
		t.Fatal("forced Begin refused")
	}
	h.End(k, router.Success, 0, 0)
	if s := stateOf(h, k); s != "closed" {
		t.Fatalf("forced success: %s", s)
	}
	// Retry-After: the target rests (goes last) without opening.
	h2, _, _ := newHealth(router.BreakerConfig{Failures: 5, Cooldown: time.Second})
	h2.Begin(k, false)
	h2.End(k, router.Failure, 0, 30*time.Second)
	cs := h2.Candidates([]router.Target{{Key: k}})
	if !cs[0].Available || !cs[0].Resting {
		t.Fatalf("after a 429 with Retry-After: %+v", cs[0])
	}
}

func TestLatencyAverage(t *testing.T) {
	t.Parallel()
	h, _, _ := newHealth(router.DefaultBreaker)
	const k = "p/m"
	ts := []router.Target{{Key: k}}
	if !h.Begin(k, false) {
		t.Fatal("refused")
	}
	if cs := h.Candidates(ts); cs[0].InFlight != 1 {
		t.Fatalf("in flight %d", cs[0].InFlight)
	}
	h.End(k, router.Success, 100*time.Millisecond, 0)
	for range 30 {
		h.Begin(k, false)
		h.End(k, router.Success, 10*time.Millisecond, 0)
	}
	cs := h.Candidates(ts)
	if cs[0].InFlight != 0 || cs[0].TTFB < 10*time.Millisecond || cs[0].TTFB > 11*time.Millisecond {
		t.Fatalf("after 30 answers at 10 ms: %+v", cs[0])
	}
}

// TestHealthConcurrent runs Begin and End from many goroutines (with -race).
func TestHealthConcurrent(t *testing.T) {
	t.Parallel()
	h := router.NewHealth(router.BreakerConfig{Failures: 3, Cooldown: time.Millisecond}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := []string{"a/x", "b/y"}[i%2]
				if h.Begin(k, g == 0) {
					o := router.Success
					if (i+g)%3 == 0 {
						o = router.Failure
					}
					h.End(k, o, time.Microsecond, 0)
				}
			}
		})
	}
	wg.Wait()
	for _, th := range h.Snapshot() {
		if th.InFlight != 0 {
			t.Errorf("%s: %d in flight after all ended", th.Target, th.InFlight)
		}
	}
}
