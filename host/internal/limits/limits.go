// Package limits enforces the limits of client keys on the request path:
// requests and tokens per minute, requests at once, and a budget in USD
// per day or month.
//
// Minutes slide: each key counts its requests and tokens in 60 buckets of
// one second, and a request counts for the 60 seconds that follow its
// start. Tokens are estimated when a request starts and replaced by what
// the upstream reports when it ends. A budget counts the cost of finished
// requests plus an estimate for each one in flight, so that a burst of
// concurrent requests cannot all slip under it; its first use in a period
// reads the period's spend so far from the request log.
//
// Everything lives in this process's memory, one small lock per key.
// Several replicas on one database share their counts (see Shares,
// SetRemote and RefreshSpent): each replica admits against its own counts
// plus the others' as last exchanged, so a fleet holds a key's limits to
// within what the others admitted since the last exchange.
package limits

import (
	"context"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
)

// Reason names the limit that refused a request.
type Reason string

// The limits, as the refusal names them.
const (
	RPM      Reason = "rpm"
	TPM      Reason = "tpm"
	Parallel Reason = "max_parallel"
	Budget   Reason = "budget"
)

// Spent reads what a key spent since a time, from the request log.
type Spent func(ctx context.Context, keyID string, since time.Time) (float64, error)

// Keeper holds every key's counters.
type Keeper struct {
	now   func() time.Time
	spent Spent

	mu   sync.Mutex
	keys map[string]*state
}

// New makes a Keeper. spent may be nil (a budget starts from 0); now may
// be nil (time.Now).
func New(spent Spent, now func() time.Time) *Keeper {
	if now == nil {
		now = time.Now
	}
	return &Keeper{now: now, spent: spent, keys: map[string]*state{}}
}

// window counts a value over the last 60 seconds.
type window struct {
	stamp [60]int64 // the Unix second each bucket holds
	n     [60]int64
}

func (w *window) sum(sec int64) int64 {
	var t int64
	for i := range w.stamp {
		if w.stamp[i] > sec-60 {
			t += w.n[i]
		}
	}
	return t
}

func (w *window) add(sec, v int64) {
	i := sec % 60
	if w.stamp[i] != sec {
		w.stamp[i], w.n[i] = sec, 0
	}
	w.n[i] += v
}

// adjust changes the count of second sec, if it is still in the window.
func (w *window) adjust(sec, v int64) {
	if i := sec % 60; w.stamp[i] == sec {
		w.n[i] = max(w.n[i]+v, 0)
	}
}

// reset is how long until the oldest count in the window leaves it; 0
// when the window is empty.
func (w *window) reset(now time.Time) time.Duration {
	sec := now.Unix()
	oldest := int64(0)
	for i := range w.stamp {
		if w.stamp[i] > sec-60 && w.n[i] > 0 && (oldest == 0 || w.stamp[i] < oldest) {
			oldest = w.stamp[i]
		}
	}
	if oldest == 0 {
		return 0
	}
	return time.Unix(oldest+60, 0).Sub(now)
}

// state is one key's counters.
type state struct {
	mu       sync.Mutex
	reqs     window
	toks     window
	parallel int
	// The budget period being counted, and what finished requests spent
	// in it; reserved is the estimate of those in flight.
	period   time.Time
	loaded   bool
	spent    float64
	reserved float64
	// finished is the cost of requests this process finished, ever: a
	// refresh of spent from the log adds what finished while it read.
	finished float64
	// remote is the sum of the other replicas' counts (SetRemote).
	remote Share
}

// Share is one replica's counts for one key, as replicas exchange them.
type Share struct {
	KeyID string
	// Requests and Tokens counted in the sliding minute.
	Requests, Tokens int64
	// InFlight is requests running; Reserved their estimated cost, held
	// against a budget until they end.
	InFlight int64
	Reserved float64
}

// states is a copy of the key table, made under its lock (each state has
// a lock of its own), after adding a state for every key of add not in it.
func (k *Keeper) states(add map[string]Share) map[string]*state {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id := range add {
		if k.keys[id] == nil {
			k.keys[id] = &state{}
		}
	}
	return maps.Clone(k.keys)
}

