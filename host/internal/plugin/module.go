// Package plugin runs provider plugins: WebAssembly modules that follow ABI
// 2 (sdk/ABI.md) under wazero.
//
// A loaded .wasm file becomes a Version: its own wazero runtime (so each
// plugin has its own memory cap), the compiled module (from the on-disk
// compilation cache when possible), the host module llmproxy_v2 and a
// scheduler of instances. A Registry maps plugin names to the Version that
// serves them, reloads files as they change, and retires old versions once
// their last stream has ended.
//
// # The model
//
// A client request is a stream (Version.Open). The scheduler places it on
// one instance, where it stays; an instance holds many streams (up to
// MaxStreamsPerInstance) and is driven by one goroutine, its worker, which
// runs the guest's callbacks one at a time, each to completion and each
// under its own deadline (CallbackTimeout). The host does all waiting:
// upstream requests run on goroutines of their own and come back as
// callbacks; output goes into the stream's Sink, which never blocks.
//
//	Open ─▶ worker queue ─▶ on_start ─▶ http_send ─▶ egress goroutine
//	                          ▲                            │ head, events, end
//	                          └──── worker queue ◀─────────┘
//	emit ─▶ Sink (bounded backlog; a full one pauses the upstream read)
//
// # Lifetimes
//
// Instances follow demand: the first stream of a plugin starts one (a cold
// start of a few milliseconds); more start while callbacks wait in a queue,
// up to about GOMAXPROCS, and beyond that only when every instance holds
// MaxStreamsPerInstance streams. An instance with no stream for IdleTimeout
// is closed, down to MinInstances (zero by default: an unused plugin keeps
// only its compiled code). A callback that traps, overruns its deadline,
// hits the memory cap or returns non-zero kills its instance: the streams it
// held end with an error, the others are untouched, and the next stream
// starts a fresh instance. Healthy instances are recycled after
// RecycleAfterCalls callbacks or once their memory grew past
// RecycleAfterPages: they take no new stream and close when their last one
// ends. A retired Version takes no new stream and closes its instances,
// compiled module and runtime once its last stream has ended.
package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Limits bound what one plugin may use. The zero value of a field means the
// default in DefaultLimits.
type Limits struct {
	MemoryPages           uint32        // wasm memory cap per instance, in 64 KiB pages
	RequestTimeout        time.Duration // deadline of a whole stream
	UpstreamTimeout       time.Duration // time to an upstream's response head
	CallbackTimeout       time.Duration // deadline of one guest callback
	MaxUpstreamBodyBytes  int64         // body bytes one stream may read from upstreams
	MaxEmitBytes          int64         // bytes one stream may send to its client
	StreamBufferBytes     int64         // bytes waiting for a client at which its upstream read pauses
	MaxHTTPHandles        int           // upstream requests and image fetches open at once in one stream
	MaxInstances          int           // instances per version
	MinInstances          int           // instances kept when idle
	MaxStreamsPerInstance int           // streams one instance holds at most
	IdleTimeout           time.Duration // an instance with no stream this long is closed
	RecycleAfterCalls     int           // callbacks before an instance is replaced
	RecycleAfterPages     uint32        // memory size after which it is replaced
}

// DefaultLimits are safe for untrusted plugins on a small machine.
var DefaultLimits = Limits{
	MemoryPages:           1024,
	RequestTimeout:        300 * time.Second,
	UpstreamTimeout:       120 * time.Second,
	CallbackTimeout:       100 * time.Millisecond,
	MaxUpstreamBodyBytes:  64 << 20,
	MaxEmitBytes:          64 << 20,
	StreamBufferBytes:     64 << 10,
	MaxHTTPHandles:        8,
	MaxInstances:          64,
	MinInstances:          0,
	MaxStreamsPerInstance: 1000,
	IdleTimeout:           30 * time.Second,
	RecycleAfterCalls:     1_000_000,
	RecycleAfterPages:     512,
}

