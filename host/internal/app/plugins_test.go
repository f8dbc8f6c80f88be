package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/tetratelabs/wazero"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// TestHostilePlugins: each misbehaviour of a plugin costs exactly what the
// callback model says, through the real HTTP API and the official SDK.
// Around every misbehaving request run four "slow" streams of the same
// plugin, two on each of its two instances, and a stream through another
// plugin:
//
//   - a panic, an output flood, 100 MB of output, an ungranted host and a
//     request left unanswered fail their own request only: every bystander
//     completes;
//   - an infinite loop, a sleep, a memory bomb and proc_exit kill their
//     instance: the request fails with 502 plugin_failed, and so do exactly
//     the two bystanders that instance held (an SSE error event then
//     [DONE]); the two on the other instance and the other plugin's stream
//     complete, and the next request gets a fresh instance.
func TestHostilePlugins(t *testing.T) {
	instances, pages := 2, 256
	emit, callback := config.ByteSize(8<<20), config.Duration(time.Second)
	p := startProxy(t, func(cfg *config.Config) {
		cfg.Plugins.LimitsOverride["hostile"] = config.LimitsPatch{MinInstances: &instances, MemoryPages: &pages,
			RecycleAfterPages: &pages, MaxEmitBytes: &emit, CallbackTimeout: &callback}
	})
	c := p.client(adminKey)
	ctx := context.Background()
	cases := []struct {
		model  string
		stream bool
		status int
		msg    string
		kills  bool // the instance dies with its streams
	}{
		{"panic", false, 502, "plugin panic", false},
		{"panic", true, 502, "plugin panic", false},
		{"flood", true, 0, "output limit", false},
		{"bigout", true, 0, "output limit", false},
		{"badhost", false, 502, "denied", false},
		{"badptr", false, 502, "statuses -1 -1 -1 -1", false},
		{"silent", false, 502, "no response", false},
		{"loop", false, 502, "failed", true},
		{"sleep", false, 502, "failed", true},
		{"membomb", false, 502, "failed", true},
		{"exit", false, 502, "failed", true},
	}
	for _, tc := range cases {
		name := tc.model
		if tc.stream {
			name += " stream"
		}
		t.Run(name, func(t *testing.T) {
			waitFor(t, func() bool { in := pluginInfo(t, p, "hostile").Instances; return in.Instances == 2 && in.Streams == 0 })
			var wg sync.WaitGroup
			results := make([]slowStream, 4)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = readSlow(ctx, c)
				}()
			}
			other := make(chan error, 1)
			go func() {
				s := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "bystander"))
				for s.Next() {
				}
				other <- s.Err()
			}()
			waitFor(t, func() bool { return pluginInfo(t, p, "hostile").Instances.Streams == 4 })
			time.Sleep(100 * time.Millisecond) // each bystander has its first chunk
			var msg string
			status := 0
			if tc.stream {
				s := c.Chat.Completions.NewStreaming(ctx, chatParams(tc.model, "x"))
				for s.Next() {
				}
				err := s.Err()
				if err == nil {
					t.Fatal("stream ended without an error")
				}
				msg = err.Error()
				var e *openai.Error
				if errors.As(err, &e) {
					status, msg = e.StatusCode, e.Message
				}
			} else {
				_, err := c.Chat.Completions.New(ctx, chatParams(tc.model, "x"))
				e := apiError(t, err)
				status, msg = e.StatusCode, e.Message
			}
			if status != tc.status || !strings.Contains(msg, tc.msg) {
				t.Fatalf("got %d %q, want %d mentioning %q", status, msg, tc.status, tc.msg)
			}
			wg.Wait()
			if err := <-other; err != nil {
				t.Fatalf("the other plugin's stream failed: %v", err)
			}
			byInstance := map[int64][]slowStream{}
			for _, r := range results {
				byInstance[r.instance] = append(byInstance[r.instance], r)
			}
			failedN, completed := 0, 0
			for id, group := range byInstance {
				if len(group) != 2 {
					t.Fatalf("instance %d held %d bystanders, want 2: %+v", id, len(group), results)
				}
				for _, r := range group {
					switch {
					case r.chunks == 20 && r.err == nil:
						completed++
					case r.chunks < 20 && r.err != nil && strings.Contains(r.err.Error(), "plugin failed"):
						failedN++
					default:
						t.Fatalf("bystander on instance %d: %d chunks, %v", id, r.chunks, r.err)
					}
				}
			}
			if want := map[bool]int{false: 0, true: 2}[tc.kills]; failedN != want || completed != 4-want {
				t.Fatalf("%d bystanders failed, %d completed; want %d failed (those of the dying instance)", failedN, completed, want)
			}
			resp, err := c.Chat.Completions.New(ctx, chatParams("ok", "x"))
			if err != nil || resp.Choices[0].Message.Content != "fine" {
				t.Fatalf("the plugin did not recover: %v", err)
			}
		})
	}
	// The upstream never saw the request for the host that was not granted.
	for _, r := range p.Upstream.Requests() {
		if strings.Contains(r.Path, "steal") {
			t.Fatal("denied request reached the network")
		}
	}
	if st := pluginInfo(t, p, "hostile").Instances; st.Failures != 4 {
		t.Fatalf("want the 4 killed instances counted as failures: %+v", st)
	}
}

