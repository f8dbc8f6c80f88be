package sdk_test

// The tests in this file do not call t.Parallel: the SDK keeps per-instance
// buffers in package variables (a wasm instance runs one call at a time), so
// two plugin calls in one process must not overlap.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
	"github.com/llm-proxy/llm-proxy/sdk/sse"
)

// handler is a Plugin that runs the same function for every operation.
type handler func(c *sdk.Call) error

func (h handler) Chat(c *sdk.Call) error       { return h(c) }
func (h handler) ChatStream(c *sdk.Call) error { return h(c) }
func (h handler) Embeddings(c *sdk.Call) error { return h(c) }
func (h handler) Models(c *sdk.Call) error     { return h(c) }

// unsupported implements nothing.
type unsupported struct{ sdk.Unimplemented }

func emitStrings(es []plugintest.Emit) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.String())
	}
	return out
}

// scriptHost is an sdk.Host whose upstream is a script: HTTPRead hands out
// the reads one at a time, exactly as split, then endStatus (0 for EOF).
type scriptHost struct {
	request    []byte
	config     []byte
	configErr  int32
	reads      [][]byte
	endStatus  int32
	emitStatus int32

	parser  sse.Parser
	pending []byte

	heads  []string
	closed []int32
	emits  []string
	logs   []string
}

func copyOut(buf, src []byte) int32 {
	if len(src) <= cap(buf) {
		copy(buf[:len(src)], src)
	}
	return int32(len(src))
}

func (h *scriptHost) RequestRead(buf []byte) int32 { return copyOut(buf, h.request) }
func (h *scriptHost) ConfigRead(buf []byte) int32 {
	if h.configErr != 0 {
		return h.configErr
	}
	return copyOut(buf, h.config)
}
func (h *scriptHost) HTTPSend(head, body []byte) int32 {
	h.heads = append(h.heads, string(head))
	return int32(len(h.heads))
}
func (h *scriptHost) HTTPStatus(int32) int32 { return 200 }
func (h *scriptHost) FetchImage(url, buf []byte) int32 {
	if string(url) != "https://example.com/cat.png" {
		return int32(abi.StatusDenied)
	}
	return copyOut(buf, []byte("image/png\niVBORw0KGgo="))
}
func (h *scriptHost) JSONTape(data []byte, tape []uint32) int32 {
	t, err := rawjson.AppendTape(nil, data)
	if err != nil {
		return int32(abi.StatusMalformed)
	}
	if len(t) <= cap(tape) {
		copy(tape[:len(t)], t)
	}
	return int32(len(t) / rawjson.EntryWords)
}
func (h *scriptHost) HTTPHeader(int32, []byte, []byte) int32 {
	return int32(abi.StatusNotFound)
}
func (h *scriptHost) HTTPRead(_ int32, buf []byte) int32 {
	if len(h.reads) == 0 {
		return h.endStatus
	}
	n := copy(buf[:cap(buf)], h.reads[0])
	if n < len(h.reads[0]) {
		h.reads[0] = h.reads[0][n:]
	} else {
		h.reads = h.reads[1:]
	}
	return int32(n)
}

// HTTPReadEvent parses the scripted reads the way the host does, so the
// tests of ForwardSSE still see events split across reads.
func (h *scriptHost) HTTPReadEvent(handle int32, buf []byte) int32 {
	if h.pending != nil {
		return h.deliver(buf, h.pending)
	}
	for {
		if ev, ok := h.parser.Next(); ok {
			return h.deliver(buf, ev.Data)
		}
		if len(h.reads) == 0 {
			if h.endStatus != 0 {
				return h.endStatus
			}
			if ev, ok := h.parser.Flush(); ok {
				return h.deliver(buf, ev.Data)
			}
			return 0
		}
		h.parser.Feed(h.reads[0])
		h.reads = h.reads[1:]
	}
}

func (h *scriptHost) deliver(buf, data []byte) int32 {
	if len(data) > cap(buf) {
		h.pending = append([]byte{}, data...)
		return int32(len(data))
	}
	copy(buf[:len(data)], data)
	h.pending = nil
	return int32(len(data))
}

func (h *scriptHost) HTTPClose(handle int32) int32 {
	h.closed = append(h.closed, handle)
	return 0
}
func (h *scriptHost) Emit(kind abi.Kind, data []byte) int32 {
	if h.emitStatus != 0 {
		return h.emitStatus
	}
	name := map[abi.Kind]string{abi.KindChunk: "chunk", abi.KindBody: "body", abi.KindUsage: "usage"}[kind]
	h.emits = append(h.emits, name+" "+string(data))
	return 0
}
func (h *scriptHost) Fail(status int32, body []byte) int32 {
	h.emits = append(h.emits, fmt.Sprintf("fail %d %s", status, body))
	return 0
}
func (h *scriptHost) Log(_ int32, msg []byte) int32 {
	h.logs = append(h.logs, string(msg))
	return 0
}

var _ sdk.Host = (*scriptHost)(nil)

// ---------------------------------------------------------------------------
// Serve: panics and errors

