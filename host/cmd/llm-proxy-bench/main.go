// Command llm-proxy-bench measures what llm-proxy costs on top of a plain
// reverse proxy, end to end, and prints the figures as Markdown.
//
// Run it from the repository root after `go tool task build`:
//
//	go run ./host/cmd/llm-proxy-bench [-quick] [-o figures.md]
//
// It starts three processes on loopback: the fake OpenAI upstream, a bare
// Fiber reverse proxy (the floor: forwards and streams, nothing else) and the
// real bin/llm-proxy with bin/plugins/openai.wasm. It then drives the same
// requests at the upstream directly, through the bare proxy and through
// llm-proxy, reading each process's CPU time and resident memory from /proc.
// Then it compares llm-proxy's CPU with each provider plugin translating
// (openai, anthropic, gemini: the fake upstream speaks all three wire
// formats). Plugin load and hot-reload times are measured as well. Every process it
// starts is killed when it ends, also on errors and Ctrl-C.
//
// The helper processes are this same binary run with a subcommand:
//
//	llm-proxy-bench upstream -listen 127.0.0.1:0 [-chunks 20] [-chunk-delay 0]
//	llm-proxy-bench bare -listen 127.0.0.1:0 -upstream http://127.0.0.1:PORT/v1
//
// Both print the address they bound as their first line of output.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		switch os.Args[1] {
		case "upstream":
			err = runUpstream(os.Args[2:])
		case "bare":
			err = runBare(os.Args[2:])
		default:
			fmt.Fprintf(os.Stderr, "llm-proxy-bench: unknown subcommand %q (want upstream, bare, or none)\n", os.Args[1])
			os.Exit(2)
		}
	} else {
		err = runBench(os.Args[1:])
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "llm-proxy-bench:", err)
		os.Exit(1)
	}
}

// sizes are the request counts and durations of one run. Every measured
// run sends at least its count and lasts at least its duration.
type sizes struct {
	warmChat, warmStream int           // per target, before anything is measured
	cpuChat, cpuStream   int           // at concurrency conc
	cpuDur               time.Duration // floor of each CPU run
	latC1, latC32        int           // non-stream latency runs
	ttfb                 int           // streams at concurrency 1
	latDur               time.Duration // floor of each latency and TTFB run
	compileWarm          int           // warm plugin loads
	openStreams          int           // streams held open for the memory figure
	hold                 time.Duration // how long they are held
}

var (
	fullSizes = sizes{
		warmChat: 16000, warmStream: 300,
		cpuChat: 3000, cpuStream: 1000, cpuDur: 6 * time.Second,
		latC1: 1000, latC32: 3000, ttfb: 500, latDur: 3 * time.Second,
		compileWarm: 3, openStreams: 64, hold: time.Second,
	}
	quickSizes = sizes{
		warmChat: 3000, warmStream: 60,
		cpuChat: 600, cpuStream: 200, cpuDur: 1500 * time.Millisecond,
		latC1: 200, latC32: 600, ttfb: 100, latDur: 600 * time.Millisecond,
		compileWarm: 1, openStreams: 64, hold: 500 * time.Millisecond,
	}
)

const conc = 16

