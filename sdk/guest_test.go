package sdk_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// ops is one plugin whose methods record which was called.
type ops struct{ called []string }

func (p *ops) answer(s *sdk.Stream, name string) error {
	p.called = append(p.called, name)
	return s.EmitBody([]byte(`"` + name + `"`))
}
func (p *ops) Chat(s *sdk.Stream) error       { return p.answer(s, "Chat") }
func (p *ops) ChatStream(s *sdk.Stream) error { return p.answer(s, "ChatStream") }
func (p *ops) Embeddings(s *sdk.Stream) error { return p.answer(s, "Embeddings") }
func (p *ops) Models(s *sdk.Stream) error     { return p.answer(s, "Models") }

func TestGuestDispatch(t *testing.T) {
	tests := []struct {
		op       abi.Op
		method   string
		wantCall string
	}{
		{abi.OpChat, "Chat", `emit 1 body "Chat"`},
		{abi.OpChatStream, "ChatStream", `emit 1 body "ChatStream"`},
		{abi.OpEmbeddings, "Embeddings", `emit 1 body "Embeddings"`},
		{abi.OpModels, "Models", `emit 1 body "Models"`},
	}
	for _, tt := range tests {
		t.Run(tt.op.String(), func(t *testing.T) {
			h := newFakeHost()
			p := &ops{}
			g := sdk.NewGuest(h, p)
			if r := g.OnStart(1, int32(tt.op)); r != 0 {
				t.Fatalf("OnStart = %d, want 0", r)
			}
			if len(p.called) != 1 || p.called[0] != tt.method {
				t.Fatalf("called %q, want [%s]", p.called, tt.method)
			}
			checkCalls(t, h.take(), []string{tt.wantCall})
		})
	}

	t.Run("the stream knows its id and op", func(t *testing.T) {
		h := newFakeHost()
		var id int32
		var op abi.Op
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			id, op = s.ID(), s.Op()
			return s.EmitBody(nil)
		}))
		g.OnStart(7, int32(abi.OpEmbeddings))
		if id != 7 || op != abi.OpEmbeddings {
			t.Fatalf("ID, Op = %d, %v; want 7, embeddings", id, op)
		}
	})

	for _, op := range []int32{0, 7, 42, -1} {
		t.Run(fmt.Sprintf("unknown op %d", op), func(t *testing.T) {
			h := newFakeHost()
			p := &ops{}
			g := sdk.NewGuest(h, p)
			if r := g.OnStart(1, op); r != 0 {
				t.Fatalf("OnStart = %d, want 0", r)
			}
			if len(p.called) != 0 {
				t.Fatalf("plugin called: %q", p.called)
			}
			checkCalls(t, h.take(), []string{"fail 1 400 unknown operation"})
		})
	}

	for _, op := range []abi.Op{abi.OpChat, abi.OpChatStream, abi.OpEmbeddings, abi.OpModels, abi.OpMessages, abi.OpMessagesStream} {
		t.Run("Unimplemented "+op.String(), func(t *testing.T) {
			h := newFakeHost()
			g := sdk.NewGuest(h, struct{ sdk.Unimplemented }{})
			if r := g.OnStart(1, int32(op)); r != 0 {
				t.Fatalf("OnStart = %d, want 0", r)
			}
			checkCalls(t, h.take(), []string{"fail 1 400 " + sdk.ErrUnsupported.Error()})
		})
	}

	t.Run("nil plugin", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, nil)
		if r := g.OnStart(1, int32(abi.OpChat)); r != 1 {
			t.Fatalf("OnStart = %d, want 1", r)
		}
		checkCalls(t, h.take(), nil)
		if g.Streams() != 0 {
			t.Errorf("Streams() = %d, want 0", g.Streams())
		}
	})

	t.Run("streams are held until on_done", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, &ops{})
		g.OnStart(1, int32(abi.OpChat))
		g.OnStart(2, int32(abi.OpChat))
		if g.Streams() != 2 {
			t.Fatalf("Streams() = %d, want 2", g.Streams())
		}
		g.OnDone(1, 0)
		g.OnDone(1, 0) // twice is harmless
		g.OnDone(9, 0) // unknown is harmless
		if g.Streams() != 1 {
			t.Fatalf("Streams() after on_done = %d, want 1", g.Streams())
		}
	})

	t.Run("callbacks for unknown streams are ignored", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, &ops{})
		for name, r := range map[string]int32{
			"on_http_head": g.OnHTTPHead(3, 101, 200),
			"on_http_data": h.dataCall(g, 3, 101, "x"),
			"on_http_end":  g.OnHTTPEnd(3, 101, 0),
			"on_image":     h.imageCall(g, 3, 101, "image/png\nAA=="),
			"on_timer":     g.OnTimer(3),
			"on_done":      g.OnDone(3, 0),
		} {
			if r != 0 {
				t.Errorf("%s = %d, want 0", name, r)
			}
		}
		checkCalls(t, h.take(), nil)
	})
}