func TestServeRecoversPanic(t *testing.T) {
	tests := []struct {
		name      string
		op        abi.Op
		plugin    handler
		wantEmits []string // the fail, if any, is checked by prefix
		wantFail  string   // substring of the fail body; "" means no fail
	}{
		{
			name:     "panic with a string",
			op:       abi.OpChat,
			plugin:   func(c *sdk.Call) error { panic("kaboom") },
			wantFail: "plugin panic: kaboom",
		},
		{
			name: "panic with an error",
			op:   abi.OpEmbeddings,
			plugin: func(c *sdk.Call) error {
				var m map[string]int
				m["x"]++ // a real runtime panic
				return nil
			},
			wantFail: "assignment to entry in nil map",
		},
		{
			name: "panic during a stream after chunks",
			op:   abi.OpChatStream,
			plugin: func(c *sdk.Call) error {
				if err := c.EmitChunk([]byte(`{"n":1}`)); err != nil {
					return err
				}
				panic(fmt.Errorf("stream broke"))
			},
			wantEmits: []string{`chunk {"n":1}`},
			wantFail:  "plugin panic: stream broke",
		},
		{
			name: "panic after the body was emitted",
			op:   abi.OpChat,
			plugin: func(c *sdk.Call) error {
				_ = c.EmitBody([]byte(`{"ok":true}`))
				panic("late")
			},
			wantEmits: []string{`body {"ok":true}`},
		},
		{
			name: "panic after Fail",
			op:   abi.OpModels,
			plugin: func(c *sdk.Call) error {
				_ = c.Fail(429, []byte("slow down"))
				panic("late")
			},
			wantEmits: []string{"fail 429 slow down"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(tt.plugin, tt.op, []byte(`{}`), plugintest.Options{})
			if res.Ret != 1 {
				t.Errorf("Ret = %d, want 1", res.Ret)
			}
			got := emitStrings(res.Emits)
			n := len(tt.wantEmits)
			if len(got) < n || !slices.Equal(got[:n], tt.wantEmits) {
				t.Fatalf("emits = %q, want them to start with %q", got, tt.wantEmits)
			}
			rest := res.Emits[n:]
			if tt.wantFail == "" {
				if len(rest) != 0 {
					t.Fatalf("unexpected emits after the body: %q", emitStrings(rest))
				}
			} else {
				if len(rest) != 1 || rest[0].Kind != "fail" || rest[0].Status != 502 || !strings.Contains(string(rest[0].Data), tt.wantFail) {
					t.Fatalf("emits after %q = %q, want one fail 502 mentioning %q", tt.wantEmits, emitStrings(rest), tt.wantFail)
				}
			}
			// The panic is logged with a stack trace.
			logged := strings.Join(res.Logs, "\n")
			if !strings.Contains(logged, "plugin panic") || !strings.Contains(logged, "goroutine") {
				t.Errorf("logs do not hold the panic and its stack: %q", res.Logs)
			}
		})
	}
}

func TestServeErrorMapping(t *testing.T) {
	tests := []struct {
		name      string
		op        abi.Op
		plugin    sdk.Plugin
		wantEmits []string
	}{
		{name: "nil error, nothing emitted", op: abi.OpChat, plugin: handler(func(*sdk.Call) error { return nil }), wantEmits: []string{}},
		{
			name: "ErrUnsupported", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return sdk.ErrUnsupported }),
			wantEmits: []string{"fail 400 operation not supported by this provider"},
		},
		{
			name: "wrapped ErrUnsupported", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return fmt.Errorf("tools: %w", sdk.ErrUnsupported) }),
			wantEmits: []string{"fail 400 tools: operation not supported by this provider"},
		},
		{
			name: "HTTPError", op: abi.OpEmbeddings,
			plugin:    handler(func(*sdk.Call) error { return &sdk.HTTPError{Status: 422, Message: "input must be a string"} }),
			wantEmits: []string{"fail 422 input must be a string"},
		},
		{
			name: "wrapped HTTPError", op: abi.OpChat,
			plugin: handler(func(*sdk.Call) error {
				return fmt.Errorf("translate: %w", &sdk.HTTPError{Status: 413, Message: "too big"})
			}),
			wantEmits: []string{"fail 413 too big"},
		},
		{
			name: "StatusError timeout", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return &sdk.StatusError{Op: "http_read", Status: abi.StatusTimeout} }),
			wantEmits: []string{"fail 504 http_read: timeout"},
		},
		{
			name: "wrapped StatusError timeout", op: abi.OpChatStream,
			plugin: handler(func(*sdk.Call) error {
				return fmt.Errorf("upstream: %w", &sdk.StatusError{Op: "http_send", Status: abi.StatusTimeout})
			}),
			wantEmits: []string{"fail 504 http_send: timeout"},
		},
		{
			name: "StatusError denied", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusDenied} }),
			wantEmits: []string{"fail 502 http_send: destination denied"},
		},
		{
			name: "StatusError unreachable", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return &sdk.StatusError{Op: "http_send", Status: abi.StatusUnreachable} }),
			wantEmits: []string{"fail 502 http_send: upstream unreachable"},
		},
		{
			name: "StatusError invalid", op: abi.OpChat,
			plugin:    handler(func(*sdk.Call) error { return &sdk.StatusError{Op: "emit", Status: abi.StatusInvalid} }),
			wantEmits: []string{"fail 500 emit: invalid argument"},
		},
		{
			name: "other error", op: abi.OpModels,
			plugin:    handler(func(*sdk.Call) error { return errors.New("unexpected upstream JSON") }),
			wantEmits: []string{"fail 502 unexpected upstream JSON"},
		},
		{
			name: "ErrClientGone produces no fail", op: abi.OpChatStream,
			plugin:    handler(func(*sdk.Call) error { return sdk.ErrClientGone }),
			wantEmits: []string{},
		},
		{
			name: "wrapped ErrClientGone produces no fail", op: abi.OpChatStream,
			plugin: handler(func(c *sdk.Call) error {
				_ = c.EmitChunk([]byte(`{}`))
				return fmt.Errorf("forward: %w", sdk.ErrClientGone)
			}),
			wantEmits: []string{"chunk {}"},
		},
		{
			name: "error after the body is not reported", op: abi.OpChat,
			plugin: handler(func(c *sdk.Call) error {
				_ = c.EmitBody([]byte(`{"a":1}`))
				return errors.New("cleanup failed")
			}),
			wantEmits: []string{`body {"a":1}`},
		},
		{
			name: "error after Fail is not reported twice", op: abi.OpChat,
			plugin: handler(func(c *sdk.Call) error {
				_ = c.Fail(503, []byte(`{"error":{"message":"overloaded"}}`))
				return errors.New("upstream failed")
			}),
			wantEmits: []string{`fail 503 {"error":{"message":"overloaded"}}`},
		},
		{
			name: "usage and chunks do not finish the call", op: abi.OpChatStream,
			plugin: handler(func(c *sdk.Call) error {
				_ = c.EmitChunk([]byte(`{"n":1}`))
				_ = c.EmitUsage([]byte(`{"prompt_tokens":1}`))
				return &sdk.HTTPError{Status: 502, Message: "stream cut"}
			}),
			wantEmits: []string{`chunk {"n":1}`, `usage {"prompt_tokens":1}`, "fail 502 stream cut"},
		},
		{
			name: "unknown operation", op: abi.Op(42),
			plugin:    handler(func(*sdk.Call) error { panic("must not be called") }),
			wantEmits: []string{"fail 400 unknown operation"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(tt.plugin, tt.op, []byte(`{}`), plugintest.Options{})
			if res.Ret != 0 {
				t.Errorf("Ret = %d, want 0 (logs %q)", res.Ret, res.Logs)
			}
			if got := emitStrings(res.Emits); !reflect.DeepEqual(got, tt.wantEmits) {
				t.Fatalf("emits\n got %q\nwant %q", got, tt.wantEmits)
			}
		})
	}
}

