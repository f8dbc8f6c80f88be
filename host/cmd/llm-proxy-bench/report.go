package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// figures collects everything the report shows. Slices indexed by target
// follow the order direct, bare, proxy.
type figures struct {
	quick        bool
	machine      machineInfo
	goVersion    string
	proxyVersion string
	date         string
	clkTck       int
	sz           sizes
	elapsed      time.Duration
	titles       []string

	wasmSize     int
	compile      compileTimes
	proxyStartup time.Duration
	swapNew      swapTimes
	swapCached   swapTimes

	loadAvg   string  // 1-minute load average when the run began
	otherLoad float64 // CPUs used by other processes during the measurements
	warm      []*loadResult

	events                                  []int
	cpuChat, cpuStream, latC1, latC32, ttfb []*loadResult
	rssStart                                uint64 // llm-proxy right after /readyz
	rssIdle, rssAfter                       []uint64
	open                                    []openStreamsResult
	instancesBefore, instancesAfter         int64 // live llm-proxy plugin instances around the memory test

	plugins pluginRuns
	routing routingRuns
	conc    concFigures
}

// fmtDur prints a duration with a unit suited to its size.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "n/a"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// fmtDelta prints a signed difference of durations.
func fmtDelta(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

func fmtMicros(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f µs", v)
}

func fmtMiB(kib uint64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

type table struct {
	sb strings.Builder
}

func (t *table) row(cells ...string) {
	t.sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

func (t *table) header(cells ...string) {
	t.row(cells...)
	seps := make([]string, len(cells))
	seps[0] = "---"
	for i := 1; i < len(seps); i++ {
		seps[i] = "---:"
	}
	t.row(seps...)
}

// perTarget builds one row from a function of the target index.
func (t *table) perTarget(label string, n int, cell func(i int) string) {
	cells := []string{label}
	for i := 0; i < n; i++ {
		cells = append(cells, cell(i))
	}
	t.row(cells...)
}

func (b *bench) report() string {
	if b.only == "concurrency" {
		return b.header() + b.concReport()
	}
	return b.header() + b.mainReport() + b.concReport()
}

// header is the report's title and the run's conditions.
func (b *bench) header() string {
	f := &b.fig
	var out strings.Builder
	mode := "full"
	if f.quick {
		mode = "quick"
	}
	fmt.Fprintf(&out, "## llm-proxy end-to-end figures (%s run)\n\n", mode)
	fmt.Fprintf(&out, "- Machine: %d CPU(s), %s, %s RAM, Linux %s\n", f.machine.CPUs, f.machine.Model, f.machine.MemTotal, f.machine.Kernel)
	fmt.Fprintf(&out, "- Go: %s; proxy: %s; date: %s; run took %s\n", f.goVersion, orDash(f.proxyVersion), f.date, f.elapsed.Round(time.Second))
	fmt.Fprintf(&out, "- Load generator, upstream and proxies share the same %d CPU(s); CPU times come from /proc/PID/stat (%d ticks/s), memory from VmRSS.\n", f.machine.CPUs, f.clkTck)
	fmt.Fprintf(&out, "- Other activity: load average %s when the run began; other processes used %.2f CPUs on average during the measurements%s.\n\n", f.loadAvg, f.otherLoad, noisy(f.otherLoad))
	return out.String()
}

// mainReport is the table of per-request costs, latency, memory and reload.
func (b *bench) mainReport() string {
	f := &b.fig
	var out strings.Builder

	n := len(f.titles)
	var t table
	t.header(append([]string{"Figure"}, f.titles...)...)
	direct := 0

	t.perTarget(fmt.Sprintf("CPU per non-stream request, c=%d (own process¹)", conc), n, func(i int) string {
		return fmtMicros(f.cpuChat[i].perReqMicros(b.targets[i].proc.pid))
	})
	t.perTarget(fmt.Sprintf("CPU per non-stream request during the warm-up, c=32, first %d (fresh plugin instances)", f.sz.warmChat), n, func(i int) string {
		return fmtMicros(f.warm[i].perReqMicros(b.targets[i].proc.pid))
	})
	t.perTarget(fmt.Sprintf("CPU per 20-chunk stream, c=%d (own process¹)", conc), n, func(i int) string {
		return fmtMicros(f.cpuStream[i].perReqMicros(b.targets[i].proc.pid))
	})
	t.perTarget("Upstream CPU in the same runs, request / stream", n, func(i int) string {
		up := b.upstream.pid
		return fmtMicros(f.cpuChat[i].perReqMicros(up)) + " / " + fmtMicros(f.cpuStream[i].perReqMicros(up))
	})
	t.perTarget(fmt.Sprintf("Throughput at c=%d, requests/s / streams/s", conc), n, func(i int) string {
		return fmt.Sprintf("%.0f / %.0f", f.cpuChat[i].rate(), f.cpuStream[i].rate())
	})
	for _, l := range []struct {
		c int
		r []*loadResult
	}{{1, f.latC1}, {32, f.latC32}} {
		t.perTarget(fmt.Sprintf("Non-stream latency p50, c=%d", l.c), n, func(i int) string { return fmtDur(percentile(l.r[i].total, 50)) })
		t.perTarget(fmt.Sprintf("Non-stream latency p99, c=%d", l.c), n, func(i int) string { return fmtDur(percentile(l.r[i].total, 99)) })
		t.perTarget(fmt.Sprintf("Added p50 latency vs direct, c=%d", l.c), n, func(i int) string {
			if i == direct {
				return "—"
			}
			return fmtDelta(percentile(l.r[i].total, 50) - percentile(l.r[direct].total, 50))
		})
	}
	t.perTarget("Stream time to first byte p50, c=1", n, func(i int) string { return fmtDur(percentile(f.ttfb[i].ttfb, 50)) })
	t.perTarget("Stream time to first byte p99, c=1", n, func(i int) string { return fmtDur(percentile(f.ttfb[i].ttfb, 99)) })
	t.perTarget("Added TTFB p50 vs direct", n, func(i int) string {
		if i == direct {
			return "—"
		}
		return fmtDelta(percentile(f.ttfb[i].ttfb, 50) - percentile(f.ttfb[direct].ttfb, 50))
	})
	t.perTarget("Whole 20-chunk stream p50, c=1", n, func(i int) string { return fmtDur(percentile(f.ttfb[i].total, 50)) })
	t.perTarget("RSS idle after warm-up (own process¹)", n, func(i int) string { return fmtMiB(f.rssIdle[i]) })
	t.perTarget(fmt.Sprintf("RSS with %d streams open, at first chunk / peak", f.sz.openStreams), n, func(i int) string {
		return fmtMiB(f.open[i].rssNow) + " / " + fmtMiB(f.open[i].rssPeak)
	})
	t.perTarget(fmt.Sprintf("RSS 1 s after those %d streams closed", f.sz.openStreams), n, func(i int) string { return fmtMiB(f.rssAfter[i]) })
	t.perTarget(fmt.Sprintf("Time until all %d streams had a first chunk", f.sz.openStreams), n, func(i int) string { return fmtDur(f.open[i].allFirst) })
	t.perTarget("Failed requests, all measured runs", n, func(i int) string {
		e := 0
		for _, rs := range [][]*loadResult{f.cpuChat, f.cpuStream, f.latC1, f.latC32, f.ttfb} {
			e += rs[i].errs
		}
		return fmt.Sprint(e)
	})
	out.WriteString(t.sb.String())

	fmt.Fprintf(&out, "\n¹ The process measured is the one named by the column: the fake upstream for \"direct upstream\", the bare proxy, llm-proxy. Upstream CPU is listed separately.\n\n")

	if s := b.pluginsReport(); s != "" {
		out.WriteString(s + "\n")
	}
	if s := b.routingReport(); s != "" {
		out.WriteString(s + "\n")
	}

	var p table
	p.header("Plugin load and hot reload (openai.wasm, "+fmt.Sprintf("%.1f MB", float64(f.wasmSize)/1e6)+")", "Time")
	p.row("plugin.Load in-process, empty compilation cache (compile + first instance)", fmtDur(f.compile.cold))
	p.row(fmt.Sprintf("plugin.Load in-process, from the on-disk cache (median of %d)", len(f.compile.warm)), fmtDur(percentile(f.compile.warm, 50)))
	p.row("llm-proxy process start until /readyz answers 200 (cache already filled)", fmtDur(f.proxyStartup))
	p.row("Hot reload, new build (manifest changed, so a cache miss): rename until /api/plugins serves it", fmt.Sprintf("%s (load began after %s)", fmtDur(f.swapNew.total), fmtDur(f.swapNew.untilLoad)))
	p.row("Hot reload, original file back (code in the on-disk cache)", fmt.Sprintf("%s (load began after %s)", fmtDur(f.swapCached.total), fmtDur(f.swapCached.untilLoad)))
	out.WriteString(p.sb.String())

	fmt.Fprintf(&out, "\nNotes:\n\n")
	fmt.Fprintf(&out, "- Requests per path, direct / bare / llm-proxy (each run lasts at least %s for CPU, %s for latency): CPU %s non-stream and %s streams at c=%d; latency %s at c=1 and %s at c=32; TTFB %s streams at c=1; after a warm-up of %d requests and %d streams at c=32.\n",
		f.sz.cpuDur, f.sz.latDur, counts(f.cpuChat), counts(f.cpuStream), conc, counts(f.latC1), counts(f.latC32), counts(f.ttfb), f.sz.warmChat, f.sz.warmStream)
	fmt.Fprintf(&out, "- Streams carry 20 content chunks and ask for usage; SSE events per stream (direct / bare / llm-proxy): %s.\n", joinInts(f.events))
	fmt.Fprintf(&out, "- Memory streams use the fake's slow-stream model (a chunk every 50 ms) and are dropped after %s of samples. llm-proxy's RSS was %s right after /readyz (one plugin instance). It had %d live plugin instances after the warm-up and %d with the %d streams open (an instance holds many streams; instances follow demand)%s.\n",
		f.sz.hold, fmtMiB(f.rssStart), f.instancesBefore, f.instancesAfter, f.sz.openStreams, perInstance(f))
	if f.quick {
		fmt.Fprintf(&out, "- Quick run: the short warm-up leaves llm-proxy's plugin instances still growing their memory, so its CPU and tail-latency figures are pessimistic and vary from run to run. Use the full run for numbers to quote.\n")
	}
	fmt.Fprintf(&out, "- Reload times include the plugin watcher's 150 ms debounce (\"load began after\") and the 5 ms polling of /api/plugins.\n")
	return out.String()
}

// perInstance estimates llm-proxy's memory per added plugin instance from
// the growth between the idle sample and the open-streams sample.
func perInstance(f *figures) string {
	added := f.instancesAfter - f.instancesBefore
	if added <= 0 || len(f.open) < 3 || f.open[2].rssNow < f.rssIdle[2] {
		return ""
	}
	return fmt.Sprintf(", so roughly %s of RSS per added instance", fmtMiB((f.open[2].rssNow-f.rssIdle[2])/uint64(added)))
}

// counts lists the requests each path actually sent in one measurement.
func counts(rs []*loadResult) string {
	v := make([]int, len(rs))
	for i, r := range rs {
		v[i] = r.n
	}
	return joinInts(v)
}

// noisy warns when other processes used a noticeable share of the CPUs.
func noisy(other float64) string {
	if other < 0.1 {
		return ""
	}
	return " (**noticeable: the figures are disturbed by it**)"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " / ")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
