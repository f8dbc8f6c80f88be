package main

import (
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// The native translation benchmarks: the plugin's code run by a Guest whose
// callbacks the benchmark drives, one stream at a time, against an
// in-memory host (fakeHost) that hands out a canned answer. (Under ABI 1,
// host/internal/plugin's BenchmarkGuestGemini* ran the same inputs through
// gemini.wasm; the ABI 2 host has no such benchmark yet.)

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

var benchConfig = []byte(`{"provider":"gemini","base_url":"https://generativelanguage.googleapis.com/v1beta","options":{}}`)

func benchHost() (*fakeHost, *sdk.Guest) {
	h := &fakeHost{config: benchConfig, date: []byte("Tue, 14 Nov 2023 22:13:20 GMT")}
	return h, sdk.NewGuest(h, plugin{})
}

// BenchmarkNativeChat: one ~2 KB request translated, one answer translated.
func BenchmarkNativeChat(b *testing.B) {
	h, g := benchHost()
	body := []byte(benchAnswer)
	b.ReportAllocs()
	for b.Loop() {
		h.ups = h.ups[:0]
		up := h.start(g, 1, abi.OpChat, benchRequest)
		if up == 0 || h.head(g, up, 200) != abi.BodyWhole {
			b.Fatal("no upstream request")
		}
		h.deliver(g, up, body)
		h.end(g, up)
		if st := &h.streams[1]; st.count != 1 || st.failed || g.Streams() != 0 {
			b.Fatal("call failed")
		}
	}
}

// BenchmarkNativeStream20: the request, then 20 events into 22 chunks.
func BenchmarkNativeStream20(b *testing.B) {
	h, g := benchHost()
	events := benchEvents()
	b.ReportAllocs()
	for b.Loop() {
		h.ups = h.ups[:0]
		up := h.start(g, 1, abi.OpChatStream, benchRequest)
		if up == 0 || h.head(g, up, 200) != abi.BodyEvents {
			b.Fatal("no upstream request")
		}
		for _, ev := range events {
			h.deliver(g, up, ev)
		}
		h.end(g, up)
		if st := &h.streams[1]; st.count != 22 || !st.finished || g.Streams() != 0 {
			b.Fatalf("call failed after %d chunks", st.count)
		}
	}
}

// TestEventsDoNotAllocate: once a stream has started, translating an event
// allocates nothing (its state and the scratch buffers are reused).
func TestEventsDoNotAllocate(t *testing.T) {
	h, g := benchHost()
	up := h.start(g, 1, abi.OpChatStream, benchRequest)
	if up == 0 || h.head(g, up, 200) != abi.BodyEvents {
		t.Fatal("no upstream request")
	}
	ev := []byte(benchEvent)
	h.deliver(g, up, ev)
	if n := testing.AllocsPerRun(100, func() { h.deliver(g, up, ev) }); n != 0 {
		t.Fatalf("%v allocations per event", n)
	}
	if st := &h.streams[1]; st.count != 102 || st.ended {
		t.Fatalf("%d chunks, ended %v", st.count, st.ended)
	}
}
