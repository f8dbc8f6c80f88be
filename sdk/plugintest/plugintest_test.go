package plugintest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// each is a Plugin that runs the same function for every operation.
type each func(s *sdk.Stream) error

func (f each) Chat(s *sdk.Stream) error       { return f(s) }
func (f each) ChatStream(s *sdk.Stream) error { return f(s) }
func (f each) Embeddings(s *sdk.Stream) error { return f(s) }
func (f each) Models(s *sdk.Stream) error     { return f(s) }

// send is a plugin that posts the request to the provider's base URL plus
// path, with a Handler made per stream.
func send(path string, handler func() sdk.Handler) each {
	return func(s *sdk.Stream) error {
		cfg, err := s.Config()
		if err != nil {
			return err
		}
		return s.Send(sdk.Request{
			Method: "POST",
			URL:    cfg.BaseURL + path,
			Header: [][2]string{{"Content-Type", "application/json"}},
			Body:   s.Request(),
		}, handler())
	}
}

func relay() sdk.Handler { return sdk.Relay }

func emitStrings(es []plugintest.Emit) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.String())
	}
	return out
}

func checkEmits(t *testing.T, res *plugintest.Result, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := emitStrings(res.Emits); !reflect.DeepEqual(got, want) {
		t.Fatalf("emits\n got %q\nwant %q\n(logs %q)", got, want, res.Logs)
	}
}

// recording is an upstream that records what it receives and answers with
// respond.
type recording struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func startUpstream(t *testing.T, respond http.HandlerFunc) *recording {
	t.Helper()
	u := &recording{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.body = append(u.body, b)
		u.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recording) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// writeFlushed writes each piece with a flush after it.
func writeFlushed(w http.ResponseWriter, pieces ...string) {
	f := w.(http.Flusher)
	for _, p := range pieces {
		io.WriteString(w, p)
		f.Flush()
	}
}

func sseUpstream(t *testing.T, pieces ...string) *recording {
	return startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		writeFlushed(w, pieces...)
	})
}

func TestRelay(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		up := sseUpstream(t,
			"data: {\"i\":1}\n\n",
			"data: {\"i\"", ":2}\n\n: comment\n\n",
			"data: [DONE]\n\n",
			"data: {\"late\":true}\n\n")
		res := plugintest.Run(send("/chat", relay), abi.OpChatStream, []byte(`{"stream":true}`), plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, `chunk {"i":1}`, `chunk {"i":2}`)
		if res.Ret != 0 || !res.Finished {
			t.Errorf("Ret %d, Finished %v; want 0, true", res.Ret, res.Finished)
		}
		// start, head, end, done: relayed events cost no callback.
		if res.Callbacks != 4 {
			t.Errorf("Callbacks = %d, want 4", res.Callbacks)
		}
	})

	t.Run("non-streamed", func(t *testing.T) {
		up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"list","data":[]}`)
		})
		for _, op := range []abi.Op{abi.OpChat, abi.OpEmbeddings, abi.OpModels} {
			t.Run(op.String(), func(t *testing.T) {
				res := plugintest.Run(send("/x", relay), op, []byte(`{}`), plugintest.Options{BaseURL: up.URL})
				checkEmits(t, res, `body {"object":"list","data":[]}`)
				if res.Finished {
					t.Error("Finished for a non-streamed op")
				}
			})
		}
	})

	t.Run("an error status is not relayed", func(t *testing.T) {
		up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests"}}`)
		})
		res := plugintest.Run(send("/chat", relay), abi.OpChatStream, nil, plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, `fail 429 {"error":{"message":"Rate limit reached","type":"requests"}}`)
		if res.Finished {
			t.Error("Finished after a fail")
		}
	})
}