// bench is the state of one orchestrated run.
type bench struct {
	ctx      context.Context
	sup      *supervisor
	root     string
	tmp      string
	self     string
	sz       sizes
	quick    bool
	only     string // run one part (see the -only flag)
	log      func(format string, a ...any)
	adminKey string

	upstream, bare, proxy *child
	targets               []*target // direct, bare, proxy
	admin                 *admin
	pluginsDir            string

	fig figures
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("llm-proxy-bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "smaller request counts (about 30 s instead of about 2-3 min)")
	out := fs.String("o", "", "also write the Markdown report to this file")
	rootFlag := fs.String("root", "", "repository root holding bin/ (default: found from the working directory)")
	only := fs.String("only", "", `run one part: "concurrency" (many streams, idle memory, cold start) or "" for everything`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	root := *rootFlag
	if root == "" {
		var err error
		if root, err = findRoot(); err != nil {
			return err
		}
	}
	proxyBin := filepath.Join(root, "bin", "llm-proxy")
	pluginWasm := filepath.Join(root, "bin", "plugins", "openai.wasm")
	need := []string{proxyBin}
	for _, p := range providerPlugins {
		need = append(need, filepath.Join(root, "bin", "plugins", p.name+".wasm"))
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s not found: run `go tool task build` in %s first", p, root)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	// A signal cancels ctx, which makes exec kill the children's process
	// groups; the deferred stopAll covers every other way out. Should the
	// main goroutine be stuck somewhere that ignores ctx, the watchdog
	// kills the children itself and exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sup := &supervisor{}
	tmp, err := os.MkdirTemp("", "llm-proxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	defer sup.stopAll()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "llm-proxy-bench: interrupted, stopping the processes it started")
			sup.stopAll()
			select {
			case <-finished:
			case <-time.After(10 * time.Second):
				_ = os.RemoveAll(tmp)
				os.Exit(130)
			}
		}
	}()

	b := &bench{
		ctx: ctx, sup: sup, root: root, tmp: tmp, self: self, quick: *quick,
		sz: fullSizes, only: *only,
		log: func(format string, a ...any) { fmt.Fprintf(os.Stderr, "# "+format+"\n", a...) },
	}
	if *quick {
		b.sz = quickSizes
	}
	started := time.Now()
	if err := b.run(proxyBin, pluginWasm); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted (%v)", err)
		}
		return err
	}
	b.fig.elapsed = time.Since(started)
	report := b.report()
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			return err
		}
		b.log("report written to %s", *out)
	}
	return nil
}

// findRoot walks up from the working directory to the folder whose go.mod
// declares the llm-proxy module.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/llm-proxy/llm-proxy\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the llm-proxy repository (no go.mod declaring github.com/llm-proxy/llm-proxy above the working directory); use -root")
		}
		dir = parent
	}
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before llm-proxy binds it, but on a benchmark machine that is
// unlikely, and llm-proxy would then fail loudly.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "sk-bench-" + hex.EncodeToString(b[:])
}

// proxyEnv is the environment of llm-proxy: ours without any LLMPROXY_*
// override that could change the config under test, plus the admin key and
// a throwaway encryption key.
func proxyEnv(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LLMPROXY_") {
			env = append(env, kv)
		}
	}
	var enc [32]byte
	_, _ = rand.Read(enc[:])
	return append(env, "LLMPROXY_ADMIN_KEY="+key, "LLMPROXY_ENCRYPTION_KEY="+hex.EncodeToString(enc[:]))
}

// The models routed to the Anthropic and Gemini providers. The fake
// upstream answers any model name the same way.
const (
	anthropicModel = "claude-bench"
	geminiModel    = "gemini-bench"
)

// providerPlugins are the plugins compared by the provider step, in
// column order; the first is the baseline.
var providerPlugins = []struct{ name, model string }{
	{"openai", benchModel},
	{"anthropic", anthropicModel},
	{"gemini", geminiModel},
}

// quote makes a TOML basic string.
func quote(s string) string { return strconv.Quote(s) }

// proxyConfig is llm-proxy's config for the run; paced maps model names to
// the base URL of a paced fake upstream, each served as a provider of its
// own through the openai plugin.
func proxyConfig(port int, pluginsDir, cacheDir, upstreamURL string, paced map[string]string) string {
	var extra strings.Builder
	for _, model := range slices.Sorted(maps.Keys(paced)) {
		fmt.Fprintf(&extra, "\n[[providers]]\nname = %s\nplugin = \"openai\"\nbase_url = %s\nmodels = [%s]\nallow_private_network = true\n",
			quote(model), quote(paced[model]), quote(model))
	}
	return fmt.Sprintf(`# Written by llm-proxy-bench.
[server]
listen = %s
shutdown_timeout = "2s"

[auth]
admin_key_env = "LLMPROXY_ADMIN_KEY"

[log]
# Per-request lines are logged at info; keep them out of the measurement.
level = "warn"
format = "text"

[plugins]
dir = %s
watch = true
cache_dir = %s

[database]
path = %s

[[providers]]
name = "fake"
plugin = "openai"
base_url = %s
api_key_env = ""
models = ["gpt-4o-mini", "slow-stream"]
allow_private_network = true

# The same fake upstream speaks Anthropic's Messages API and Gemini's
# generateContent too, with the same 20-chunk streams, so the three
# plugins can be compared on equal terms. Their plugins are dropped into
# the folder only for that comparison, after the memory figures.
[[providers]]
name = "fake-anthropic"
plugin = "anthropic"
base_url = %s
api_key_env = ""
models = [%s]
allow_private_network = true

[[providers]]
name = "fake-gemini"
plugin = "gemini"
base_url = %s
api_key_env = ""
models = [%s]
allow_private_network = true
`, quote(fmt.Sprintf("127.0.0.1:%d", port)), quote(pluginsDir), quote(cacheDir),
		quote(filepath.Join(filepath.Dir(pluginsDir), "llm-proxy.db")), quote(upstreamURL),
		quote(strings.TrimSuffix(upstreamURL, "/v1")), quote(anthropicModel),
		quote(strings.TrimSuffix(upstreamURL, "/v1")+"/v1beta"), quote(geminiModel)) + extra.String()
}

