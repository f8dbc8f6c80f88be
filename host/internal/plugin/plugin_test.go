package plugin_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// recorder is a Sink that keeps what a stream sent, in plugintest's form,
// so golden cases compare the same way natively and as wasm. Its client
// reads everything at once (no backlog) unless backlog is set.
type recorder struct {
	mu      sync.Mutex
	emits   []plugintest.Emit
	end     error
	ended   chan struct{}
	backlog int
	drained chan struct{}
}

func newRecorder() *recorder {
	return &recorder{ended: make(chan struct{}), drained: make(chan struct{})}
}

func (r *recorder) add(e plugintest.Emit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emits = append(r.emits, e)
}
func (r *recorder) Chunk(d []byte) bool {
	r.add(plugintest.Emit{Kind: "chunk", Data: append([]byte(nil), d...)})
	return true
}
func (r *recorder) Body(d []byte) {
	r.add(plugintest.Emit{Kind: "body", Data: append([]byte(nil), d...)})
}
func (r *recorder) Usage(d []byte) {
	r.add(plugintest.Emit{Kind: "usage", Data: append([]byte(nil), d...)})
}
func (r *recorder) End(err error) {
	var f *plugin.Failure
	switch {
	case errors.As(err, &f):
		r.add(plugintest.Emit{Kind: "fail", Status: f.Status, Data: f.Body})
	case err != nil:
		r.add(plugintest.Emit{Kind: "abort", Data: []byte(err.Error())})
	}
	r.mu.Lock()
	r.end = err
	r.mu.Unlock()
	close(r.ended)
}
func (r *recorder) Backlog() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backlog
}
func (r *recorder) Drained() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drained
}

// setBacklog plays a client that has n bytes unread.
func (r *recorder) setBacklog(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backlog = n
	close(r.drained)
	r.drained = make(chan struct{})
}

// wait waits for the stream's end and returns its error.
func (r *recorder) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("the stream did not end; emits so far: %v", r.snapshot())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end
}

func (r *recorder) snapshot() []plugintest.Emit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]plugintest.Emit(nil), r.emits...)
}

var cache = sync.OnceValue(func() wazero.CompilationCache {
	c, err := wazero.NewCompilationCacheWithDir(testplugins.CacheDir())
	if err != nil {
		panic(err)
	}
	return c
})

func load(t testing.TB, dir string, limits plugin.Limits) *plugin.Version {
	t.Helper()
	wasm, err := os.ReadFile(testplugins.Build(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	v, err := plugin.Load(context.Background(), wasm, plugin.LoadOptions{File: dir, Limits: limits, Cache: cache()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Retire)
	return v
}

func guestConfig(baseURL string) []byte {
	return []byte(`{"provider":"test","base_url":"` + baseURL + `","options":{}}`)
}

// open starts a stream of the hostile plugin in the given mode.
func open(t testing.TB, v *plugin.Version, op abi.Op, mode string) (*plugin.Stream, *recorder) {
	t.Helper()
	rec := newRecorder()
	st, err := v.Open(plugin.Invocation{Op: op, Request: []byte(`{"model":"` + mode + `","messages":[]}`),
		Config: guestConfig("http://127.0.0.1:1"), Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	return st, rec
}

// run runs one stream to its end.
func run(t testing.TB, v *plugin.Version, op abi.Op, mode string) *recorder {
	t.Helper()
	_, rec := open(t, v, op, mode)
	rec.wait(t)
	return rec
}

func okChat(t testing.TB, v *plugin.Version) {
	t.Helper()
	rec := run(t, v, abi.OpChat, "ok")
	if e := rec.snapshot(); len(e) != 1 || e[0].Kind != "body" {
		t.Fatalf("emits %v", e)
	}
}

// TestHostFunctionTable holds the implementations to the table in sdk/abi.
func TestHostFunctionTable(t *testing.T) {
	var want []string
	for _, f := range abi.HostFuncs {
		want = append(want, f.Name)
	}
	got := plugin.HostFuncNames()
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("implemented %v\ntable       %v", got, want)
	}
}

// TestOpenAIGoldenAsWasm runs plugins/openai/testdata/*.case against the
// built openai.wasm under the real runtime.
func TestOpenAIGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/openai", "/v1", "{}")
}

// TestAnthropicGoldenAsWasm runs plugins/anthropic/testdata/*.case against
// the built anthropic.wasm; its base URL is the API root.
func TestAnthropicGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/anthropic", "", "{}")
}

// TestGeminiGoldenAsWasm runs plugins/gemini/testdata/*.case against the
// built gemini.wasm; its base URL is the API version root.
func TestGeminiGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/gemini", "/v1beta", "{}")
}

// TestAzureGoldenAsWasm runs plugins/azure/testdata/*.case against the
// built azure.wasm, with the deployments its native test uses.
func TestAzureGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/azure", "", `{"deployments":{"gpt-4o":"prod-gpt4o","text-embedding-3-small":"emb-small"}}`)
}

