package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/tetratelabs/wazero"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Plugin states as reported by Registry.List.
const (
	StateLoading = "loading"
	StateReady   = "ready"
	StateFailed  = "failed"
)

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// Dir holds the .wasm files; every one is loaded.
	Dir string
	// CacheDir holds wazero's compilation cache ("" disables it).
	CacheDir string
	// LimitsFor returns the limits of a plugin by name (nil: defaults).
	LimitsFor func(name string) Limits
	Logger    *slog.Logger
	// OnChange, if set, is called after a file was loaded, reloaded,
	// failed or unloaded.
	OnChange func(Info)
	// Debounce is how long a file must stay quiet before it is (re)loaded.
	Debounce time.Duration
}

// Registry maps plugin names to the versions serving them.
type Registry struct {
	opts  RegistryOptions
	log   *slog.Logger
	cache wazero.CompilationCache

	loadMu sync.Mutex // one load at a time: compiling is CPU-heavy

	mu    sync.RWMutex
	files map[string]*fileEntry
	names map[string]*fileEntry
}

type fileEntry struct {
	path        string
	current     *Version
	state       string
	lastError   string
	lastErrorAt time.Time
	reloads     int
}

// Info describes one plugin file for /api/plugins.
type Info struct {
	Name         string     `json:"name"`
	Version      string     `json:"version"`
	File         string     `json:"file"`
	SHA256       string     `json:"sha256"`
	State        string     `json:"state"`
	ABI          string     `json:"abi"`
	Capabilities []string   `json:"capabilities"`
	LoadedAt     *time.Time `json:"loaded_at"`
	Reloads      int        `json:"reloads"`
	LastError    string     `json:"last_error"`
	LastErrorAt  *time.Time `json:"last_error_at"`
	Instances    Stats      `json:"instances"`
}

// NewRegistry makes an empty registry; call LoadAll and Watch.
func NewRegistry(o RegistryOptions) (*Registry, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Debounce == 0 {
		o.Debounce = 150 * time.Millisecond
	}
	r := &Registry{opts: o, log: o.Logger, files: map[string]*fileEntry{}, names: map[string]*fileEntry{}}
	if o.CacheDir != "" {
		if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("plugin cache dir: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("plugin cache dir: %w", err)
		}
		r.cache = c
	}
	return r, nil
}

// Lookup returns the version serving a plugin name.
func (r *Registry) Lookup(name string) (*Version, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.names[name]
	if e == nil || e.current == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotLoaded, name)
	}
	return e.current, nil
}

// Ready reports whether every plugin file found has a version serving.
func (r *Registry) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.files {
		if e.current == nil {
			return false
		}
	}
	return len(r.files) > 0
}

// List describes every plugin file, sorted by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.files))
	for _, e := range r.files {
		out = append(out, e.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name+out[i].File < out[j].Name+out[j].File })
	return out
}

func (e *fileEntry) info() Info {
	in := Info{File: filepath.Base(e.path), State: e.state, LastError: e.lastError, Reloads: e.reloads}
	if !e.lastErrorAt.IsZero() {
		t := e.lastErrorAt
		in.LastErrorAt = &t
	}
	if v := e.current; v != nil {
		t := v.LoadedAt
		in.Name, in.Version, in.SHA256, in.LoadedAt = v.Manifest.Name, v.Manifest.Version, v.SHA256, &t
		in.ABI, in.Capabilities, in.Instances = v.Manifest.ABI, v.Manifest.Capabilities, v.Stats()
	} else {
		in.Name = strings.TrimSuffix(filepath.Base(e.path), ".wasm")
	}
	return in
}

// LoadAll loads every .wasm file in the directory, creating it if needed.
func (r *Registry) LoadAll(ctx context.Context) error {
	if err := os.MkdirAll(r.opts.Dir, 0o755); err != nil {
		return fmt.Errorf("plugins dir: %w", err)
	}
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("plugins dir: %w", err)
	}
	for _, de := range entries {
		if isPluginFile(de.Name()) && de.Type().IsRegular() {
			r.Reload(ctx, filepath.Join(r.opts.Dir, de.Name()))
		}
	}
	return nil
}

func isPluginFile(name string) bool {
	return strings.HasSuffix(name, ".wasm") && !strings.HasPrefix(name, ".")
}

