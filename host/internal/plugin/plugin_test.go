package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
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
			config := []byte(`{"provider":"test","base_url":"` + u.URL + basePath + `","options":` + options + `}`)
			err = v.Call(context.Background(), &plugin.Invocation{Op: c.Op, Request: c.Request, Config: config, Egress: eg, Sink: rec})
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
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := v.Call(context.Background(), inv); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU adds the process's CPU time per op as cpu-µs/op, which a busy
// machine distorts far less than the wall time of ns/op. Call the returned
// function when the loop is done.
func reportCPU(b *testing.B) func() {
	var r0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	return func() {
		var r1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		cpu := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
		b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-µs/op")
	}
}

// BenchmarkGuestAnthropicChat and BenchmarkGuestAnthropicStream20 run the
// inputs of plugins/anthropic's BenchmarkNative* through anthropic.wasm:
// a ~2 KB request translated, then a Message, or a stream of 20 text deltas
// (25 events, 22 chunks), translated back. The difference from the native
// figures is the cost of running the translation as wasm.
func BenchmarkGuestAnthropicChat(b *testing.B) {
	benchAnthropic(b, abi.OpChat)
}

func BenchmarkGuestAnthropicStream20(b *testing.B) {
	benchAnthropic(b, abi.OpChatStream)
}

func benchAnthropic(b *testing.B, op abi.Op) {
	v := load(b, "plugins/anthropic", plugin.Limits{})
	req := `{"model":"claude-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}],"max_tokens":100}`
	doer := memDoer{ctype: "application/json", body: []byte(`{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":1}}`)}
	if op == abi.OpChatStream {
		var body strings.Builder
		ev := func(name, data string) { body.WriteString("event: " + name + "\ndata: " + data + "\n\n") }
		ev("message_start", `{"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":1}}}`)
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		for i := 0; i < 20; i++ {
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token "}}`)
		}
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":20}}`)
		ev("message_stop", `{"type":"message_stop"}`)
		doer = memDoer{ctype: "text/event-stream", body: []byte(body.String())}
	}
	sink := &countSink{}
	inv := &plugin.Invocation{Op: op, Request: []byte(req), Config: guestConfig("https://api.example.com"), Egress: doer, Sink: sink}
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		sink.n = 0
		if err := v.Call(context.Background(), inv); err != nil {
			b.Fatal(err)
		}
		if want := map[abi.Op]int{abi.OpChat: 1, abi.OpChatStream: 22}[op]; sink.n != want {
			b.Fatalf("%d emits, want %d", sink.n, want)
		}
	}
}

// BenchmarkGuestGeminiChat and BenchmarkGuestGeminiStream20 run the inputs
// of plugins/gemini's BenchmarkNative* through gemini.wasm: a ~2 KB
// request, then a response or 20 streamed responses (22 chunks out).
func BenchmarkGuestGeminiChat(b *testing.B) {
	benchGemini(b, abi.OpChat)
}

func BenchmarkGuestGeminiStream20(b *testing.B) {
	benchGemini(b, abi.OpChatStream)
}

func benchGemini(b *testing.B, op abi.Op) {
	v := load(b, "plugins/gemini", plugin.Limits{})
	req := `{"model":"gemini-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}],"max_tokens":100}`
	doer := memDoer{ctype: "application/json", body: []byte(`{"candidates":[{"content":{"role":"model","parts":[{"text":"hello"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}`)}
	if op == abi.OpChatStream {
		var body strings.Builder
		for i := 0; i < 19; i++ {
			body.WriteString(`data: {"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}` + "\n\n")
		}
		body.WriteString(`data: {"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":20,"totalTokenCount":320},"modelVersion":"gemini-x","responseId":"resp-x"}` + "\n\n")
		doer = memDoer{ctype: "text/event-stream", body: []byte(body.String())}
	}
	sink := &countSink{}
	inv := &plugin.Invocation{Op: op, Request: []byte(req), Config: guestConfig("https://api.example.com/v1beta"), Egress: doer, Sink: sink}
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		sink.n = 0
		if err := v.Call(context.Background(), inv); err != nil {
			b.Fatal(err)
		}
		if want := map[abi.Op]int{abi.OpChat: 1, abi.OpChatStream: 22}[op]; sink.n != want {
			b.Fatalf("%d emits, want %d", sink.n, want)
		}
	}
}