// backlogFactor: a stream whose client has this many times
// StreamBufferBytes waiting is failed with ErrOutputLimit. Backpressure keeps
// an honest plugin near StreamBufferBytes (plus one upstream event's worth);
// only output that ignores it reaches the cap.
const backlogFactor = 128

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	or := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	ord := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	or64 := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	if l.MemoryPages == 0 {
		l.MemoryPages = d.MemoryPages
	}
	ord(&l.RequestTimeout, d.RequestTimeout)
	ord(&l.UpstreamTimeout, d.UpstreamTimeout)
	ord(&l.CallbackTimeout, d.CallbackTimeout)
	ord(&l.IdleTimeout, d.IdleTimeout)
	or64(&l.MaxUpstreamBodyBytes, d.MaxUpstreamBodyBytes)
	or64(&l.MaxEmitBytes, d.MaxEmitBytes)
	or64(&l.StreamBufferBytes, d.StreamBufferBytes)
	or(&l.MaxHTTPHandles, d.MaxHTTPHandles)
	or(&l.MaxInstances, d.MaxInstances)
	or(&l.MaxStreamsPerInstance, d.MaxStreamsPerInstance)
	or(&l.RecycleAfterCalls, d.RecycleAfterCalls)
	l.MinInstances = max(0, min(l.MinInstances, l.MaxInstances))
	if l.RecycleAfterPages == 0 {
		l.RecycleAfterPages = min(d.RecycleAfterPages, l.MemoryPages)
	}
	return l
}

// Errors of loading plugins and serving streams. A Sink's End receives one
// of the stream errors, or a *Failure, or nil.
var (
	ErrABI       = errors.New("plugin ABI mismatch")
	ErrNotLoaded = errors.New("plugin not loaded")
	// ErrBusy: every instance holds MaxStreamsPerInstance streams and no
	// more may start.
	ErrBusy = errors.New("plugin busy: every instance is full")
	// ErrRetired: the version was replaced before the stream could start;
	// nothing ran, and the caller may retry on its successor.
	ErrRetired = errors.New("plugin version retired")
	// ErrTrap: the instance holding the stream failed (a trap, a callback
	// past its deadline, the memory cap, a broken guest).
	ErrTrap = errors.New("plugin instance failed")
	// ErrTimeout: the stream outlived RequestTimeout.
	ErrTimeout = errors.New("plugin stream deadline exceeded")
	// ErrOutputLimit: the stream sent more than MaxEmitBytes, or left more
	// than its backlog cap waiting for the client.
	ErrOutputLimit = errors.New("plugin exceeded its output limit")
	// ErrNoResponse: the guest left the stream with nothing to wait for and
	// without answering it.
	ErrNoResponse = errors.New("plugin returned no response")
	// ErrUpstreamNotJSON: the upstream answered a relayed request with a
	// success whose body is not JSON.
	ErrUpstreamNotJSON = errors.New("upstream answer is not JSON")
	// ErrClientGone: the client went away or stopped reading (Stream.Cancel).
	ErrClientGone = errors.New("client gone")
)

// Failure is how a stream ends when the guest called fail: the HTTP status
// it asked for, its body (an OpenAI error object or plain text) and the
// Retry-After of the last upstream answer.
type Failure struct {
	Status     int
	Body       []byte
	RetryAfter string
}

func (f *Failure) Error() string {
	return fmt.Sprintf("plugin failed the request with status %d", f.Status)
}

// Version is one loaded build of a plugin.
type Version struct {
	Manifest *abi.Manifest
	SHA256   string
	File     string
	LoadedAt time.Time
	limits   Limits
	log      *slog.Logger

	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	exported map[string]bool // which callbacks the module exports
	sched    *scheduler
	out      *guestOutput

	mu      sync.Mutex
	streams int // open streams
	retired bool
	closed  bool
}

// LoadOptions are what Load needs besides the bytes.
type LoadOptions struct {
	File   string
	Limits Limits
	Cache  wazero.CompilationCache
	Logger *slog.Logger
}