// TestEvents: the host parses the upstream's event stream; the plugin gets
// each event's data, up to [DONE]. The body is written in the pieces given,
// each flushed, so events arrive split across reads.
func TestEvents(t *testing.T) {
	tests := []struct {
		name   string
		pieces []string
		want   []string
	}{
		{"one event per write", []string{"data: {\"a\":1}\n\n", "data: {\"b\":2}\n\n"}, []string{`{"a":1}`, `{"b":2}`}},
		{"several events in one write", []string{"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: {\"c\":3}\n\n"}, []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}},
		{"an event split across writes", []string{"data: {\"a\"", ":1}\n", "\ndata: {\"b\":2}\n\n"}, []string{`{"a":1}`, `{"b":2}`}},
		{"split inside the field name and the line ending", []string{"da", "ta: x\r", "\n\r\n", "data: y\n\n"}, []string{"x", "y"}},
		{"byte by byte", strings.Split("data: {\"a\":1}\n\ndata: [DONE]\n\n", ""), []string{`{"a":1}`}},
		{"CRLF line endings", []string{"data: one\r\n\r\ndata: two\r\n\r\n"}, []string{"one", "two"}},
		{"no space after the colon", []string{"data:{\"a\":1}\n\n"}, []string{`{"a":1}`}},
		{"comments, names, ids and retries are not data", []string{": keep-alive\n\nevent: message\nid: 7\nretry: 100\ndata: {\"a\":1}\n\n"}, []string{`{"a":1}`}},
		{"multi-line data joined with LF", []string{"data: {\"a\":\ndata: 1}\n\n"}, []string{"{\"a\":\n1}"}},
		{"stops at [DONE]", []string{"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"after\":1}\n\n", "data: {\"late\":1}\n\n"}, []string{`{"a":1}`}},
		{"[DONE] split across writes", []string{"data: {\"a\":1}\n\ndata: [DO", "NE]\n", "\n", "data: {\"late\":1}\n\n"}, []string{`{"a":1}`}},
		{"[DONE] with a trailing space is data", []string{"data: [DONE] \n\n"}, []string{"[DONE] "}},
		{"a final event without a blank line", []string{"data: {\"a\":1}\n\ndata: {\"last\":true}"}, []string{`{"a":1}`, `{"last":true}`}},
		{"a final event with a single line ending", []string{"data: {\"a\":1}\n\n", "data: {\"last\":true}\n"}, []string{`{"a":1}`, `{"last":true}`}},
		{"a final [DONE] without a blank line", []string{"data: {\"a\":1}\n\ndata: [DONE]"}, []string{`{"a":1}`}},
		{"an empty body", nil, nil},
		{"only comments", []string{": hello\n\n: still here\n\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := sseUpstream(t, tt.pieces...)
			var got []string
			res := plugintest.Run(send("/chat", func() sdk.Handler {
				return sdk.Handler{Event: func(s *sdk.Stream, data []byte) error {
					got = append(got, string(data))
					return s.EmitChunk(append([]byte("chunk:"), data...))
				}}
			}), abi.OpChatStream, nil, plugintest.Options{BaseURL: up.URL})
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("events\n got %q\nwant %q\n(emits %q)", got, tt.want, emitStrings(res.Emits))
			}
			if res.Ret != 0 || !res.Finished || len(res.Emits) != len(tt.want) {
				t.Fatalf("Ret %d, Finished %v, emits %q", res.Ret, res.Finished, emitStrings(res.Emits))
			}
		})
	}

	t.Run("End and per-stream state", func(t *testing.T) {
		up := sseUpstream(t, "data: a\n\n", "data: b\n\n", "data: c\n\n")
		res := plugintest.Run(send("/chat", func() sdk.Handler {
			n := 0
			return sdk.Handler{
				Event: func(s *sdk.Stream, data []byte) error {
					n++
					return s.EmitChunk([]byte(fmt.Sprintf(`{"n":%d,"d":"%s"}`, n, data)))
				},
				End: func(s *sdk.Stream) error {
					if err := s.EmitUsage([]byte(fmt.Sprintf(`{"completion_tokens":%d}`, n))); err != nil {
						return err
					}
					return s.Finish()
				},
			}
		}), abi.OpChatStream, nil, plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, `chunk {"n":1,"d":"a"}`, `chunk {"n":2,"d":"b"}`, `chunk {"n":3,"d":"c"}`, `usage {"completion_tokens":3}`)
		if !res.Finished {
			t.Error("not Finished")
		}
	})

	t.Run("an error from Event fails the stream and cancels the upstream", func(t *testing.T) {
		up := sseUpstream(t, "data: a\n\n", "data: b\n\n")
		res := plugintest.Run(send("/chat", func() sdk.Handler {
			return sdk.Handler{Event: func(s *sdk.Stream, data []byte) error {
				return &sdk.HTTPError{Status: 502, Message: "bad event " + string(data)}
			}}
		}), abi.OpChatStream, nil, plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, "fail 502 bad event a")
	})
}