func TestUnimplementedAnswersEveryOp(t *testing.T) {
	for _, op := range []abi.Op{abi.OpChat, abi.OpChatStream, abi.OpEmbeddings, abi.OpModels} {
		t.Run(op.String(), func(t *testing.T) {
			res := plugintest.Run(unsupported{}, op, nil, plugintest.Options{})
			want := []string{"fail 400 " + sdk.ErrUnsupported.Error()}
			if got := emitStrings(res.Emits); res.Ret != 0 || !reflect.DeepEqual(got, want) {
				t.Fatalf("Run = ret %d, %q; want ret 0, %q", res.Ret, got, want)
			}
		})
	}
}

func TestServeDispatchesOps(t *testing.T) {
	for _, op := range []abi.Op{abi.OpChat, abi.OpChatStream, abi.OpEmbeddings, abi.OpModels} {
		t.Run(op.String(), func(t *testing.T) {
			var seen abi.Op
			res := plugintest.Run(handler(func(c *sdk.Call) error {
				seen = c.Op()
				return c.EmitBody([]byte(`"` + c.Op().String() + `"`))
			}), op, nil, plugintest.Options{})
			if seen != op {
				t.Errorf("Call.Op() = %v, want %v", seen, op)
			}
			if got := emitStrings(res.Emits); !reflect.DeepEqual(got, []string{`body "` + op.String() + `"`}) {
				t.Errorf("emits = %q", got)
			}
		})
	}
}

func TestServeClosesHandles(t *testing.T) {
	h := &scriptHost{reads: [][]byte{[]byte("x")}}
	ret := sdk.Serve(h, handler(func(c *sdk.Call) error {
		a, err := c.Send("GET", "https://h/a", nil, nil)
		if err != nil {
			return err
		}
		if _, err := c.Send("GET", "https://h/b", nil, nil); err != nil {
			return err
		}
		if _, err := c.Send("GET", "https://h/c", nil, nil); err != nil {
			return err
		}
		a.Close()
		a.Close() // a second Close is a no-op
		return nil
	}), abi.OpChat)
	if ret != 0 {
		t.Fatalf("Serve = %d", ret)
	}
	// Handle 1 closed by the plugin, 2 and 3 by Serve, each exactly once.
	if want := []int32{1, 2, 3}; !reflect.DeepEqual(h.closed, want) {
		t.Fatalf("closed handles = %v, want %v", h.closed, want)
	}
}

// ---------------------------------------------------------------------------
// Upstream requests through plugintest

// recordingUpstream starts an httptest server on 127.0.0.1:0 that records
// each request and answers with respond.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, URI string
	Header      http.Header
	Body        []byte
}