// TestErrorMapping: what a plugin's returned error becomes (failWith).
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name string
		fn   func(s *sdk.Stream) error
		want []string
	}{
		{"nil", func(*sdk.Stream) error { return nil }, nil},
		{"ErrUnsupported", func(*sdk.Stream) error { return sdk.ErrUnsupported },
			[]string{"fail 1 400 operation not supported by this provider"}},
		{"wrapped ErrUnsupported", func(*sdk.Stream) error { return fmt.Errorf("tools: %w", sdk.ErrUnsupported) },
			[]string{"fail 1 400 tools: operation not supported by this provider"}},
		{"HTTPError", func(*sdk.Stream) error { return &sdk.HTTPError{Status: 422, Message: "input must be a string"} },
			[]string{"fail 1 422 input must be a string"}},
		{"wrapped HTTPError keeps its status and message", func(*sdk.Stream) error {
			return fmt.Errorf("translate: %w", &sdk.HTTPError{Status: 413, Message: "too big"})
		}, []string{"fail 1 413 too big"}},
		{"StatusError TIMEOUT", func(*sdk.Stream) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusTimeout} },
			[]string{"fail 1 504 http_send: timeout"}},
		{"wrapped StatusError TIMEOUT", func(*sdk.Stream) error {
			return fmt.Errorf("upstream: %w", &sdk.StatusError{Op: "http_read", Status: abi.StatusTimeout})
		}, []string{"fail 1 504 http_read: timeout"}},
		{"StatusError INVALID", func(*sdk.Stream) error { return &sdk.StatusError{Op: "emit", Status: abi.StatusInvalid} },
			[]string{"fail 1 500 emit: invalid argument"}},
		{"StatusError DENIED", func(*sdk.Stream) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusDenied} },
			[]string{"fail 1 502 http_send: destination denied"}},
		{"StatusError UNREACHABLE", func(*sdk.Stream) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusUnreachable} },
			[]string{"fail 1 502 http_send: upstream unreachable"}},
		{"StatusError LIMIT", func(*sdk.Stream) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusLimit} },
			[]string{"fail 1 502 http_send: limit reached"}},
		{"StatusError IO", func(*sdk.Stream) error { return &sdk.StatusError{Op: "http_read", Status: abi.StatusIO} },
			[]string{"fail 1 502 http_read: upstream i/o error"}},
		{"ErrClientGone fails nothing", func(*sdk.Stream) error { return sdk.ErrClientGone }, nil},
		{"wrapped ErrClientGone fails nothing", func(*sdk.Stream) error { return fmt.Errorf("forward: %w", sdk.ErrClientGone) }, nil},
		{"ErrEnded fails nothing", func(*sdk.Stream) error { return sdk.ErrEnded }, nil},
		{"wrapped ErrEnded fails nothing", func(*sdk.Stream) error { return fmt.Errorf("late: %w", sdk.ErrEnded) }, nil},
		{"plain error", func(*sdk.Stream) error { return errors.New("unexpected upstream JSON") },
			[]string{"fail 1 502 unexpected upstream JSON"}},
		{"error after the body is not reported", func(s *sdk.Stream) error {
			_ = s.EmitBody([]byte(`{"a":1}`))
			return errors.New("cleanup failed")
		}, []string{`emit 1 body {"a":1}`}},
		{"error after Fail is not reported twice", func(s *sdk.Stream) error {
			_ = s.Fail(503, []byte(`{"error":{"message":"overloaded"}}`))
			return errors.New("upstream failed")
		}, []string{`fail 1 503 {"error":{"message":"overloaded"}}`}},
		{"chunks and usage do not end the stream", func(s *sdk.Stream) error {
			_ = s.EmitChunk([]byte(`{"n":1}`))
			_ = s.EmitUsage([]byte(`{"prompt_tokens":1}`))
			return &sdk.HTTPError{Status: 502, Message: "stream cut"}
		}, []string{`emit 1 chunk {"n":1}`, `emit 1 usage {"prompt_tokens":1}`, "fail 1 502 stream cut"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost()
			g := sdk.NewGuest(h, each(tt.fn))
			if r := g.OnStart(1, int32(abi.OpChatStream)); r != 0 {
				t.Fatalf("OnStart = %d", r)
			}
			checkCalls(t, h.take(), tt.want)
		})
	}

	t.Run("the same mapping for errors returned from a Handler", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, sendWith(sdk.Handler{Body: func(*sdk.Stream, *sdk.Response, []byte) error {
			return &sdk.StatusError{Op: "json_tape", Status: abi.StatusTimeout}
		}}))
		g.OnStart(1, int32(abi.OpChat))
		h.respond(g, 1, 101, 200, `{}`)
		calls := h.take()
		if last := calls[len(calls)-1]; last != "fail 1 504 json_tape: timeout" {
			t.Fatalf("calls = %q", calls)
		}
	})
}

