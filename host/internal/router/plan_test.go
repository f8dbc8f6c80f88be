package router_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

func up(weight int) router.Candidate { return router.Candidate{Weight: weight, Available: true} }

func TestPlan(t *testing.T) {
	t.Parallel()
	down := router.Candidate{Weight: 1}
	resting := router.Candidate{Weight: 1, Available: true, Resting: true}
	fast := router.Candidate{Available: true, TTFB: 10 * time.Millisecond}
	slow := router.Candidate{Available: true, TTFB: 200 * time.Millisecond}
	busyFast := router.Candidate{Available: true, TTFB: 10 * time.Millisecond, InFlight: 50}
	tests := []struct {
		name     string
		strategy router.Strategy
		cs       []router.Candidate
		want     []int
	}{
		{"no targets", router.Fallback, nil, []int{}},
		{"fallback keeps order", router.Fallback, []router.Candidate{up(1), up(1), up(1)}, []int{0, 1, 2}},
		{"fallback skips open breakers", router.Fallback, []router.Candidate{down, up(1), down, up(1)}, []int{1, 3}},
		{"all open", router.Fallback, []router.Candidate{down, down}, []int{}},
		{"one left", router.Weighted, []router.Candidate{down, up(5)}, []int{1}},
		{"resting goes last", router.Fallback, []router.Candidate{resting, up(1), up(1)}, []int{1, 2, 0}},
		{"resting still tried", router.Fallback, []router.Candidate{resting, down}, []int{0}},
		{"least latency: fast first", router.LeastLatency, []router.Candidate{slow, fast}, []int{1, 0}},
		{"least latency: queue counts", router.LeastLatency, []router.Candidate{slow, busyFast}, []int{0, 1}},
		{"least latency: unknown first", router.LeastLatency, []router.Candidate{fast, {Available: true}}, []int{1, 0}},
		{"zero weight is one", router.Weighted, []router.Candidate{up(0)}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(50) {
				if got := router.Plan(tt.strategy, tt.cs, seed); !slices.Equal(got, tt.want) {
					t.Fatalf("seed %d: Plan = %v, want %v", seed, got, tt.want)
				}
			}
		})
	}
}

// TestPlanWeights draws many plans: each target comes first in proportion
// to its weight.
func TestPlanWeights(t *testing.T) {
	t.Parallel()
	cs := []router.Candidate{up(1), up(3), up(6)}
	const n = 100_000
	first := make([]int, len(cs))
	for seed := range uint64(n) {
		plan := router.Plan(router.Weighted, cs, seed)
		if len(plan) != 3 {
			t.Fatalf("plan %v does not hold every target", plan)
		}
		first[plan[0]]++
	}
	for i, w := range []float64{0.1, 0.3, 0.6} {
		if got := float64(first[i]) / n; math.Abs(got-w) > 0.01 {
			t.Errorf("target %d first in %.3f of plans, want %.2f", i, got, w)
		}
	}
}

// TestPlanLeastLatencyExplores: power of two choices over three targets
// mostly picks the fastest, yet sends the slowest some traffic only when
// it is drawn against itself, which it never is.
func TestPlanLeastLatency(t *testing.T) {
	t.Parallel()
	cs := []router.Candidate{
		{Available: true, TTFB: 300 * time.Millisecond},
		{Available: true, TTFB: 100 * time.Millisecond},
		{Available: true, TTFB: 10 * time.Millisecond},
	}
	first := make([]int, len(cs))
	for seed := range uint64(3000) {
		first[router.Plan(router.LeastLatency, cs, seed)[0]]++
	}
	if first[0] != 0 {
		t.Errorf("the slowest target came first %d times; two choices never pick it", first[0])
	}
	if first[2] < first[1] || first[2] < 1500 {
		t.Errorf("first picks %v: the fastest should lead (it wins every draw it is in, 2/3 of them)", first)
	}
}

func FuzzPlan(f *testing.F) {
	f.Add(uint8(0), []byte{1, 1, 2, 0, 3, 1}, uint64(1))
	f.Add(uint8(1), []byte{5, 1, 0, 0, 9, 1, 1, 1}, uint64(7))
	f.Add(uint8(2), []byte{3, 1, 200, 1, 1, 0}, uint64(42))
	f.Fuzz(func(t *testing.T, strategy uint8, raw []byte, seed uint64) {
		var cs []router.Candidate
		for i := 0; i+1 < len(raw) && len(cs) < 64; i += 2 {
			cs = append(cs, router.Candidate{
				Weight: int(raw[i]), Available: raw[i+1]&1 == 1, Resting: raw[i+1]&2 == 2,
				TTFB: time.Duration(raw[i]) * time.Millisecond, InFlight: int(raw[i+1] >> 2),
			})
		}
		s := router.Strategy(strategy % 3)
		plan := router.Plan(s, cs, seed)
		// Every available candidate exactly once, nothing else.
		seen := make([]bool, len(cs))
		for _, i := range plan {
			if i < 0 || i >= len(cs) || seen[i] || !cs[i].Available {
				t.Fatalf("plan %v for %+v: bad index %d", plan, cs, i)
			}
			seen[i] = true
		}
		for i, c := range cs {
			if c.Available && !seen[i] {
				t.Fatalf("plan %v leaves out available candidate %d", plan, i)
			}
		}
		// Resting candidates come after every other one.
		for k := 1; k < len(plan); k++ {
			if cs[plan[k-1]].Resting && !cs[plan[k]].Resting {
				t.Fatalf("plan %v puts resting %d before %d", plan, plan[k-1], plan[k])
			}
		}
		if s == router.Fallback {
			for k := 1; k < len(plan); k++ {
				if cs[plan[k-1]].Resting == cs[plan[k]].Resting && plan[k-1] > plan[k] {
					t.Fatalf("fallback plan %v is out of order", plan)
				}
			}
		}
		if again := router.Plan(s, cs, seed); !slices.Equal(plan, again) {
			t.Fatalf("same seed, different plans: %v, %v", plan, again)
		}
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, ceiling := 100*time.Millisecond, time.Second
	tests := []struct {
		retry int
		u     float64
		want  time.Duration
	}{
		{0, 0.9, 0},
		{1, 0.5, 50 * time.Millisecond},
		{2, 0.5, 100 * time.Millisecond},
		{3, 0.99, 396 * time.Millisecond},
		{5, 0.5, 500 * time.Millisecond}, // 1.6 s capped at 1 s
		{64, 0.5, 500 * time.Millisecond},
		{1, 0, 0},
	}
	for _, tt := range tests {
		if got := router.Backoff(tt.retry, base, ceiling, tt.u); got != tt.want {
			t.Errorf("Backoff(%d, u=%v) = %v, want %v", tt.retry, tt.u, got, tt.want)
		}
	}
	if got := router.Backoff(3, 0, ceiling, 0.5); got != 0 {
		t.Errorf("no base: %v", got)
	}
}

func TestParseStrategy(t *testing.T) {
	t.Parallel()
	for i, name := range router.Strategies {
		if s, ok := router.ParseStrategy(name); !ok || int(s) != i || s.String() != name {
			t.Errorf("ParseStrategy(%q) = %v, %v", name, s, ok)
		}
	}
	if s, ok := router.ParseStrategy(""); !ok || s != router.Fallback {
		t.Errorf(`"" = %v, %v`, s, ok)
	}
	if _, ok := router.ParseStrategy("random"); ok {
		t.Error(`"random" parsed`)
	}
}