// Shares returns this process's counts of every key that has any, for the
// other replicas.
func (k *Keeper) Shares() []Share {
	sec := k.now().Unix()
	var out []Share
	for id, st := range k.states(nil) {
		st.mu.Lock()
		sh := Share{KeyID: id, Requests: st.reqs.sum(sec), Tokens: st.toks.sum(sec), InFlight: int64(st.parallel), Reserved: st.reserved}
		st.mu.Unlock()
		if sh.Requests != 0 || sh.Tokens != 0 || sh.InFlight != 0 || sh.Reserved != 0 {
			out = append(out, sh)
		}
	}
	return out
}

// SetRemote sets each key's counts on the other replicas: the sums of
// their last shares. A key missing from remote has none.
func (k *Keeper) SetRemote(remote map[string]Share) {
	for id, st := range k.states(remote) {
		st.mu.Lock()
		st.remote = remote[id]
		st.mu.Unlock()
	}
}

// RefreshSpent reads again, from the request log, what each key counting
// a budget spent in its period: with several replicas, the log is where
// the others' spending shows. What this process finished while the read
// ran is added to it.
func (k *Keeper) RefreshSpent(ctx context.Context) {
	if k.spent == nil {
		return
	}
	for id, st := range k.states(nil) {
		st.mu.Lock()
		period, loaded, mark := st.period, st.loaded, st.finished
		st.mu.Unlock()
		if !loaded || period.IsZero() {
			continue
		}
		v, err := k.spent(ctx, id, period)
		if err != nil {
			continue
		}
		st.mu.Lock()
		if st.period.Equal(period) {
			st.spent = v + (st.finished - mark)
		}
		st.mu.Unlock()
	}
}

func (k *Keeper) state(id string) *state {
	k.mu.Lock()
	st := k.keys[id]
	if st == nil {
		st = &state{}
		k.keys[id] = st
	}
	k.mu.Unlock()
	return st
}

