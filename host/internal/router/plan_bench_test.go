package router_test

import (
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

// BenchmarkRoute is the routing work of one request: resolve, the health
// of the targets, the plan, and one attempt's Begin and End.
func BenchmarkRoute(b *testing.B) {
	p := []*router.Provider{{Name: "a", Models: []string{"m"}}, {Name: "b", Models: []string{"m2"}}}
	r := router.New(p, []router.RouteSpec{{Model: "smart", Strategy: router.Weighted,
		Targets: []router.TargetSpec{{Provider: "a", Model: "m", Weight: 3}, {Provider: "b", Model: "m2"}}}})
	h := router.NewHealth(router.DefaultBreaker, nil)
	for _, model := range []string{"m", "smart"} {
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				rt, _ := r.Resolve(model)
				plan := []int{0}
				if len(rt.Targets) > 1 {
					plan = router.Plan(rt.Strategy, h.Candidates(rt.Targets), uint64(i))
				}
				t := &rt.Targets[plan[0]]
				h.Begin(t.Key, len(rt.Targets) == 1)
				h.End(t.Key, router.Success, time.Millisecond, 0)
			}
		})
	}
}
