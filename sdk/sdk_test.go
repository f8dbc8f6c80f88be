package sdk_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/rawjson"
)

// isStatus reports whether err is a *sdk.StatusError of op with status.
func isStatus(err error, op string, status abi.Status) bool {
	var se *sdk.StatusError
	return errors.As(err, &se) && se.Op == op && se.Status == status
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name      string
		req       []byte
		wantReads int // request_read calls the first time
	}{
		{"empty", nil, 1},
		{"small", []byte(`{"model":"m"}`), 1},
		{"larger than the reused buffer", bytes.Repeat([]byte("x"), 100<<10), 2},
		{"small again after a large one", []byte(`{"model":"n"}`), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost()
			h.requests[1] = tt.req
			var first, second []byte
			g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
				first = bytes.Clone(s.Request())
				second = bytes.Clone(s.Request())
				return nil
			}))
			g.OnStart(1, int32(abi.OpChat))
			if !bytes.Equal(first, tt.req) || !bytes.Equal(second, tt.req) {
				t.Fatalf("Request() returned %d then %d bytes, want %d", len(first), len(second), len(tt.req))
			}
			// The large case may find the buffer already grown (-count).
			if n := h.reads["request_read"]; n != tt.wantReads && !(tt.wantReads == 2 && n == 1) {
				t.Errorf("request_read called %d times, want %d", n, tt.wantReads)
			}
		})
	}

	t.Run("cached within a callback, read again in the next", func(t *testing.T) {
		h := newFakeHost()
		h.requests[1] = []byte("one")
		h.requests[2] = []byte("two")
		var got []string
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			got = append(got, string(s.Request())+"/"+string(s.Request()))
			return s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test/"}, sdk.Handler{
				Event: func(s *sdk.Stream, data []byte) error {
					got = append(got, string(s.Request())+"/"+string(s.Request()))
					return nil
				},
			})
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		if h.reads["request_read"] != 1 {
			t.Fatalf("request_read called %d times in one callback, want 1", h.reads["request_read"])
		}
		g.OnStart(2, int32(abi.OpChatStream))
		g.OnHTTPHead(1, 101, 200)
		h.dataCall(g, 1, 101, "e") // stream 1's request, though stream 2 read last
		h.dataCall(g, 1, 101, "e")
		g.OnHTTPHead(2, 102, 200)
		h.dataCall(g, 2, 102, "e")
		if want := []string{"one/one", "two/two", "one/one", "one/one", "two/two"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("Request() per callback = %q, want %q", got, want)
		}
		if h.reads["request_read"] != 5 {
			t.Errorf("request_read called %d times for 5 callbacks, want 5", h.reads["request_read"])
		}
	})

	t.Run("refused by the host", func(t *testing.T) {
		h := newFakeHost()
		h.requestStatus = int32(abi.StatusInvalid)
		var req []byte
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			req = s.Request()
			return s.EmitBody(nil)
		}))
		g.OnStart(1, int32(abi.OpChat))
		if req != nil {
			t.Fatalf("Request() = %q, want nil", req)
		}
	})
}

// configOf runs one stream that reads its config with json as the host's
// config and returns what Config gave.
func configOf(t *testing.T, json string) (*sdk.Config, error) {
	t.Helper()
	h := newFakeHost()
	h.config = []byte(json)
	var cfg *sdk.Config
	var err error
	g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
		cfg, err = s.Config()
		return nil
	}))
	g.OnStart(1, int32(abi.OpChat))
	return cfg, err
}