// stringer is a panic value that is neither an error nor a string.
type stringer struct{}

func (stringer) String() string { return "a stringer" }

func TestPanicRecovery(t *testing.T) {
	// Each case starts stream 1 with a plugin that panics in the named
	// place, driven by drive; then stream 2 on the same guest must still
	// be served.
	boom := func(*sdk.Stream) error { panic("boom") }
	tests := []struct {
		name  string
		start func(s *sdk.Stream) error // the plugin, for stream 1
		drive func(h *fakeHost, g *sdk.Guest)
		want  string // the fail's body
	}{
		{
			name:  "in OnStart",
			start: boom,
			want:  "plugin panic: boom",
		},
		{
			name: "a runtime error in OnStart",
			start: func(*sdk.Stream) error {
				var m map[string]int
				m["x"]++
				return nil
			},
			want: "plugin panic: assignment to entry in nil map",
		},
		{
			name:  "an error value",
			start: func(*sdk.Stream) error { panic(errors.New("broken")) },
			want:  "plugin panic: broken",
		},
		{
			name:  "a Stringer",
			start: func(*sdk.Stream) error { panic(stringer{}) },
			want:  "plugin panic: a stringer",
		},
		{
			name:  "another value",
			start: func(*sdk.Stream) error { panic(42) },
			want:  "plugin panic: a value that is not an error",
		},
		{
			name:  "in Head",
			start: sendWith(sdk.Handler{Head: func(*sdk.Stream, *sdk.Response) error { panic("boom") }}),
			drive: func(h *fakeHost, g *sdk.Guest) { g.OnHTTPHead(1, 101, 200) },
			want:  "plugin panic: boom",
		},
		{
			name:  "in Event",
			start: sendWith(sdk.Handler{Event: func(*sdk.Stream, []byte) error { panic("boom") }}),
			drive: func(h *fakeHost, g *sdk.Guest) { h.respond(g, 1, 101, 200, `{"a":1}`) },
			want:  "plugin panic: boom",
		},
		{
			name:  "in Body",
			start: sendWith(sdk.Handler{Body: func(*sdk.Stream, *sdk.Response, []byte) error { panic("boom") }}),
			drive: func(h *fakeHost, g *sdk.Guest) { h.respond(g, 1, 101, 200, `{"a":1}`) },
			want:  "plugin panic: boom",
		},
		{
			name:  "in End after the body",
			start: sendWith(sdk.Handler{Body: func(*sdk.Stream, *sdk.Response, []byte) error { return nil }, End: boom}),
			drive: func(h *fakeHost, g *sdk.Guest) { h.respond(g, 1, 101, 200, `{"a":1}`) },
			want:  "plugin panic: boom",
		},
		{
			name:  "in End at [DONE]",
			start: sendWith(sdk.Handler{Event: func(*sdk.Stream, []byte) error { return nil }, End: boom}),
			drive: func(h *fakeHost, g *sdk.Guest) { h.respond(g, 1, 101, 200, `{"a":1}`, "[DONE]") },
			want:  "plugin panic: boom",
		},
		{
			name:  "in Error",
			start: sendWith(sdk.Handler{Error: func(*sdk.Stream, *sdk.Response, []byte) error { panic("boom") }}),
			drive: func(h *fakeHost, g *sdk.Guest) { h.respond(g, 1, 101, 500, `oops`) },
			want:  "plugin panic: boom",
		},
		{
			name:  "in a timer callback",
			start: func(s *sdk.Stream) error { return s.After(time.Millisecond, boom) },
			drive: func(h *fakeHost, g *sdk.Guest) { g.OnTimer(1) },
			want:  "plugin panic: boom",
		},
		{
			name: "in the images' callback",
			start: func(s *sdk.Stream) error {
				return s.FetchImages([]string{"https://img.test/a.png"}, func(*sdk.Stream, *sdk.Images) error { panic("boom") })
			},
			drive: func(h *fakeHost, g *sdk.Guest) { h.imageCall(g, 1, 101, "image/png\nAA==") },
			want:  "plugin panic: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost()
			g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
				if s.ID() == 1 {
					return tt.start(s)
				}
				return s.EmitBody([]byte(`{"second":true}`))
			}))
			if r := g.OnStart(1, int32(abi.OpChat)); r != 0 {
				t.Fatalf("OnStart = %d, want 0", r)
			}
			if tt.drive != nil {
				tt.drive(h, g)
			}
			var fails []string
			for _, c := range h.take() {
				if strings.HasPrefix(c, "fail ") {
					fails = append(fails, c)
				}
			}
			if want := "fail 1 502 " + tt.want; len(fails) != 1 || fails[0] != want {
				t.Fatalf("fails = %q, want [%q]", fails, want)
			}
			if len(h.logs) != 1 || h.levels[0] != abi.LogError ||
				!strings.HasPrefix(h.logs[0], tt.want+"\n") || !strings.Contains(h.logs[0], "goroutine ") {
				t.Errorf("logs = %q (levels %v), want the panic with a stack at error level", h.logs, h.levels)
			}

			// The instance still serves.
			if r := g.OnStart(2, int32(abi.OpChat)); r != 0 {
				t.Fatalf("second OnStart = %d, want 0", r)
			}
			checkCalls(t, h.take(), []string{`emit 2 body {"second":true}`})
		})
	}

	t.Run("after the stream ended it is only logged", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			_ = s.EmitBody([]byte(`{}`))
			panic("late")
		}))
		if r := g.OnStart(1, int32(abi.OpChat)); r != 0 {
			t.Fatalf("OnStart = %d", r)
		}
		checkCalls(t, h.take(), []string{"emit 1 body {}"})
		if len(h.logs) != 1 || !strings.HasPrefix(h.logs[0], "plugin panic: late") {
			t.Fatalf("logs = %q", h.logs)
		}
	})

	t.Run("after chunks", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			_ = s.EmitChunk([]byte(`{"n":1}`))
			panic("mid-stream")
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		checkCalls(t, h.take(), []string{`emit 1 chunk {"n":1}`, "fail 1 502 plugin panic: mid-stream"})
	})

	t.Run("a panic in one stream leaves another's state alone", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test/"}, sdk.Handler{
				Event: func(s *sdk.Stream, data []byte) error {
					if string(data) == "panic" {
						panic("boom")
					}
					return s.EmitChunk(data)
				},
			})
		}))
		g.OnStart(1, int32(abi.OpChatStream)) // handle 101
		g.OnStart(2, int32(abi.OpChatStream)) // handle 102
		g.OnHTTPHead(1, 101, 200)
		g.OnHTTPHead(2, 102, 200)
		h.take()
		h.dataCall(g, 1, 101, "panic")
		h.dataCall(g, 2, 102, "a")
		h.dataCall(g, 2, 102, "[DONE]")
		checkCalls(t, h.take(), []string{
			"fail 1 502 plugin panic: boom",
			"emit 2 chunk a",
			"http_close 102",
			"finish 2",
		})
	})
}