// slowStream is what a client read of the hostile plugin's slow stream.
type slowStream struct {
	instance int64
	chunks   int
	err      error
}

func readSlow(ctx context.Context, c *openai.Client) slowStream {
	res := slowStream{instance: -1}
	s := c.Chat.Completions.NewStreaming(ctx, chatParams("slow", "x"))
	for s.Next() {
		var ch struct {
			Instance int64 `json:"instance"`
		}
		if json.Unmarshal([]byte(s.Current().RawJSON()), &ch) == nil {
			res.instance = ch.Instance
			res.chunks++
		}
	}
	res.err = s.Err()
	return res
}

func pluginList(t *testing.T, p *proxy) []plugin.Info {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL+"/api/plugins", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/api/plugins: %d", resp.StatusCode)
	}
	var out struct{ Data []plugin.Info }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Data
}

// pluginInfo returns the /api/plugins entry of a file (zero if absent).
func pluginInfo(t *testing.T, p *proxy, file string) plugin.Info {
	t.Helper()
	for _, in := range pluginList(t, p) {
		if in.File == file || in.File == file+".wasm" {
			return in
		}
	}
	return plugin.Info{}
}

func TestAPIPluginsNeedsKey(t *testing.T) {
	p := startProxy(t, nil)
	resp, err := http.Get(p.URL + "/api/plugins")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	in := pluginInfo(t, p, "openai")
	if in.Name != "openai" || in.State != plugin.StateReady || len(in.SHA256) != 64 || in.LoadedAt == nil || in.Instances.Created == 0 {
		t.Fatalf("%+v", in)
	}
}

// TestRefusedPlugins: files that break the ABI are refused with a message
// that says what is wrong, and the rest keeps serving.
func TestRefusedPlugins(t *testing.T) {
	p := startProxy(t, nil)
	openaiWasm, err := os.ReadFile(testplugins.Build(t, "plugins/openai"))
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := abi.ManifestFromWasm(openaiWasm)
	future := []byte(strings.Replace(string(manifest), `"abi": "2.0"`, `"abi": "3.0"`, 1))
	future = []byte(strings.Replace(string(future), `"name": "openai"`, `"name": "future"`, 1))
	futureWasm, err := abi.WithManifest(openaiWasm, future)
	if err != nil {
		t.Fatal(err)
	}
	raw := openaiWasm[:len(openaiWasm)-len(manifest)-len(abi.ManifestSection)-4]
	if _, err := abi.ManifestFromWasm(raw); err == nil {
		t.Fatal("stripping the manifest section failed")
	}

	cases := []struct {
		file string
		data []byte
		want string
	}{
		{"corrupt.wasm", []byte("\x00asm\x01\x00\x00\x00garbage"), "section"},
		{"text.wasm", []byte("not wasm at all"), "not a WebAssembly binary"},
		{"future.wasm", futureWasm, "targets ABI 3.x"},
		{"badimport.wasm", mustRead(t, testplugins.Build(t, "host/internal/testplugins/badimport")), "llmproxy_v2.read_secret"},
	}
	for _, tc := range cases {
		testplugins.InstallBytes(t, tc.data, p.Dir, tc.file)
	}
	for _, tc := range cases {
		waitFor(t, func() bool {
			in := pluginInfo(t, p, tc.file)
			return in.State == plugin.StateFailed && strings.Contains(in.LastError, tc.want)
		})
	}
	in := pluginInfo(t, p, "badimport.wasm")
	t.Logf("refusal message: %s", in.LastError)
	if _, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "still here")); err != nil {
		t.Fatal(err)
	}
	// An unpacked build (no manifest section) is refused before compiling.
	testplugins.InstallBytes(t, raw, p.Dir, "unpacked.wasm")
	waitFor(t, func() bool {
		return strings.Contains(pluginInfo(t, p, "unpacked.wasm").LastError, "llmproxy-pack")
	})
}