func TestWholeBody(t *testing.T) {
	longValue := strings.Repeat("v", 1000)
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
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
		{"header auth replaces the plugin's value", abi.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			"/chat/completions", "/v1/chat/completions", "Bearer test-key"},
		{"query auth", abi.Auth{Type: "query", Name: "key"},
			"/chat/completions?alt=sse", "/v1/chat/completions?alt=sse&key=test-key", "Bearer from-plugin"},
		{"no auth", abi.Auth{Type: "none"}, "/chat/completions", "/v1/chat/completions", "Bearer from-plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.mu.Lock()
			up.reqs, up.body = nil, nil
			up.mu.Unlock()
			request := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
			var (
				cfgBase, reqID, long string
				reqOK, longOK, miss  bool
				headStatus           int
				got                  []byte
			)
			p := each(func(s *sdk.Stream) error {
				cfg, err := s.Config()
				if err != nil {
					return err
				}
				cfgBase = cfg.BaseURL
				return s.Send(sdk.Request{
					Method: "POST",
					URL:    cfg.BaseURL + tt.path,
					Header: [][2]string{{"Content-Type", "application/json"}, {"Authorization", "Bearer from-plugin"}, {"X-Trace", "t-1"}},
					Body:   s.Request(),
				}, sdk.Handler{
					Head: func(s *sdk.Stream, r *sdk.Response) error {
						headStatus = r.StatusCode
						reqID, reqOK = r.Header("x-request-id")
						long, longOK = r.Header("X-Long")
						_, miss = r.Header("X-Missing")
						return nil
					},
					Body: func(s *sdk.Stream, r *sdk.Response, body []byte) error {
						got = bytes.Clone(s.Request())
						return s.EmitBody(body)
					},
				})
			})
			res := plugintest.Run(p, abi.OpChat, request, plugintest.Options{
				Provider: "acme",
				BaseURL:  up.URL + "/v1/",
				Auth:     tt.auth,
				Secret:   "test-key",
			})
			checkEmits(t, res, `body {"id":"chatcmpl-1","object":"chat.completion"}`)
			if cfgBase != up.URL+"/v1" {
				t.Errorf("Config().BaseURL = %q, want the trailing slash trimmed", cfgBase)
			}
			if !bytes.Equal(got, request) {
				t.Errorf("Request() in Body = %s", got)
			}
			if headStatus != 201 || reqID != "req-123" || !reqOK || long != longValue || !longOK || miss {
				t.Errorf("Head saw %d, %q %v, %d bytes %v, missing %v", headStatus, reqID, reqOK, len(long), longOK, miss)
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			if len(up.reqs) != 1 {
				t.Fatalf("upstream saw %d requests", len(up.reqs))
			}
			r := up.reqs[0]
			if r.Method != "POST" || r.RequestURI != tt.wantURI {
				t.Errorf("upstream request %s %s, want POST %s", r.Method, r.RequestURI, tt.wantURI)
			}
			if v := r.Header.Values("Authorization"); len(v) != 1 || v[0] != tt.wantAuthz {
				t.Errorf("Authorization = %q, want %q", v, tt.wantAuthz)
			}
			if r.Header.Get("X-Trace") != "t-1" || r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("plugin headers not sent: %v", r.Header)
			}
			if !bytes.Equal(up.body[0], request) {
				t.Errorf("upstream body = %s", up.body[0])
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/limited":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests"}}`)
		case "/empty":
			w.WriteHeader(http.StatusInternalServerError)
		case "/huge":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, strings.Repeat("e", 100<<10))
		}
	})
	translate := func() sdk.Handler {
		return sdk.Handler{Error: func(s *sdk.Stream, r *sdk.Response, body []byte) error {
			ra, _ := r.Header("Retry-After")
			return s.Fail(r.StatusCode, []byte(fmt.Sprintf(`{"error":{"message":"upstream said %d (retry after %s)"}}`, r.StatusCode, ra)))
		}}
	}
	noHandler := func() sdk.Handler { return sdk.Handler{} }
	tests := []struct {
		name    string
		path    string
		handler func() sdk.Handler
		want    string
	}{
		{"status and body kept", "/limited", noHandler, `fail 429 {"error":{"message":"Rate limit reached","type":"requests"}}`},
		{"empty body", "/empty", noHandler, "fail 500 upstream returned HTTP 500"},
		{"body cut at 64 KiB", "/huge", noHandler, "fail 400 " + strings.Repeat("e", 64<<10)},
		{"Error translates", "/limited", translate, `fail 429 {"error":{"message":"upstream said 429 (retry after 7)"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(send(tt.path, tt.handler), abi.OpChat, nil, plugintest.Options{BaseURL: up.URL})
			checkEmits(t, res, tt.want)
		})
	}
}

