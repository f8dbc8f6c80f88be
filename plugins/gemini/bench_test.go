package main

import (
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// The native half of the translation benchmarks: the plugin's code run by
// sdk.Serve against an in-memory host that hands out a canned answer.
// host/internal/plugin's BenchmarkGuestGemini* run the same inputs through
// gemini.wasm.

var benchRequest = []byte(`{"model":"gemini-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("lorem ipsum ", 160) + `"}],"max_tokens":100}`)

const benchAnswer = `{"candidates":[{"content":{"role":"model","parts":[{"text":"hello"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}`

// benchEvent is one of the 20 events of the benchmark stream; the last
// one adds the finish reason.
const benchEvent = `{"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":1,"totalTokenCount":301},"modelVersion":"gemini-x","responseId":"resp-x"}`

func benchEvents() [][]byte {
	var out [][]byte
	for i := 0; i < 19; i++ {
		out = append(out, []byte(benchEvent))
	}
	return append(out, []byte(`{"candidates":[{"content":{"role":"model","parts":[{"text":"token "}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":300,"candidatesTokenCount":20,"totalTokenCount":320},"modelVersion":"gemini-x","responseId":"resp-x"}`))
}

type memHost struct {
	body   []byte
	events [][]byte
	next   int
	read   bool
	emits  int
}

var benchConfig = []byte(`{"provider":"gemini","base_url":"https://generativelanguage.googleapis.com/v1beta","options":{}}`)

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

func (h *memHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(tape[:0], data)
	if err != nil {
		return int32(abi.StatusMalformed)
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

// BenchmarkNativeStream20: the request, then 20 events into 22 chunks.
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