// Load reads the manifest, checks the ABI, compiles the module, checks its
// imports and exports and starts one instance to prove it initialises; that
// instance stays warm until IdleTimeout.
func Load(ctx context.Context, wasm []byte, o LoadOptions) (*Version, error) {
	raw, err := abi.ManifestFromWasm(wasm)
	if err != nil {
		if errors.Is(err, abi.ErrNoManifest) {
			return nil, fmt.Errorf("%w: the file has no %q custom section; build the plugin with the SDK and pack its manifest (llmproxy-pack)", ErrABI, abi.ManifestSection)
		}
		return nil, err
	}
	m, err := abi.ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	major, minor, _ := m.ABIVersion()
	if major != abi.Major {
		hint := ""
		if major < abi.Major {
			hint = fmt.Sprintf("; rebuild it with the ABI %d SDK (callbacks instead of llmproxy_handle, sdk/ABI.md)", abi.Major)
		}
		return nil, fmt.Errorf("%w: plugin %s targets ABI %d.x, this host serves ABI %d.x%s", ErrABI, m.Name, major, abi.Major, hint)
	}
	if minor > abi.Minor {
		return nil, fmt.Errorf("%w: plugin %s needs ABI %d.%d, this host offers %d.%d", ErrABI, m.Name, major, minor, abi.Major, abi.Minor)
	}
	sum := sha256.Sum256(wasm)
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	v := &Version{
		Manifest: m,
		SHA256:   hex.EncodeToString(sum[:]),
		File:     o.File,
		LoadedAt: time.Now(),
		limits:   o.Limits.withDefaults(),
		log:      logger.With("plugin", m.Name, "version", m.Version),
	}
	v.out = newGuestOutput(v.log)
	cfg := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(v.limits.MemoryPages).
		WithCloseOnContextDone(true)
	if o.Cache != nil {
		cfg = cfg.WithCompilationCache(o.Cache)
	}
	v.runtime = wazero.NewRuntimeWithConfig(ctx, cfg)
	fail := func(err error) (*Version, error) {
		v.runtime.Close(ctx)
		return nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, v.runtime); err != nil {
		return fail(err)
	}
	if err := instantiateHostModule(ctx, v.runtime); err != nil {
		return fail(err)
	}
	// Compiling is the slow part of a load (seconds for a Go plugin without
	// the cache); spread it over the cores. It runs off the request path.
	v.compiled, err = v.runtime.CompileModule(experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0)), wasm)
	if err != nil {
		return fail(fmt.Errorf("compile: %w", err))
	}
	if v.exported, err = checkModule(v.compiled); err != nil {
		v.compiled.Close(ctx)
		return fail(err)
	}
	v.sched = newScheduler(v)
	// One instance proves that _initialize runs; it serves the first
	// streams warm.
	if err := v.sched.warm(); err != nil {
		v.sched.close()
		v.compiled.Close(ctx)
		return fail(fmt.Errorf("instantiate: %w", err))
	}
	return v, nil
}

// checkModule verifies that every import is one this host provides with the
// right signature and that the required exports exist with theirs; it
// returns the callbacks the module exports.
func checkModule(cm wazero.CompiledModule) (map[string]bool, error) {
	var problems []string
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case abi.ImportModule:
			f, ok := abi.HostFunc(name)
			if !ok {
				problems = append(problems, fmt.Sprintf("imports %s.%s, which this host does not provide", mod, name))
				continue
			}
			if !allI32(def.ParamTypes(), f.Arity()) || !allI32(def.ResultTypes(), 1) {
				problems = append(problems, fmt.Sprintf("imports %s.%s with the wrong signature (want %d i32 params and one i32 result)", mod, name, f.Arity()))
			}
		default:
			switch {
			case mod == "llmproxy_v1":
				problems = append(problems, fmt.Sprintf("imports module %s: it was built for ABI 1, which this host no longer serves; rebuild it with the ABI %d SDK (%s)", mod, abi.Major, abi.ImportModule))
			case strings.HasPrefix(mod, "llmproxy_v"):
				problems = append(problems, fmt.Sprintf("imports module %s: this host serves ABI %s", mod, abi.ImportModule))
			default:
				problems = append(problems, fmt.Sprintf("imports %s.%s from unknown module %q", mod, name, mod))
			}
		}
	}
	exports := cm.ExportedFunctions()
	exported := map[string]bool{}
	for _, f := range abi.Exports {
		def, ok := exports[f.Name]
		switch {
		case !ok && f.Required:
			problems = append(problems, "does not export "+f.Name)
		case !ok:
		case !allI32(def.ParamTypes(), f.Arity()) || !allI32(def.ResultTypes(), 1):
			problems = append(problems, fmt.Sprintf("%s must be (%d i32) -> i32", f.Name, f.Arity()))
		default:
			exported[f.Name] = true
		}
	}
	if _, ok := exports["llmproxy_handle"]; ok && !exported[abi.ExportOnStart] {
		problems = append(problems, "exports llmproxy_handle, the entry point of ABI 1: rebuild it with the ABI 2 SDK")
	}
	if _, ok := exports[abi.ExportInitialize]; !ok {
		problems = append(problems, "does not export "+abi.ExportInitialize+" (build with -buildmode=c-shared)")
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		problems = append(problems, `does not export its memory as "memory"`)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%w: the module %s", ErrABI, strings.Join(problems, "; "))
	}
	return exported, nil
}