func startRecording(t *testing.T, respond http.HandlerFunc) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, recorded{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

func TestSendThroughPlugintest(t *testing.T) {
	longValue := strings.Repeat("v", 1000)
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-123")
		w.Header().Set("X-Long", longValue)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion"}`)
	})

	tests := []struct {
		name      string
		auth      abi.Auth
		path      string
		wantURI   string
		wantAuthz string
	}{
		{
			name:      "header auth replaces the plugin's value",
			auth:      abi.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			path:      "/chat/completions",
			wantURI:   "/v1/chat/completions",
			wantAuthz: "Bearer test-key",
		},
		{
			name:      "query auth",
			auth:      abi.Auth{Type: "query", Name: "key"},
			path:      "/chat/completions?alt=sse",
			wantURI:   "/v1/chat/completions?alt=sse&key=test-key",
			wantAuthz: "Bearer from-plugin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.mu.Lock()
			up.reqs = nil
			up.mu.Unlock()
			request := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
			var (
				status          int
				reqID, long     string
				reqOK, longOK   bool
				missingOK       bool
				body            []byte
				cfgBase         string
				requestReceived []byte
			)
			res := plugintest.Run(handler(func(c *sdk.Call) error {
				cfg, err := c.Config()
				if err != nil {
					return err
				}
				cfgBase = cfg.BaseURL
				requestReceived = bytes.Clone(c.Request())
				resp, err := c.Send("POST", cfg.BaseURL+tt.path, [][2]string{
					{"Content-Type", "application/json"},
					{"Authorization", "Bearer from-plugin"},
					{"X-Trace", "t-1"},
				}, c.Request())
				if err != nil {
					return err
				}
				status = resp.StatusCode
				reqID, reqOK = resp.Header("x-request-id")
				long, longOK = resp.Header("X-Long")
				_, missingOK = resp.Header("X-Missing")
				if body, err = resp.ReadAll(1 << 20); err != nil {
					return err
				}
				return c.EmitBody(body)
			}), abi.OpChat, request, plugintest.Options{
				Provider: "acme",
				BaseURL:  up.URL + "/v1/",
				Auth:     tt.auth,
				Secret:   "test-key",
			})
			if res.Ret != 0 {
				t.Fatalf("Ret = %d, logs %q", res.Ret, res.Logs)
			}
			if got := emitStrings(res.Emits); !reflect.DeepEqual(got, []string{`body {"id":"chatcmpl-1","object":"chat.completion"}`}) {
				t.Fatalf("emits = %q", got)
			}
			if cfgBase != up.URL+"/v1" {
				t.Errorf("Config().BaseURL = %q, want the trailing slash trimmed", cfgBase)
			}
			if !bytes.Equal(requestReceived, request) {
				t.Errorf("Request() = %s, want %s", requestReceived, request)
			}
			if status != http.StatusCreated {
				t.Errorf("StatusCode = %d, want 201", status)
			}
			if reqID != "req-123" || !reqOK {
				t.Errorf("Header(x-request-id) = %q, %v", reqID, reqOK)
			}
			if long != longValue || !longOK {
				t.Errorf("Header(X-Long) returned %d bytes, %v; want %d", len(long), longOK, len(longValue))
			}
			if missingOK {
				t.Error("Header(X-Missing) reported a value")
			}

			reqs := up.requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.URI != tt.wantURI {
				t.Errorf("upstream request %s %s, want POST %s", r.Method, r.URI, tt.wantURI)
			}
			if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != tt.wantAuthz {
				t.Errorf("upstream Authorization = %q, want %q", got, tt.wantAuthz)
			}
			if r.Header.Get("X-Trace") != "t-1" || r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("plugin headers not sent: %v", r.Header)
			}
			if !bytes.Equal(r.Body, request) {
				t.Errorf("upstream body = %s, want %s", r.Body, request)
			}
		})
	}
}

func TestSendFailures(t *testing.T) {
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {})
	tests := []struct {
		name     string
		method   string
		url      string
		headers  [][2]string
		wantFail string
	}{
		{name: "other host denied", method: "GET", url: "http://example.invalid/v1/models", wantFail: "fail 502 http_send: destination denied"},
		{name: "malformed head", method: "GET", url: up.URL + "/v1/x", headers: [][2]string{{"Bad Name", "v"}}, wantFail: "fail 500 http_send: invalid argument"},
		{name: "bare CR in a value", method: "GET", url: up.URL + "/v1/x", headers: [][2]string{{"X-A", "a\rX-Injected: 1"}}, wantFail: "fail 500 http_send: invalid argument"},
		{name: "no method", method: "", url: up.URL + "/v1/x", wantFail: "fail 500 http_send: invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(handler(func(c *sdk.Call) error {
				resp, err := c.Send(tt.method, tt.url, tt.headers, nil)
				if resp != nil {
					return errors.New("Send returned a response along with the failure")
				}
				return err
			}), abi.OpModels, nil, plugintest.Options{BaseURL: up.URL + "/v1"})
			if got := emitStrings(res.Emits); !reflect.DeepEqual(got, []string{tt.wantFail}) {
				t.Fatalf("emits = %q, want %q", got, tt.wantFail)
			}
		})
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}
}