// Reload (re)loads one file: unchanged content is a no-op; a file that
// fails to load leaves the previous version serving and records the error;
// a missing file unloads.
func (r *Registry) Reload(ctx context.Context, path string) {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.unload(path)
		return
	}
	r.mu.Lock()
	e := r.files[path]
	if e == nil {
		e = &fileEntry{path: path, state: StateLoading}
		r.files[path] = e
	}
	cur := e.current
	r.mu.Unlock()
	if err != nil {
		r.failed(e, err)
		return
	}
	sum := sha256.Sum256(data)
	if cur != nil && cur.SHA256 == hex.EncodeToString(sum[:]) {
		return
	}
	start := time.Now()
	limits := Limits{}
	if raw, err := abi.ManifestFromWasm(data); err == nil && r.opts.LimitsFor != nil {
		if m, err := abi.ParseManifest(raw); err == nil {
			limits = r.opts.LimitsFor(m.Name)
		}
	}
	v, err := Load(ctx, data, LoadOptions{File: path, Limits: limits, Cache: r.cache, Logger: r.log})
	if err != nil {
		r.failed(e, err)
		return
	}
	r.mu.Lock()
	if other := r.names[v.Manifest.Name]; other != nil && other != e {
		r.mu.Unlock()
		v.Retire()
		r.failed(e, fmt.Errorf("plugin name %q is already served by %s", v.Manifest.Name, filepath.Base(other.path)))
		return
	}
	old := e.current
	if old != nil && old.Manifest.Name != v.Manifest.Name {
		delete(r.names, old.Manifest.Name)
	}
	e.current, e.state, e.lastError, e.lastErrorAt = v, StateReady, "", time.Time{}
	if old != nil {
		e.reloads++
	}
	r.names[v.Manifest.Name] = e
	info := e.info()
	r.mu.Unlock()
	if old != nil {
		old.Retire()
	}
	// Compiling leaves garbage the size of the module several times over;
	// give it back to the system now rather than over the next minutes,
	// so a proxy at rest holds what its plugins need and no more.
	debug.FreeOSMemory()
	r.log.Info("plugin loaded", "plugin", v.Manifest.Name, "version", v.Manifest.Version,
		"file", filepath.Base(path), "sha256", v.SHA256[:12], "took", time.Since(start).Round(time.Millisecond), "reload", old != nil)
	r.notify(info)
}

func (r *Registry) failed(e *fileEntry, err error) {
	r.mu.Lock()
	e.lastError, e.lastErrorAt = err.Error(), time.Now()
	if e.current == nil {
		e.state = StateFailed
	}
	info := e.info()
	r.mu.Unlock()
	r.log.Error("plugin failed to load", "file", filepath.Base(e.path), "err", err, "still_serving", e.current != nil)
	r.notify(info)
}

func (r *Registry) unload(path string) {
	r.mu.Lock()
	e := r.files[path]
	if e == nil {
		r.mu.Unlock()
		return
	}
	delete(r.files, path)
	var info Info
	if e.current != nil {
		if r.names[e.current.Manifest.Name] == e {
			delete(r.names, e.current.Manifest.Name)
		}
		info = e.info()
	}
	r.mu.Unlock()
	if e.current != nil {
		e.current.Retire()
		r.log.Info("plugin unloaded", "plugin", info.Name, "file", filepath.Base(path))
		info.State = "unloaded"
		r.notify(info)
	}
}

func (r *Registry) notify(in Info) {
	if r.opts.OnChange != nil {
		r.opts.OnChange(in)
	}
}

// Watch reloads files as they change until ctx ends. Events for a file are
// debounced so a file being written is loaded once it is complete.
func (r *Registry) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(r.opts.Dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		pending := map[string]*time.Timer{}
		fire := make(chan string, 64)
		for {
			select {
			case <-ctx.Done():
				for _, t := range pending {
					t.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if !isPluginFile(filepath.Base(ev.Name)) {
					continue
				}
				path := filepath.Join(r.opts.Dir, filepath.Base(ev.Name))
				if t := pending[path]; t != nil {
					t.Stop()
				}
				pending[path] = time.AfterFunc(r.opts.Debounce, func() {
					select {
					case fire <- path:
					case <-ctx.Done():
					}
				})
			case path := <-fire:
				delete(pending, path)
				r.Reload(ctx, path)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Warn("plugin watcher", "err", err)
			}
		}
	}()
	return nil
}

// Close retires every version.
func (r *Registry) Close() {
	r.mu.Lock()
	files := r.files
	r.files, r.names = map[string]*fileEntry{}, map[string]*fileEntry{}
	r.mu.Unlock()
	for _, e := range files {
		if e.current != nil {
			e.current.Retire()
		}
	}
}

// ErrBadFileName refuses an Install file name.
var ErrBadFileName = errors.New("plugin file names are 1 to 128 characters of a-z, 0-9, '.', '_' or '-', start with a letter or digit and end in .wasm")

// Install writes a plugin file into the folder and loads it, exactly as if
// an operator had dropped it there: the bytes go to a hidden temporary
// file that is synced and renamed over file, then the file is (re)loaded
// at once (the folder watcher, seeing the same content, does nothing
// more). It returns the file's Info after the load: a file that fails to
// load keeps the previous version serving and reports the error there.
func (r *Registry) Install(ctx context.Context, file string, data []byte) (Info, error) {
	if !validFileName(file) {
		return Info{}, ErrBadFileName
	}
	path := filepath.Join(r.opts.Dir, file)
	tmp, err := os.CreateTemp(r.opts.Dir, ".upload-*.tmp")
	if err != nil {
		return Info{}, fmt.Errorf("install %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return Info{}, fmt.Errorf("install %s: %w", file, err)
	}
	r.Reload(ctx, path)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.files[path]; e != nil {
		return e.info(), nil
	}
	return Info{}, fmt.Errorf("install %s: the file disappeared while loading", file)
}

func validFileName(name string) bool {
	if len(name) > 128 || !strings.HasSuffix(name, ".wasm") || len(name) == len(".wasm") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}
