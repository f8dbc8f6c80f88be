package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"

	"github.com/tetratelabs/wazero"
)

// recorder is a Sink that keeps what the plugin emitted, in plugintest's
// form, so golden cases compare the same way natively and as wasm.
type recorder struct {
	mu    sync.Mutex
	emits []plugintest.Emit
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
func (r *recorder) Fail(status int, body []byte, _ string) {
	r.add(plugintest.Emit{Kind: "fail", Status: status, Data: append([]byte(nil), body...)})
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

// TestOpenAIGoldenAsWasm runs plugins/openai/testdata/*.case against the
// built openai.wasm under the real runtime.
func TestOpenAIGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/openai", "/v1")
}

// TestAnthropicGoldenAsWasm runs plugins/anthropic/testdata/*.case against
// the built anthropic.wasm; its base URL is the API root.
func TestAnthropicGoldenAsWasm(t *testing.T) {
	goldenAsWasm(t, "plugins/anthropic", "")
}

// goldenAsWasm runs the cases of a plugin folder against its .wasm, with the
// base URL the fake upstream's address followed by basePath.
func goldenAsWasm(t *testing.T, dir, basePath string) {
	v := load(t, dir, plugin.Limits{})
	cases, err := plugintest.LoadCases(testplugins.Root() + "/" + dir + "/testdata")
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
			rec := &recorder{}
			err = v.Call(context.Background(), &plugin.Invocation{Op: c.Op, Request: c.Request, Config: guestConfig(u.URL + basePath), Egress: eg, Sink: rec})
			if err != nil {
				t.Fatal(err)
			}
			if diffs := c.Check(u, rec.emits); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
		})
	}
}

func callOK(t testing.TB, v *plugin.Version, model string) {
	t.Helper()
	rec := &recorder{}
	err := v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChat,
		Request: []byte(`{"model":"` + model + `","messages":[]}`), Config: guestConfig("http://127.0.0.1:1"), Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.emits) != 1 || rec.emits[0].Kind != "body" {
		t.Fatalf("emits %v", rec.emits)
	}
}

func TestPoolRecyclesAndDiscards(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{RecycleAfterCalls: 3, MaxInstances: 2})
	for i := 0; i < 7; i++ {
		callOK(t, v, "ok")
	}
	st := v.Stats()
	if st.Created < 3 || st.Discarded < 2 || st.Calls != 7 {
		t.Fatalf("after 7 calls with recycling every 3: %+v", st)
	}
	// A panic is recovered by the SDK and reported as a 502 failure; the
	// call returned non-zero, so its instance is discarded, not reused.
	before := v.Stats().Discarded
	rec := &recorder{}
	if err := v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChat, Request: []byte(`{"model":"panic"}`), Config: guestConfig("http://x"), Sink: rec}); err != nil {
		t.Fatal(err)
	}
	if len(rec.emits) != 1 || rec.emits[0].Kind != "fail" || rec.emits[0].Status != 502 {
		t.Fatalf("emits %v", rec.emits)
	}
	if v.Stats().Discarded != before+1 {
		t.Fatalf("panicked instance kept: %+v", v.Stats())
	}
	callOK(t, v, "ok")
}

// TestConcurrentCalls hammers one version from many goroutines: each
// instance must serve one call at a time.
func TestConcurrentCalls(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{MaxInstances: 4})
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				callOK(t, v, "ok")
			}
		}()
	}
	wg.Wait()
	if st := v.Stats(); st.Created > 4 || st.Calls != 400 || st.Failures != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestRetireWaitsForInflight(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{})
	started, release := make(chan struct{}), make(chan struct{})
	sink := &blockingSink{started: started, release: release}
	done := make(chan error, 1)
	go func() {
		done <- v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChatStream, Request: []byte(`{"model":"ok"}`), Config: guestConfig("http://x"), Sink: sink})
	}()
	<-started
	v.Retire()
	if v.Closed() {
		t.Fatal("closed while a call was in flight")
	}
	if err := v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChat, Request: []byte(`{}`), Sink: &recorder{}}); !errors.Is(err, plugin.ErrRetired) {
		t.Fatalf("new call on a retired version: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !v.Closed() {
		t.Fatal("not closed after its last call")
	}
}

type blockingSink struct {
	recorder
	started, release chan struct{}
}

func (b *blockingSink) Chunk(d []byte) bool {
	close(b.started)
	<-b.release
	return true
}

// BenchmarkGuestChat measures one non-stream call through openai.wasm with
// an in-memory upstream: the plugin runtime and the guest, no network. The
// request is a ~2 KB chat request.
func BenchmarkGuestChat(b *testing.B) {
	benchCase(b, abi.OpChat)
}

// BenchmarkGuestStream20 measures one 20-chunk stream the same way; divide
// by 20 for the cost per chunk.
func BenchmarkGuestStream20(b *testing.B) {
	benchCase(b, abi.OpChatStream)
}

// memDoer answers every upstream request with a canned response.
type memDoer struct {
	ctype string
	body  []byte
}

func (m memDoer) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {m.ctype}},
		Body: io.NopCloser(bytes.NewReader(m.body))}, nil
}

func benchCase(b *testing.B, op abi.Op) {
	v := load(b, "plugins/openai", plugin.Limits{})
	var body strings.Builder
	doer := memDoer{ctype: "application/json"}
	req := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}]}`
	if op == abi.OpChatStream {
		doer.ctype = "text/event-stream"
		for i := 0; i < 20; i++ {
			body.WriteString(`data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"token "},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
		}
		body.WriteString("data: [DONE]\n\n")
	} else {
		body.WriteString(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":1,"total_tokens":301}}`)
	}
	doer.body = []byte(body.String())
	inv := &plugin.Invocation{Op: op, Request: []byte(req), Config: guestConfig("https://api.example.com/v1"), Egress: doer, Sink: discard{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := v.Call(context.Background(), inv); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Chunk([]byte) bool        { return true }
func (discard) Body([]byte)              {}
func (discard) Usage([]byte)             {}
func (discard) Fail(int, []byte, string) {}

// TestIdleInstancesFollowDemand: a burst leaves warm instances behind; the
// ones no call needs for a whole reap interval are closed, down to
// MaxIdleInstances, while a steady load keeps its instances.
func TestIdleInstancesFollowDemand(t *testing.T) {
	defer plugin.SetReapInterval(100 * time.Millisecond)()
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{MaxInstances: 8, MaxIdleInstances: 2})
	started, release := make(chan struct{}, 6), make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sink := &countingGate{started: started, release: release}
			v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChatStream, Request: []byte(`{"model":"ok"}`), Config: guestConfig("http://x"), Sink: sink})
		}()
	}
	for i := 0; i < 6; i++ {
		<-started
	}
	close(release)
	wg.Wait()
	if st := v.Stats(); st.Idle != 6 {
		t.Fatalf("after the burst: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for v.Stats().Idle > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("idle instances not reaped: %+v", v.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := v.Stats(); st.Idle != 2 || st.Discarded != 4 {
		t.Fatalf("want 2 warm instances left: %+v", st)
	}
}

type countingGate struct {
	discard
	started, release chan struct{}
}

func (g *countingGate) Chunk([]byte) bool {
	g.started <- struct{}{}
	<-g.release
	return true
}