// TestHandlerDelivery: how the SDK reads an upstream answer, given the
// Handler and the status.
func TestHandlerDelivery(t *testing.T) {
	type log = []string
	// rec returns a Handler whose functions append to *got; the functions
	// named in with are set.
	rec := func(got *log, with string) sdk.Handler {
		var h sdk.Handler
		for _, f := range strings.Fields(with) {
			switch f {
			case "relay":
				h.Relay = true
			case "head":
				h.Head = func(s *sdk.Stream, r *sdk.Response) error {
					*got = append(*got, fmt.Sprintf("Head %d", r.StatusCode))
					return nil
				}
			case "event":
				h.Event = func(s *sdk.Stream, data []byte) error {
					*got = append(*got, "Event "+string(data))
					return nil
				}
			case "body":
				h.Body = func(s *sdk.Stream, r *sdk.Response, body []byte) error {
					*got = append(*got, fmt.Sprintf("Body %d %s", r.StatusCode, body))
					return nil
				}
			case "end":
				h.End = func(s *sdk.Stream) error {
					*got = append(*got, "End")
					return nil
				}
			case "error":
				h.Error = func(s *sdk.Stream, r *sdk.Response, body []byte) error {
					*got = append(*got, fmt.Sprintf("Error %d %s", r.StatusCode, body))
					return s.Fail(r.StatusCode, []byte("translated"))
				}
			}
		}
		return h
	}
	const send = "http_send 1 POST https://upstream.test/v1/x -> 101"
	tests := []struct {
		name      string
		op        abi.Op
		with      string
		status    int32
		data      []string
		endStatus int32
		wantFns   log
		wantCalls log
	}{
		{
			name: "2xx relay", op: abi.OpChatStream, with: "relay", status: 200,
			wantCalls: log{send, "http_body 101 relay", "finish 1"},
		},
		{
			name: "relay wins over Event", op: abi.OpChatStream, with: "relay event head end", status: 200,
			wantFns:   log{"Head 200", "End"},
			wantCalls: log{send, "http_body 101 relay"},
		},
		{
			name: "relay for a non-streamed op: the host's body answers", op: abi.OpChat, with: "relay", status: 200,
			wantCalls: log{send, "http_body 101 relay"},
		},
		{
			name: "2xx events", op: abi.OpChatStream, with: "event end", status: 200,
			data:      []string{`{"a":1}`, `{"b":2}`},
			wantFns:   log{"Event {\"a\":1}", "Event {\"b\":2}", "End"},
			wantCalls: log{send, "http_body 101 events"},
		},
		{
			name: "[DONE] closes the handle and runs End", op: abi.OpChatStream, with: "event end", status: 200,
			data:      []string{`{"a":1}`, "[DONE]", `{"late":1}`},
			wantFns:   log{"Event {\"a\":1}", "End"},
			wantCalls: log{send, "http_body 101 events", "http_close 101"},
		},
		{
			name: "[DONE] without End finishes a chat_stream", op: abi.OpChatStream, with: "event", status: 200,
			data:      []string{`{"a":1}`, "[DONE]"},
			wantFns:   log{"Event {\"a\":1}"},
			wantCalls: log{send, "http_body 101 events", "http_close 101", "finish 1"},
		},
		{
			name: "[DONE] with a space is an event", op: abi.OpChatStream, with: "event end", status: 200,
			data:      []string{"[DONE] "},
			wantFns:   log{"Event [DONE] ", "End"},
			wantCalls: log{send, "http_body 101 events"},
		},
		{
			name: "2xx whole", op: abi.OpChat, with: "body end", status: 201,
			data:      []string{`{"id":"x"}`},
			wantFns:   log{`Body 201 {"id":"x"}`, "End"},
			wantCalls: log{send, "http_body 101 whole"},
		},
		{
			name: "2xx whole without Body", op: abi.OpChat, with: "end", status: 200,
			data:      []string{`{"id":"x"}`},
			wantFns:   log{"End"},
			wantCalls: log{send, "http_body 101 whole"},
		},
		{
			name: "Head runs first", op: abi.OpChat, with: "head body end", status: 204,
			data:      []string{""},
			wantFns:   log{"Head 204", "Body 204 ", "End"},
			wantCalls: log{send, "http_body 101 whole"},
		},
		{
			name: "without End a chat_stream finishes", op: abi.OpChatStream, with: "body", status: 200,
			data:      []string{"x"},
			wantFns:   log{"Body 200 x"},
			wantCalls: log{send, "http_body 101 whole", "finish 1"},
		},
		{
			name: "without End another op is left to Body", op: abi.OpEmbeddings, with: "body", status: 200,
			data:      []string{"x"},
			wantFns:   log{"Body 200 x"},
			wantCalls: log{send, "http_body 101 whole"},
		},
		{
			name: "non-2xx with Relay is read whole", op: abi.OpChatStream, with: "relay head end", status: 429,
			data:      []string{`{"error":{"message":"slow down"}}`},
			wantCalls: log{send, "http_body 101 whole", `fail 1 429 {"error":{"message":"slow down"}}`},
		},
		{
			name: "non-2xx with Event is read whole", op: abi.OpChatStream, with: "event body end", status: 503,
			data:      []string{"overloaded"},
			wantCalls: log{send, "http_body 101 whole", "fail 1 503 overloaded"},
		},
		{
			name: "non-2xx goes to Error, not Head, Body or End", op: abi.OpChat, with: "head body end error", status: 400,
			data:      []string{"bad"},
			wantFns:   log{"Error 400 bad"},
			wantCalls: log{send, "http_body 101 whole", "fail 1 400 translated"},
		},
		{
			name: "non-2xx empty body", op: abi.OpChat, with: "body", status: 500,
			data:      []string{""},
			wantCalls: log{send, "http_body 101 whole", "fail 1 500 upstream returned HTTP 500"},
		},
		{
			name: "1xx/3xx are not success", op: abi.OpChat, with: "body", status: 302,
			data:      []string{"moved"},
			wantCalls: log{send, "http_body 101 whole", "fail 1 302 moved"},
		},
		{
			name: "non-2xx whose body never came", op: abi.OpChat, with: "body error", status: 502,
			wantCalls: log{send, "http_body 101 whole", "fail 1 502 upstream returned HTTP 502"},
		},
		{
			name: "send failed before a head", op: abi.OpChat, with: "body end", status: -1,
			endStatus: int32(abi.StatusDenied),
			wantCalls: log{send, "fail 1 502 http_send: destination denied"},
		},
		{
			name: "send timed out before a head", op: abi.OpChatStream, with: "event end", status: -1,
			endStatus: int32(abi.StatusTimeout),
			wantCalls: log{send, "fail 1 504 http_send: timeout"},
		},
		{
			name: "unreachable", op: abi.OpChat, with: "body", status: -1,
			endStatus: int32(abi.StatusUnreachable),
			wantCalls: log{send, "fail 1 502 http_send: upstream unreachable"},
		},
		{
			name: "read failed after a head", op: abi.OpChatStream, with: "event end", status: 200,
			data:      []string{"a"},
			endStatus: int32(abi.StatusIO),
			wantFns:   log{"Event a"},
			wantCalls: log{send, "http_body 101 events", "fail 1 502 http_read: upstream i/o error"},
		},
		{
			name: "read timed out after a head", op: abi.OpChat, with: "body end", status: 200,
			endStatus: int32(abi.StatusTimeout),
			wantCalls: log{send, "http_body 101 whole", "fail 1 504 http_read: timeout"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got log
			h := newFakeHost()
			g := sdk.NewGuest(h, sendWith(rec(&got, tt.with)))
			g.OnStart(1, int32(tt.op))
			if tt.status >= 0 {
				g.OnHTTPHead(1, 101, tt.status)
			}
			for _, d := range tt.data {
				h.dataCall(g, 1, 101, d)
			}
			g.OnHTTPEnd(1, 101, tt.endStatus)
			if strings.Join(got, "|") != strings.Join(tt.wantFns, "|") {
				t.Errorf("handler calls\n got %q\nwant %q", got, tt.wantFns)
			}
			checkCalls(t, h.take(), tt.wantCalls)
			// Nothing more is delivered for a handle that ended.
			h.dataCall(g, 1, 101, "again")
			g.OnHTTPEnd(1, 101, 0)
			if len(got) != len(tt.wantFns) {
				t.Errorf("handler called after the end: %q", got[len(tt.wantFns):])
			}
			checkCalls(t, h.take(), nil)
		})
	}

	t.Run("error body cut at 64 KiB", func(t *testing.T) {
		for _, n := range []int{64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20} {
			h := newFakeHost()
			g := sdk.NewGuest(h, sendWith(sdk.Handler{}))
			g.OnStart(1, int32(abi.OpChat))
			g.OnHTTPHead(1, 101, 400)
			h.take()
			h.dataCall(g, 1, 101, strings.Repeat("e", n))
			calls := h.take()
			want := "fail 1 400 " + strings.Repeat("e", min(n, 64<<10))
			if len(calls) != 1 || calls[0] != want {
				t.Errorf("body of %d bytes: fail of %d bytes, want %d", n, len(calls[0])-len("fail 1 400 "), min(n, 64<<10))
			}
		}
	})

	t.Run("a large body arrives whole", func(t *testing.T) {
		body := strings.Repeat("0123456789", 30<<10) // larger than the reused buffer
		var got string
		h := newFakeHost()
		g := sdk.NewGuest(h, sendWith(sdk.Handler{Body: func(s *sdk.Stream, r *sdk.Response, b []byte) error {
			got = string(b)
			return s.EmitBody([]byte("ok"))
		}}))
		g.OnStart(1, int32(abi.OpChat))
		h.respond(g, 1, 101, 200, body)
		if got != body {
			t.Fatalf("Body got %d bytes, want %d", len(got), len(body))
		}
		// A small body after it still reads right.
		g.OnStart(2, int32(abi.OpChat))
		h.respond(g, 2, 102, 200, "small")
		if got != "small" {
			t.Fatalf("Body got %q, want small", got)
		}
	})

	t.Run("Head reads headers", func(t *testing.T) {
		long := strings.Repeat("v", 1000) // longer than the reused header buffer
		h := newFakeHost()
		h.headers[101] = map[string]string{"x-request-id": "req-1", "x-long": long}
		var id, l string
		var idOK, lOK, missingOK bool
		g := sdk.NewGuest(h, sendWith(sdk.Handler{
			Head: func(s *sdk.Stream, r *sdk.Response) error {
				id, idOK = r.Header("X-Request-Id")
				l, lOK = r.Header("x-long")
				_, missingOK = r.Header("x-missing")
				return nil
			},
			Body: func(s *sdk.Stream, r *sdk.Response, _ []byte) error {
				v, _ := r.Header("x-request-id") // still valid in Body
				return s.EmitBody([]byte(v))
			},
		}))
		g.OnStart(1, int32(abi.OpChat))
		h.respond(g, 1, 101, 200, "{}")
		if id != "req-1" || !idOK || l != long || !lOK || missingOK {
			t.Errorf("Header: %q %v, %d bytes %v, missing %v", id, idOK, len(l), lOK, missingOK)
		}
		checkCalls(t, h.take()[2:], []string{"emit 1 body req-1"})
	})

	t.Run("an error from Head fails the stream before http_body", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, sendWith(sdk.Handler{Head: func(*sdk.Stream, *sdk.Response) error {
			return &sdk.HTTPError{Status: 415, Message: "wrong content type"}
		}}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnHTTPHead(1, 101, 200)
		checkCalls(t, h.take()[1:], []string{"fail 1 415 wrong content type"})
	})

	t.Run("http_body refused", func(t *testing.T) {
		h := newFakeHost()
		h.bodyStatus = int32(abi.StatusInvalid)
		g := sdk.NewGuest(h, sendWith(sdk.Relay))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnHTTPHead(1, 101, 200)
		checkCalls(t, h.take()[1:], []string{"http_body 101 relay", "fail 1 500 http_body: invalid argument"})
	})

	t.Run("data_read failures", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			run  func(h *fakeHost, g *sdk.Guest)
			want string
		}{
			{"negative length", func(h *fakeHost, g *sdk.Guest) { g.OnHTTPData(1, 101, int32(abi.StatusIO)) },
				"fail 1 502 data_read: upstream i/o error"},
			{"data_read refused", func(h *fakeHost, g *sdk.Guest) {
				h.dataStatus = int32(abi.StatusInvalid)
				h.dataCall(g, 1, 101, "x")
			}, "fail 1 500 data_read: invalid argument"},
			{"more data than announced", func(h *fakeHost, g *sdk.Guest) {
				h.data = make([]byte, 8<<20) // more than any buffer the SDK has grown
				g.OnHTTPData(1, 101, 1)
			}, "fail 1 500 data_read: invalid argument"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := newFakeHost()
				g := sdk.NewGuest(h, sendWith(sdk.Handler{Event: func(*sdk.Stream, []byte) error { return nil }}))
				g.OnStart(1, int32(abi.OpChatStream))
				g.OnHTTPHead(1, 101, 200)
				h.take()
				tc.run(h, g)
				checkCalls(t, h.take(), []string{tc.want})
			})
		}
	})

	t.Run("unknown handles and other streams' handles are ignored", func(t *testing.T) {
		var got log
		h := newFakeHost()
		g := sdk.NewGuest(h, sendWith(rec(&got, "head event end")))
		g.OnStart(1, int32(abi.OpChatStream)) // handle 101
		g.OnStart(2, int32(abi.OpChatStream)) // handle 102
		h.take()
		for _, call := range []func(){
			func() { g.OnHTTPHead(1, 999, 200) },
			func() { h.dataCall(g, 1, 999, "x") },
			func() { g.OnHTTPEnd(1, 999, 0) },
			func() { g.OnHTTPHead(2, 101, 200) },
			func() { h.dataCall(g, 2, 101, "x") },
			func() { g.OnHTTPEnd(2, 101, 0) },
			func() { g.OnHTTPEnd(1, 102, int32(abi.StatusIO)) },
		} {
			call()
		}
		if len(got) != 0 {
			t.Fatalf("handler called: %q", got)
		}
		checkCalls(t, h.take(), nil)
		// The right pairs still work.
		h.respond(g, 1, 101, 200, "one")
		h.respond(g, 2, 102, 200, "two")
		if want := (log{"Head 200", "Event one", "End", "Head 200", "Event two", "End"}); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("handler calls %q, want %q", got, want)
		}
	})

	t.Run("after on_done the stream's handles are forgotten", func(t *testing.T) {
		var got log
		h := newFakeHost()
		g := sdk.NewGuest(h, sendWith(rec(&got, "head event end")))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnHTTPHead(1, 101, 200)
		h.take()
		got = nil
		g.OnDone(1, int32(abi.StatusClientGone))
		h.dataCall(g, 1, 101, "x")
		g.OnHTTPEnd(1, 101, 0)
		g.OnHTTPHead(1, 101, 200)
		if len(got) != 0 {
			t.Fatalf("handler called after on_done: %q", got)
		}
		checkCalls(t, h.take(), nil)
	})

	t.Run("several requests on one stream", func(t *testing.T) {
		h := newFakeHost()
		var bodies []string
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			for _, path := range []string{"/a", "/b"} {
				err := s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test" + path}, sdk.Handler{
					Body: func(s *sdk.Stream, r *sdk.Response, b []byte) error {
						bodies = append(bodies, string(b))
						if len(bodies) == 2 {
							return s.EmitBody([]byte(bodies[0] + "+" + bodies[1]))
						}
						return nil
					},
				})
				if err != nil {
					return err
				}
			}
			return nil
		}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnHTTPHead(1, 102, 200)
		g.OnHTTPHead(1, 101, 200)
		h.dataCall(g, 1, 102, "B")
		g.OnHTTPEnd(1, 102, 0)
		h.dataCall(g, 1, 101, "A")
		g.OnHTTPEnd(1, 101, 0)
		checkCalls(t, h.take(), []string{
			"http_send 1 GET https://upstream.test/a -> 101",
			"http_send 1 GET https://upstream.test/b -> 102",
			"http_body 102 whole",
			"http_body 101 whole",
			"emit 1 body B+A",
		})
	})
}