func TestConfig(t *testing.T) {
	cfg, err := configOf(t, `{"provider":"azure-eu","base_url":"https://example.invalid/openai","options":{
		"api_version":"2024-06-01","temperature":0.25,"retries":3,
		"regions":["westeurope","swedencentral"],"flags":{"beta":true}}}`)
	if err != nil {
		t.Fatalf("Config() = %v", err)
	}
	if cfg.Provider != "azure-eu" || cfg.BaseURL != "https://example.invalid/openai" || cfg.Options.Len() != 5 {
		t.Fatalf("Config() = %+v", cfg)
	}

	t.Run("Option", func(t *testing.T) {
		if s, ok := cfg.OptionString("api_version"); !ok || s != "2024-06-01" {
			t.Errorf("OptionString(api_version) = %q %v", s, ok)
		}
		if raw := cfg.Option("temperature").Raw(); string(raw) != "0.25" {
			t.Errorf("Option(temperature) = %s", raw)
		}
		if n, ok := cfg.OptionInt("retries"); !ok || n != 3 {
			t.Errorf("OptionInt(retries) = %v %v", n, ok)
		}
		var regions []string
		for e := cfg.Option("regions").Elements(); e.Next(); {
			s, _ := e.Value().Str()
			regions = append(regions, string(s))
		}
		if !reflect.DeepEqual(regions, []string{"westeurope", "swedencentral"}) {
			t.Errorf("Option(regions) = %v", regions)
		}
		if !cfg.Option("flags").Get("beta").IsTrue() {
			t.Errorf("Option(flags) = %s", cfg.Option("flags").Raw())
		}
		if s, ok := cfg.OptionString("deployment"); ok {
			t.Errorf("OptionString(deployment) reported a value %q", s)
		}
		if _, ok := cfg.OptionInt("api_version"); ok {
			t.Errorf("OptionInt(api_version) reported success")
		}
		if _, ok := cfg.OptionInt("temperature"); ok {
			t.Errorf("OptionInt(temperature) reported success for a fraction")
		}
		var zero sdk.Config
		if _, ok := zero.OptionString("x"); ok {
			t.Error("OptionString on a zero Config reported a value")
		}
	})

	t.Run("cached by its JSON", func(t *testing.T) {
		h := newFakeHost()
		h.configs[1] = []byte(`{"provider":"cache-a","base_url":"https://a.test"}`)
		h.configs[2] = []byte(`{"provider":"cache-a","base_url":"https://a.test"}`)
		h.configs[3] = []byte(`{"provider":"cache-b","base_url":"https://b.test"}`)
		got := map[int32]*sdk.Config{}
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			c, err := s.Config()
			if err != nil {
				return err
			}
			again, _ := s.Config()
			if again != c {
				return errors.New("a second Config() in one callback decoded again")
			}
			got[s.ID()] = c
			return nil
		}))
		for _, id := range []int32{1, 3, 2} {
			g.OnStart(id, int32(abi.OpChat))
		}
		checkCalls(t, h.take(), nil)
		if got[1] != got[2] {
			t.Error("two streams with the same config JSON got different *Config values")
		}
		if got[1] == got[3] || got[3].Provider != "cache-b" || got[1].Provider != "cache-a" {
			t.Errorf("different config JSON shared a value: %+v %+v", got[1], got[3])
		}
		if h.reads["config_read"] != 6 {
			t.Errorf("config_read called %d times, want 6 (the host's config is read every time)", h.reads["config_read"])
		}
	})

	t.Run("many providers", func(t *testing.T) {
		// More than the cache holds: it is cleared and refilled.
		for i := range 80 {
			name := fmt.Sprintf("many-%d", i)
			cfg, err := configOf(t, `{"provider":"`+name+`"}`)
			if err != nil || cfg.Provider != name {
				t.Fatalf("config %d: %+v, %v", i, cfg, err)
			}
		}
	})

	t.Run("larger than the reused buffer", func(t *testing.T) {
		long := strings.Repeat("y", 5000)
		cfg, err := configOf(t, `{"provider":"big","options":{"prompt":"`+long+`"}}`)
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := cfg.OptionString("prompt"); !ok || s != long {
			t.Fatalf("option of %d bytes", len(s))
		}
	})

	t.Run("no options", func(t *testing.T) {
		cfg, err := configOf(t, `{"provider":"bare","base_url":"https://bare.invalid"}`)
		if err != nil || cfg.Provider != "bare" || cfg.Options.Exists() {
			t.Fatalf("Config() = %+v, %v", cfg, err)
		}
		if _, ok := cfg.OptionString("anything"); ok {
			t.Error("OptionString without options reported a value")
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name   string
			json   string
			status int32
			want   string // the fail when the error is returned
		}{
			{name: "host refuses", status: int32(abi.StatusInvalid), want: "fail 1 500 config_read: invalid argument"},
			{name: "not JSON", json: "provider=x", want: "fail 1 502 the provider config is not a JSON object"},
			{name: "not an object", json: `[1,2]`, want: "fail 1 502 the provider config is not a JSON object"},
			{name: "wrong shape", json: `{"options":[1,2]}`, want: "fail 1 502 the provider config's options are not an object"},
			{name: "empty", json: "", want: "fail 1 502 the provider config is not a JSON object"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newFakeHost()
				h.config = []byte(tt.json)
				h.configStatus = tt.status
				g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
					cfg, err := s.Config()
					if err == nil {
						return fmt.Errorf("Config() = %+v, want an error", cfg)
					}
					return err
				}))
				g.OnStart(1, int32(abi.OpChat))
				calls := h.take()
				if len(calls) != 1 || !strings.HasPrefix(calls[0], tt.want) {
					t.Fatalf("calls = %q, want one starting with %q", calls, tt.want)
				}
			})
		}
	})
}

