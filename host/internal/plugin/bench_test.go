package plugin_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// The guest benchmarks run one request or one 20-chunk stream at a time
// through a real plugin under the real runtime, with an in-memory upstream:
// the scheduler, the callbacks and the guest's work, no network. Compare
// them with the plugins' BenchmarkNative* (the same translation natively).
//
//	go test -run '^$' -bench Guest -benchtime 3000x ./host/internal/plugin

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

// countSink counts what a stream sent and signals its end.
type countSink struct {
	n    int
	err  error
	done chan struct{}
}

func (s *countSink) Chunk([]byte) bool        { s.n++; return true }
func (s *countSink) Body([]byte)              { s.n++ }
func (s *countSink) Usage([]byte)             {}
func (s *countSink) End(err error)            { s.err = err; close(s.done) }
func (s *countSink) Backlog() int             { return 0 }
func (s *countSink) Drained() <-chan struct{} { return nil }

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

func benchStreams(b *testing.B, dir, baseURL string, op abi.Op, req string, doer memDoer, wantEmits int) {
	v := load(b, dir, plugin.Limits{})
	inv := plugin.Invocation{Op: op, Request: []byte(req), Config: guestConfig(baseURL), Egress: doer}
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		sink := &countSink{done: make(chan struct{})}
		inv.Sink = sink
		if _, err := v.Open(inv); err != nil {
			b.Fatal(err)
		}
		<-sink.done
		if sink.err != nil || sink.n != wantEmits {
			b.Fatalf("%d emits, end %v; want %d", sink.n, sink.err, wantEmits)
		}
	}
}

var longPrompt = strings.Repeat("lorem ipsum ", 160)

// BenchmarkGuestChat: one ~2 KB non-stream request through openai.wasm
// (forwarded; the answer relayed).
func BenchmarkGuestChat(b *testing.B) {
	benchStreams(b, "plugins/openai", "https://api.example.com/v1", abi.OpChat,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+longPrompt+`"}]}`,
		memDoer{ctype: "application/json", body: []byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":1,"total_tokens":301}}`)}, 1)
}

// BenchmarkGuestStream20: one 20-chunk stream through openai.wasm, relayed
// by the host (no guest call per chunk).
func BenchmarkGuestStream20(b *testing.B) {
	var body strings.Builder
	for i := 0; i < 20; i++ {
		body.WriteString(`data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"token "},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
	}
	body.WriteString("data: [DONE]\n\n")
	benchStreams(b, "plugins/openai", "https://api.example.com/v1", abi.OpChatStream,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"`+longPrompt+`"}]}`,
		memDoer{ctype: "text/event-stream", body: []byte(body.String())}, 20)
}

// BenchmarkGuestAnthropicChat and BenchmarkGuestAnthropicStream20 run the
// inputs of plugins/anthropic's BenchmarkNative* through anthropic.wasm: a
// ~2 KB request translated, then a Message, or a stream of 20 text deltas
// (25 events, 22 chunks), translated back.
func BenchmarkGuestAnthropicChat(b *testing.B) {
	benchStreams(b, "plugins/anthropic", "https://api.example.com", abi.OpChat, anthropicReq,
		memDoer{ctype: "application/json", body: []byte(`{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":1}}`)}, 1)
}

func BenchmarkGuestAnthropicStream20(b *testing.B) {
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
	benchStreams(b, "plugins/anthropic", "https://api.example.com", abi.OpChatStream, anthropicReq,
		memDoer{ctype: "text/event-stream", body: []byte(body.String())}, 22)
}

var anthropicReq = `{"model":"claude-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + longPrompt + `"}],"max_tokens":100}`

// BenchmarkGuestGeminiChat and BenchmarkGuestGeminiStream20 run the inputs
// of plugins/gemini's BenchmarkNative* through gemini.wasm: a ~2 KB
// request, then a response or 20 streamed responses (22 chunks out).
func BenchmarkGuestGeminiChat(b *testing.B) {
	benchStreams(b, "plugins/gemini", "https://api.example.com/v1beta", abi.OpChat, geminiReq,
		memDoer{ctype: "application/json", body: []byte(`{"candidates":[{"content":{"role":"model","parts":[{"text":"hello"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}`)}, 1)
}

func BenchmarkGuestGeminiStream20(b *testing.B) {
	var body strings.Builder
	for i := 0; i < 19; i++ {
		body.WriteString(`data: {"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}` + "\n\n")
	}
	body.WriteString(`data: {"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":20,"totalTokenCount":320},"modelVersion":"gemini-x","responseId":"resp-x"}` + "\n\n")
	benchStreams(b, "plugins/gemini", "https://api.example.com/v1beta", abi.OpChatStream, geminiReq,
		memDoer{ctype: "text/event-stream", body: []byte(body.String())}, 22)
}

var geminiReq = `{"model":"gemini-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + longPrompt + `"}],"max_tokens":100}`
