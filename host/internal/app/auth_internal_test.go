package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
)

func TestKeyRotationAndRest(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := newAuthDoer("p", nil, false, egress.Options{BaseURL: "http://127.0.0.1", AllowPrivateNetwork: true}, "a\nb\nc", nil)
	d.now = func() time.Time { return now }
	if len(d.keys) != 3 || d.keys[1].secret != "b" {
		t.Fatalf("keys %+v", d.keys)
	}
	// In turn, each key once per three picks.
	seen := map[int]int{}
	for range 30 {
		seen[d.pick(make([]bool, 3))]++
	}
	if seen[0] != 10 || seen[1] != 10 || seen[2] != 10 {
		t.Fatalf("picks %v", seen)
	}
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	if d.refusedBy(d.keys[0], resp(500, "")) {
		t.Fatal("a 500 refuses the key")
	}
	if !d.refusedBy(d.keys[0], resp(429, "20")) || !d.refusedBy(d.keys[1], resp(401, "")) ||
		!d.refusedBy(d.keys[2], resp(429, now.Add(10*time.Second).Format(http.TimeFormat))) {
		t.Fatal("refusals not recognised")
	}
	for i, want := range []time.Duration{20 * time.Second, keyRefusedRest, 10 * time.Second} {
		if got := time.UnixMilli(d.keys[i].restUntil.Load()).Sub(now); got != want {
			t.Errorf("key %d rests %v, want %v", i, got, want)
		}
	}
	// All resting: the one whose rest ends first.
	if got := d.pick(make([]bool, 3)); got != 2 {
		t.Errorf("pick with all resting = %d, want 2", got)
	}
	if d.anyFree([]bool{false, false, false}) {
		t.Error("anyFree with all resting")
	}
	now = now.Add(15 * time.Second)
	if got := d.pick([]bool{false, false, false}); got != 2 || !d.anyFree([]bool{true, true, false}) {
		t.Errorf("after key 2's rest: pick %d", got)
	}
	if states := d.KeyStates(); states[0].RestingUntil == nil || states[2].RestingUntil != nil || states[0].Refused != 1 {
		t.Errorf("states %+v", states)
	}
}

// TestKeyWeights: each key's share of the picks is its weight, among the
// keys that are not resting; weights that are not one per key are
// ignored.
func TestKeyWeights(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := newAuthDoer("p", nil, false, egress.Options{BaseURL: "http://127.0.0.1", AllowPrivateNetwork: true}, "a\nb\nc", []int{5, 1, 2})
	d.now = func() time.Time { return now }
	seen := map[int]int{}
	for range 800 {
		seen[d.pick(make([]bool, 3))]++
	}
	if seen[0] != 500 || seen[1] != 100 || seen[2] != 200 {
		t.Fatalf("picks %v, want 500 100 200", seen)
	}
	// Key 0 rests: the others share by their weights.
	d.keys[0].restUntil.Store(now.Add(time.Minute).UnixMilli())
	clear(seen)
	for range 300 {
		seen[d.pick(make([]bool, 3))]++
	}
	if seen[0] != 0 || seen[1] != 100 || seen[2] != 200 {
		t.Fatalf("picks with key 0 resting %v, want 0 100 200", seen)
	}
	if st := d.KeyStates(); st[0].Weight != 5 || st[2].Weight != 2 {
		t.Fatalf("states %+v", st)
	}
	mismatched := newAuthDoer("p", nil, false, egress.Options{BaseURL: "http://127.0.0.1", AllowPrivateNetwork: true}, "a\nb", []int{9})
	if mismatched.keys[0].weight != 1 || mismatched.keys[1].weight != 1 {
		t.Fatal("weights that are not one per key were used")
	}
}