// goldenAsWasm runs the cases of a plugin folder against its .wasm, with the
// base URL the fake upstream's address followed by basePath, and the
// provider options given as JSON.
func goldenAsWasm(t *testing.T, dir, basePath, options string) {
	v := load(t, dir, plugin.Limits{})
	goldenCases(t, v, testplugins.Root()+"/"+dir+"/testdata", basePath, options)
}

func goldenCases(t *testing.T, v *plugin.Version, folder, basePath, options string) {
	cases, err := plugintest.LoadCases(folder)
	if err != nil || len(cases) == 0 {
		t.Fatal(err, len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := c.StartUpstream()
			defer u.Close()
			a := v.Manifest.Auth
			eg, err := egress.New(egress.Options{BaseURL: u.URL + basePath, AllowPrivateNetwork: true, Secret: "test-key",
				Auth: egress.Auth{Type: a.Type, Name: a.Name, Format: a.Format}})
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			config := []byte(`{"provider":"test","base_url":"` + u.URL + basePath + `","options":` + options + `}`)
			if _, err := v.Open(plugin.Invocation{Op: c.Op, Request: c.Request, Config: config, Egress: eg, Sink: rec}); err != nil {
				t.Fatal(err)
			}
			rec.wait(t)
			if diffs := c.Check(u, rec.snapshot()); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestJSONTape calls json_tape from a real guest: a range outside memory is
// INVALID, malformed JSON is MALFORMED, a tape too small gets the entry
// count and nothing written, and a good call writes the tape of
// sdk/rawjson's documented example.
func TestJSONTape(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{})
	rec := run(t, v, abi.OpChat, "tape")
	want := "tape -1 -9 5 true -1 5 6 0 13 5 4 1 4 2 5 5 12 5 3 6 7 4 4 8 11 5"
	if e := rec.snapshot(); len(e) != 1 || string(e[0].Data) != want {
		t.Fatalf("emits %v\nwant fail 500 %s", e, want)
	}
}

// TestBadPointers: pointers outside guest memory are INVALID, never a trap.
func TestBadPointers(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{})
	rec := run(t, v, abi.OpChat, "badptr")
	if e := rec.snapshot(); len(e) != 1 || string(e[0].Data) != "statuses -1 -1 -1 -1" {
		t.Fatalf("emits %v", e)
	}
	okChat(t, v)
	if st := v.Stats(); st.Failures != 0 || st.Instances != 1 {
		t.Fatalf("%+v", st)
	}
}

// TestImportsOnlyWhatIsUsed: the SDK's imports are linked only into plugins
// that use them, so a pass-through plugin imports a handful.
func TestImportsOnlyWhatIsUsed(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasm, err := os.ReadFile(testplugins.Build(t, "plugins/openai"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod == abi.ImportModule && (name == abi.FnFetchImage || name == abi.FnSetTimer) {
			t.Errorf("openai.wasm imports %s, which it never calls", name)
		}
	}
}

// TestRunawayGuestPreemptibleAndStopped: a guest spinning in a loop that
// never calls the host must neither stop the host's garbage collector (a
// collection needs every goroutine at a safe point, the one running the
// guest included) nor outlive its callback deadline. The compiled code
// checks for both only once per TerminationCheckInterval loop headers (the
// patch in host/third_party/wazero), which this proves is often enough.
func TestRunawayGuestPreemptibleAndStopped(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{CallbackTimeout: 3 * time.Second})
	start := time.Now()
	_, rec := open(t, v, abi.OpChat, "loop")
	time.Sleep(100 * time.Millisecond) // well inside the loop by now
	for i := 0; i < 3; i++ {
		runtime.GC() // would wait for the spinning goroutine forever without safe points
	}
	select {
	case <-rec.ended:
		t.Fatalf("the spinning callback ended before its deadline: %v", rec.end)
	default:
	}
	if err := rec.wait(t); !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("spinning stream ended with %v, want ErrTrap", err)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("ended after %s, before its deadline", d)
	}
	if st := v.Stats(); st.Failures != 1 {
		t.Fatalf("the timed-out instance was kept: %+v", st)
	}
	okChat(t, v)
}
