package limits_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newKeeper(spent limits.Spent) (*limits.Keeper, *clock) {
	c := &clock{t: time.Date(2026, 3, 31, 23, 59, 0, 500e6, time.UTC)}
	return limits.New(spent, c.now), c
}

func TestNoLimits(t *testing.T) {
	t.Parallel()
	k, _ := newKeeper(nil)
	tk, st := k.Admit(context.Background(), limits.Request{KeyID: "k", Tokens: 1 << 40})
	if tk != nil || st.Refused != "" {
		t.Fatalf("a key without limits: %v %+v", tk, st)
	}
	tk.Done(5, 1) // a nil ticket is fine
}

func TestRPMSlidingMinute(t *testing.T) {
	t.Parallel()
	k, clk := newKeeper(nil)
	l := keys.Limits{RPM: 3}
	admit := func() limits.Status {
		tk, st := k.Admit(context.Background(), limits.Request{KeyID: "k", Limits: l})
		tk.Done(0, 0)
		return st
	}
	for i := range 3 {
		if st := admit(); st.Refused != "" || st.RemainingRequests != int64(2-i) || st.LimitRequests != 3 {
			t.Fatalf("request %d: %+v", i, st)
		}
		clk.add(10 * time.Second)
	}
	st := admit()
	if st.Refused != limits.RPM {
		t.Fatalf("4th in the minute: %+v", st)
	}
	// The first request was 30 s ago (at second :00): it leaves the
	// window 60 s after its second began.
	if st.RetryAfter <= 29*time.Second || st.RetryAfter > 30*time.Second {
		t.Errorf("RetryAfter %v, want 30 s less the half second into it", st.RetryAfter)
	}
	clk.add(st.RetryAfter)
	if st := admit(); st.Refused != "" {
		t.Fatalf("after the oldest left: %+v", st)
	}
	if st := admit(); st.Refused != limits.RPM {
		t.Fatalf("then full again: %+v", st)
	}
	if got := limits.Reset(1500 * time.Millisecond); got != "2s" {
		t.Errorf("Reset = %q", got)
	}
	if got := limits.Reset(250 * time.Millisecond); got != "250ms" {
		t.Errorf("Reset = %q", got)
	}
	if got := limits.Reset(6 * time.Minute); got != "6m0s" {
		t.Errorf("Reset = %q", got)
	}
}

func TestTPMEstimateThenUsage(t *testing.T) {
	t.Parallel()
	k, clk := newKeeper(nil)
	l := keys.Limits{TPM: 1000}
	ctx := context.Background()
	a, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 600})
	if a == nil || st.RemainingTokens != 400 {
		t.Fatalf("first: %+v", st)
	}
	if _, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 500}); st.Refused != limits.TPM {
		t.Fatalf("600 + 500 > 1000 admitted: %+v", st)
	}
	a.Done(100, 0) // it used 100, not 600
	b, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 500})
	if b == nil || st.RemainingTokens != 400 {
		t.Fatalf("after the correction: %+v", st)
	}
	if _, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 2000}); st.Refused != limits.TPM || st.RetryAfter != 0 {
		t.Fatalf("a request larger than the limit: %+v", st)
	}
	clk.add(61 * time.Second)
	b.Done(500, 0) // its second has left the window: nothing to correct
	if st := k.Usage("k", l); st.Tokens != 0 || st.RemainingTokens != 1000 {
		t.Fatalf("a minute later: %+v", st)
	}
}

func TestParallel(t *testing.T) {
	t.Parallel()
	k, _ := newKeeper(nil)
	l := keys.Limits{MaxParallel: 2}
	ctx := context.Background()
	a, _ := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l})
	b, _ := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l})
	if _, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); st.Refused != limits.Parallel || st.InFlight != 2 {
		t.Fatalf("third at once: %+v", st)
	}
	if _, st := k.Admit(ctx, limits.Request{KeyID: "other", Limits: l}); st.Refused != "" {
		t.Fatalf("another key is not limited by this one: %+v", st)
	}
	a.Done(0, 0)
	if c, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); c == nil {
		t.Fatalf("after one ended: %+v", st)
	}
	b.Done(0, 0)
}