func TestRequestFailures(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name    string
		baseURL string
		url     string
		want    string
	}{
		{"a host other than the base URL's is denied", up.URL, "http://example.invalid/v1/models", "fail 502 http_send: destination denied"},
		{"another port is another host", up.URL, "http://127.0.0.1:1/v1/models", "fail 502 http_send: destination denied"},
		{"unreachable", closed.URL, closed.URL + "/v1/models", "fail 502 http_send: upstream unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(each(func(s *sdk.Stream) error {
				return s.Send(sdk.Request{Method: "GET", URL: tt.url}, sdk.Relay)
			}), abi.OpModels, nil, plugintest.Options{BaseURL: tt.baseURL})
			checkEmits(t, res, tt.want)
		})
	}
	if n := up.requests(); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}

	t.Run("the body breaks off", func(t *testing.T) {
		broken := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Content-Length", "1000")
			writeFlushed(w, "data: {\"a\":1}\n\n")
			panic(http.ErrAbortHandler) // the connection is cut
		})
		events := func() sdk.Handler {
			return sdk.Handler{Event: func(s *sdk.Stream, data []byte) error { return s.EmitChunk(data) }}
		}
		whole := func() sdk.Handler {
			return sdk.Handler{Body: func(s *sdk.Stream, _ *sdk.Response, b []byte) error { return s.EmitBody(b) }}
		}
		res := plugintest.Run(send("/x", events), abi.OpChatStream, nil, plugintest.Options{BaseURL: broken.URL})
		checkEmits(t, res, `chunk {"a":1}`, "fail 502 http_read: upstream i/o error")
		res = plugintest.Run(send("/x", whole), abi.OpChat, nil, plugintest.Options{BaseURL: broken.URL})
		checkEmits(t, res, "fail 502 http_read: upstream i/o error")
	})

	t.Run("refused at once", func(t *testing.T) {
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			return s.Send(sdk.Request{Method: "GET", URL: up.URL, Header: [][2]string{{"Bad Name", "v"}}}, sdk.Relay)
		}), abi.OpModels, nil, plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, "fail 500 http_send: invalid argument")
	})

	t.Run("too many open requests", func(t *testing.T) {
		block := make(chan struct{})
		slow := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		})
		defer close(block)
		var errs []error
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			for range 10 {
				errs = append(errs, s.Send(sdk.Request{Method: "GET", URL: slow.URL}, sdk.Relay))
			}
			return s.Fail(503, []byte("enough"))
		}), abi.OpModels, nil, plugintest.Options{BaseURL: slow.URL})
		checkEmits(t, res, "fail 503 enough")
		for i, err := range errs {
			var se *sdk.StatusError
			if limited := errors.As(err, &se) && se.Status == abi.StatusLimit; limited != (i >= 8) {
				t.Errorf("Send %d = %v", i, err)
			}
		}
	})
}

// via is a RoundTripper that marks the requests it carries.
type via struct{ n atomic.Int32 }

func (v *via) RoundTrip(r *http.Request) (*http.Response, error) {
	v.n.Add(1)
	r = r.Clone(r.Context())
	r.Header.Set("X-Via", "test-client")
	return http.DefaultTransport.RoundTrip(r)
}

func TestOptionsClient(t *testing.T) {
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/img.png" {
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("png"))
			return
		}
		io.WriteString(w, r.Header.Get("X-Via"))
	})
	v := &via{}
	res := plugintest.Run(each(func(s *sdk.Stream) error {
		return s.FetchImages([]string{up.URL + "/img.png"}, func(s *sdk.Stream, _ *sdk.Images) error {
			return s.Send(sdk.Request{Method: "GET", URL: up.URL + "/x"}, sdk.Relay)
		})
	}), abi.OpChat, nil, plugintest.Options{BaseURL: up.URL, Client: &http.Client{Transport: v}})
	checkEmits(t, res, "body test-client")
	if v.n.Load() != 2 {
		t.Errorf("the client carried %d requests, want 2 (the image and the upstream request)", v.n.Load())
	}
}