// PeriodStart is the start of the budget period holding t (UTC), and
// PeriodEnd its end.
func PeriodStart(period string, t time.Time) time.Time {
	t = t.UTC()
	if period == keys.PeriodDay {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// PeriodEnd is when the budget period holding t ends.
func PeriodEnd(period string, t time.Time) time.Time {
	s := PeriodStart(period, t)
	if period == keys.PeriodDay {
		return s.AddDate(0, 0, 1)
	}
	return s.AddDate(0, 1, 0)
}

// Request is what Admit knows of a request before it runs.
type Request struct {
	KeyID  string
	Limits keys.Limits
	// Tokens is the request's estimated tokens; Cost its estimated cost.
	Tokens int64
	Cost   float64
}

// Status is a key's standing against its limits, for the x-ratelimit-*
// headers and the Keys page; a limit of 0 is not set.
type Status struct {
	LimitRequests, RemainingRequests int64
	ResetRequests                    time.Duration
	LimitTokens, RemainingTokens     int64
	ResetTokens                      time.Duration
	// Refused names the limit that refused the request, if one did, and
	// RetryAfter when trying again may succeed.
	Refused    Reason
	RetryAfter time.Duration
	// Spent and BudgetEnds describe the budget period, when there is a
	// budget.
	Spent      float64
	BudgetEnds time.Time
	InFlight   int
	// Requests and Tokens counted in the last minute.
	Requests, Tokens int64
}

// Ticket is an admitted request; Done must be called once it ends.
type Ticket struct {
	st     *state
	sec    int64
	tokens int64
	cost   float64
	period time.Time
}

// Admit counts the request against its key's limits, or refuses it (a nil
// Ticket, Status.Refused set). A key without limits is admitted with a nil
// Ticket and a zero Status.
func (k *Keeper) Admit(ctx context.Context, r Request) (*Ticket, Status) {
	l := r.Limits
	if !l.Limited() {
		return nil, Status{}
	}
	now := k.now()
	sec := now.Unix()
	st := k.state(r.KeyID)
	st.mu.Lock()
	defer st.mu.Unlock()
	var s Status
	var period time.Time
	if l.BudgetUSD > 0 {
		period = PeriodStart(l.BudgetPeriod, now)
		if !st.period.Equal(period) {
			st.period, st.loaded, st.spent = period, false, 0
		}
		if !st.loaded && k.spent != nil {
			// Once per key and period: the lock keeps others waiting
			// rather than reading the log again.
			if v, err := k.spent(ctx, r.KeyID, period); err == nil {
				st.spent, st.loaded = v, true
			}
		}
		st.loaded = st.loaded || k.spent == nil
	}
	rm := st.remote
	switch {
	case l.MaxParallel > 0 && int64(st.parallel)+rm.InFlight >= int64(l.MaxParallel):
		s.Refused, s.RetryAfter = Parallel, time.Second
	case l.RPM > 0 && st.reqs.sum(sec)+rm.Requests >= int64(l.RPM):
		s.Refused, s.RetryAfter = RPM, orSecond(st.reqs.reset(now))
	case l.TPM > 0 && st.toks.sum(sec)+rm.Tokens+r.Tokens > int64(l.TPM):
		s.Refused, s.RetryAfter = TPM, orSecond(st.toks.reset(now))
		if r.Tokens > int64(l.TPM) {
			s.RetryAfter = 0 // it will never fit
		}
	case l.BudgetUSD > 0 && st.spent+st.reserved+rm.Reserved >= l.BudgetUSD:
		s.Refused, s.RetryAfter = Budget, PeriodEnd(l.BudgetPeriod, now).Sub(now)
	}
	if s.Refused != "" {
		st.standing(&s, l, now)
		return nil, s
	}
	st.parallel++
	st.reqs.add(sec, 1)
	st.toks.add(sec, r.Tokens)
	t := &Ticket{st: st, sec: sec, tokens: r.Tokens, period: period}
	if l.BudgetUSD > 0 {
		t.cost = max(r.Cost, 0)
		st.reserved += t.cost
	}
	st.standing(&s, l, now)
	return t, s
}

// orSecond is a wait, or a second when there is none to tell: the
// refusal came from the other replicas' counts, whose ages are not known
// here.
func orSecond(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d
}

// Done ends an admitted request: tokens and cost are what it used (0
// when the upstream reported nothing).
func (t *Ticket) Done(tokens int64, cost float64) {
	if t == nil {
		return
	}
	st := t.st
	st.mu.Lock()
	st.parallel--
	st.toks.adjust(t.sec, tokens-t.tokens)
	if !t.period.IsZero() && st.period.Equal(t.period) {
		st.reserved = max(st.reserved-t.cost, 0)
		if !math.IsNaN(cost) && cost > 0 {
			st.spent += cost
			st.finished += cost
		}
	}
	st.mu.Unlock()
}

// Usage is a key's standing now, without counting a request.
func (k *Keeper) Usage(id string, l keys.Limits) Status {
	now := k.now()
	k.mu.Lock()
	st := k.keys[id]
	k.mu.Unlock()
	if st == nil {
		st = &state{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var s Status
	st.standing(&s, l, now)
	return s
}

// standing fills s with the key's counts against l at now; st.mu is held.
func (st *state) standing(s *Status, l keys.Limits, now time.Time) {
	sec := now.Unix()
	s.InFlight = st.parallel + int(st.remote.InFlight)
	s.Requests, s.Tokens = st.reqs.sum(sec)+st.remote.Requests, st.toks.sum(sec)+st.remote.Tokens
	if l.RPM > 0 {
		s.LimitRequests, s.RemainingRequests, s.ResetRequests = int64(l.RPM), max(int64(l.RPM)-s.Requests, 0), st.reqs.reset(now)
	}
	if l.TPM > 0 {
		s.LimitTokens, s.RemainingTokens, s.ResetTokens = int64(l.TPM), max(int64(l.TPM)-s.Tokens, 0), st.toks.reset(now)
	}
	if l.BudgetUSD > 0 {
		s.BudgetEnds = PeriodEnd(l.BudgetPeriod, now)
		if st.period.Equal(PeriodStart(l.BudgetPeriod, now)) {
			s.Spent = st.spent
		}
	}
}

// Reset formats a wait the way OpenAI's x-ratelimit-reset-* headers do:
// "1s", "6m0s", "250ms".
func Reset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.Round(time.Second).String()
}