func TestBudget(t *testing.T) {
	t.Parallel()
	var loads atomic.Int32
	k, clk := newKeeper(func(_ context.Context, id string, since time.Time) (float64, error) {
		loads.Add(1)
		if want := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC); !since.Equal(want) && loads.Load() == 1 {
			t.Errorf("first load since %v, want %v", since, want)
		}
		return 0.5, nil // spent earlier this month, before a restart
	})
	l := keys.Limits{BudgetUSD: 1, BudgetPeriod: keys.PeriodMonth}
	ctx := context.Background()
	a, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Cost: 0.3})
	if a == nil || st.Spent != 0.5 || !st.BudgetEnds.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("first: %+v", st)
	}
	// 0.5 spent + 0.3 reserved < 1: one more may start.
	b, _ := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Cost: 0.3})
	if b == nil {
		t.Fatal("second refused")
	}
	if _, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Cost: 0.3}); st.Refused != limits.Budget {
		t.Fatalf("0.5 + 0.6 in flight: %+v", st)
	}
	a.Done(0, 0.1)
	b.Done(0, 0.1)
	if st := k.Usage("k", l); st.Spent < 0.699 || st.Spent > 0.701 {
		t.Fatalf("spent %v, want 0.7", st.Spent)
	}
	c, _ := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l})
	c.Done(0, 0.4)
	_, st = k.Admit(ctx, limits.Request{KeyID: "k", Limits: l})
	if st.Refused != limits.Budget || st.RetryAfter != 59500*time.Millisecond {
		t.Fatalf("spent 1.1 of 1: %+v", st)
	}
	// A new month starts from the log again.
	clk.add(time.Minute)
	if d, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); d == nil || loads.Load() != 2 {
		t.Fatalf("new month: %+v, %d loads", st, loads.Load())
	}
	if got := limits.PeriodEnd(keys.PeriodDay, clk.now()); !got.Equal(time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("PeriodEnd(day) = %v", got)
	}
}

// TestConcurrentExact: 32 goroutines, 10 requests per minute: exactly 10
// get in.
func TestConcurrentExact(t *testing.T) {
	t.Parallel()
	k := limits.New(nil, nil)
	l := keys.Limits{RPM: 10, MaxParallel: 32}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 4 {
				if tk, _ := k.Admit(context.Background(), limits.Request{KeyID: "k", Limits: l}); tk != nil {
					ok.Add(1)
					tk.Done(1, 0)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("%d admitted, want 10", ok.Load())
	}
}

// TestShares: two keepers standing for two replicas exchange their
// counts; each then admits against both, and its shares drop a key once
// its counts are gone.
func TestShares(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, clk := newKeeper(nil)
	b := limits.New(nil, clk.now)
	exchange := func() {
		for _, pair := range [][2]*limits.Keeper{{a, b}, {b, a}} {
			remote := map[string]limits.Share{}
			for _, s := range pair[0].Shares() {
				remote[s.KeyID] = s
			}
			pair[1].SetRemote(remote)
		}
	}
	l := keys.Limits{RPM: 4, MaxParallel: 3, TPM: 1000}
	held, _ := a.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 300})
	for range 2 {
		tk, st := a.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 100})
		if st.Refused != "" {
			t.Fatalf("%+v", st)
		}
		tk.Done(100, 0)
	}
	exchange()
	// b sees a's 3 requests, 500 tokens and 1 in flight.
	if st := b.Usage("k", l); st.Requests != 3 || st.Tokens != 500 || st.InFlight != 1 {
		t.Fatalf("b's view: %+v", st)
	}
	if _, st := b.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 600}); st.Refused != limits.TPM {
		t.Fatalf("600 tokens over a's 500: %+v", st)
	}
	tk, st := b.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Tokens: 10})
	if st.Refused != "" || st.RemainingRequests != 0 {
		t.Fatalf("the 4th request of the fleet: %+v", st)
	}
	if _, st := b.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); st.Refused != limits.RPM || st.RetryAfter <= 0 {
		t.Fatalf("the 5th request of the fleet: %+v", st)
	}
	exchange()
	if _, st := a.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); st.Refused != limits.Parallel && st.Refused != limits.RPM {
		t.Fatalf("a after b's request: %+v", st)
	}
	held.Done(300, 0)
	tk.Done(10, 0)
	clk.add(61 * time.Second)
	exchange()
	if s := a.Shares(); len(s) != 0 {
		t.Fatalf("shares after a quiet minute: %+v", s)
	}
	if _, st := b.Admit(ctx, limits.Request{KeyID: "k", Limits: l}); st.Refused != "" {
		t.Fatalf("a quiet minute later: %+v", st)
	}
}

// TestRefreshSpent: a budget's spend is read again from the log (where
// other replicas' spending shows), keeping what this process finished
// meanwhile; reserved estimates travel in the shares.
func TestRefreshSpent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logged atomic.Int64 // cents in the log
	k, _ := newKeeper(func(context.Context, string, time.Time) (float64, error) {
		return float64(logged.Load()) / 100, nil
	})
	l := keys.Limits{BudgetUSD: 1, BudgetPeriod: keys.PeriodDay}
	tk, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Cost: 0.1})
	if st.Refused != "" {
		t.Fatal(st)
	}
	tk.Done(0, 0.2)
	if st := k.Usage("k", l); st.Spent != 0.2 {
		t.Fatalf("spent %v", st.Spent)
	}
	logged.Store(90) // other replicas spent 0.70 more, and this one's 0.20 is written
	k.RefreshSpent(ctx)
	if st := k.Usage("k", l); st.Spent != 0.9 {
		t.Fatalf("after the refresh: %v", st.Spent)
	}
	k.SetRemote(map[string]limits.Share{"k": {KeyID: "k", Reserved: 0.1}})
	if _, st := k.Admit(ctx, limits.Request{KeyID: "k", Limits: l, Cost: 0.01}); st.Refused != limits.Budget {
		t.Fatalf("0.90 spent and 0.10 reserved elsewhere: %+v", st)
	}
}
