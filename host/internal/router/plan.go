package router

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Strategy is how a route orders its targets for one request.
type Strategy uint8

const (
	// Fallback tries the targets in the order the route lists them.
	Fallback Strategy = iota
	// Weighted draws the first target in proportion to the weights, then
	// the next among those left, and so on.
	Weighted
	// LeastLatency picks the better of two targets drawn at random (power
	// of two choices), scored by their time to first byte and the requests
	// they have in flight; the rest follow by score.
	LeastLatency
)

// Strategies are the names a route's strategy may take, in Strategy order.
var Strategies = []string{"fallback", "weighted", "least_latency"}

func (s Strategy) String() string {
	if int(s) < len(Strategies) {
		return Strategies[s]
	}
	return "strategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseStrategy reads a strategy name; "" is Fallback.
func ParseStrategy(name string) (Strategy, bool) {
	if name == "" {
		return Fallback, true
	}
	i := slices.Index(Strategies, name)
	return Strategy(i), i >= 0
}

// Candidate is what Plan knows of one target of a route: its weight and
// its health at the moment of the request.
type Candidate struct {
	// Weight counts for Weighted; below 1 is 1.
	Weight int
	// Available is false while the target's circuit breaker is open (or
	// half-open with its probe taken): Plan leaves it out.
	Available bool
	// TTFB is the moving average of the target's time to first byte; 0
	// when nothing is known yet, which LeastLatency tries first.
	TTFB time.Duration
	// InFlight is the number of requests the target is serving.
	InFlight int
	// Resting is true while the upstream's Retry-After (a 429) lasts: the
	// target is tried only after the others.
	Resting bool
}

// score is LeastLatency's cost of sending one more request to c: its
// latency scaled by the queue it would join. A latency below a millisecond,
// or none known yet, counts as one, so that a new target is tried soon but
// does not draw every request while its first answers are on the way.
func (c Candidate) score() float64 {
	return float64(max(c.TTFB, time.Millisecond)) * float64(c.InFlight+1)
}

// Plan orders the available candidates of a route for one request, by the
// route's strategy: the first index is tried first; resting candidates
// follow the others. Unavailable candidates are left out, so an empty plan
// means every target's breaker is open. seed makes
// the random choices of Weighted and LeastLatency; the same arguments give
// the same plan. Plan reads only its arguments.
func Plan(s Strategy, cs []Candidate, seed uint64) []int {
	order := make([]int, 0, len(cs))
	for i, c := range cs {
		if c.Available {
			order = append(order, i)
		}
	}
	if len(order) < 2 {
		return order
	}
	switch s {
	case Weighted:
		// Weighted sampling without replacement (Efraimidis and Spirakis):
		// each candidate draws u^(1/w) and the largest keys go first.
		rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		keys := make([]float64, len(cs))
		for _, i := range order {
			w := float64(max(cs[i].Weight, 1))
			keys[i] = math.Pow(rng.Float64(), 1/w)
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(keys[b], keys[a]) })
	case LeastLatency:
		rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
		a := rng.IntN(len(order))
		b := rng.IntN(len(order) - 1)
		if b >= a {
			b++
		}
		first := order[a]
		if cs[order[b]].score() < cs[first].score() {
			first = order[b]
		}
		rest := slices.DeleteFunc(order, func(i int) bool { return i == first })
		slices.SortStableFunc(rest, func(x, y int) int { return cmp.Compare(cs[x].score(), cs[y].score()) })
		order = append([]int{first}, rest...)
	}
	// Targets the upstream asked to wait go last, in the strategy's order.
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case cs[a].Resting == cs[b].Resting:
			return 0
		case cs[a].Resting:
			return 1
		}
		return -1
	})
	return order
}

// Backoff is how long to wait before the retry-th retry of a target
// (retry counts from 1): base doubled each time up to ceiling, with "full
// jitter" (a uniform draw below that bound) so that clients that failed
// together do not come back together. u is the draw, in [0, 1).
func Backoff(retry int, base, ceiling time.Duration, u float64) time.Duration {
	if base <= 0 || retry < 1 {
		return 0
	}
	d := ceiling
	if retry < 31 {
		if b := base << (retry - 1); b > 0 && b < ceiling {
			d = b
		}
	}
	return time.Duration(u * float64(d))
}