func TestFailUpstream(t *testing.T) {
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/limited":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests"}}`)
		case "/v1/empty":
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	tests := []struct{ path, want string }{
		{"/limited", `fail 429 {"error":{"message":"Rate limit reached","type":"requests"}}`},
		{"/empty", "fail 500 upstream returned HTTP 500"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := plugintest.Run(handler(func(c *sdk.Call) error {
				cfg, err := c.Config()
				if err != nil {
					return err
				}
				resp, err := c.Send("GET", cfg.BaseURL+tt.path, nil, nil)
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return c.FailUpstream(resp)
				}
				return nil
			}), abi.OpChat, nil, plugintest.Options{BaseURL: up.URL + "/v1"})
			if got := emitStrings(res.Emits); !reflect.DeepEqual(got, []string{tt.want}) {
				t.Fatalf("emits = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResponseRead(t *testing.T) {
	const payload = "hello, upstream world"
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		for _, part := range []string{payload[:5], payload[5:12], payload[12:]} {
			io.WriteString(w, part)
			f.Flush()
		}
	})
	tests := []struct {
		name    string
		bufSize int
	}{
		{"one byte at a time", 1},
		{"small buffer", 4},
		{"buffer larger than the body", 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				got        []byte
				finalErr   error
				zeroN      int
				zeroErr    error
				afterEOF   error
				afterClose error
			)
			res := plugintest.Run(handler(func(c *sdk.Call) error {
				resp, err := c.Send("GET", up.URL+"/body", nil, nil)
				if err != nil {
					return err
				}
				zeroN, zeroErr = resp.Read(nil)
				buf := make([]byte, tt.bufSize)
				for i := 0; i < 1000; i++ {
					n, err := resp.Read(buf)
					if n > len(buf) {
						return fmt.Errorf("Read returned %d > %d", n, len(buf))
					}
					got = append(got, buf[:n]...)
					if err != nil {
						finalErr = err
						break
					}
				}
				_, afterEOF = resp.Read(buf)
				resp.Close()
				_, afterClose = resp.Read(buf)
				return nil
			}), abi.OpChat, nil, plugintest.Options{BaseURL: up.URL})
			if res.Ret != 0 || len(res.Emits) != 0 {
				t.Fatalf("Run = %d, %q", res.Ret, emitStrings(res.Emits))
			}
			if string(got) != payload {
				t.Errorf("read %q, want %q", got, payload)
			}
			if finalErr != io.EOF {
				t.Errorf("final Read error = %v, want io.EOF", finalErr)
			}
			if zeroN != 0 || zeroErr != nil {
				t.Errorf("Read(nil) = %d, %v; want 0, nil", zeroN, zeroErr)
			}
			if afterEOF != io.EOF {
				t.Errorf("Read after EOF = %v, want io.EOF", afterEOF)
			}
			var se *sdk.StatusError
			if !errors.As(afterClose, &se) || se.Status != abi.StatusInvalid {
				t.Errorf("Read after Close = %v, want an invalid-handle StatusError", afterClose)
			}
		})
	}
}

func TestResponseReadIOError(t *testing.T) {
	h := &scriptHost{reads: [][]byte{[]byte("partial")}, endStatus: int32(abi.StatusIO)}
	var got []byte
	ret := sdk.Serve(h, handler(func(c *sdk.Call) error {
		resp, err := c.Send("GET", "https://h/x", nil, nil)
		if err != nil {
			return err
		}
		got, err = io.ReadAll(resp)
		return err
	}), abi.OpChat)
	if ret != 0 || string(got) != "partial" {
		t.Fatalf("Serve = %d, read %q", ret, got)
	}
	if want := []string{"fail 502 http_read: upstream i/o error"}; !reflect.DeepEqual(h.emits, want) {
		t.Fatalf("emits = %q, want %q", h.emits, want)
	}
}

func TestReadAllMax(t *testing.T) {
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		f := w.(http.Flusher)
		for i := 0; i < n; i += 3000 {
			w.Write(bytes.Repeat([]byte{'a'}, min(3000, n-i)))
			f.Flush()
		}
	})
	tests := []struct {
		name    string
		size    int
		max     int
		wantErr bool
	}{
		{name: "empty body", size: 0, max: 0},
		{name: "well under max", size: 100, max: 1 << 20},
		{name: "several reads under max", size: 20000, max: 1 << 20},
		{name: "exactly max", size: 10000, max: 10000},
		{name: "one byte over max", size: 10000, max: 9999, wantErr: true},
		{name: "far over max", size: 50000, max: 100, wantErr: true},
		{name: "zero max with a body", size: 1, max: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				body []byte
				err  error
			)
			plugintest.Run(handler(func(c *sdk.Call) error {
				resp, sendErr := c.Send("GET", up.URL+"/blob?n="+strconv.Itoa(tt.size), nil, nil)
				if sendErr != nil {
					return sendErr
				}
				body, err = resp.ReadAll(tt.max)
				return nil
			}), abi.OpChat, nil, plugintest.Options{BaseURL: up.URL})
			if tt.wantErr {
				var se *sdk.StatusError
				if !errors.As(err, &se) || se.Status != abi.StatusLimit {
					t.Fatalf("ReadAll(%d) of %d bytes: err = %v, want a StatusLimit error", tt.max, tt.size, err)
				}
				if len(body) <= tt.max {
					t.Errorf("ReadAll returned %d bytes with its limit error; want more than max %d", len(body), tt.max)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadAll(%d) of %d bytes: %v", tt.max, tt.size, err)
			}
			if len(body) != tt.size || bytes.Count(body, []byte{'a'}) != tt.size {
				t.Fatalf("ReadAll returned %d bytes, want %d", len(body), tt.size)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// ForwardSSE

func TestForwardSSE(t *testing.T) {
	dropPings := func(data []byte) []byte {
		if bytes.Contains(data, []byte("ping")) {
			return nil
		}
		return data
	}
	wrap := func(data []byte) []byte {
		return append(append([]byte(`{"wrapped":`), data...), '}')
	}
	tests := []struct {
		name      string
		reads     []string
		transform func([]byte) []byte
		wantEmits []string
		wantLeft  int // reads never consumed
	}{
		{
			name:      "one event per read",
			reads:     []string{"data: {\"a\":1}\n\n", "data: {\"b\":2}\n\n"},
			wantEmits: []string{`chunk {"a":1}`, `chunk {"b":2}`},
		},
		{
			name:      "several events in one read",
			reads:     []string{"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: {\"c\":3}\n\n"},
			wantEmits: []string{`chunk {"a":1}`, `chunk {"b":2}`, `chunk {"c":3}`},
		},
		{
			name:      "event split across reads",
			reads:     []string{"data: {\"a\"", ":1}\n", "\ndata: {\"b\":2}\n\n"},
			wantEmits: []string{`chunk {"a":1}`, `chunk {"b":2}`},
		},
		{
			name:      "split inside the field name and the line ending",
			reads:     []string{"da", "ta: x\r", "\n\r\n", "data: y\n\n"},
			wantEmits: []string{"chunk x", "chunk y"},
		},
		{
			name:      "byte by byte",
			reads:     strings.Split("data: {\"a\":1}\n\ndata: [DONE]\n\n", ""),
			wantEmits: []string{`chunk {"a":1}`},
		},
		{
			name:      "CRLF line endings",
			reads:     []string{"data: one\r\n\r\ndata: two\r\n\r\n"},
			wantEmits: []string{"chunk one", "chunk two"},
		},
		{
			name:      "no space after the colon",
			reads:     []string{"data:{\"a\":1}\n\n"},
			wantEmits: []string{`chunk {"a":1}`},
		},
		{
			name:      "comments, names and ids are not forwarded",
			reads:     []string{": keep-alive\n\nevent: message\nid: 7\nretry: 100\ndata: {\"a\":1}\n\n"},
			wantEmits: []string{`chunk {"a":1}`},
		},
		{
			name:      "multi-line data joined with LF",
			reads:     []string{"data: {\"a\":\ndata: 1}\n\n"},
			wantEmits: []string{"chunk {\"a\":\n1}"},
		},
		{
			name:      "stops at DONE",
			reads:     []string{"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"after\":1}\n\n", "data: {\"late\":1}\n\n"},
			wantEmits: []string{`chunk {"a":1}`},
			wantLeft:  1,
		},
		{
			name:      "DONE split across reads",
			reads:     []string{"data: {\"a\":1}\n\ndata: [DO", "NE]\n", "\n", "data: {\"late\":1}\n\n"},
			wantEmits: []string{`chunk {"a":1}`},
			wantLeft:  1,
		},
		{
			name:      "DONE with trailing space is data",
			reads:     []string{"data: [DONE] \n\n"},
			wantEmits: []string{"chunk [DONE] "},
		},
		{
			name:      "final event without blank line",
			reads:     []string{"data: {\"a\":1}\n\ndata: {\"last\":true}"},
			wantEmits: []string{`chunk {"a":1}`, `chunk {"last":true}`},
		},
		{
			name:      "final event with a single line ending",
			reads:     []string{"data: {\"a\":1}\n\n", "data: {\"last\":true}\n"},
			wantEmits: []string{`chunk {"a":1}`, `chunk {"last":true}`},
		},
		{
			name:      "final DONE without blank line",
			reads:     []string{"data: {\"a\":1}\n\ndata: [DONE]"},
			wantEmits: []string{`chunk {"a":1}`},
		},
		{
			name:      "empty body",
			reads:     nil,
			wantEmits: nil,
		},
		{
			name:      "only comments",
			reads:     []string{": hello\n\n: still here\n\n"},
			wantEmits: nil,
		},
		{
			name:      "transform drops events",
			reads:     []string{"data: {\"a\":1}\n\ndata: {\"type\":\"ping\"}\n\n", "data: {\"b\":2}\n\ndata: {\"type\":\"ping\"}"},
			transform: dropPings,
			wantEmits: []string{`chunk {"a":1}`, `chunk {"b":2}`},
		},
		{
			name:      "transform rewrites events",
			reads:     []string{"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"},
			transform: wrap,
			wantEmits: []string{`chunk {"wrapped":1}`, `chunk {"wrapped":2}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &scriptHost{}
			for _, r := range tt.reads {
				h.reads = append(h.reads, []byte(r))
			}
			var transformed []string
			transform := tt.transform
			if transform != nil {
				inner := transform
				transform = func(data []byte) []byte {
					transformed = append(transformed, string(data))
					return inner(data)
				}
			}
			ret := sdk.Serve(h, handler(func(c *sdk.Call) error {
				resp, err := c.Send("POST", "https://upstream.test/v1/chat/completions", nil, []byte(`{}`))
				if err != nil {
					return err
				}
				return c.ForwardSSE(resp, transform)
			}), abi.OpChatStream)
			if ret != 0 {
				t.Fatalf("Serve = %d, logs %q", ret, h.logs)
			}
			if !slices.Equal(h.emits, tt.wantEmits) {
				t.Fatalf("emits\n got %q\nwant %q", h.emits, tt.wantEmits)
			}
			if len(h.reads) != tt.wantLeft {
				t.Errorf("%d reads left unconsumed, want %d", len(h.reads), tt.wantLeft)
			}
			for _, d := range transformed {
				if d == "[DONE]" {
					t.Errorf("transform was called with [DONE]")
				}
			}
		})
	}
}