func TestEmit(t *testing.T) {
	t.Run("kinds", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			for _, err := range []error{
				s.EmitChunk([]byte(`{"n":1}`)),
				s.EmitUsage([]byte(`{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}`)),
				s.EmitBody([]byte(`{"object":"list","data":[]}`)),
			} {
				if err != nil {
					return err
				}
			}
			s.Log(abi.LogInfo, "all sent")
			return nil
		}))
		g.OnStart(1, int32(abi.OpModels))
		checkCalls(t, h.take(), []string{
			`emit 1 chunk {"n":1}`,
			`emit 1 usage {"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}`,
			`emit 1 body {"object":"list","data":[]}`,
		})
		if !reflect.DeepEqual(h.logs, []string{"all sent"}) || h.levels[0] != abi.LogInfo {
			t.Fatalf("logs = %q %v", h.logs, h.levels)
		}
	})

	// After the stream ended (by the first call), what the others return
	// and which reach the host.
	ending := []struct {
		name string
		end  func(s *sdk.Stream) error
		call string
	}{
		{"EmitBody", func(s *sdk.Stream) error { return s.EmitBody([]byte("{}")) }, "emit 1 body {}"},
		{"Fail", func(s *sdk.Stream) error { return s.Fail(429, []byte("slow")) }, "fail 1 429 slow"},
		{"Finish", func(s *sdk.Stream) error { return s.Finish() }, "finish 1"},
	}
	for _, e := range ending {
		t.Run(e.name+" ends the stream", func(t *testing.T) {
			h := newFakeHost()
			errs := map[string]error{}
			var before, after bool
			g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
				before = s.Ended()
				if err := e.end(s); err != nil {
					return err
				}
				after = s.Ended()
				errs["Fail"] = s.Fail(500, []byte("again"))
				errs["Finish"] = s.Finish()
				errs["Send"] = s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test/"}, sdk.Relay)
				errs["After"] = s.After(time.Second, func(*sdk.Stream) error { return nil })
				errs["FetchImages"] = s.FetchImages([]string{"https://img.test/a.png"}, func(*sdk.Stream, *sdk.Images) error {
					return errors.New("then ran")
				})
				errs["EmitChunk"] = s.EmitChunk([]byte("late"))
				return nil
			}))
			g.OnStart(1, int32(abi.OpChatStream))
			if before || !after {
				t.Errorf("Ended() = %v before, %v after", before, after)
			}
			for name, err := range errs {
				if !errors.Is(err, sdk.ErrEnded) {
					t.Errorf("%s after %s = %v, want ErrEnded", name, e.name, err)
				}
			}
			// Only the emit reaches the host, which refuses it.
			checkCalls(t, h.take(), []string{e.call, "emit 1 chunk late ended"})
		})
	}

	statuses := []struct {
		name      string
		status    abi.Status
		check     func(error) bool
		wantEnded bool
		wantFail  string // what returning the error does
	}{
		{"LIMIT", abi.StatusLimit, func(err error) bool { return isStatus(err, "emit", abi.StatusLimit) }, true, ""},
		{"CLIENT_GONE", abi.StatusClientGone, func(err error) bool { return err == sdk.ErrClientGone }, true, ""},
		{"ENDED", abi.StatusEnded, func(err error) bool { return err == sdk.ErrEnded }, true, ""},
		{"INVALID", abi.StatusInvalid, func(err error) bool { return isStatus(err, "emit", abi.StatusInvalid) }, false,
			"fail 1 500 emit: invalid argument"},
	}
	for _, st := range statuses {
		for _, kind := range []string{"chunk", "body", "usage"} {
			t.Run(st.name+" "+kind, func(t *testing.T) {
				h := newFakeHost()
				h.emitStatus = int32(st.status)
				var err error
				var ended bool
				g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
					switch kind {
					case "chunk":
						err = s.EmitChunk([]byte("x"))
					case "body":
						err = s.EmitBody([]byte("x"))
					case "usage":
						err = s.EmitUsage([]byte("x"))
					}
					ended = s.Ended()
					h.emitStatus = 0
					return err
				}))
				g.OnStart(1, int32(abi.OpChatStream))
				if !st.check(err) {
					t.Errorf("error = %v", err)
				}
				if ended != st.wantEnded {
					t.Errorf("Ended() = %v, want %v", ended, st.wantEnded)
				}
				want := []string{"emit 1 " + kind + " x refused"}
				if st.wantFail != "" {
					want = append(want, st.wantFail)
				}
				checkCalls(t, h.take(), want)
			})
		}
	}

	t.Run("fail and finish refused by the host", func(t *testing.T) {
		h := newFakeHost()
		h.failStatus = int32(abi.StatusInvalid)
		h.finishStatus = int32(abi.StatusClientGone)
		var failErr, finishErr error
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			if s.ID() == 1 {
				failErr = s.Fail(600, []byte("x"))
			} else {
				finishErr = s.Finish()
			}
			return nil
		}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnStart(2, int32(abi.OpChatStream))
		if !isStatus(failErr, "fail", abi.StatusInvalid) {
			t.Errorf("Fail = %v", failErr)
		}
		if finishErr != sdk.ErrClientGone {
			t.Errorf("Finish = %v", finishErr)
		}
		checkCalls(t, h.take(), []string{"fail 1 600 x refused", "finish 2 refused"})
	})
}

