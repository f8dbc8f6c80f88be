package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The concurrency figures: what an LLM gateway really holds is many long
// streams at once. Each scenario runs through the bare proxy and llm-proxy
// in turn, against a fake upstream that paces its chunks:
//
//   - sustained: clients that each stream, read to the end and stream
//     again (20 chunks 250 ms apart: 5 s per stream) for a fixed time;
//     streams per second, TTFB, errors and the RSS growth from idle to peak;
//   - burst: streams opened all at once (20 chunks 2 s apart), how many get
//     their first event within 10 s, and the peak RSS.
//
// Separately, a second llm-proxy with the five first-party plugins loaded
// and no traffic gives the idle memory, and the cold start of a plugin
// scaled to zero.

// pacedUpstreams are the fake upstreams and bare proxies of the scenarios.
type paced struct {
	delay    time.Duration
	upstream *child
	url      string // the upstream's /v1 base
	bare     *child
	bareBase string
}

// startPaced starts a fake upstream whose streams pause delay between
// chunks, and a bare proxy in front of it.
func (b *bench) startPaced(delay time.Duration) (*paced, error) {
	p := &paced{delay: delay}
	var addr string
	var err error
	name := "upstream " + delay.String()
	p.upstream, addr, err = b.sup.start(b.ctx, name, []string{b.self, "upstream", "-listen", "127.0.0.1:0", "-chunks", "20",
		"-chunk-delay", delay.String(), "-exit-on-stdin-eof"}, os.Environ(), "", true)
	if err != nil {
		return nil, err
	}
	p.url = "http://" + addr + "/v1"
	p.bare, addr, err = b.sup.start(b.ctx, "bare proxy "+delay.String(), []string{b.self, "bare", "-listen", "127.0.0.1:0",
		"-upstream", p.url, "-exit-on-stdin-eof"}, os.Environ(), "", true)
	if err != nil {
		return nil, err
	}
	p.bareBase = "http://" + addr
	if err := waitReady(b.ctx, p.url+"/models", p.upstream, 20*time.Second); err != nil {
		return nil, err
	}
	return p, waitReady(b.ctx, p.bareBase+"/readyz", p.bare, 20*time.Second)
}

// manyClient is an HTTP client for thousands of concurrent streams: one
// kept-alive connection per client goroutine.
func manyClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// rssSampler records the highest RSS of pid until stopped.
type rssSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	if v, err := rssKiB(pid); err == nil {
		s.peak.Store(v)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if v, err := rssKiB(pid); err == nil && v > s.peak.Load() {
					s.peak.Store(v)
				}
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() uint64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// sustainedResult is one sustained-load run.
type sustainedResult struct {
	clients   int
	dur, wall time.Duration
	ok, errs  int
	firstErr  error
	ttfb      []time.Duration // sorted
	rssIdle   uint64          // KiB before the run
	rssPeak   uint64          // KiB, highest sample during it
	cpu       uint64          // ticks of the target process
}

func (r *sustainedResult) rate() float64 { return float64(r.ok) / r.wall.Seconds() }

// sustained runs clients that stream back to back through t for dur (a
// stream begun before dur ends is read to its end).
func sustained(ctx context.Context, t *target, clients int, dur time.Duration) (*sustainedResult, error) {
	r := &sustainedResult{clients: clients, dur: dur}
	var err error
	if r.rssIdle, err = rssKiB(t.proc.pid); err != nil {
		return nil, err
	}
	cpu0, err := cpuTicks(t.proc.pid)
	if err != nil {
		return nil, err
	}
	sampler := sampleRSS(t.proc.pid)
	body := t.body(true)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ttfbs []time.Duration
			ok, errs := 0, 0
			var firstErr error
			for ctx.Err() == nil && time.Since(start) < dur {
				o, err := t.do(ctx, body, true)
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					time.Sleep(100 * time.Millisecond) // no hot loop against a failing target
					continue
				}
				ok++
				ttfbs = append(ttfbs, o.ttfb)
			}
			mu.Lock()
			r.ok += ok
			r.errs += errs
			r.ttfb = append(r.ttfb, ttfbs...)
			if r.firstErr == nil {
				r.firstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.wall = time.Since(start)
	r.rssPeak = sampler.finish()
	if cpu1, err := cpuTicks(t.proc.pid); err == nil {
		r.cpu = cpu1 - cpu0
	}
	sortDurations(r.ttfb)
	return r, ctx.Err()
}

// burstResult is one burst run.
type burstResult struct {
	n         int
	within    int // streams whose first event came within the window
	errs      int // streams that failed before their first event
	firstErr  error
	lastFirst time.Duration   // burst start until the last first event seen
	firsts    []time.Duration // sorted, burst start until each first event
	rssIdle   uint64
	rssPeak   uint64
}

// burstWindow is how soon every stream of a burst should get its first
// event.
const burstWindow = 10 * time.Second

// burst opens n streams of t at once, keeps them for hold, and drops them.
func burst(ctx context.Context, t *target, n int, hold time.Duration) (*burstResult, error) {
	r := &burstResult{n: n}
	var err error
	if r.rssIdle, err = rssKiB(t.proc.pid); err != nil {
		return nil, err
	}
	sampler := sampleRSS(t.proc.pid)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body := t.body(true)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := firstEvent(bctx, t, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if bctx.Err() == nil {
					r.errs++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
				return
			}
			d := first.Sub(start)
			r.firsts = append(r.firsts, d)
			if d <= burstWindow {
				r.within++
			}
		}()
	}
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	r.rssPeak = sampler.finish()
	sortDurations(r.firsts)
	if len(r.firsts) > 0 {
		r.lastFirst = r.firsts[len(r.firsts)-1]
	}
	return r, ctx.Err()
}