func TestForwardSSEFailures(t *testing.T) {
	tests := []struct {
		name       string
		host       *scriptHost
		wantEmits  []string
		wantTried  int // Emit calls expected when emit fails
		clientGone bool
	}{
		{
			name:      "read error after an event",
			host:      &scriptHost{reads: [][]byte{[]byte("data: {\"a\":1}\n\ndata: {\"b\"")}, endStatus: int32(abi.StatusIO)},
			wantEmits: []string{`chunk {"a":1}`, "fail 502 http_read_event: upstream i/o error"},
		},
		{
			name:      "read timeout",
			host:      &scriptHost{reads: [][]byte{[]byte("data: {\"a\":1}\n\n")}, endStatus: int32(abi.StatusTimeout)},
			wantEmits: []string{`chunk {"a":1}`, "fail 504 http_read_event: timeout"},
		},
		{
			name:       "client gone stops the stream without a fail",
			host:       &scriptHost{reads: [][]byte{[]byte("data: 1\n\ndata: 2\n\n"), []byte("data: 3\n\n")}, emitStatus: int32(abi.StatusClientGone)},
			wantEmits:  nil,
			clientGone: true,
		},
		{
			name:      "client disconnected while reading",
			host:      &scriptHost{reads: [][]byte{[]byte("data: 1\n\n")}, endStatus: int32(abi.StatusClientGone)},
			wantEmits: []string{"chunk 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fwdErr error
			ret := sdk.Serve(tt.host, handler(func(c *sdk.Call) error {
				resp, err := c.Send("GET", "https://upstream.test/stream", nil, nil)
				if err != nil {
					return err
				}
				fwdErr = c.ForwardSSE(resp, nil)
				return fwdErr
			}), abi.OpChatStream)
			if ret != 0 {
				t.Fatalf("Serve = %d", ret)
			}
			if !slices.Equal(tt.host.emits, tt.wantEmits) {
				t.Fatalf("emits\n got %q\nwant %q", tt.host.emits, tt.wantEmits)
			}
			if tt.clientGone {
				if !errors.Is(fwdErr, sdk.ErrClientGone) {
					t.Errorf("ForwardSSE = %v, want ErrClientGone", fwdErr)
				}
				if len(tt.host.reads) != 1 {
					t.Errorf("ForwardSSE kept reading after the client left (%d reads left)", len(tt.host.reads))
				}
			}
		})
	}
}

// passthrough is a small streaming plugin: it posts the unified request to
// base_url/chat/completions and forwards the upstream's SSE events.
type passthrough struct{ sdk.Unimplemented }