func TestAfter(t *testing.T) {
	t.Run("fires once", func(t *testing.T) {
		h := newFakeHost()
		fired := 0
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.After(250*time.Millisecond, func(s *sdk.Stream) error {
				fired++
				return s.EmitChunk([]byte("tick"))
			})
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnTimer(1)
		g.OnTimer(1) // no timer pending: nothing
		if fired != 1 {
			t.Fatalf("timer fired %d times, want 1", fired)
		}
		checkCalls(t, h.take(), []string{"set_timer 1 250", "emit 1 chunk tick"})
	})

	t.Run("delays", func(t *testing.T) {
		tests := []struct {
			d    time.Duration
			want string // the set_timer call, or "" for a refusal
		}{
			{0, "set_timer 1 0"},
			{500 * time.Microsecond, "set_timer 1 0"},
			{1500 * time.Microsecond, "set_timer 1 1"},
			{time.Hour, "set_timer 1 3600000"},
			{(1<<31 - 1) * time.Millisecond, "set_timer 1 2147483647"},
			{(1 << 31) * time.Millisecond, ""},
			{1 << 62, ""},
			{-time.Millisecond, ""},
			{-1 << 62, ""},
		}
		for _, tt := range tests {
			t.Run(tt.d.String(), func(t *testing.T) {
				h := newFakeHost()
				var err error
				g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
					err = s.After(tt.d, func(*sdk.Stream) error { return nil })
					return nil
				}))
				g.OnStart(1, int32(abi.OpChatStream))
				if tt.want == "" {
					if !isStatus(err, "set_timer", abi.StatusInvalid) {
						t.Errorf("After(%v) = %v, want a set_timer INVALID error", tt.d, err)
					}
					checkCalls(t, h.take(), nil)
					return
				}
				if err != nil {
					t.Errorf("After(%v) = %v", tt.d, err)
				}
				checkCalls(t, h.take(), []string{tt.want})
			})
		}
	})

	t.Run("replaces a pending timer", func(t *testing.T) {
		h := newFakeHost()
		var got []string
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			_ = s.After(time.Second, func(*sdk.Stream) error { got = append(got, "first"); return nil })
			return s.After(2*time.Second, func(*sdk.Stream) error { got = append(got, "second"); return nil })
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnTimer(1)
		g.OnTimer(1)
		if !reflect.DeepEqual(got, []string{"second"}) {
			t.Fatalf("fired %q, want [second]", got)
		}
	})

	t.Run("a timer callback sets the next", func(t *testing.T) {
		h := newFakeHost()
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
			return s.After(10*time.Millisecond, tick)
		}
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error { return s.After(10*time.Millisecond, tick) }))
		g.OnStart(1, int32(abi.OpChatStream))
		for range 5 {
			g.OnTimer(1)
		}
		checkCalls(t, h.take(), []string{
			"set_timer 1 10", "emit 1 chunk 1", "set_timer 1 10", "emit 1 chunk 2",
			"set_timer 1 10", "emit 1 chunk 3", "finish 1",
		})
	})

	t.Run("refused by the host", func(t *testing.T) {
		h := newFakeHost()
		h.timerStatus = int32(abi.StatusLimit)
		fired := false
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			err := s.After(time.Second, func(*sdk.Stream) error { fired = true; return nil })
			if !isStatus(err, "set_timer", abi.StatusLimit) {
				t.Errorf("After = %v", err)
			}
			return err
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnTimer(1)
		if fired {
			t.Error("a refused timer fired")
		}
		checkCalls(t, h.take(), []string{"set_timer 1 1000 refused", "fail 1 502 set_timer: limit reached"})
	})

	t.Run("an error from the callback fails the stream", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.After(time.Millisecond, func(*sdk.Stream) error { return &sdk.HTTPError{Status: 503, Message: "later"} })
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnTimer(1)
		checkCalls(t, h.take(), []string{"set_timer 1 1", "fail 1 503 later"})
	})

	t.Run("dropped at on_done", func(t *testing.T) {
		h := newFakeHost()
		fired := false
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.After(time.Millisecond, func(*sdk.Stream) error { fired = true; return nil })
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		g.OnDone(1, int32(abi.StatusClientGone))
		g.OnTimer(1)
		if fired {
			t.Error("the timer fired after on_done")
		}
	})
}