// firstEvent sends one stream request, returns when its first bytes
// arrive, and keeps reading until ctx ends (the stream stays open).
func firstEvent(ctx context.Context, t *target, body []byte) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.apiKey)
	resp, err := t.client.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return time.Time{}, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var buf [2 << 10]byte
	if _, err := resp.Body.Read(buf[:]); err != nil && err != io.EOF {
		return time.Time{}, err
	}
	first := time.Now()
	go func() {
		<-ctx.Done()
		resp.Body.Close()
	}()
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			return first, nil
		}
	}
}

// concFigures are the figures of this file. Slices are [bare, proxy].
type concFigures struct {
	ran       bool
	clients   int
	dur       time.Duration
	sustained []*sustainedResult
	burstN    int
	burst     []*burstResult
	idle      idleFigures
}

// runConcurrency measures the sustained and burst scenarios through the
// bare proxy and llm-proxy (whose config routes the models paced-250ms and
// paced-2s to the paced upstreams).
func (b *bench) runConcurrency(proxyBase string, p250, p2s *paced) error {
	f := &b.fig.conc
	f.ran = true
	f.clients, f.dur, f.burstN = 1000, 60*time.Second, 10000
	hold := 15 * time.Second
	if b.quick {
		f.dur, f.burstN, hold = 20*time.Second, 2000, 12*time.Second
	}
	targets := func(p *paced, model string) []*target {
		return []*target{
			{title: "bare Fiber proxy", url: p.bareBase + "/v1/chat/completions", proc: p.bare, client: manyClient(f.burstN), apiKey: b.adminKey},
			{title: "llm-proxy", url: proxyBase + "/v1/chat/completions", proc: b.proxy, client: manyClient(f.burstN), apiKey: b.adminKey, model: model},
		}
	}
	for _, t := range targets(p250, "paced-250ms") {
		b.log("concurrency: %d clients streaming for %s through %s (20 chunks 250 ms apart)", f.clients, f.dur, t.title)
		time.Sleep(2 * time.Second) // let the previous run's connections close
		r, err := sustained(b.ctx, t, f.clients, f.dur)
		if err != nil {
			return err
		}
		b.log("  %d streams (%.1f/s), %d errors, TTFB p99 %s, RSS %s -> %s", r.ok, r.rate(), r.errs,
			fmtDur(percentile(r.ttfb, 99)), fmtMiB(r.rssIdle), fmtMiB(r.rssPeak))
		if r.firstErr != nil {
			b.log("  first error: %v", r.firstErr)
		}
		f.sustained = append(f.sustained, r)
		t.client.CloseIdleConnections()
	}
	for _, t := range targets(p2s, "paced-2s") {
		b.log("concurrency: %d streams opened at once through %s (20 chunks 2 s apart), held %s", f.burstN, t.title, hold)
		time.Sleep(3 * time.Second)
		r, err := burst(b.ctx, t, f.burstN, hold)
		if err != nil {
			return err
		}
		b.log("  %d of %d got their first event within %s (last after %s), %d failed; peak RSS %s", r.within, r.n,
			burstWindow, fmtDur(r.lastFirst), r.errs, fmtMiB(r.rssPeak))
		if r.firstErr != nil {
			b.log("  first error: %v", r.firstErr)
			for _, l := range warnings(t.proc, 5) {
				b.log("  %s said: %s", t.title, l)
			}
		}
		f.burst = append(f.burst, r)
		t.client.CloseIdleConnections()
	}
	return nil
}