func TestTimers(t *testing.T) {
	t.Run("After", func(t *testing.T) {
		const delay = 50 * time.Millisecond
		var started, fired time.Time
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			started = time.Now()
			return s.After(delay, func(s *sdk.Stream) error {
				fired = time.Now()
				return s.EmitBody([]byte(`{"late":true}`))
			})
		}), abi.OpChat, nil, plugintest.Options{})
		checkEmits(t, res, `body {"late":true}`)
		if d := fired.Sub(started); d < delay {
			t.Errorf("the timer fired after %v, want at least %v", d, delay)
		}
	})

	t.Run("pacing a stream", func(t *testing.T) {
		const step = 20 * time.Millisecond
		start := time.Now()
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			n := 0
			var tick func(s *sdk.Stream) error
			tick = func(s *sdk.Stream) error {
				n++
				if err := s.EmitChunk([]byte(fmt.Sprint(n))); err != nil {
					return err
				}
				if n == 3 {
					return s.Finish()
				}
				return s.After(step, tick)
			}
			return s.After(step, tick)
		}), abi.OpChatStream, nil, plugintest.Options{})
		checkEmits(t, res, "chunk 1", "chunk 2", "chunk 3")
		if !res.Finished {
			t.Error("not Finished")
		}
		if d := time.Since(start); d < 3*step {
			t.Errorf("three steps of %v took %v", step, d)
		}
	})

	t.Run("a new timer replaces the pending one", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			if err := s.After(time.Hour, func(s *sdk.Stream) error { return s.EmitBody([]byte("hour")) }); err != nil {
				return err
			}
			return s.After(time.Millisecond, func(s *sdk.Stream) error { return s.EmitBody([]byte("soon")) })
		}), abi.OpChat, nil, plugintest.Options{Context: ctx})
		checkEmits(t, res, "body soon")
	})

	t.Run("a timer racing an upstream", func(t *testing.T) {
		block := make(chan struct{})
		defer close(block)
		slow := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		})
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			if err := s.Send(sdk.Request{Method: "GET", URL: slow.URL}, sdk.Relay); err != nil {
				return err
			}
			return s.After(20*time.Millisecond, func(s *sdk.Stream) error {
				return s.Fail(504, []byte("upstream too slow"))
			})
		}), abi.OpChat, nil, plugintest.Options{BaseURL: slow.URL})
		checkEmits(t, res, "fail 504 upstream too slow")
	})
}

func TestImages(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake image bytes")
	var hits atomic.Int32
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/cat.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		case "/photo":
			w.Header().Set("Content-Type", "image/jpeg; charset=binary")
			w.Write([]byte("jpeg"))
		case "/huge.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(make([]byte, 8<<20+1))
		case "/page.html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html></html>")
		default:
			http.NotFound(w, r)
		}
	}))
	defer img.Close()
	urls := []string{img.URL + "/cat.png", img.URL + "/photo", img.URL + "/page.html", img.URL + "/missing.png", img.URL + "/huge.png", img.URL + "/cat.png"}
	res := plugintest.Run(each(func(s *sdk.Stream) error {
		return s.FetchImages(urls, func(s *sdk.Stream, im *sdk.Images) error {
			var out []string
			for _, u := range urls[:5] {
				mt, b64, err := im.Get(u)
				if err != nil {
					out = append(out, err.Error())
					continue
				}
				raw, derr := base64.StdEncoding.DecodeString(string(b64))
				if derr != nil {
					return derr
				}
				out = append(out, fmt.Sprintf("%s %q", mt, raw))
			}
			return s.EmitBody([]byte(fmt.Sprintf("%d: %s", im.Len(), strings.Join(out, "; "))))
		})
	}), abi.OpChat, nil, plugintest.Options{})
	checkEmits(t, res, fmt.Sprintf(`body 5: image/png %q; image/jpeg "jpeg"; fetch_image: malformed input; fetch_image: upstream unreachable; fetch_image: limit reached`, png))
	if n := hits.Load(); n != 5 {
		t.Errorf("the image server got %d requests, want 5 (each URL once)", n)
	}
}

func TestAbort(t *testing.T) {
	t.Run("nothing pending and no answer", func(t *testing.T) {
		res := plugintest.Run(each(func(*sdk.Stream) error { return nil }), abi.OpChat, nil, plugintest.Options{})
		checkEmits(t, res, "abort the plugin left the stream without an answer")
		if res.Ret != 0 || res.Finished || res.Callbacks != 2 {
			t.Errorf("Ret %d, Finished %v, Callbacks %d", res.Ret, res.Finished, res.Callbacks)
		}
	})

	t.Run("a body nobody answered from", func(t *testing.T) {
		up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
		res := plugintest.Run(send("/x", func() sdk.Handler {
			return sdk.Handler{Body: func(*sdk.Stream, *sdk.Response, []byte) error { return nil }}
		}), abi.OpEmbeddings, nil, plugintest.Options{BaseURL: up.URL})
		checkEmits(t, res, "abort the plugin left the stream without an answer")
	})

	t.Run("no plugin", func(t *testing.T) {
		res := plugintest.Run(nil, abi.OpChat, nil, plugintest.Options{})
		if res.Ret != 1 {
			t.Errorf("Ret = %d, want 1", res.Ret)
		}
		checkEmits(t, res, "abort the plugin left the stream without an answer")
	})

	t.Run("the run's context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		res := plugintest.Run(each(func(s *sdk.Stream) error {
			return s.After(time.Hour, func(s *sdk.Stream) error { return s.EmitBody(nil) })
		}), abi.OpChat, nil, plugintest.Options{Context: ctx})
		checkEmits(t, res, "abort the run's context ended: context deadline exceeded")
	})
}

