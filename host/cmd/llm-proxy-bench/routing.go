package main

import (
	"fmt"
	"strings"
	"time"
)

// Models of the routing step: a provider's own model is a route of one
// target; routedModel a weighted route of two; fallbackModel a route whose
// first target refuses connections, so every request falls back.
const (
	routedModel   = "bench-weighted"
	fallbackModel = "bench-fallback"
)

// routingConfig is the part of llm-proxy's config the routing step needs:
// a provider on a port where nothing listens, the two routes, and a
// breaker that never opens, so that every fallback request really tries
// the refused target first.
func routingConfig(refusedURL string) string {
	return fmt.Sprintf(`
[routing.breaker]
failures = 1000000
error_rate = 0

[[providers]]
name = "refused"
plugin = "openai"
base_url = %s
api_key_env = ""
models = ["refused-model"]
allow_private_network = true

[[routes]]
model = %s
strategy = "weighted"
targets = [{ provider = "fake", model = %s, weight = 3 }, { provider = "fake", model = "gpt-4o-mini-b" }]

[[routes]]
model = %s
targets = [{ provider = "refused", model = %s }, { provider = "fake", model = %s }]
`, quote(refusedURL), quote(routedModel), quote(benchModel), quote(fallbackModel), quote(benchModel), quote(benchModel))
}

// routingRuns is what the routing step measured.
type routingRuns struct {
	names  []string
	chat   [][]*loadResult // [target][round], at concurrency conc
	serial []*loadResult   // one run per target at concurrency 1, for latency
	rounds int
}

// compareRouting drives the same non-stream requests at a provider's own
// model, a two-target weighted route and the fallback route, in turns over
// a few rounds, then each one alone at concurrency 1 for its latency.
func (b *bench) compareRouting(proxyBase string) error {
	ctx := b.ctx
	rr := &b.fig.routing
	rr.rounds = 3
	if b.quick {
		rr.rounds = 2
	}
	var targets []*target
	for _, m := range []string{benchModel, routedModel, fallbackModel} {
		targets = append(targets, &target{title: m, url: proxyBase + "/v1/chat/completions", proc: b.proxy,
			client: newClient(), apiKey: b.adminKey, model: m})
		rr.names = append(rr.names, m)
	}
	for _, t := range targets {
		if _, err := t.do(ctx, t.body(false), false); err != nil {
			return fmt.Errorf("routing, %s: first request: %w", t.title, err)
		}
	}
	rr.chat = make([][]*loadResult, len(targets))
	for round := 1; round <= rr.rounds; round++ {
		for i, t := range targets {
			b.log("routing, round %d of %d: %s, at least %d requests and %s", round, rr.rounds, t.title, b.sz.cpuChat, b.sz.cpuDur)
			r, err := runLoad(ctx, t, b.sz.cpuChat, b.sz.cpuDur, conc, false, []int{b.proxy.pid})
			if err != nil {
				return err
			}
			if r.errs > 0 {
				b.log("  %d of %d failed, first: %v", r.errs, r.n, r.firstErr)
			}
			rr.chat[i] = append(rr.chat[i], r)
		}
	}
	n := 2000
	if b.quick {
		n = 500
	}
	for _, t := range targets {
		b.log("routing: %d requests one at a time through %s", n, t.title)
		r, err := runLoad(ctx, t, n, 0, 1, false, nil)
		if err != nil {
			return err
		}
		rr.serial = append(rr.serial, r)
	}
	return nil
}

// routingReport is the routing step's table.
func (b *bench) routingReport() string {
	rr := &b.fig.routing
	if len(rr.names) == 0 {
		return ""
	}
	pid := b.proxy.pid
	var t table
	t.header(append([]string{"Routing (llm-proxy, non-stream requests)"}, rr.names...)...)
	n := len(rr.names)
	base, _, _ := medianMicros(rr.chat[0], pid)
	t.perTarget(fmt.Sprintf("CPU per request, c=%d, median of %d rounds (lowest–highest)", conc, rr.rounds), n, func(i int) string {
		med, lo, hi := medianMicros(rr.chat[i], pid)
		return fmt.Sprintf("%s (%.0f–%.0f)", fmtMicros(med), lo, hi)
	})
	t.perTarget("  more than the one-target model", n, func(i int) string {
		med, _, _ := medianMicros(rr.chat[i], pid)
		return fmt.Sprintf("%+.1f µs", med-base)
	})
	p50 := func(r *loadResult) time.Duration { return percentile(r.total, 50) }
	t.perTarget("Latency p50 / p99 at c=1", n, func(i int) string {
		return fmt.Sprintf("%s / %s", fmtDur(p50(rr.serial[i])), fmtDur(percentile(rr.serial[i].total, 99)))
	})
	t.perTarget("  p50 more than the one-target model", n, func(i int) string {
		return fmt.Sprintf("%+.2f ms", float64(p50(rr.serial[i])-p50(rr.serial[0]))/1e6)
	})
	t.perTarget("Failed requests", n, func(i int) string {
		e := rr.serial[i].errs
		for _, r := range rr.chat[i] {
			e += r.errs
		}
		return fmt.Sprint(e)
	})
	var out strings.Builder
	out.WriteString(t.sb.String())
	fmt.Fprintf(&out, "\n%s is a provider's own model (a route of one target); %s a weighted route of two targets; %s a fallback route whose first target is a port where nothing listens, so every request is refused there first and answered by the second target (its breaker is set never to open, so every request pays the refusal).\n", benchModel, routedModel, fallbackModel)
	return out.String()
}