func TestSend(t *testing.T) {
	t.Run("the request reaches the host", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.Send(sdk.Request{
				Method: "POST",
				URL:    "https://upstream.test/v1/chat?alt=sse",
				Header: [][2]string{{"Content-Type", "application/json"}, {"X-Trace", "t-1: two words"}, {"X-Empty", ""}},
				Body:   []byte(`{"model":"m"}`),
			}, sdk.Relay)
		}))
		g.OnStart(1, int32(abi.OpChatStream))
		checkCalls(t, h.take(), []string{"http_send 1 POST https://upstream.test/v1/chat?alt=sse -> 101"})
		want := sentRequest{stream: 1, handle: 101, body: `{"model":"m"}`, head: abi.Head{
			Method: "POST", URL: "https://upstream.test/v1/chat?alt=sse",
			Headers: [][2]string{{"Content-Type", "application/json"}, {"X-Trace", "t-1: two words"}, {"X-Empty", ""}},
		}}
		if len(h.sent) != 1 || !reflect.DeepEqual(h.sent[0], want) {
			t.Fatalf("sent %+v, want %+v", h.sent, want)
		}
	})

	t.Run("headers refused", func(t *testing.T) {
		for _, hd := range [][2]string{
			{"X-A:", "v"},
			{"X:Injected", "v"},
			{"X-A\r", "v"},
			{"X-A\nX-B", "v"},
			{"X-A", "a\rX-Injected: 1"},
			{"X-A", "a\nX-Injected: 1"},
			{"X-A", "a\r\n"},
		} {
			t.Run(fmt.Sprintf("%q", hd), func(t *testing.T) {
				h := newFakeHost()
				var err error
				g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
					err = s.Send(sdk.Request{Method: "GET", URL: "https://upstream.test/",
						Header: [][2]string{{"Accept", "*/*"}, hd}}, sdk.Relay)
					return err
				}))
				g.OnStart(1, int32(abi.OpChatStream))
				if !isStatus(err, "http_send", abi.StatusInvalid) {
					t.Errorf("Send = %v, want an http_send INVALID error", err)
				}
				// Nothing reached the host; the returned error failed the stream.
				checkCalls(t, h.take(), []string{"fail 1 500 http_send: invalid argument"})
			})
		}
	})

	t.Run("refused by the host", func(t *testing.T) {
		tests := []struct {
			name   string
			req    sdk.Request
			status abi.Status
			want   []string
		}{
			{"a header name the host rejects", sdk.Request{Method: "GET", URL: "https://upstream.test/", Header: [][2]string{{"Bad Name", "v"}}}, 0,
				[]string{"http_send 1 malformed head \"GET https://upstream.test/\\nBad Name: v\\n\"", "fail 1 500 http_send: invalid argument"}},
			{"no method", sdk.Request{URL: "https://upstream.test/"}, 0,
				[]string{"http_send 1 malformed head \" https://upstream.test/\\n\"", "fail 1 500 http_send: invalid argument"}},
			{"too many requests", sdk.Request{Method: "GET", URL: "https://upstream.test/"}, abi.StatusLimit,
				[]string{"http_send 1 GET https://upstream.test/ refused", "fail 1 502 http_send: limit reached"}},
			{"denied at once", sdk.Request{Method: "GET", URL: "https://other.test/"}, abi.StatusDenied,
				[]string{"http_send 1 GET https://other.test/ refused", "fail 1 502 http_send: destination denied"}},
			{"client gone", sdk.Request{Method: "GET", URL: "https://upstream.test/"}, abi.StatusClientGone,
				[]string{"http_send 1 GET https://upstream.test/ refused"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newFakeHost()
				h.sendStatus = int32(tt.status)
				g := sdk.NewGuest(h, each(func(s *sdk.Stream) error { return s.Send(tt.req, sdk.Relay) }))
				g.OnStart(1, int32(abi.OpChatStream))
				checkCalls(t, h.take(), tt.want)
			})
		}
	})
}

