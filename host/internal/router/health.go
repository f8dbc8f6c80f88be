package router

import (
	"slices"
	"sync"
	"time"
)

// BreakerConfig sets when a target's circuit breaker opens and for how
// long.
type BreakerConfig struct {
	// Failures in a row that open the breaker.
	Failures int
	// ErrorRate is the share of failures among the last Window outcomes
	// that opens the breaker, once Window outcomes are known; 0 turns
	// this rule off.
	ErrorRate float64
	Window    int
	// Cooldown is how long an open breaker rests its target before one
	// probe request may try it again (half-open).
	Cooldown time.Duration
}

// DefaultBreaker is the breaker of a config that does not set one.
var DefaultBreaker = BreakerConfig{Failures: 5, ErrorRate: 0.5, Window: 20, Cooldown: 30 * time.Second}

// BreakerState is a circuit breaker's state.
type BreakerState uint8

const (
	// Closed: requests flow.
	Closed BreakerState = iota
	// Open: the target rests until its cooldown is over.
	Open
	// HalfOpen: the cooldown is over; one probe request decides.
	HalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "closed"
}

// Outcome is how an attempt on a target went, as its breaker counts it.
type Outcome uint8

const (
	// Success: the upstream answered, even with a client error.
	Success Outcome = iota
	// Failure: refused connection, timeout, 429 or 5xx.
	Failure
	// Ignored: the attempt says nothing of the target (the client left,
	// the plugin was busy).
	Ignored
)

// ttfbWeight is the weight of a new time to first byte in the moving
// average: about the last ten requests count.
const ttfbWeight = 0.2

