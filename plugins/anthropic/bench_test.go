package main

import (
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// Native translation benchmarks: the plugin's code run by an sdk.Guest
// whose callbacks are driven the way the host drives them, by an in-memory
// host that hands out a canned answer, so only translation and the SDK are
// measured (the JSON tapes, which the real host builds, are built here
// too). The guest stays warm from one stream to the next, as an instance
// does.

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

// memHost is an sdk.Host with one canned upstream response, for one
// stream at a time.
type memHost struct {
	body   []byte   // the answer of a chat
	events [][]byte // the events of a chat_stream
	data   []byte   // the current callback's data
	emits  int
	ended  bool // the stream was answered, finished or failed
}

// benchHandle is the handle of every upstream request.
const benchHandle = 7

var benchConfig = []byte(`{"provider":"anthropic","base_url":"https://api.anthropic.com","options":{}}`)

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *memHost) RequestRead(_ int32, buf []byte) int32     { return copyOut(buf, benchRequest) }
func (h *memHost) ConfigRead(_ int32, buf []byte) int32      { return copyOut(buf, benchConfig) }
func (h *memHost) HTTPSend(_ int32, head, body []byte) int32 { return benchHandle }
func (h *memHost) HTTPBody(int32, abi.BodyMode) int32        { return 0 }
func (h *memHost) HTTPClose(int32) int32                     { return 0 }
func (h *memHost) DataRead(buf []byte) int32                 { return copyOut(buf, h.data) }
func (h *memHost) Fail(int32, int32, []byte) int32           { h.ended = true; return 0 }
func (h *memHost) Finish(int32) int32                        { h.ended = true; return 0 }
func (h *memHost) FetchImage(int32, []byte) int32            { return int32(abi.StatusDenied) }
func (h *memHost) SetTimer(int32, int32) int32               { return int32(abi.StatusInvalid) }
func (h *memHost) Log(int32, []byte) int32                   { return 0 }
func (h *memHost) HTTPHeader(_ int32, name, buf []byte) int32 {
	return copyOut(buf, []byte("Tue, 14 Nov 2023 22:13:20 GMT"))
}

func (h *memHost) Emit(_ int32, k abi.Kind, data []byte) int32 {
	h.emits++
	if k == abi.KindBody {
		h.ended = true
	}
	return 0
}

// JSONTape builds the tape natively, as the host does.
func (h *memHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(tape[:0], data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	return int32(len(t) / rawjson.EntryWords) // written only if it fit: else the caller grows its tape
}

// serve runs one stream on g from its start to on_done: the head, the body
// or each event while the stream lasts, the end.
func (h *memHost) serve(g *sdk.Guest, id int32, op abi.Op) {
	h.emits, h.ended = 0, false
	g.OnStart(id, int32(op))
	g.OnHTTPHead(id, benchHandle, 200)
	if op == abi.OpChatStream {
		for _, ev := range h.events {
			if h.ended {
				break
			}
			h.data = ev
			g.OnHTTPData(id, benchHandle, int32(len(ev)))
		}
	} else {
		h.data = h.body
		g.OnHTTPData(id, benchHandle, int32(len(h.body)))
	}
	h.data = nil
	if !h.ended {
		g.OnHTTPEnd(id, benchHandle, 0)
	}
	g.OnDone(id, 0)
}

// BenchmarkNativeChat: one ~2 KB request translated, one answer translated.
func BenchmarkNativeChat(b *testing.B) {
	h := &memHost{body: []byte(benchAnswer)}
	g := sdk.NewGuest(h, plugin{})
	id := int32(0)
	b.ReportAllocs()
	for b.Loop() {
		id++
		if h.serve(g, id, abi.OpChat); h.emits != 1 || !h.ended {
			b.Fatal("stream failed")
		}
	}
}

// BenchmarkNativeStream20: the request, then 25 events into 22 chunks;
// divide by 20 for the cost per streamed chunk.
func BenchmarkNativeStream20(b *testing.B) {
	h := &memHost{events: benchEvents()}
	g := sdk.NewGuest(h, plugin{})
	id := int32(0)
	b.ReportAllocs()
	for b.Loop() {
		id++
		if h.serve(g, id, abi.OpChatStream); h.emits != 22 || !h.ended {
			b.Fatalf("stream failed after %d chunks", h.emits)
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
