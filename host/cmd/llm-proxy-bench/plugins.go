package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// loadOnce runs plugin.Load the way the registry does, with a compilation
// cache in dir, and returns how long it took. Each call makes a new cache
// object, so nothing compiled by an earlier call survives in memory: a
// second call with the same dir reads the compiled code from disk.
func loadOnce(ctx context.Context, wasm []byte, dir string) (time.Duration, error) {
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return 0, err
	}
	defer cache.Close(ctx)
	start := time.Now()
	v, err := plugin.Load(ctx, wasm, plugin.LoadOptions{
		File:   "openai.wasm",
		Cache:  cache,
		Logger: slog.New(slog.DiscardHandler),
	})
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("plugin.Load: %w", err)
	}
	v.Retire()
	return took, nil
}

// compileTimes is the outcome of the in-process load measurement.
type compileTimes struct {
	cold time.Duration   // empty cache directory
	warm []time.Duration // same directory again, sorted
}

// measureCompile loads wasm once into the empty cache dir, then warmRuns
// times more from it.
func measureCompile(ctx context.Context, wasm []byte, dir string, warmRuns int) (compileTimes, error) {
	var ct compileTimes
	var err error
	if ct.cold, err = loadOnce(ctx, wasm, dir); err != nil {
		return ct, err
	}
	for i := 0; i < warmRuns; i++ {
		d, err := loadOnce(ctx, wasm, dir)
		if err != nil {
			return ct, err
		}
		ct.warm = append(ct.warm, d)
	}
	sortDurations(ct.warm)
	return ct, nil
}

// withManifestVersion returns wasm with the manifest's version replaced.
// The code is untouched, but the file's bytes (and so wazero's cache key)
// change.
func withManifestVersion(wasm []byte, version string) ([]byte, error) {
	raw, err := abi.ManifestFromWasm(wasm)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["version"] = version
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if _, err := abi.ParseManifest(b); err != nil {
		return nil, err
	}
	return abi.WithManifest(wasm, b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// pluginInfo is the part of a GET /api/plugins entry the benchmark reads.
type pluginInfo struct {
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	File      string     `json:"file"`
	SHA256    string     `json:"sha256"`
	State     string     `json:"state"`
	LoadedAt  *time.Time `json:"loaded_at"`
	LastError string     `json:"last_error"`
	Instances struct {
		Instances int   `json:"instances"`
		Streams   int   `json:"streams"`
		Created   int64 `json:"created"`
		Discarded int64 `json:"discarded"`
		Callbacks int64 `json:"callbacks"`
		Failures  int64 `json:"failures"`
	} `json:"instances"`
}

// admin talks to llm-proxy's admin API.
type admin struct {
	base   string // http://127.0.0.1:PORT
	key    string
	client *http.Client
}

// plugin returns the /api/plugins entry of the given file.
func (a *admin) plugin(ctx context.Context, file string) (*pluginInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/plugins", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/api/plugins: status %d: %.200s", resp.StatusCode, b)
	}
	var list struct {
		Data []pluginInfo `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("/api/plugins: %w", err)
	}
	for i := range list.Data {
		if list.Data[i].File == file {
			return &list.Data[i], nil
		}
	}
	return nil, fmt.Errorf("/api/plugins does not list %s", file)
}

// swapTimes is one hot reload as seen from outside.
type swapTimes struct {
	total     time.Duration // rename until /api/plugins shows the new file serving
	untilLoad time.Duration // rename until the load began (loaded_at): watcher debounce and queueing
}

// swapPlugin installs b as dir/file the way an operator should (written
// aside, then renamed over the old file) and polls the admin API until the
// proxy serves it.
func swapPlugin(ctx context.Context, a *admin, dir, file string, b []byte, timeout time.Duration) (swapTimes, error) {
	var st swapTimes
	want := sha256Hex(b)
	before, err := a.plugin(ctx, file)
	if err != nil {
		return st, err
	}
	if before.SHA256 == want {
		return st, fmt.Errorf("%s already serves this build", file)
	}
	tmp := filepath.Join(dir, "."+file+".bench-tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return st, err
	}
	start := time.Now()
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		return st, err
	}
	deadline := start.Add(timeout)
	for {
		in, err := a.plugin(ctx, file)
		if err != nil {
			return st, err
		}
		if in.SHA256 == want && in.State == "ready" {
			st.total = time.Since(start)
			if in.LoadedAt != nil {
				st.untilLoad = in.LoadedAt.Sub(start)
			}
			return st, nil
		}
		if in.LastError != "" && in.LastError != before.LastError {
			return st, fmt.Errorf("reload of %s failed: %s", file, in.LastError)
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s was not reloaded within %s", file, timeout)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