// TargetHealth is one target's health as the admin API shows it.
type TargetHealth struct {
	Target              string     `json:"target"` // "provider/model"
	State               string     `json:"state"`
	OpenUntil           *time.Time `json:"open_until,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	ErrorRate           float64    `json:"error_rate"` // over the last outcomes
	Outcomes            int        `json:"outcomes"`   // how many the rate is over
	TTFBMs              float64    `json:"ttfb_ms"`    // moving average
	InFlight            int        `json:"in_flight"`
}

// Health holds every target's circuit breaker and latency. It outlives the
// Routers built over it, so a reload keeps what it learnt. Safe for
// concurrent use.
type Health struct {
	cfg BreakerConfig
	now func() time.Time
	// OnChange, when set before use, is told of every breaker state change;
	// it is called without Health's lock held.
	OnChange func(TargetHealth)

	mu      sync.Mutex
	targets map[string]*targetHealth
}

type targetHealth struct {
	state       BreakerState
	until       time.Time
	probing     bool // a half-open probe is out
	consecutive int
	ring        []bool // last outcomes, true for a failure
	next, fails int
	ttfb        float64 // ns, moving average
	inFlight    int
	restUntil   time.Time // the upstream's Retry-After
}

// NewHealth starts every target closed. now may be nil (time.Now).
func NewHealth(cfg BreakerConfig, now func() time.Time) *Health {
	if now == nil {
		now = time.Now
	}
	if cfg.Failures < 1 {
		cfg.Failures = DefaultBreaker.Failures
	}
	if cfg.Window < 1 {
		cfg.Window = DefaultBreaker.Window
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultBreaker.Cooldown
	}
	return &Health{cfg: cfg, now: now, targets: map[string]*targetHealth{}}
}

func (h *Health) get(key string) *targetHealth {
	t := h.targets[key]
	if t == nil {
		t = &targetHealth{}
		h.targets[key] = t
	}
	return t
}

// Candidates is what Plan needs of a route's targets right now.
func (h *Health) Candidates(ts []Target) []Candidate {
	cs := make([]Candidate, len(ts))
	now := h.now()
	h.mu.Lock()
	for i, t := range ts {
		cs[i].Weight = t.Weight
		th := h.targets[t.Key]
		if th == nil {
			cs[i].Available = true
			continue
		}
		cs[i].Available = th.available(now)
		cs[i].Resting = now.Before(th.restUntil)
		cs[i].TTFB = time.Duration(th.ttfb)
		cs[i].InFlight = th.inFlight
	}
	h.mu.Unlock()
	return cs
}

func (t *targetHealth) available(now time.Time) bool {
	switch t.state {
	case Open:
		return !now.Before(t.until) && !t.probing
	case HalfOpen:
		return !t.probing
	}
	return true
}

// Begin claims an attempt on target key. It is false when the breaker has
// opened since the plan was made, or another request took the half-open
// probe: the caller moves on without trying. force claims it anyway, as a
// probe (for a route with no other target, where resting the only one
// would just turn the upstream's errors into the proxy's). Every true
// Begin needs its End.
func (h *Health) Begin(key string, force bool) bool {
	now := h.now()
	h.mu.Lock()
	t := h.get(key)
	if !force && !t.available(now) {
		h.mu.Unlock()
		return false
	}
	var changed *TargetHealth
	if t.state != Closed {
		t.probing = true
		if t.state == Open {
			t.state = HalfOpen
			c := t.view(key)
			changed = &c
		}
	}
	t.inFlight++
	h.mu.Unlock()
	h.notify(changed)
	return true
}

// End records how the attempt Begin claimed went. ttfb, when above 0,
// feeds the latency average; rest is how long the upstream asked not to be
// called again (a 429's Retry-After): the target goes after the others in
// every plan until then, and an open breaker rests at least that long.
func (h *Health) End(key string, o Outcome, ttfb, rest time.Duration) {
	now := h.now()
	h.mu.Lock()
	t := h.get(key)
	before := t.state
	if t.inFlight > 0 {
		t.inFlight--
	}
	if ttfb > 0 {
		if t.ttfb == 0 {
			t.ttfb = float64(ttfb)
		} else {
			t.ttfb += ttfbWeight * (float64(ttfb) - t.ttfb)
		}
	}
	wasProbe := t.state == HalfOpen && t.probing
	if wasProbe {
		t.probing = false
	}
	switch o {
	case Success:
		t.consecutive = 0
		t.record(false, h.cfg.Window)
		if wasProbe {
			t.state = Closed
			t.ring, t.next, t.fails = t.ring[:0], 0, 0
		}
	case Failure:
		t.consecutive++
		t.record(true, h.cfg.Window)
		rate := h.cfg.ErrorRate > 0 && len(t.ring) >= h.cfg.Window && float64(t.fails) >= h.cfg.ErrorRate*float64(len(t.ring))
		if rest > 0 {
			t.restUntil = now.Add(rest)
		}
		if wasProbe || t.consecutive >= h.cfg.Failures || rate {
			t.state = Open
			t.until = now.Add(max(h.cfg.Cooldown, rest))
		}
	}
	var changed *TargetHealth
	if t.state != before {
		c := t.view(key)
		changed = &c
	}
	h.mu.Unlock()
	h.notify(changed)
}

func (t *targetHealth) record(failed bool, window int) {
	if len(t.ring) < window {
		t.ring = append(t.ring, failed)
	} else {
		if t.ring[t.next] {
			t.fails--
		}
		t.ring[t.next] = failed
		t.next = (t.next + 1) % window
	}
	if failed {
		t.fails++
	}
}

func (h *Health) notify(c *TargetHealth) {
	if c != nil && h.OnChange != nil {
		h.OnChange(*c)
	}
}

func (t *targetHealth) view(key string) TargetHealth {
	v := TargetHealth{Target: key, State: t.state.String(), ConsecutiveFailures: t.consecutive,
		Outcomes: len(t.ring), TTFBMs: t.ttfb / 1e6, InFlight: t.inFlight}
	if len(t.ring) > 0 {
		v.ErrorRate = float64(t.fails) / float64(len(t.ring))
	}
	if t.state == Open {
		u := t.until.UTC()
		v.OpenUntil = &u
	}
	return v
}

// Snapshot returns the health of every target that has seen a request,
// ordered by target.
func (h *Health) Snapshot() []TargetHealth {
	h.mu.Lock()
	out := make([]TargetHealth, 0, len(h.targets))
	for k, t := range h.targets {
		out = append(out, t.view(k))
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b TargetHealth) int {
		if a.Target < b.Target {
			return -1
		}
		if a.Target > b.Target {
			return 1
		}
		return 0
	})
	return out
}

// RestingUntil is when the first of ts can be tried again: the end of the
// shortest cooldown among them; the zero time if one can be tried now.
func (h *Health) RestingUntil(ts []Target) time.Time {
	now := h.now()
	var soonest time.Time
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range ts {
		th := h.targets[t.Key]
		if th == nil || th.available(now) {
			return time.Time{}
		}
		u := th.until
		if th.state == HalfOpen || !u.After(now) {
			u = now.Add(time.Second) // a probe is out: it decides soon
		}
		if soonest.IsZero() || u.Before(soonest) {
			soonest = u
		}
	}
	return soonest
}
