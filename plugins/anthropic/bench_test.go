package main

import (
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The native half of the translation benchmarks: the plugin's code run by
// sdk.Serve against an in-memory host that hands out a canned answer, so
// only translation and the SDK are measured. host/internal/plugin's
// BenchmarkGuestAnthropic* run the same inputs through anthropic.wasm.

// benchRequest is a ~2 KB chat request, like the OpenAI plugin's benchmark.
var benchRequest = []byte(`{"model":"claude-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}],"max_tokens":100}`)

const benchAnswer = `{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":1}}`

// benchEvents is a stream with 20 text deltas.
func benchEvents() [][]byte {
	evs := []string{
		`{"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":300,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
	}
	for i := 0; i < 20; i++ {
		evs = append(evs, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token "}}`)
	}
	evs = append(evs, `{"type":"content_block_stop","index":0}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":20}}`,
		`{"type":"message_stop"}`)
	out := make([][]byte, len(evs))
	for i, e := range evs {
		out[i] = []byte(e)
	}
	return out
}

// memHost is an sdk.Host with one canned upstream response.
type memHost struct {
	body   []byte
	events [][]byte
	next   int
	read   bool
	emits  int
}

var benchConfig = []byte(`{"provider":"anthropic","base_url":"https://api.anthropic.com","options":{}}`)

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *memHost) RequestRead(buf []byte) int32       { return copyOut(buf, benchRequest) }
func (h *memHost) ConfigRead(buf []byte) int32        { return copyOut(buf, benchConfig) }
func (h *memHost) HTTPSend(head, body []byte) int32   { return 1 }
func (h *memHost) HTTPStatus(int32) int32             { return 200 }
func (h *memHost) HTTPClose(int32) int32              { return 0 }
func (h *memHost) Fail(int32, []byte) int32           { return 0 }
func (h *memHost) Log(int32, []byte) int32            { return 0 }
func (h *memHost) Emit(k abi.Kind, data []byte) int32 { h.emits++; return 0 }
func (h *memHost) HTTPHeader(_ int32, name, buf []byte) int32 {
	return copyOut(buf, []byte("Tue, 14 Nov 2023 22:13:20 GMT"))
}

// JSONTape builds the tape natively, as the host does.
func (h *memHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(tape[:0], data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	if len(t) > cap(tape) {
		return int32(len(t) / rawjson.EntryWords) // not written: the caller grows its tape
	}
	return int32(len(t) / rawjson.EntryWords)
}

func (h *memHost) FetchImage(url, buf []byte) int32 { return int32(abi.StatusDenied) }

func (h *memHost) HTTPRead(_ int32, buf []byte) int32 {
	if h.read {
		return 0
	}
	h.read = true
	return copyOut(buf, h.body)
}

func (h *memHost) HTTPReadEvent(_ int32, buf []byte) int32 {
	if h.next >= len(h.events) {
		return 0
	}
	n := copyOut(buf, h.events[h.next])
	if int(n) <= cap(buf) {
		h.next++
	}
	return n
}

// BenchmarkNativeChat: one ~2 KB request translated, one answer translated.
func BenchmarkNativeChat(b *testing.B) {
	h := &memHost{body: []byte(benchAnswer)}
	b.ReportAllocs()
	for b.Loop() {
		h.read, h.emits = false, 0
		if sdk.Serve(h, plugin{}, abi.OpChat) != 0 || h.emits != 1 {
			b.Fatal("call failed")
		}
	}
}

// BenchmarkNativeStream20: the request, then 25 events into 22 chunks;
// divide by 20 for the cost per streamed chunk.
func BenchmarkNativeStream20(b *testing.B) {
	h := &memHost{events: benchEvents()}
	b.ReportAllocs()
	for b.Loop() {
		h.next, h.emits = 0, 0
		if sdk.Serve(h, plugin{}, abi.OpChatStream) != 0 || h.emits != 22 {
			b.Fatalf("call failed after %d chunks", h.emits)
		}
	}
}

// BenchmarkNativeRequestOnly: the request translation alone.
func BenchmarkNativeRequestOnly(b *testing.B) {
	s := &settings{maxTokens: []byte("4096")}
	var tape []uint32
	b.ReportAllocs()
	for b.Loop() {
		doc, err := rawjson.Parse(benchRequest, tape)
		tape = doc.Tape
		if err != nil {
			b.Fatal(err)
		}
		if _, err := buildRequest(doc.Root(), s, false, rawjson.Parse); err != nil {
			b.Fatal(err)
		}
	}
}