// counter is a plugin with state per stream: each stream counts its own
// events and says so in each chunk.
type counter struct{ sdk.Unimplemented }

type tally struct {
	n    int
	name string
}

func (counter) ChatStream(s *sdk.Stream) error {
	st := &tally{name: string(s.Request())}
	return s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test/" + st.name}, sdk.Handler{
		Event: func(s *sdk.Stream, data []byte) error {
			st.n++
			return s.EmitChunk([]byte(fmt.Sprintf("%s#%d:%s", st.name, st.n, data)))
		},
		End: func(s *sdk.Stream) error {
			if err := s.EmitUsage([]byte(fmt.Sprintf("%s=%d", st.name, st.n))); err != nil {
				return err
			}
			return s.Finish()
		},
	})
}

func TestInterleavedStreams(t *testing.T) {
	h := newFakeHost()
	h.requests[1] = []byte("one")
	h.requests[2] = []byte("two")
	g := sdk.NewGuest(h, counter{})
	g.OnStart(1, int32(abi.OpChatStream)) // handle 101
	g.OnStart(2, int32(abi.OpChatStream)) // handle 102
	g.OnHTTPHead(2, 102, 200)
	g.OnHTTPHead(1, 101, 200)
	h.dataCall(g, 1, 101, "a")
	h.dataCall(g, 2, 102, "x")
	h.dataCall(g, 2, 102, "y")
	h.dataCall(g, 1, 101, "b")
	h.dataCall(g, 2, 102, "z")
	g.OnHTTPEnd(2, 102, 0)
	g.OnDone(2, 0)
	h.dataCall(g, 1, 101, "c")
	h.dataCall(g, 1, 101, "[DONE]")
	g.OnDone(1, 0)
	checkCalls(t, h.take(), []string{
		"http_send 1 GET https://upstream.test/one -> 101",
		"http_send 2 GET https://upstream.test/two -> 102",
		"http_body 102 events",
		"http_body 101 events",
		"emit 1 chunk one#1:a",
		"emit 2 chunk two#1:x",
		"emit 2 chunk two#2:y",
		"emit 1 chunk one#2:b",
		"emit 2 chunk two#3:z",
		"emit 2 usage two=3",
		"finish 2",
		"emit 1 chunk one#3:c",
		"http_close 101",
		"emit 1 usage one=3",
		"finish 1",
	})
	if g.Streams() != 0 {
		t.Fatalf("Streams() = %d after both ended, want 0", g.Streams())
	}
}

type messagesPlugin struct {
	sdk.Unimplemented
	ops []abi.Op
}

func (m *messagesPlugin) Messages(s *sdk.Stream) error {
	m.ops = append(m.ops, s.Op())
	return nil
}

// TestGuestDispatchMessages: ops 5 and 6 reach a MessagesPlugin's
// Messages, with Op telling which.
func TestGuestDispatchMessages(t *testing.T) {
	h := newFakeHost()
	p := &messagesPlugin{}
	g := sdk.NewGuest(h, p)
	g.OnStart(1, int32(abi.OpMessages))
	g.OnStart(2, int32(abi.OpMessagesStream))
	if len(p.ops) != 2 || p.ops[0] != abi.OpMessages || p.ops[1] != abi.OpMessagesStream {
		t.Fatalf("ops %v", p.ops)
	}
}