func (b *bench) run(proxyBin, pluginWasm string) error {
	ctx := b.ctx
	f := &b.fig
	f.quick = b.quick
	f.machine = readMachineInfo(runtime.NumCPU())
	f.goVersion = runtime.Version()
	f.date = time.Now().UTC().Format("2006-01-02 15:04 MST")
	f.clkTck = clockTicks()
	f.loadAvg = loadAvg()
	f.sz = b.sz
	if out, err := exec.Command(proxyBin, "version").Output(); err == nil {
		f.proxyVersion = strings.TrimSpace(string(out))
	}
	wasm, err := os.ReadFile(pluginWasm)
	if err != nil {
		return err
	}
	f.wasmSize = len(wasm)

	// 1. Plugin load in this process, before anything else competes for
	// the CPU. The cache it fills is then handed to llm-proxy.
	cacheDir := filepath.Join(b.tmp, "wazero-cache")
	b.log("loading openai.wasm in-process: empty cache, then %d time(s) from the cache", b.sz.compileWarm)
	if f.compile, err = measureCompile(ctx, wasm, cacheDir, b.sz.compileWarm); err != nil {
		return err
	}
	runtime.GC()

	// 2. The three servers.
	b.log("starting the fake upstream, the bare proxy and llm-proxy")
	var addr string
	b.upstream, addr, err = b.sup.start(ctx, "upstream", []string{b.self, "upstream", "-listen", "127.0.0.1:0", "-chunks", "20", "-exit-on-stdin-eof"}, os.Environ(), "", true)
	if err != nil {
		return err
	}
	upstreamURL := "http://" + addr + "/v1"
	b.bare, addr, err = b.sup.start(ctx, "bare proxy", []string{b.self, "bare", "-listen", "127.0.0.1:0", "-upstream", upstreamURL, "-exit-on-stdin-eof"}, os.Environ(), "", true)
	if err != nil {
		return err
	}
	bareBase := "http://" + addr

	// The paced upstreams of the concurrency figures, each with a bare
	// proxy of its own, before llm-proxy's config names them.
	p250, err := b.startPaced(250 * time.Millisecond)
	if err != nil {
		return err
	}
	p2s, err := b.startPaced(2 * time.Second)
	if err != nil {
		return err
	}
	paced := map[string]string{"paced-250ms": p250.url, "paced-2s": p2s.url}

	b.pluginsDir = filepath.Join(b.tmp, "plugins")
	if err := os.MkdirAll(b.pluginsDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.pluginsDir, "openai.wasm"), wasm, 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(b.tmp, "config.toml")
	refusedPort, err := freePort()
	if err != nil {
		return err
	}
	cfgText := proxyConfig(port, b.pluginsDir, cacheDir, upstreamURL, paced) + routingConfig(fmt.Sprintf("http://127.0.0.1:%d/v1", refusedPort))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		return err
	}
	b.adminKey = randomKey()
	proxyBase := fmt.Sprintf("http://127.0.0.1:%d", port)
	t0 := time.Now()
	b.proxy, _, err = b.sup.start(ctx, "llm-proxy", []string{proxyBin, "--config", cfgPath}, proxyEnv(b.adminKey), b.tmp, false)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, upstreamURL+"/models", b.upstream, 20*time.Second); err != nil {
		return err
	}
	if err := waitReady(ctx, bareBase+"/readyz", b.bare, 20*time.Second); err != nil {
		return err
	}
	if err := waitReady(ctx, proxyBase+"/readyz", b.proxy, 2*time.Minute); err != nil {
		return err
	}
	f.proxyStartup = time.Since(t0)
	b.admin = &admin{base: proxyBase, key: b.adminKey, client: &http.Client{Timeout: 10 * time.Second}}
	if f.rssStart, err = rssKiB(b.proxy.pid); err != nil {
		return err
	}

	b.targets = []*target{
		{title: "direct upstream", url: upstreamURL + "/chat/completions", proc: b.upstream, client: newClient(), apiKey: b.adminKey},
		{title: "bare Fiber proxy", url: bareBase + "/v1/chat/completions", proc: b.bare, client: newClient(), apiKey: b.adminKey},
		{title: "llm-proxy", url: proxyBase + "/v1/chat/completions", proc: b.proxy, client: newClient(), apiKey: b.adminKey},
	}
	f.titles = []string{b.targets[0].title, b.targets[1].title, b.targets[2].title}

	if b.only == "concurrency" {
		if err := b.runConcurrency(proxyBase, p250, p2s); err != nil {
			return b.failed(err)
		}
		return b.failed2(b.measureIdle(proxyBin, filepath.Dir(pluginWasm), upstreamURL))
	}

	// 3. One request of each kind per path, then a warm-up. It grows
	// llm-proxy's instance pool to the highest concurrency used below and
	// lets every instance's linear memory reach its working size: a fresh
	// instance spends its first few hundred calls growing it, and that
	// growth is expensive. The warm-up's own CPU figure is reported as the
	// cost of fresh instances.
	for _, t := range b.targets {
		if _, err := t.do(ctx, t.body(false), false); err != nil {
			return b.failed(fmt.Errorf("%s: first request: %w", t.title, err))
		}
		o, err := t.do(ctx, t.body(true), true)
		if err != nil {
			return b.failed(fmt.Errorf("%s: first stream: %w", t.title, err))
		}
		f.events = append(f.events, o.events)
	}
	b.log("warming up (%d requests and %d streams per path at concurrency 32)", b.sz.warmChat, b.sz.warmStream)
	busy0, err := machineBusy()
	if err != nil {
		return err
	}
	ours0, err := b.ourTicks()
	if err != nil {
		return err
	}
	wall0 := time.Now()
	for _, t := range b.targets {
		r, err := runLoad(ctx, t, b.sz.warmChat, 0, 32, false, []int{t.proc.pid})
		if err != nil {
			return b.failed(err)
		}
		f.warm = append(f.warm, r)
		if _, err := runLoad(ctx, t, b.sz.warmStream, 0, 32, true, nil); err != nil {
			return b.failed(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, t := range b.targets {
		v, err := rssKiB(t.proc.pid)
		if err != nil {
			return b.failed(err)
		}
		f.rssIdle = append(f.rssIdle, v)
	}

	// 4. CPU, throughput and latency. Each measurement runs against the
	// three paths in turn, so a slow drift of the machine affects all.
	type step struct {
		label  string
		n      int
		d      time.Duration
		c      int
		stream bool
		dst    *[]*loadResult
	}
	steps := []step{
		{"CPU, non-stream", b.sz.cpuChat, b.sz.cpuDur, conc, false, &f.cpuChat},
		{"CPU, streams", b.sz.cpuStream, b.sz.cpuDur, conc, true, &f.cpuStream},
		{"latency c=1", b.sz.latC1, b.sz.latDur, 1, false, &f.latC1},
		{"latency c=32", b.sz.latC32, b.sz.latDur, 32, false, &f.latC32},
		{"stream TTFB c=1", b.sz.ttfb, b.sz.latDur, 1, true, &f.ttfb},
	}
	for _, s := range steps {
		for _, t := range b.targets {
			b.log("%s: %s, at least %d requests and %s", s.label, t.title, s.n, s.d)
			watch := []int{t.proc.pid}
			if t.proc != b.upstream {
				watch = append(watch, b.upstream.pid)
			}
			r, err := runLoad(ctx, t, s.n, s.d, s.c, s.stream, watch)
			if err != nil {
				return b.failed(err)
			}
			if r.errs > 0 {
				b.log("  %d of %d failed, first: %v", r.errs, r.n, r.firstErr)
			}
			*s.dst = append(*s.dst, r)
		}
	}

	// 5. Memory with many streams open at once (the slow model keeps each
	// stream open for 10 s; they are dropped after the samples).
	if in, err := b.admin.plugin(ctx, "openai.wasm"); err == nil {
		f.instancesBefore = in.Instances.Created - in.Instances.Discarded
	}
	for _, t := range b.targets {
		b.log("memory: %d slow streams open through %s", b.sz.openStreams, t.title)
		r, err := holdStreams(ctx, t, b.sz.openStreams, t.proc.pid, b.sz.hold)
		if err != nil {
			return b.failed(err)
		}
		f.open = append(f.open, r)
		time.Sleep(time.Second)
		v, err := rssKiB(t.proc.pid)
		if err != nil {
			return b.failed(err)
		}
		f.rssAfter = append(f.rssAfter, v)
	}
	if in, err := b.admin.plugin(ctx, "openai.wasm"); err == nil {
		f.instancesAfter = in.Instances.Created - in.Instances.Discarded
	}
	// Whatever else ran on the machine meanwhile distorts the figures:
	// measure it as all busy CPU time minus that of our four processes.
	busy1, err := machineBusy()
	if err != nil {
		return err
	}
	ours1, err := b.ourTicks()
	if err != nil {
		return err
	}
	if other := int64(busy1-busy0) - int64(ours1-ours0); other > 0 {
		f.otherLoad = ticksToMicros(uint64(other)) / 1e6 / time.Since(wall0).Seconds()
	}

	// 6. The provider plugins side by side, after the memory figures so
	// that their instances do not count in them.
	if err := b.comparePlugins(proxyBase, filepath.Dir(pluginWasm)); err != nil {
		return b.failed(err)
	}

	// 6b. Routing: what a route of several targets and a fallback cost.
	if err := b.compareRouting(proxyBase); err != nil {
		return b.failed(err)
	}

	// 7. Hot reload: a build whose bytes differ only in the manifest (a
	// cache miss, so a full compile inside llm-proxy), then the original
	// file again (compiled code found in the cache).
	b.log("hot reload: new build, then the original back")
	changed, err := withManifestVersion(wasm, fmt.Sprintf("1.0.0-bench.%d", time.Now().UnixNano()))
	if err != nil {
		return err
	}
	if f.swapNew, err = swapPlugin(ctx, b.admin, b.pluginsDir, "openai.wasm", changed, 3*time.Minute); err != nil {
		return b.failed(err)
	}
	time.Sleep(300 * time.Millisecond)
	if f.swapCached, err = swapPlugin(ctx, b.admin, b.pluginsDir, "openai.wasm", wasm, 3*time.Minute); err != nil {
		return b.failed(err)
	}
	if _, err := b.targets[2].do(ctx, b.targets[2].body(false), false); err != nil {
		return b.failed(fmt.Errorf("request after the reloads: %w", err))
	}

	// 8. Many long streams at once, then a proxy with every plugin at
	// rest.
	if err := b.runConcurrency(proxyBase, p250, p2s); err != nil {
		return b.failed(err)
	}
	if err := b.measureIdle(proxyBin, filepath.Dir(pluginWasm), upstreamURL); err != nil {
		return b.failed(err)
	}
	if c := b.sup.firstExited(); c != nil {
		return fmt.Errorf("a process died during the run\n%s", c.describe())
	}
	return nil
}

// ourTicks is the CPU time used so far by this process and its three
// servers.
func (b *bench) ourTicks() (uint64, error) {
	var sum uint64
	for _, pid := range []int{os.Getpid(), b.upstream.pid, b.bare.pid, b.proxy.pid} {
		v, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// failed2 is failed for an error that may be nil.
func (b *bench) failed2(err error) error {
	if err == nil {
		return nil
	}
	return b.failed(err)
}

// failed adds the output of any child that died to err.
func (b *bench) failed(err error) error {
	if c := b.sup.firstExited(); c != nil {
		return fmt.Errorf("%w\n%s", err, c.describe())
	}
	if b.proxy != nil {
		if s := strings.TrimSpace(b.proxy.out.String()); s != "" {
			return fmt.Errorf("%w\nllm-proxy output:\n%s", err, s)
		}
	}
	return err
}