func (passthrough) ChatStream(c *sdk.Call) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	resp, err := c.Send("POST", cfg.BaseURL+"/chat/completions",
		[][2]string{{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}}, c.Request())
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return c.FailUpstream(resp)
	}
	return c.ForwardSSE(resp, nil)
}

func TestForwardSSEOverHTTP(t *testing.T) {
	up := startRecording(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for _, part := range []string{
			"data: {\"i\":1}\n\n",
			"data: {\"i\"",
			":2}\n\n: comment\n\n",
			"data: [DONE]\n\n",
			"data: {\"late\":true}\n\n",
		} {
			io.WriteString(w, part)
			f.Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	res := plugintest.Run(passthrough{}, abi.OpChatStream, []byte(`{"model":"m","stream":true}`), plugintest.Options{
		BaseURL: up.URL + "/v1",
		Auth:    abi.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
		Secret:  "test-key",
	})
	want := []string{`chunk {"i":1}`, `chunk {"i":2}`}
	if got := emitStrings(res.Emits); res.Ret != 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("Run = ret %d, %q; want %q", res.Ret, got, want)
	}
	reqs := up.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer test-key" || reqs[0].Header.Get("Accept") != "text/event-stream" {
		t.Fatalf("upstream requests = %+v", reqs)
	}
}