func TestResult(t *testing.T) {
	tests := []struct {
		name         string
		op           abi.Op
		fn           func(s *sdk.Stream) error
		wantEmits    []string
		wantFinished bool
	}{
		{"Finish", abi.OpChatStream, func(s *sdk.Stream) error {
			if err := s.EmitChunk([]byte(`{"n":1}`)); err != nil {
				return err
			}
			return s.Finish()
		}, []string{`chunk {"n":1}`}, true},
		{"body", abi.OpChat, func(s *sdk.Stream) error { return s.EmitBody([]byte("{}")) }, []string{"body {}"}, false},
		{"fail", abi.OpChatStream, func(s *sdk.Stream) error { return s.Fail(429, []byte("slow down")) }, []string{"fail 429 slow down"}, false},
		{"usage", abi.OpChatStream, func(s *sdk.Stream) error {
			if err := s.EmitUsage([]byte(`{"total_tokens":3}`)); err != nil {
				return err
			}
			return s.Finish()
		}, []string{`usage {"total_tokens":3}`}, true},
		{"a chunk in a non-streamed op is refused", abi.OpChat, func(s *sdk.Stream) error { return s.EmitChunk([]byte("{}")) },
			[]string{"fail 500 emit: invalid argument"}, false},
		{"a body in a chat_stream is refused", abi.OpChatStream, func(s *sdk.Stream) error { return s.EmitBody([]byte("{}")) },
			[]string{"fail 500 emit: invalid argument"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(each(tt.fn), tt.op, nil, plugintest.Options{})
			checkEmits(t, res, tt.wantEmits...)
			if res.Finished != tt.wantFinished || res.Ret != 0 || res.Callbacks != 2 {
				t.Errorf("Finished %v, Ret %d, Callbacks %d; want %v, 0, 2", res.Finished, res.Ret, res.Callbacks, tt.wantFinished)
			}
		})
	}

	t.Run("a panic", func(t *testing.T) {
		res := plugintest.Run(each(func(*sdk.Stream) error { panic("kaboom") }), abi.OpChat, nil, plugintest.Options{})
		checkEmits(t, res, "fail 502 plugin panic: kaboom")
		logged := strings.Join(res.Logs, "\n")
		if res.Ret != 0 || !strings.Contains(logged, "plugin panic: kaboom") || !strings.Contains(logged, "goroutine ") {
			t.Errorf("Ret %d, logs %q", res.Ret, res.Logs)
		}
	})

	t.Run("Emit.String", func(t *testing.T) {
		for _, tt := range []struct {
			e    plugintest.Emit
			want string
		}{
			{plugintest.Emit{Kind: "chunk", Data: []byte("{}")}, "chunk {}"},
			{plugintest.Emit{Kind: "fail", Status: 404, Data: []byte("no such")}, "fail 404 no such"},
			{plugintest.Emit{Kind: "abort", Data: []byte("why")}, "abort why"},
		} {
			if got := tt.e.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		}
	})
}

// TestParallelRuns: runs from parallel tests take turns, so the SDK's
// shared buffers are never used by two at once (the race detector would
// see it).
func TestParallelRuns(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			req := []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", i*20<<10)))
			res := plugintest.Run(each(func(s *sdk.Stream) error {
				cfg, err := s.Config()
				if err != nil {
					return err
				}
				doc, err := s.ParseJSON(s.Request(), nil)
				if err != nil {
					return err
				}
				return s.EmitBody([]byte(cfg.Provider + " " + string(doc.Root().Get("n").Raw())))
			}), abi.OpChat, req, plugintest.Options{Provider: fmt.Sprint("p", i)})
			checkEmits(t, res, fmt.Sprintf("body p%d %d", i, i))
		})
	}
}