func TestParseJSON(t *testing.T) {
	const doc = `{"a":[1,"x"],"b":{"c":true}}`
	h := newFakeHost()
	g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
		t.Run("a small tape grows", func(t *testing.T) {
			h.reads["json_tape"] = 0
			d, err := s.ParseJSON([]byte(doc), make([]uint32, 0, 4))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(d.Root().Get("b").Get("c").Raw()); got != "true" || len(d.Tape) != 9*rawjson.EntryWords {
				t.Fatalf("b.c = %q, tape of %d words", got, len(d.Tape))
			}
			if h.reads["json_tape"] != 2 {
				t.Errorf("json_tape called %d times, want 2", h.reads["json_tape"])
			}

			t.Run("and is reused", func(t *testing.T) {
				h.reads["json_tape"] = 0
				again, err := s.ParseJSON([]byte(`[1]`), d.Tape)
				if err != nil || &again.Tape[0] != &d.Tape[0] || h.reads["json_tape"] != 1 {
					t.Fatalf("err %v, same tape %v, %d json_tape calls", err, &again.Tape[0] == &d.Tape[0], h.reads["json_tape"])
				}
				if got := string(elem(again.Root(), 0).Raw()); got != "1" {
					t.Fatalf("[0] = %q", got)
				}
			})
		})
		t.Run("nil tape", func(t *testing.T) {
			d, err := s.ParseJSON([]byte(`"s"`), nil)
			if err != nil || string(d.Root().Raw()) != `"s"` {
				t.Fatalf("%q, %v", d.Root().Raw(), err)
			}
		})
		for _, bad := range []string{`{"a":`, ``, `1 2`, `{"a":1}}`} {
			t.Run(fmt.Sprintf("malformed %q", bad), func(t *testing.T) {
				if _, err := s.ParseJSON([]byte(bad), nil); err != rawjson.ErrSyntax {
					t.Fatalf("ParseJSON = %v, want rawjson.ErrSyntax", err)
				}
			})
		}
		t.Run("host refuses", func(t *testing.T) {
			h.jsonStatus = int32(abi.StatusLimit)
			defer func() { h.jsonStatus = 0 }()
			if _, err := s.ParseJSON([]byte(doc), nil); !isStatus(err, "json_tape", abi.StatusLimit) {
				t.Fatalf("ParseJSON = %v, want a json_tape LIMIT error", err)
			}
		})
		return s.EmitBody(nil)
	}))
	g.OnStart(1, int32(abi.OpChat))

	t.Run("Guest.ParseJSON", func(t *testing.T) {
		d, err := g.ParseJSON([]byte(doc), nil)
		if err != nil || string(elem(d.Root().Get("a"), 1).Raw()) != `"x"` {
			t.Fatalf("%v", err)
		}
	})
}

