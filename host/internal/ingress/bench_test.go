package ingress

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// The translation's own cost, per request and per streamed event, for a
// typical request (a system prompt, three turns, one tool; about 2 KB) and
// a typical content chunk. The proxy's whole request path is measured by
// BenchmarkIngress in host/internal/app.

var (
	benchText     = strings.Repeat("lorem ipsum dolor sit amet ", 20)
	benchMessages = `{"model":"claude-x","max_tokens":1024,"system":"You are a helpful assistant. ` + benchText + `","messages":[` +
		`{"role":"user","content":[{"type":"text","text":"` + benchText + `"}]},` +
		`{"role":"assistant","content":[{"type":"text","text":"` + benchText + `"}]},` +
		`{"role":"user","content":"What is the weather in Paris?"}],` +
		`"tools":[{"name":"get_weather","description":"the weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"stream":true}`
	benchResponses = `{"model":"gpt-x","instructions":"You are a helpful assistant. ` + benchText + `","input":[` +
		`{"role":"user","content":[{"type":"input_text","text":"` + benchText + `"}]},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"` + benchText + `"}]},` +
		`{"role":"user","content":"What is the weather in Paris?"}],` +
		`"tools":[{"type":"function","name":"get_weather","description":"the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],"stream":true}`
	benchCompletion = []byte(`{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + benchText + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":120,"total_tokens":420}}`)
	benchChunk      = []byte(`{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}],"usage":null}`)
)

func BenchmarkMessagesRequest(b *testing.B) {
	b.SetBytes(int64(len(benchMessages)))
	b.ReportAllocs()
	for b.Loop() {
		if _, bad := ParseMessages(gjson.Parse(benchMessages), false); bad != nil {
			b.Fatal(bad)
		}
	}
}

func BenchmarkMessagesAnswer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ChatToMessage(benchCompletion, "claude-x", "msg_1")
	}
}

func BenchmarkMessagesEvent(b *testing.B) {
	m := NewMessagesStream("msg_1", "claude-x")
	buf := m.Chunk(nil, benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.Chunk(buf[:0], benchChunk)
	}
}

func BenchmarkNativeMessagesEvent(b *testing.B) {
	ev := []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token "}}`)
	var n NativeMessagesStream
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = n.Chunk(buf[:0], ev)
	}
}

func BenchmarkResponsesRequest(b *testing.B) {
	b.SetBytes(int64(len(benchResponses)))
	b.ReportAllocs()
	for b.Loop() {
		if _, bad := ParseResponses(gjson.Parse(benchResponses), ""); bad != nil {
			b.Fatal(bad)
		}
	}
}

func BenchmarkResponsesAnswer(b *testing.B) {
	req, _ := ParseResponses(gjson.Parse(benchResponses), "")
	x := NewResponses(req, "resp_1", 1, false)
	b.ReportAllocs()
	for b.Loop() {
		x.FromChat(benchCompletion)
	}
}

func BenchmarkResponsesEvent(b *testing.B) {
	req, _ := ParseResponses(gjson.Parse(benchResponses), "")
	r := NewResponsesStream(NewResponses(req, "resp_1", 1, false))
	buf := r.Chunk(nil, benchChunk)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.Chunk(buf[:0], benchChunk)
		if len(r.text) > 1<<16 {
			r.text = r.text[:0]
		}
	}
}
