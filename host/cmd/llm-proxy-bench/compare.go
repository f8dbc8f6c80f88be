package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// pluginRuns is what the provider step measured: llm-proxy's own CPU per
// request with each provider plugin translating, the same requests and the
// same 20-chunk streams from the same fake upstream.
type pluginRuns struct {
	names  []string
	events []int           // SSE events of one stream through each plugin
	warm   []*loadResult   // warm-up of each plugin (nil for the baseline)
	chat   [][]*loadResult // [plugin][round]
	stream [][]*loadResult // [plugin][round]
	rounds int
}

// comparePlugins drives the same load through llm-proxy with each provider
// plugin in turn. The plugins take turns within each round, and the rounds
// repeat, so a drift of the machine spreads over all of them; the report
// gives each plugin's median round.
//
// The anthropic and gemini plugins are installed into the running proxy's
// folder first (hot-loaded from binDir), so that every figure measured
// before this step describes a proxy with openai.wasm alone.
func (b *bench) comparePlugins(proxyBase, binDir string) error {
	ctx := b.ctx
	pr := &b.fig.plugins
	for _, p := range providerPlugins[1:] {
		file := p.name + ".wasm"
		b.log("provider plugins: installing %s", file)
		if err := installPlugin(ctx, b.admin, filepath.Join(binDir, file), b.pluginsDir, 3*time.Minute); err != nil {
			return err
		}
	}
	pr.rounds = 3
	if b.quick {
		pr.rounds = 2
	}
	var targets []*target
	for _, p := range providerPlugins {
		targets = append(targets, &target{
			title: p.name, url: proxyBase + "/v1/chat/completions", proc: b.proxy,
			client: newClient(), apiKey: b.adminKey, model: p.model,
		})
		pr.names = append(pr.names, p.name)
	}
	pr.chat = make([][]*loadResult, len(targets))
	pr.stream = make([][]*loadResult, len(targets))
	for i, t := range targets {
		if _, err := t.do(ctx, t.body(false), false); err != nil {
			return fmt.Errorf("%s plugin: first request: %w", t.title, err)
		}
		o, err := t.do(ctx, t.body(true), true)
		if err != nil {
			return fmt.Errorf("%s plugin: first stream: %w", t.title, err)
		}
		pr.events = append(pr.events, o.events)
		if i == 0 {
			// The openai plugin's instances were warmed up above.
			pr.warm = append(pr.warm, nil)
			continue
		}
		b.log("provider plugins: warming up %s (%d requests and %d streams at concurrency 32)", t.title, b.sz.warmChat, b.sz.warmStream)
		r, err := runLoad(ctx, t, b.sz.warmChat, 0, 32, false, []int{b.proxy.pid})
		if err != nil {
			return err
		}
		pr.warm = append(pr.warm, r)
		if _, err := runLoad(ctx, t, b.sz.warmStream, 0, 32, true, nil); err != nil {
			return err
		}
	}
	for round := 1; round <= pr.rounds; round++ {
		for _, stream := range []bool{false, true} {
			n, dst, kind := b.sz.cpuChat, pr.chat, "non-stream"
			if stream {
				n, dst, kind = b.sz.cpuStream, pr.stream, "streams"
			}
			for i, t := range targets {
				b.log("provider plugins, round %d of %d: %s through %s, at least %d and %s", round, pr.rounds, kind, t.title, n, b.sz.cpuDur)
				r, err := runLoad(ctx, t, n, b.sz.cpuDur, conc, stream, []int{b.proxy.pid})
				if err != nil {
					return err
				}
				if r.errs > 0 {
					b.log("  %d of %d failed, first: %v", r.errs, r.n, r.firstErr)
				}
				dst[i] = append(dst[i], r)
			}
		}
	}
	return nil
}

// medianMicros is the median over rounds of llm-proxy's CPU per request,
// with the lowest and highest round.
func medianMicros(rs []*loadResult, pid int) (med, lo, hi float64) {
	v := make([]float64, 0, len(rs))
	for _, r := range rs {
		if x := r.perReqMicros(pid); !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		med = v[len(v)/2]
	} else {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return med, v[0], v[len(v)-1]
}

// pluginsReport is the provider step's table.
func (b *bench) pluginsReport() string {
	pr := &b.fig.plugins
	if len(pr.names) == 0 {
		return ""
	}
	pid := b.proxy.pid
	var out strings.Builder
	var t table
	heads := []string{"llm-proxy CPU by provider plugin (own process)"}
	for _, n := range pr.names {
		heads = append(heads, n+".wasm")
	}
	t.header(heads...)
	n := len(pr.names)
	for _, k := range []struct {
		label string
		rs    [][]*loadResult
	}{
		{fmt.Sprintf("CPU per non-stream request, c=%d, median of %d rounds (lowest–highest)", conc, pr.rounds), pr.chat},
		{fmt.Sprintf("CPU per 20-chunk stream, c=%d, median of %d rounds (lowest–highest)", conc, pr.rounds), pr.stream},
	} {
		base, _, _ := medianMicros(k.rs[0], pid)
		t.perTarget(k.label, n, func(i int) string {
			med, lo, hi := medianMicros(k.rs[i], pid)
			return fmt.Sprintf("%s (%.0f–%.0f)", fmtMicros(med), lo, hi)
		})
		t.perTarget("  relative to openai.wasm", n, func(i int) string {
			med, _, _ := medianMicros(k.rs[i], pid)
			return fmt.Sprintf("%.2f×", med/base)
		})
	}
	t.perTarget(fmt.Sprintf("Throughput at c=%d, requests/s / streams/s (last round)", conc), n, func(i int) string {
		return fmt.Sprintf("%.0f / %.0f", pr.chat[i][len(pr.chat[i])-1].rate(), pr.stream[i][len(pr.stream[i])-1].rate())
	})
	t.perTarget("SSE events the client received per stream", n, func(i int) string { return fmt.Sprint(pr.events[i]) })
	t.perTarget("Failed requests", n, func(i int) string {
		e := 0
		for _, r := range append(append([]*loadResult{}, pr.chat[i]...), pr.stream[i]...) {
			e += r.errs
		}
		return fmt.Sprint(e)
	})
	out.WriteString(t.sb.String())
	fmt.Fprintf(&out, "\nThe fake upstream answers each plugin in its provider's own wire format (Chat Completions, Messages API events, generateContent SSE) with the same text cut into 20 chunks; only llm-proxy's CPU is counted. Anthropic and Gemini plugins were warmed up first like the openai one (%d requests and %d streams at c=32).\n", b.sz.warmChat, b.sz.warmStream)
	return out.String()
}

// installPlugin copies src into the plugins folder the way an operator
// should (written aside, then renamed into place) and waits until the proxy
// serves it.
func installPlugin(ctx context.Context, a *admin, src, dir string, timeout time.Duration) error {
	file := filepath.Base(src)
	wasm, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+file+".bench-tmp")
	if err := os.WriteFile(tmp, wasm, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		return err
	}
	want := sha256Hex(wasm)
	deadline := time.Now().Add(timeout)
	for {
		in, err := a.plugin(ctx, file)
		switch {
		case err == nil && in.SHA256 == want && in.State == "ready":
			return nil
		case err == nil && in.LastError != "":
			return fmt.Errorf("loading %s failed: %s", file, in.LastError)
		case time.Now().After(deadline):
			return fmt.Errorf("%s was not loaded within %s (last: %v)", file, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