// elem returns the i-th element of an array.
func elem(v rawjson.Value, i int) rawjson.Value {
	e := v.Elements()
	for e.Next() {
		if i == 0 {
			return e.Value()
		}
		i--
	}
	return rawjson.Value{}
}

func TestFetchImages(t *testing.T) {
	type result struct {
		url, mediaType, data string
		err                  error
	}
	// collect returns a then that records every URL's result (and the
	// unknown one's) and answers the stream.
	collect := func(out *[]result, urls ...string) func(*sdk.Stream, *sdk.Images) error {
		return func(s *sdk.Stream, im *sdk.Images) error {
			for _, u := range append(urls, "https://img.test/never-asked.png") {
				mt, b64, err := im.Get(u)
				*out = append(*out, result{u, mt, string(b64), err})
			}
			return s.EmitBody([]byte(fmt.Sprintf("%d images", im.Len())))
		}
	}

	t.Run("duplicates fetched once, results split", func(t *testing.T) {
		h := newFakeHost()
		var got []result
		urls := []string{"https://img.test/a.png", "https://img.test/b.jpg", "https://img.test/a.png"}
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.FetchImages(urls, collect(&got, urls[0], urls[1]))
		}))
		g.OnStart(1, int32(abi.OpChat))
		checkCalls(t, h.take(), []string{
			"fetch_image 1 https://img.test/a.png -> 101",
			"fetch_image 1 https://img.test/b.jpg -> 102",
		})
		h.imageCall(g, 1, 102, "image/jpeg\n/9j/4AAQ")
		if got != nil {
			t.Fatal("then ran before every image arrived")
		}
		h.imageCall(g, 1, 101, "image/png\niVBORw0KGgo=")
		want := []result{
			{"https://img.test/a.png", "image/png", "iVBORw0KGgo=", nil},
			{"https://img.test/b.jpg", "image/jpeg", "/9j/4AAQ", nil},
		}
		if len(got) != 3 || !reflect.DeepEqual(got[:2], want) {
			t.Fatalf("results %+v, want %+v", got, want)
		}
		if !isStatus(got[2].err, "fetch_image", abi.StatusNotFound) {
			t.Errorf("Get of a URL never asked for = %v, want NOT_FOUND", got[2].err)
		}
		checkCalls(t, h.take(), []string{"emit 1 body 2 images"})
	})

	t.Run("synchronous refusals: then runs at once", func(t *testing.T) {
		h := newFakeHost()
		h.imageStatus["ftp://img.test/a.png"] = int32(abi.StatusDenied)
		h.imageStatus["http://10.0.0.1/b.png"] = int32(abi.StatusDenied)
		var got []result
		urls := []string{"ftp://img.test/a.png", "http://10.0.0.1/b.png"}
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.FetchImages(urls, collect(&got, urls...))
		}))
		g.OnStart(1, int32(abi.OpChat))
		checkCalls(t, h.take(), []string{
			"fetch_image 1 ftp://img.test/a.png refused",
			"fetch_image 1 http://10.0.0.1/b.png refused",
			"emit 1 body 2 images",
		})
		if len(got) != 3 || !isStatus(got[0].err, "fetch_image", abi.StatusDenied) || !isStatus(got[1].err, "fetch_image", abi.StatusDenied) {
			t.Fatalf("results %+v", got)
		}
	})

	t.Run("no URLs: then runs at once", func(t *testing.T) {
		h := newFakeHost()
		var got []result
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error { return s.FetchImages(nil, collect(&got)) }))
		g.OnStart(1, int32(abi.OpChat))
		checkCalls(t, h.take(), []string{"emit 1 body 0 images"})
	})

	t.Run("failures", func(t *testing.T) {
		h := newFakeHost()
		h.imageStatus["https://img.test/refused.png"] = int32(abi.StatusDenied)
		var got []result
		urls := []string{"https://img.test/refused.png", "https://img.test/big.png", "https://img.test/page.html", "https://img.test/bad", "https://img.test/ok.gif"}
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error { return s.FetchImages(urls, collect(&got, urls...)) }))
		g.OnStart(1, int32(abi.OpChat))
		g.OnImage(1, 101, int32(abi.StatusLimit))
		g.OnImage(1, 102, int32(abi.StatusMalformed))
		h.imageCall(g, 1, 103, "no line break")
		h.imageCall(g, 1, 104, "image/gif\nR0lGOD")
		if len(got) != 6 {
			t.Fatalf("results %+v", got)
		}
		for i, st := range []abi.Status{abi.StatusDenied, abi.StatusLimit, abi.StatusMalformed, abi.StatusInvalid} {
			if !isStatus(got[i].err, "fetch_image", st) || got[i].data != "" {
				t.Errorf("%s: %+v, want a %v error", urls[i], got[i], st)
			}
		}
		if got[4] != (result{urls[4], "image/gif", "R0lGOD", nil}) {
			t.Errorf("ok.gif: %+v", got[4])
		}
	})

	t.Run("an error from then fails the stream", func(t *testing.T) {
		h := newFakeHost()
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.FetchImages([]string{"https://img.test/a.png"}, func(s *sdk.Stream, im *sdk.Images) error {
				_, _, err := im.Get("https://img.test/a.png")
				return err
			})
		}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnImage(1, 101, int32(abi.StatusTimeout))
		checkCalls(t, h.take()[1:], []string{"fail 1 504 fetch_image: timeout"})
	})

	t.Run("then does not run once the stream ended", func(t *testing.T) {
		h := newFakeHost()
		ran := false
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			if err := s.FetchImages([]string{"https://img.test/a.png"}, func(*sdk.Stream, *sdk.Images) error { ran = true; return nil }); err != nil {
				return err
			}
			return s.After(time.Millisecond, func(s *sdk.Stream) error { return s.Fail(504, []byte("too slow")) })
		}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnTimer(1)
		h.imageCall(g, 1, 101, "image/png\nAA==")
		if ran {
			t.Fatal("then ran after the stream ended")
		}
	})

	t.Run("dropped at on_done", func(t *testing.T) {
		h := newFakeHost()
		ran := false
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.FetchImages([]string{"https://img.test/a.png"}, func(*sdk.Stream, *sdk.Images) error { ran = true; return nil })
		}))
		g.OnStart(1, int32(abi.OpChat))
		g.OnDone(1, int32(abi.StatusClientGone))
		h.imageCall(g, 1, 101, "image/png\nAA==")
		if ran {
			t.Fatal("then ran after on_done")
		}
	})

	t.Run("unknown handles and other streams' handles are ignored", func(t *testing.T) {
		h := newFakeHost()
		var ran []int32
		g := sdk.NewGuest(h, each(func(s *sdk.Stream) error {
			return s.FetchImages([]string{"https://img.test/a.png"}, func(s *sdk.Stream, im *sdk.Images) error {
				ran = append(ran, s.ID())
				return s.EmitBody(nil)
			})
		}))
		g.OnStart(1, int32(abi.OpChat)) // handle 101
		g.OnStart(2, int32(abi.OpChat)) // handle 102
		h.imageCall(g, 1, 999, "image/png\nAA==")
		h.imageCall(g, 2, 101, "image/png\nAA==")
		h.imageCall(g, 1, 102, "image/png\nAA==")
		if len(ran) != 0 {
			t.Fatalf("then ran for streams %v", ran)
		}
		h.imageCall(g, 1, 101, "image/png\nAA==")
		h.imageCall(g, 2, 102, "image/png\nAA==")
		if !reflect.DeepEqual(ran, []int32{1, 2}) {
			t.Fatalf("then ran for streams %v, want [1 2]", ran)
		}
	})
}

func TestRegister(t *testing.T) {
	p := each(func(*sdk.Stream) error { return nil })
	if sdk.Registered() == nil {
		sdk.Register(p)
	}
	if sdk.Registered() == nil {
		t.Fatal("Registered() = nil after Register")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second Register did not panic")
		}
	}()
	sdk.Register(p)
}

func TestStatusErrors(t *testing.T) {
	err := &sdk.StatusError{Op: "http_send", Status: abi.StatusDenied}
	if err.Error() != "http_send: destination denied" {
		t.Errorf("Error() = %q", err.Error())
	}
	if he := (&sdk.HTTPError{Status: 418, Message: "teapot"}); he.Error() != "teapot" {
		t.Errorf("HTTPError.Error() = %q", he.Error())
	}
}