// countSink counts bodies and chunks, and fails the benchmark's check on a
// failure.
type countSink struct{ n int }

func (s *countSink) Chunk([]byte) bool        { s.n++; return true }
func (s *countSink) Body([]byte)              { s.n++ }
func (s *countSink) Usage([]byte)             {}
func (s *countSink) Fail(int, []byte, string) { s.n = -1000 }

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

// TestJSONTape calls json_tape from a real guest: a range outside memory is
// INVALID, malformed JSON is MALFORMED, a tape too small gets the entry
// count and nothing written, and a good call writes the tape of
// sdk/rawjson's documented example.
func TestJSONTape(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{})
	rec := &recorder{}
	if err := v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChat, Request: []byte(`{"model":"tape"}`), Config: guestConfig("http://x"), Sink: rec}); err != nil {
		t.Fatal(err)
	}
	want := "tape -1 -9 5 true -1 5 6 0 13 5 4 1 4 2 5 5 12 5 3 6 7 4 4 8 11 5"
	if len(rec.emits) != 1 || string(rec.emits[0].Data) != want {
		t.Fatalf("emits %v\nwant fail 500 %s", rec.emits, want)
	}
}

// TestTapeImportOnlyWhenUsed: the SDK's imports of later ABI minors
// (json_tape 1.1, fetch_image 1.2) are linked only into plugins that call
// Call.ParseJSON or Call.FetchImage, so a plugin that does not need them
// still loads on an older host.
func TestTapeImportOnlyWhenUsed(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for dir, want := range map[string]string{
		"plugins/openai":    "",
		"plugins/anthropic": "json_tape",
		"plugins/azure":     "json_tape",
		"plugins/gemini":    "fetch_image json_tape",
	} {
		wasm, err := os.ReadFile(testplugins.Build(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.CompileModule(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range m.ImportedFunctions() {
			if mod, name, _ := f.Import(); mod == abi.ImportModule && (name == abi.FnJSONTape || name == abi.FnFetchImage) {
				got = append(got, name)
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != want {
			t.Errorf("%s imports %v, want %q", dir, got, want)
		}
	}
}

// TestRunawayGuestPreemptibleAndStopped: a guest spinning in a loop that
// never calls the host must neither stop the host's garbage collector (a
// collection needs every goroutine at a safe point, the one running the
// guest included) nor outlive its deadline. The compiled code checks for
// both only once per TerminationCheckInterval loop headers (the patch in
// host/third_party/wazero), which this proves is often enough.
func TestRunawayGuestPreemptibleAndStopped(t *testing.T) {
	v := load(t, "host/internal/testplugins/hostile", plugin.Limits{RequestTimeout: 3 * time.Second})
	done := make(chan error, 1)
	go func() {
		done <- v.Call(context.Background(), &plugin.Invocation{Op: abi.OpChat, Request: []byte(`{"model":"loop"}`), Config: guestConfig("http://x"), Sink: &recorder{}})
	}()
	for v.Stats().Busy == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // well inside the loop by now
	for i := 0; i < 3; i++ {
		runtime.GC() // would wait for the spinning goroutine forever without safe points
	}
	select {
	case err := <-done:
		t.Fatalf("the spinning call ended before its deadline: %v", err)
	default:
	}
	if err := <-done; !errors.Is(err, plugin.ErrTimeout) {
		t.Fatalf("spinning call: %v, want ErrTimeout", err)
	}
	st := v.Stats()
	if st.Discarded == 0 {
		t.Fatalf("the timed-out instance was kept: %+v", st)
	}
	callOK(t, v, "ok")
}