// idleFigures describe a proxy with the five first-party plugins and no
// traffic.
type idleFigures struct {
	ran          bool
	plugins      int
	idleTimeout  time.Duration
	rssReady     uint64 // KiB right after /readyz: one warm instance per plugin
	rssScaled    uint64 // KiB once every plugin scaled to zero
	scaledAfter  time.Duration
	cold, warm   []time.Duration // per provider: first request after scale to zero, the next one
	coldPlugins  []string
	instancesEnd int // instances live at the end
}

// firstPartyPlugins are every plugin the repository builds.
var firstPartyPlugins = []string{"openai", "anthropic", "gemini", "azure", "demo"}

// measureIdle starts a second llm-proxy with every first-party plugin,
// waits until its instances scaled to zero and measures its memory, then
// the cold start of the providers the fake upstream speaks for.
func (b *bench) measureIdle(proxyBin, binDir, upstreamURL string) error {
	f := &b.fig.conc.idle
	f.ran, f.plugins = true, len(firstPartyPlugins)
	f.idleTimeout = 30 * time.Second // the default
	if b.quick {
		f.idleTimeout = 3 * time.Second
	}
	dir := filepath.Join(b.tmp, "idle")
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return err
	}
	for _, name := range firstPartyPlugins {
		wasm, err := os.ReadFile(filepath.Join(binDir, name+".wasm"))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(plugins, name+".wasm"), wasm, 0o644); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := proxyConfig(port, plugins, filepath.Join(b.tmp, "wazero-cache"), upstreamURL, nil) +
		fmt.Sprintf(`
[[providers]]
name = "demo"
plugin = "demo"
base_url = "http://127.0.0.1"
models = ["demo-echo"]
allow_private_network = true

[[providers]]
name = "azure"
plugin = "azure"
base_url = %s
models = ["azure-gpt"]
allow_private_network = true

[plugins.limits]
idle_timeout = %q
`, quote(upstreamURL), f.idleTimeout.String())
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	proc, _, err := b.sup.start(b.ctx, "llm-proxy (idle)", []string{proxyBin, "--config", cfgPath}, proxyEnv(b.adminKey), dir, false)
	if err != nil {
		return err
	}
	defer func() { _ = killGroup(proc.pid) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	b.log("idle memory: llm-proxy with the %d first-party plugins, no traffic", f.plugins)
	if err := waitReady(b.ctx, base+"/readyz", proc, 2*time.Minute); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if f.rssReady, err = rssKiB(proc.pid); err != nil {
		return err
	}
	adm := &admin{base: base, key: b.adminKey, client: &http.Client{Timeout: 10 * time.Second}}
	t0 := time.Now()
	for {
		live := 0
		for _, name := range firstPartyPlugins {
			in, err := adm.plugin(b.ctx, name+".wasm")
			if err != nil {
				return err
			}
			live += in.Instances.Instances
		}
		if live == 0 {
			break
		}
		if time.Since(t0) > f.idleTimeout+30*time.Second {
			return fmt.Errorf("idle llm-proxy still has %d instances %s after start", live, time.Since(t0).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.scaledAfter = time.Since(t0)
	time.Sleep(2 * time.Second) // let the Go heap settle
	if f.rssScaled, err = rssKiB(proc.pid); err != nil {
		return err
	}
	for _, p := range providerPlugins {
		t := &target{title: p.name, url: base + "/v1/chat/completions", proc: proc, client: newClient(), apiKey: b.adminKey, model: p.model}
		cold, err := t.do(b.ctx, t.body(false), false)
		if err != nil {
			return fmt.Errorf("%s cold request: %w", p.name, err)
		}
		warm, err := t.do(b.ctx, t.body(false), false)
		if err != nil {
			return fmt.Errorf("%s warm request: %w", p.name, err)
		}
		f.coldPlugins = append(f.coldPlugins, p.name)
		f.cold, f.warm = append(f.cold, cold.total), append(f.warm, warm.total)
		b.log("  %s: first request after scale to zero %s, the next %s", p.name, fmtDur(cold.total), fmtDur(warm.total))
	}
	return nil
}

// concReport is the section of the concurrency figures, with the targets
// of plugin runtime 2 and whether this run met them.
func (b *bench) concReport() string {
	c := &b.fig.conc
	if !c.ran || len(c.sustained) < 2 || len(c.burst) < 2 {
		return ""
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n### Many long streams at once\n\n")
	var t table
	t.header("Figure", "bare Fiber proxy", "llm-proxy", "target", "met")
	bare, px := c.sustained[0], c.sustained[1]
	ratio := px.rate() / bare.rate()
	t.row(fmt.Sprintf("%d clients streaming back to back for %s (20 chunks 250 ms apart): streams/s", c.clients, c.dur),
		fmt.Sprintf("%.1f", bare.rate()), fmt.Sprintf("%.1f (%.2f×)", px.rate(), ratio), "≥ 0.9× bare", yes(ratio >= 0.9))
	t.row("  streams completed / failed", fmt.Sprintf("%d / %d", bare.ok, bare.errs), fmt.Sprintf("%d / %d", px.ok, px.errs), "no errors", yes(px.errs == 0))
	t.row("  TTFB p50", fmtDur(percentile(bare.ttfb, 50)), fmtDur(percentile(px.ttfb, 50)), "", "")
	dp99 := percentile(px.ttfb, 99) - percentile(bare.ttfb, 99)
	t.row("  TTFB p99", fmtDur(percentile(bare.ttfb, 99)), fmtDur(percentile(px.ttfb, 99))+" ("+fmtDelta(dp99)+")", "≤ bare + 250 ms", yes(dp99 <= 250*time.Millisecond))
	growth := func(r *sustainedResult) int64 { return int64(r.rssPeak) - int64(r.rssIdle) }
	limit := growth(bare)*3/2 + 20*1024
	t.row("  RSS idle → peak (growth)", rssGrowth(bare.rssIdle, bare.rssPeak), rssGrowth(px.rssIdle, px.rssPeak),
		"growth ≤ 1.5× bare + 20 MB ("+fmtMiB(uint64(max(limit, 0)))+")", yes(growth(px) <= limit))
	t.row("  CPU per stream (whole process)", fmtMicros(ticksToMicros(bare.cpu)/float64(max(bare.ok, 1))),
		fmtMicros(ticksToMicros(px.cpu)/float64(max(px.ok, 1))), "", "")
	bb, pb := c.burst[0], c.burst[1]
	t.row(fmt.Sprintf("%d streams opened at once (20 chunks 2 s apart): first event within %s", c.burstN, burstWindow),
		fmt.Sprintf("%d of %d", bb.within, bb.n), fmt.Sprintf("%d of %d", pb.within, pb.n), "every stream", yes(pb.within == pb.n))
	t.row("  failed before their first event", fmt.Sprint(bb.errs), fmt.Sprint(pb.errs), "", "")
	t.row("  first event p50 / p99 / last, from the burst's start", firsts(bb), firsts(pb), "", "")
	t.row("  peak RSS", fmtMiB(bb.rssPeak), fmtMiB(pb.rssPeak), "≤ 1 GB", yes(pb.rssPeak <= 1000*1000*1000/1024))
	out.WriteString(t.sb.String())
	if pb.firstErr != nil || bb.firstErr != nil {
		fmt.Fprintf(&out, "\nFirst failures of the burst: bare: %v; llm-proxy: %v. Each stream needs two open files in a proxy (client and upstream connections), and this machine allows %s per process.\n", orNone(bb.firstErr), orNone(pb.firstErr), fdLimit())
	}
	if i := c.idle; i.ran {
		fmt.Fprintf(&out, "\n### At rest: the %d first-party plugins loaded, no traffic\n\n", i.plugins)
		var r table
		r.header("Figure", "llm-proxy", "target", "met")
		r.row("RSS right after /readyz (one warm instance per plugin)", fmtMiB(i.rssReady), "", "")
		r.row(fmt.Sprintf("RSS once every plugin scaled to zero (idle_timeout %s; took %s)", i.idleTimeout, i.scaledAfter.Round(100*time.Millisecond)), fmtMiB(i.rssScaled), "≤ 120 MB", yes(i.rssScaled <= 120*1000*1000/1024))
		for k, name := range i.coldPlugins {
			r.row(fmt.Sprintf("%s: first request after scale to zero / the next one", name), fmtDur(i.cold[k])+" / "+fmtDur(i.warm[k]), "", "")
		}
		out.WriteString(r.sb.String())
	}
	return out.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func rssGrowth(idle, peak uint64) string {
	return fmt.Sprintf("%s → %s (+%s)", fmtMiB(idle), fmtMiB(peak), fmtMiB(peak-min(idle, peak)))
}

func firsts(r *burstResult) string {
	return fmtDur(percentile(r.firsts, 50)) + " / " + fmtDur(percentile(r.firsts, 99)) + " / " + fmtDur(r.lastFirst)
}

func orNone(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

// fdLimit is this process's open-file limit, which the proxies inherit.
func fdLimit() string {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return "an unknown number"
	}
	return fmt.Sprint(l.Cur)
}

// warnings returns the last n warning and error lines a process logged
// (those still in its output's tail), to tell why requests failed.
func warnings(c *child, n int) []string {
	var out []string
	for _, l := range strings.Split(c.out.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return out[max(0, len(out)-n):]
}
