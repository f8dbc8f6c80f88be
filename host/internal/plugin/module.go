// Package plugin runs provider plugins: WebAssembly modules that follow ABI
// v1 (sdk/ABI.md) under wazero.
//
// A loaded .wasm file becomes a Version: its own wazero runtime (so each
// plugin has its own memory cap), the compiled module (from the on-disk
// compilation cache when possible), the host module llmproxy_v1 and a pool
// of initialised instances. A Registry maps plugin names to the Version that
// serves them, reloads files as they change, and retires old versions once
// their last call has ended.
//
// # Lifetimes
//
// An instance serves one call at a time. After a call that trapped, ran past
// its deadline, hit its memory cap or returned non-zero it is closed, never
// reused; healthy instances are recycled after a number of calls or once
// their memory grew past a limit. A retired Version closes its idle
// instances at once and its runtime and compiled module after its last call.
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
	"sync/atomic"
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
	MemoryPages          uint32        // wasm memory cap per instance, in 64 KiB pages
	RequestTimeout       time.Duration // deadline of a whole call, stream included
	UpstreamTimeout      time.Duration // time to the upstream's response head
	MaxUpstreamBodyBytes int64         // body bytes one call may read from upstreams
	MaxEmitBytes         int64         // bytes one call may emit to the client
	MaxHTTPHandles       int           // upstream requests open at once in one call
	MaxInstances         int           // instances per version, idle and busy
	MaxIdleInstances     int           // warm instances kept through a quiet period
	RecycleAfterCalls    int           // calls before an instance is replaced
	RecycleAfterPages    uint32        // memory size after which it is replaced
}

// DefaultLimits are safe for untrusted plugins on a small machine.
var DefaultLimits = Limits{
	MemoryPages:          1024,
	RequestTimeout:       300 * time.Second,
	UpstreamTimeout:      120 * time.Second,
	MaxUpstreamBodyBytes: 64 << 20,
	MaxEmitBytes:         64 << 20,
	MaxHTTPHandles:       8,
	MaxInstances:         64,
	MaxIdleInstances:     8,
	RecycleAfterCalls:    10000,
	RecycleAfterPages:    512,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MemoryPages == 0 {
		l.MemoryPages = d.MemoryPages
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = d.RequestTimeout
	}
	if l.UpstreamTimeout == 0 {
		l.UpstreamTimeout = d.UpstreamTimeout
	}
	if l.MaxUpstreamBodyBytes == 0 {
		l.MaxUpstreamBodyBytes = d.MaxUpstreamBodyBytes
	}
	if l.MaxEmitBytes == 0 {
		l.MaxEmitBytes = d.MaxEmitBytes
	}
	if l.MaxHTTPHandles == 0 {
		l.MaxHTTPHandles = d.MaxHTTPHandles
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = d.MaxInstances
	}
	if l.MaxIdleInstances == 0 {
		l.MaxIdleInstances = d.MaxIdleInstances
	}
	l.MaxIdleInstances = min(l.MaxIdleInstances, l.MaxInstances)
	if l.RecycleAfterCalls == 0 {
		l.RecycleAfterCalls = d.RecycleAfterCalls
	}
	if l.RecycleAfterPages == 0 {
		l.RecycleAfterPages = min(d.RecycleAfterPages, l.MemoryPages)
	}
	return l
}

// Errors of loading and calling plugins.
var (
	ErrABI         = errors.New("plugin ABI mismatch")
	ErrBusy        = errors.New("plugin busy: no instance free")
	ErrRetired     = errors.New("plugin version retired")
	ErrNotLoaded   = errors.New("plugin not loaded")
	ErrTrap        = errors.New("plugin trapped")
	ErrTimeout     = errors.New("plugin call deadline exceeded")
	ErrOutputLimit = errors.New("plugin exceeded its output limit")
)

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
	pool     *pool
	out      *guestOutput

	mu       sync.Mutex
	refs     int
	retired  bool
	closed   bool
	inflight atomic.Int64
}

// LoadOptions are what Load needs besides the bytes.
type LoadOptions struct {
	File   string
	Limits Limits
	Cache  wazero.CompilationCache
	Logger *slog.Logger
}

// Load reads the manifest, checks the ABI, compiles the module, checks its
// imports and exports and starts one instance to prove it initialises.
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
		return nil, fmt.Errorf("%w: plugin %s targets ABI %d.x, this host serves ABI %d.x", ErrABI, m.Name, major, abi.Major)
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
	if err := checkModule(v.compiled); err != nil {
		return fail(err)
	}
	v.pool = newPool(v)
	// One warm instance proves that _initialize runs and the pool starts warm.
	in, err := v.pool.get(ctx)
	if err != nil {
		v.pool.close()
		return fail(fmt.Errorf("instantiate: %w", err))
	}
	v.pool.put(in, true)
	return v, nil
}

// checkModule verifies that every import is one this host provides with the
// right signature and that the required exports exist.
func checkModule(cm wazero.CompiledModule) error {
	var problems []string
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case abi.ImportModule:
			n, ok := abi.HostFunctions[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("imports %s.%s, which this host does not provide", mod, name))
				continue
			}
			if !allI32(def.ParamTypes(), n) || !allI32(def.ResultTypes(), 1) {
				problems = append(problems, fmt.Sprintf("imports %s.%s with the wrong signature (want %d i32 params and one i32 result)", mod, name, n))
			}
		default:
			if strings.HasPrefix(mod, "llmproxy_v") {
				problems = append(problems, fmt.Sprintf("imports module %s: this host serves ABI %s", mod, abi.ImportModule))
			} else {
				problems = append(problems, fmt.Sprintf("imports %s.%s from unknown module %q", mod, name, mod))
			}
		}
	}
	exports := cm.ExportedFunctions()
	if def, ok := exports[abi.ExportHandle]; !ok {
		problems = append(problems, "does not export "+abi.ExportHandle)
	} else if !allI32(def.ParamTypes(), 1) || !allI32(def.ResultTypes(), 1) {
		problems = append(problems, abi.ExportHandle+" must be (i32) -> i32")
	}
	if _, ok := exports[abi.ExportInitialize]; !ok {
		problems = append(problems, "does not export "+abi.ExportInitialize+" (build with -buildmode=c-shared)")
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		problems = append(problems, `does not export its memory as "memory"`)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%w: the module %s", ErrABI, strings.Join(problems, "; "))
	}
	return nil
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

// acquire pins the version for one call; false once it is retired.
func (v *Version) acquire() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.retired {
		return false
	}
	v.refs++
	return true
}

func (v *Version) release() {
	v.mu.Lock()
	v.refs--
	closeNow := v.retired && v.refs == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	if closeNow {
		v.close()
	}
}

// Retire stops new calls; the version closes when its last call ends.
func (v *Version) Retire() {
	v.mu.Lock()
	v.retired = true
	closeNow := v.refs == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	v.pool.drainIdle()
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
	v.pool.close()
	v.compiled.Close(ctx)
	v.runtime.Close(ctx)
	v.log.Info("plugin version closed", "sha256", v.SHA256[:12])
}

// Stats are a version's instance counts.
type Stats struct {
	Idle      int   `json:"idle"`
	Busy      int   `json:"busy"`
	Created   int64 `json:"created"`
	Discarded int64 `json:"discarded"`
	Calls     int64 `json:"calls"`
	Failures  int64 `json:"failures"`
}

// Stats returns the instance counts.
func (v *Version) Stats() Stats { return v.pool.stats() }

// Limits returns the effective limits.
func (v *Version) Limits() Limits { return v.limits }