// The golden-case machinery of plugintest, driven with in-memory cases.
func TestPassthroughCases(t *testing.T) {
	cases := map[string]string{
		"stream": `-- op --
chat_stream
-- request --
{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}
-- upstream --
HTTP 200
Content-Type: text/event-stream

data: {"choices":[{"delta":{"content":"he"}}]}

data: {"choices":[{"delta":{"content":"llo"}}]}

data: [DONE]

-- want upstream --
POST /v1/chat/completions
Authorization: Bearer test-key
Content-Type: application/json

{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}
-- want emits --
chunk {"choices":[{"delta":{"content":"he"}}]}
chunk {"choices":[{"delta":{"content":"llo"}}]}
`,
		"rate limited": `-- op --
chat_stream
-- request --
{"model":"m","stream":true}
-- upstream --
HTTP 429
Content-Type: application/json

{"error":{"message":"Rate limit reached","type":"requests"}}
-- want upstream --
POST /v1/chat/completions
-- want emits --
fail 429 {"error":{"type":"requests","message":"Rate limit reached"}}
`,
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := plugintest.ParseCase(name, []byte(text))
			if err != nil {
				t.Fatalf("ParseCase: %v", err)
			}
			up := c.StartUpstream()
			defer up.Close()
			res := plugintest.Run(passthrough{}, c.Op, c.Request, plugintest.Options{
				BaseURL: up.URL + "/v1",
				Auth:    abi.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
				Secret:  "test-key",
			})
			if res.Ret != 0 {
				t.Errorf("Ret = %d", res.Ret)
			}
			for _, d := range c.Check(up, res.Emits) {
				t.Error(d)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Request and configuration

func TestRequest(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
	}{
		{"empty", nil},
		{"small", []byte(`{"model":"m"}`)},
		{"larger than the reusable buffer", bytes.Repeat([]byte("x"), 100<<10)},
		{"small again after a large one", []byte(`{"model":"n"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var first, second []byte
			plugintest.Run(handler(func(c *sdk.Call) error {
				first = bytes.Clone(c.Request())
				second = bytes.Clone(c.Request())
				return nil
			}), abi.OpChat, tt.req, plugintest.Options{})
			if !bytes.Equal(first, tt.req) || !bytes.Equal(second, tt.req) {
				t.Fatalf("Request() returned %d then %d bytes, want %d", len(first), len(second), len(tt.req))
			}
		})
	}
}

func TestConfig(t *testing.T) {
	opts := plugintest.Options{
		Provider: "azure-eu",
		BaseURL:  "https://example.invalid/openai/",
		Options: map[string]any{
			"api_version": "2024-06-01",
			"temperature": 0.25,
			"retries":     3,
			"regions":     []string{"westeurope", "swedencentral"},
			"flags":       map[string]bool{"beta": true},
		},
		Secret: "must-not-appear",
	}
	var (
		cfg, again *sdk.Config
		err        error
	)
	res := plugintest.Run(handler(func(c *sdk.Call) error {
		cfg, err = c.Config()
		again, _ = c.Config()
		return nil
	}), abi.OpChat, nil, opts)
	if err != nil || res.Ret != 0 {
		t.Fatalf("Config() error %v, ret %d", err, res.Ret)
	}
	if cfg.Provider != "azure-eu" || cfg.BaseURL != "https://example.invalid/openai" {
		t.Errorf("Config() = provider %q base_url %q", cfg.Provider, cfg.BaseURL)
	}
	if again != cfg {
		t.Errorf("second Config() decoded the config again")
	}
	for name, raw := range cfg.Options {
		if strings.Contains(string(raw), "must-not-appear") {
			t.Errorf("option %s carries the secret", name)
		}
	}

	t.Run("Option", func(t *testing.T) {
		var s string
		if !cfg.Option("api_version", &s) || s != "2024-06-01" {
			t.Errorf("Option(api_version) = %q", s)
		}
		var f float64
		if !cfg.Option("temperature", &f) || f != 0.25 {
			t.Errorf("Option(temperature) = %v", f)
		}
		var n int
		if !cfg.Option("retries", &n) || n != 3 {
			t.Errorf("Option(retries) = %v", n)
		}
		var regions []string
		if !cfg.Option("regions", &regions) || !reflect.DeepEqual(regions, []string{"westeurope", "swedencentral"}) {
			t.Errorf("Option(regions) = %v", regions)
		}
		var flags struct{ Beta bool }
		if !cfg.Option("flags", &flags) || !flags.Beta {
			t.Errorf("Option(flags) = %+v", flags)
		}
		var missing string
		if cfg.Option("deployment", &missing) {
			t.Errorf("Option(deployment) reported a value %q", missing)
		}
		var wrongType int
		if cfg.Option("api_version", &wrongType) {
			t.Errorf("Option(api_version) into an int reported success")
		}
	})

	t.Run("no options", func(t *testing.T) {
		var cfg *sdk.Config
		plugintest.Run(handler(func(c *sdk.Call) error {
			cfg, err = c.Config()
			return err
		}), abi.OpChat, nil, plugintest.Options{Provider: "bare", BaseURL: "https://bare.invalid"})
		if cfg == nil || cfg.Provider != "bare" || len(cfg.Options) != 0 {
			t.Fatalf("Config() = %+v", cfg)
		}
		var s string
		if cfg.Option("anything", &s) {
			t.Error("Option on an empty table reported a value")
		}
	})

	t.Run("zero Config", func(t *testing.T) {
		var cfg sdk.Config
		var s string
		if cfg.Option("x", &s) {
			t.Error("Option on a zero Config reported a value")
		}
	})
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		host *scriptHost
		want string
	}{
		{name: "host refuses", host: &scriptHost{configErr: int32(abi.StatusInvalid)}, want: "fail 500 config_read: invalid argument"},
		{name: "not JSON", host: &scriptHost{config: []byte("provider=x")}, want: "fail 502 "},
		{name: "wrong shape", host: &scriptHost{config: []byte(`{"options":[1,2]}`)}, want: "fail 502 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sdk.Serve(tt.host, handler(func(c *sdk.Call) error {
				cfg, err := c.Config()
				if err == nil {
					return fmt.Errorf("Config() = %+v, want an error", cfg)
				}
				return err
			}), abi.OpChat)
			if len(tt.host.emits) != 1 || !strings.HasPrefix(tt.host.emits[0], tt.want) {
				t.Fatalf("emits = %q, want one starting with %q", tt.host.emits, tt.want)
			}
		})
	}
}

func TestEmitKinds(t *testing.T) {
	res := plugintest.Run(handler(func(c *sdk.Call) error {
		for _, err := range []error{
			c.EmitChunk([]byte(`{"n":1}`)),
			c.EmitUsage([]byte(`{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}`)),
			c.EmitBody([]byte(`{"object":"list","data":[]}`)),
		} {
			if err != nil {
				return err
			}
		}
		c.Log(abi.LogInfo, "all sent")
		return nil
	}), abi.OpModels, nil, plugintest.Options{})
	want := []string{
		`chunk {"n":1}`,
		`usage {"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}`,
		`body {"object":"list","data":[]}`,
	}
	if got := emitStrings(res.Emits); !reflect.DeepEqual(got, want) {
		t.Fatalf("emits\n got %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(res.Logs, []string{"all sent"}) {
		t.Fatalf("logs = %q", res.Logs)
	}
}

// ---------------------------------------------------------------------------
// Example

// greeter answers chat requests itself, without an upstream, and reports
// token usage before the body.
type greeter struct{ sdk.Unimplemented }

func (greeter) Chat(c *sdk.Call) error {
	var req struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(c.Request(), &req); err != nil {
		return &sdk.HTTPError{Status: 400, Message: "request is not JSON"}
	}
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	if err := c.EmitUsage([]byte(`{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}`)); err != nil {
		return err
	}
	return c.EmitBody([]byte(`{"object":"chat.completion","model":"` + req.Model + `","provider":"` + cfg.Provider + `"}`))
}

func Example_plugintest() {
	request := []byte(`{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`)
	opts := plugintest.Options{Provider: "demo", BaseURL: "https://upstream.invalid/v1"}
	for _, op := range []abi.Op{abi.OpChat, abi.OpEmbeddings} {
		res := plugintest.Run(greeter{}, op, request, opts)
		fmt.Printf("%s (ret %d)\n", op, res.Ret)
		for _, e := range res.Emits {
			fmt.Println(e)
		}
	}
	// Output:
	// chat (ret 0)
	// usage {"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}
	// body {"object":"chat.completion","model":"tiny","provider":"demo"}
	// embeddings (ret 0)
	// fail 400 operation not supported by this provider
}

// TestParseJSON: the tape comes from the host; a tape too small is grown
// and asked for again; malformed input is rawjson.ErrSyntax.
func TestParseJSON(t *testing.T) {
	sdk.Serve(&scriptHost{}, handler(func(c *sdk.Call) error {
		doc, err := c.ParseJSON([]byte(`{"a":[1,"x"],"b":{"c":true}}`), make([]uint32, 0, 4))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(doc.Root().Get("b").Get("c").Raw()); got != "true" || len(doc.Tape) != 9*rawjson.EntryWords {
			t.Fatalf("b.c = %q, tape %v", got, doc.Tape)
		}
		again, err := c.ParseJSON([]byte(`[1]`), doc.Tape)
		if err != nil || &again.Tape[0] != &doc.Tape[0] {
			t.Fatal("tape not reused")
		}
		if _, err := c.ParseJSON([]byte(`{"a":`), nil); err != rawjson.ErrSyntax {
			t.Fatalf("malformed: %v", err)
		}
		return nil
	}), abi.OpChat)
}

// TestFetchImage: the media type and base64 data come apart; a refusal is
// a StatusError with the host's status.
func TestFetchImage(t *testing.T) {
	sdk.Serve(&scriptHost{}, handler(func(c *sdk.Call) error {
		mt, data, err := c.FetchImage("https://example.com/cat.png")
		if err != nil || mt != "image/png" || string(data) != "iVBORw0KGgo=" {
			t.Fatalf("%q %q %v", mt, data, err)
		}
		_, _, err = c.FetchImage("http://10.0.0.1/x.png")
		var se *sdk.StatusError
		if !errors.As(err, &se) || se.Status != abi.StatusDenied {
			t.Fatalf("refusal: %v", err)
		}
		return nil
	}), abi.OpChat)
}