func allI32(ts []api.ValueType, n int) bool {
	if len(ts) != n {
		return false
	}
	for _, t := range ts {
		if t != api.ValueTypeI32 {
			return false
		}
	}
	return true
}

// acquire counts a stream that is about to open; false once retired.
func (v *Version) acquire() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.retired {
		return false
	}
	v.streams++
	return true
}

// release uncounts a stream that ended (or never opened).
func (v *Version) release() {
	v.mu.Lock()
	v.streams--
	closeNow := v.retired && v.streams == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	if closeNow {
		// The last release runs on a worker's goroutine, which close waits
		// for: close on another.
		go v.close()
	}
}

// Retire stops new streams; the version closes when its last stream ends.
func (v *Version) Retire() {
	v.mu.Lock()
	v.retired = true
	closeNow := v.streams == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	v.sched.retire()
	if closeNow {
		v.close()
	}
}

// Closed reports whether the version released its runtime.
func (v *Version) Closed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.closed
}

func (v *Version) close() {
	ctx := context.Background()
	v.sched.close()
	v.compiled.Close(ctx)
	v.runtime.Close(ctx)
	v.log.Info("plugin version closed", "sha256", v.SHA256[:12])
}

// Limits returns the effective limits.
func (v *Version) Limits() Limits { return v.limits }

// Stats are a version's counts for /api/plugins.
type Stats struct {
	// Instances is the number of live instances; Streams the streams open
	// on them; Queued the callbacks waiting for their instance.
	Instances int `json:"instances"`
	Streams   int `json:"streams"`
	Queued    int `json:"queued"`
	// Created and Discarded count instances started and closed; Failures
	// the instances lost to a trap, a callback deadline or a broken guest.
	Created   int64 `json:"created"`
	Discarded int64 `json:"discarded"`
	Failures  int64 `json:"failures"`
	// Callbacks counts guest callbacks run; CallbacksPerSecond is their rate
	// over the last ten seconds.
	Callbacks          int64   `json:"callbacks"`
	CallbacksPerSecond float64 `json:"callbacks_per_second"`
	// StreamsTotal counts streams opened.
	StreamsTotal int64 `json:"streams_total"`
	// Traps and Timeouts count the callbacks that failed: a trap, a
	// non-zero result or a broken guest, and a callback past its deadline.
	Traps    int64 `json:"traps"`
	Timeouts int64 `json:"timeouts"`
	// CallbackDurations counts callbacks by how long they ran.
	CallbackDurations Durations `json:"-"`
	// PerInstance describes each live instance.
	PerInstance []InstanceStats `json:"per_instance"`
}

// Durations counts events by duration: Counts[i] those of at most
// CallbackBuckets[i] (and above the bound before), the last those above
// every bound; Sum is their total time.
type Durations struct {
	Counts []int64
	Sum    time.Duration
}

// InstanceStats describe one instance.
type InstanceStats struct {
	ID        int    `json:"id"`
	Streams   int    `json:"streams"`
	Queued    int    `json:"queued"`
	Callbacks int64  `json:"callbacks"`
	Pages     uint32 `json:"memory_pages"`
	Draining  bool   `json:"draining"`
}

// Stats returns the version's counts.
func (v *Version) Stats() Stats { return v.sched.stats() }