func sharedCache(t *testing.T) wazero.CompilationCache {
	c, err := wazero.NewCompilationCacheWithDir(testplugins.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHotReloadUnderLoad replaces openai.wasm while 16 clients stream
// without pause: no request fails, and the new version serves within 2s.
func TestHotReloadUnderLoad(t *testing.T) {
	p := startProxy(t, nil)
	c := p.client(adminKey)
	before := pluginInfo(t, p, "openai")

	// A new build (another build ID: bytes wazero has never compiled) that
	// also says it is version 1.0.1.
	wasm := mustRead(t, testplugins.BuildID(t, "plugins/openai", "reload-test-v2"))
	manifest, _ := abi.ManifestFromWasm(wasm)
	v2, err := abi.WithManifest(wasm, []byte(strings.Replace(string(manifest), `"version": "1.0.0"`, `"version": "1.0.1"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	// Compile it into the shared on-disk cache first: how long a cold
	// compile takes depends on the machine (seconds under -race); what this
	// test pins is the swap. llm-proxy-bench reports cold reloads.
	warm, err := plugin.Load(context.Background(), v2, plugin.LoadOptions{Cache: sharedCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	warm.Retire()

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := c.Chat.Completions.NewStreaming(context.Background(), chatParams("gpt-4o-mini", "during reload"))
				var text strings.Builder
				for s.Next() {
					if ch := s.Current(); len(ch.Choices) > 0 {
						text.WriteString(ch.Choices[0].Delta.Content)
					}
				}
				if err := s.Err(); err != nil || text.String() != "echo: during reload" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	swapStart := time.Now()
	testplugins.InstallBytes(t, v2, p.Dir, "openai.wasm")
	var swapped time.Duration
	waitFor(t, func() bool {
		in := pluginInfo(t, p, "openai")
		if in.Version == "1.0.1" {
			swapped = time.Since(swapStart)
			return true
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d streams ok, %d failed; new version served %v after the file was replaced", ok.Load(), failed.Load(), swapped)
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during reload; first: %v", failed.Load(), firstErr.Load())
	}
	// The 2 s budget holds for a normal build (the Taskfile's test task runs
	// this test once without -race too); the race detector instruments
	// wazero's loader, so under it only a loose ceiling applies.
	budget := 2 * time.Second
	if raceEnabled {
		budget = 15 * time.Second
	}
	if swapped > budget {
		t.Fatalf("reload took %v, budget %v", swapped, budget)
	}
	after := pluginInfo(t, p, "openai")
	if after.SHA256 == before.SHA256 || after.Reloads != 1 {
		t.Fatalf("before %+v after %+v", before, after)
	}
	if !strings.Contains(p.Logs.String(), `"plugin version closed" plugin=openai version=1.0.0`) {
		t.Fatal("the old version was not closed after its last request")
	}

	// A corrupt replacement leaves 1.0.1 serving, with the error visible.
	testplugins.InstallBytes(t, []byte("\x00asm\x01\x00\x00\x00\x01\xff"), p.Dir, "openai.wasm")
	waitFor(t, func() bool { return pluginInfo(t, p, "openai").LastError != "" })
	in := pluginInfo(t, p, "openai")
	if in.Version != "1.0.1" || in.State != plugin.StateReady {
		t.Fatalf("%+v", in)
	}
	if _, err := c.Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "still served")); err != nil {
		t.Fatal(err)
	}

	// Removing the file unloads the plugin; its provider answers 503.
	if err := os.Remove(filepath.Join(p.Dir, "openai.wasm")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, in := range pluginList(t, p) {
			if in.File == "openai.wasm" {
				return false
			}
		}
		return true
	})
	_, err = c.Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "gone"))
	if e := apiError(t, err); e.StatusCode != 503 {
		t.Fatalf("status %d", e.StatusCode)
	}
}

func TestPluginUpload(t *testing.T) {
	p := startProxy(t, nil)
	put := func(file string, body []byte, key string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("PUT", p.URL+"/api/plugins/"+file, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/wasm")
		resp, err := http.DefaultClient.Do(req)
		if err != nil && len(body) > 4<<20 {
			// The server answered 413 from the headers and closed the
			// connection while the client was still sending.
			return 413, []byte(err.Error())
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	wasm := mustRead(t, testplugins.Build(t, "plugins/openai"))
	manifest, _ := abi.ManifestFromWasm(wasm)
	v2, err := abi.WithManifest(wasm, []byte(strings.Replace(string(manifest), `"version": "1.0.0"`, `"version": "1.0.7"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	// Padded with a custom section past the 4 MiB /v1 body limit, which
	// uploads are not held to.
	v2 = appendCustomSection(v2, "padding", make([]byte, 1<<20))

	// A new version of a loaded plugin, bigger than the /v1 body limit.
	status, body := put("openai.wasm", v2, adminKey)
	var in plugin.Info
	json.Unmarshal(body, &in)
	if status != 200 || in.Version != "1.0.7" || in.State != plugin.StateReady || in.Reloads != 1 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if got := pluginInfo(t, p, "openai"); got.Version != "1.0.7" || got.SHA256 != in.SHA256 {
		t.Fatalf("after upload: %+v", got)
	}
	if onDisk := mustRead(t, filepath.Join(p.Dir, "openai.wasm")); !bytes.Equal(onDisk, v2) {
		t.Fatal("the folder does not hold the uploaded file")
	}
	// It serves.
	if _, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "after upload")); err != nil {
		t.Fatal(err)
	}

	// A new file name is a new plugin file; its plugin name clashes, so it
	// is reported failed and the original keeps serving.
	status, body = put("openai-copy.wasm", v2, adminKey)
	json.Unmarshal(body, &in)
	if status != 200 || in.State != plugin.StateFailed || !strings.Contains(in.LastError, "already served") {
		t.Fatalf("clashing upload: %d %s", status, body)
	}

	// Refusals, before anything is written.
	for name, tc := range map[string]struct {
		file string
		body []byte
		want int
	}{
		"not wasm":    {"x.wasm", []byte("hello"), 400},
		"no manifest": {"x.wasm", []byte("\x00asm\x01\x00\x00\x00"), 400},
		"empty":       {"x.wasm", nil, 400},
		"bad name":    {"X.wasm", v2, 400},
		"not .wasm":   {"x.txt", v2, 400},
		"hidden":      {".x.wasm", v2, 400},
		"traversal":   {"..%2Fx.wasm", v2, 404},
		"client key":  {"x.wasm", []byte("small"), 401},
		// Past the usual body limit, only the admin key or a live session
		// may send: the body is refused from the headers, unread.
		"client key, large": {"x.wasm", make([]byte, 5<<20), 413},
		"too large":         {"x.wasm", make([]byte, 65<<20), 413},
	} {
		key := adminKey
		if strings.HasPrefix(name, "client key") {
			key = createKey(t, p, `{"name":"uploader"}`).Key
		}
		if status, body := put(tc.file, tc.body, key); status != tc.want {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}
	entries, _ := os.ReadDir(p.Dir)
	for _, e := range entries {
		if n := e.Name(); n == "x.wasm" || n == "X.wasm" || strings.HasPrefix(n, ".upload") {
			t.Errorf("left in the folder: %s", n)
		}
	}
	// A viewer's session is refused from the headers too: the server does
	// not read 5 MiB only to answer 403. An admin's session may send.
	createUser(t, p, "watcher", "a long viewer password", "viewer")
	createUser(t, p, "boss", "a long admin password", "admin")
	for _, who := range []struct {
		user, pw string
		want     int
	}{{"watcher", "a long viewer password", 413}, {"boss", "a long admin password", 400}} {
		b := newBrowser(t, p)
		expect(t, "login "+who.user, b.login(who.user, who.pw), 200, "")
		req, _ := http.NewRequest("PUT", p.URL+"/api/plugins/x.wasm", bytes.NewReader(make([]byte, 5<<20)))
		req.Header.Set("Content-Type", "application/wasm")
		req.Header.Set("X-CSRF-Token", b.csrf)
		resp, err := b.c.Do(req)
		status := 413 // refused from the headers while the client was still sending
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		if status != who.want {
			t.Errorf("%s's 5 MiB upload: %d, %v; want %d", who.user, status, err, who.want)
		}
	}
	// The /v1 body limit still holds.
	req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions", bytes.NewReader(make([]byte, 5<<20)))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	switch {
	case err != nil && strings.Contains(err.Error(), "connection reset"):
		// Refused from the headers, while the client was still sending.
	case err != nil:
		t.Fatal(err)
	default:
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("5 MiB chat body: %d", resp.StatusCode)
		}
	}
}

// appendCustomSection adds a wasm custom section (id 0) to a module.
func appendCustomSection(wasm []byte, name string, payload []byte) []byte {
	uleb := func(b []byte, v int) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				c |= 0x80
			}
			b = append(b, c)
			if v == 0 {
				return b
			}
		}
	}
	content := uleb(nil, len(name))
	content = append(content, name...)
	content = append(content, payload...)
	out := append(append([]byte(nil), wasm...), 0)
	out = uleb(out, len(content))
	return append(out, content...)
}
