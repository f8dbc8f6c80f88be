package plugintest_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

const streamCase = `-- op --
chat_stream
-- request --
{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}

-- upstream --
HTTP 200
Content-Type: text/event-stream
X-Request-Id: req-1

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
`

func TestParseCase(t *testing.T) {
	c, err := plugintest.ParseCase("stream", []byte(streamCase))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "stream" || c.Op != abi.OpChatStream {
		t.Errorf("Name %q, Op %v", c.Name, c.Op)
	}
	if string(c.Request) != `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}` {
		t.Errorf("Request = %q", c.Request)
	}
	if c.Upstream.Status != 200 {
		t.Errorf("Upstream.Status = %d", c.Upstream.Status)
	}
	if want := [][2]string{{"Content-Type", "text/event-stream"}, {"X-Request-Id", "req-1"}}; !reflect.DeepEqual(c.Upstream.Headers, want) {
		t.Errorf("Upstream.Headers = %q", c.Upstream.Headers)
	}
	wantBody := "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\ndata: [DONE]\n\n"
	if string(c.Upstream.Body) != wantBody {
		t.Errorf("Upstream.Body = %q, want %q", c.Upstream.Body, wantBody)
	}
	if c.WantMethod != "POST" || c.WantPath != "/v1/chat/completions" {
		t.Errorf("want upstream %s %s", c.WantMethod, c.WantPath)
	}
	if want := [][2]string{{"Authorization", "Bearer test-key"}, {"Content-Type", "application/json"}}; !reflect.DeepEqual(c.WantHeaders, want) {
		t.Errorf("WantHeaders = %q", c.WantHeaders)
	}
	if string(c.WantBody) != `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}` {
		t.Errorf("WantBody = %q", c.WantBody)
	}
	if want := []string{`chunk {"choices":[{"delta":{"content":"he"}}]}`, `chunk {"choices":[{"delta":{"content":"llo"}}]}`}; !reflect.DeepEqual(c.WantEmits, want) {
		t.Errorf("WantEmits = %q", c.WantEmits)
	}

	t.Run("continuation lines", func(t *testing.T) {
		c, err := plugintest.ParseCase("multi", []byte(`-- op --
chat
-- upstream --
HTTP 500
-- want emits --
chunk {"a":
|   1,
| "b":2}   
fail 500 first line
| 
| third line
body x
`))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"chunk {\"a\":\n  1,\n\"b\":2}", "fail 500 first line\n\nthird line", "body x"}
		if !reflect.DeepEqual(c.WantEmits, want) {
			t.Fatalf("WantEmits\n got %q\nwant %q", c.WantEmits, want)
		}
		if c.WantMethod != "" || len(c.Upstream.Body) != 0 {
			t.Errorf("WantMethod %q, body %q", c.WantMethod, c.Upstream.Body)
		}
	})

	t.Run("every op", func(t *testing.T) {
		for name, op := range map[string]abi.Op{"chat": abi.OpChat, "chat_stream": abi.OpChatStream, "embeddings": abi.OpEmbeddings, "models": abi.OpModels} {
			c, err := plugintest.ParseCase(name, []byte("-- op --\n  "+name+"  \n-- upstream --\nHTTP 204\n"))
			if err != nil || c.Op != op || c.Upstream.Status != 204 {
				t.Errorf("%s: %+v, %v", name, c, err)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for name, text := range map[string]string{
			"no op":             "-- upstream --\nHTTP 200\n",
			"unknown op":        "-- op --\nchat_completion\n-- upstream --\nHTTP 200\n",
			"no upstream":       "-- op --\nchat\n",
			"bad status line":   "-- op --\nchat\n-- upstream --\nHTTP/1.1 200 OK\n",
			"status not number": "-- op --\nchat\n-- upstream --\nHTTP two hundred\n",
		} {
			if _, err := plugintest.ParseCase(name, []byte(text)); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}

func TestLoadCases(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.case", "-- op --\nmodels\n-- upstream --\nHTTP 200\n")
	write("a.case", streamCase)
	write("notes.txt", "not a case")
	cases, err := plugintest.LoadCases(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 || cases[0].Name != "a" || cases[1].Name != "b" || cases[1].Op != abi.OpModels {
		t.Fatalf("LoadCases = %+v", cases)
	}

	write("c.case", "-- op --\nnope\n")
	if _, err := plugintest.LoadCases(dir); err == nil || !strings.Contains(err.Error(), "c.case") {
		t.Fatalf("LoadCases with a broken file = %v, want an error naming it", err)
	}

	if cases, err := plugintest.LoadCases(t.TempDir()); err != nil || len(cases) != 0 {
		t.Fatalf("LoadCases of an empty dir = %v, %v", cases, err)
	}
}

func TestStartUpstream(t *testing.T) {
	c, err := plugintest.ParseCase("flush", []byte(`-- op --
chat_stream
-- upstream --
HTTP 201
Content-Type: text/event-stream
X-Two: 1
X-Two: 2

data: {"a"<<flush>>:1}

data: [DONE]

`))
	if err != nil {
		t.Fatal(err)
	}
	up := c.StartUpstream()
	defer up.Close()
	resp, err := http.Post(up.URL+"/v1/x?y=1", "application/json", strings.NewReader(`{"q":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "text/event-stream" || !reflect.DeepEqual(resp.Header.Values("X-Two"), []string{"1", "2"}) {
		t.Errorf("answer %d %v", resp.StatusCode, resp.Header)
	}
	if want := "data: {\"a\":1}\n\ndata: [DONE]\n\n"; string(body) != want {
		t.Errorf("body %q, want %q (the marker removed)", body, want)
	}
	reqs := up.Requests()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/v1/x?y=1" || string(reqs[0].Body) != `{"q":1}` ||
		reqs[0].Header.Get("Content-Type") != "application/json" {
		t.Fatalf("Requests() = %+v", reqs)
	}
}

func TestCheck(t *testing.T) {
	c, err := plugintest.ParseCase("check", []byte(`-- op --
chat
-- upstream --
HTTP 200

{}
-- want upstream --
POST /v1/chat
X-Api-Version: 2

{"b":[1,2],"a":"x"}
-- want emits --
chunk {"b":1,"a":2}
fail 429 slow
| down
`))
	if err != nil {
		t.Fatal(err)
	}
	up := c.StartUpstream()
	defer up.Close()
	post := func(up *plugintest.Upstream, path, version, body string) {
		req, _ := http.NewRequest("POST", up.URL+path, strings.NewReader(body))
		if version != "" {
			req.Header.Set("X-Api-Version", version)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	good := []plugintest.Emit{
		{Kind: "chunk", Data: []byte(`{"b":1,"a":2}`)},
		{Kind: "fail", Status: 429, Data: []byte("slow\ndown")},
	}

	// A body equal as JSON matches whatever its spacing and key order.
	post(up, "/v1/chat", "2", `{ "a" : "x", "b" : [1, 2] }`)
	if diffs := c.Check(up, good); len(diffs) != 0 {
		t.Fatalf("Check of a matching run = %q", diffs)
	}

	tests := []struct {
		name  string
		emits []plugintest.Emit
		want  string // a substring of the one diff
	}{
		{"key order matters in emits", []plugintest.Emit{{Kind: "chunk", Data: []byte(`{"a":2,"b":1}`)}, good[1]}, "emit 0"},
		{"spacing matters in emits", []plugintest.Emit{{Kind: "chunk", Data: []byte(`{"b": 1,"a": 2}`)}, good[1]}, "emit 0"},
		{"surrounding space does not", []plugintest.Emit{{Kind: "chunk", Data: []byte(` {"b":1,"a":2} `)}, good[1]}, ""},
		{"another kind", []plugintest.Emit{{Kind: "body", Data: []byte(`{"b":1,"a":2}`)}, good[1]}, "emit 0"},
		{"another status", []plugintest.Emit{good[0], {Kind: "fail", Status: 500, Data: []byte("slow\ndown")}}, "emit 1"},
		{"the line break matters", []plugintest.Emit{good[0], {Kind: "fail", Status: 429, Data: []byte("slow down")}}, "emit 1"},
		{"a missing emit", good[:1], "emit 1:\n got \nwant fail 429 slow\ndown"},
		{"an extra emit", append(append([]plugintest.Emit{}, good...), plugintest.Emit{Kind: "abort", Data: []byte("x")}), "emit 2:\n got abort x\nwant "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffs := c.Check(up, tt.emits)
			if tt.want == "" {
				if len(diffs) != 0 {
					t.Fatalf("diffs = %q, want none", diffs)
				}
				return
			}
			if len(diffs) != 1 || !strings.Contains(diffs[0], tt.want) {
				t.Fatalf("diffs = %q, want one with %q", diffs, tt.want)
			}
		})
	}

	t.Run("upstream request", func(t *testing.T) {
		tests := []struct {
			name, path, version, body string
			want                      string
		}{
			{"another path", "/v1/other", "2", `{"a":"x","b":[1,2]}`, "upstream request POST /v1/other, want POST /v1/chat"},
			{"a missing header", "/v1/chat", "", `{"a":"x","b":[1,2]}`, `upstream header X-Api-Version = "", want "2"`},
			{"another header value", "/v1/chat", "3", `{"a":"x","b":[1,2]}`, `upstream header X-Api-Version = "3", want "2"`},
			{"another body", "/v1/chat", "2", `{"a":"x","b":[2,1]}`, "upstream body:"},
			{"a body that is not JSON", "/v1/chat", "2", `a=x`, "upstream body:"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				up := c.StartUpstream()
				defer up.Close()
				post(up, tt.path, tt.version, tt.body)
				diffs := c.Check(up, good)
				if len(diffs) != 1 || !strings.Contains(diffs[0], tt.want) {
					t.Fatalf("diffs = %q, want one with %q", diffs, tt.want)
				}
			})
		}

		t.Run("not exactly one request", func(t *testing.T) {
			up := c.StartUpstream()
			defer up.Close()
			if diffs := c.Check(up, good); len(diffs) != 1 || !strings.Contains(diffs[0], "upstream got 0 requests, want 1") {
				t.Fatalf("diffs = %q", diffs)
			}
			post(up, "/v1/chat", "2", `{"a":"x","b":[1,2]}`)
			post(up, "/v1/chat", "2", `{"a":"x","b":[1,2]}`)
			if diffs := c.Check(up, good); len(diffs) != 1 || !strings.Contains(diffs[0], "upstream got 2 requests, want 1") {
				t.Fatalf("diffs = %q", diffs)
			}
		})

		t.Run("bodies that are not JSON compare byte for byte", func(t *testing.T) {
			c, err := plugintest.ParseCase("form", []byte("-- op --\nchat\n-- upstream --\nHTTP 200\n-- want upstream --\nPOST /form\n\na=1&b=2\n"))
			if err != nil {
				t.Fatal(err)
			}
			up := c.StartUpstream()
			defer up.Close()
			post(up, "/form", "", "a=1&b=2\n")
			if diffs := c.Check(up, nil); len(diffs) != 0 {
				t.Fatalf("diffs = %q", diffs)
			}
		})
	})
}

// passthrough relays a chat_stream and translates a chat's whole body; its
// events plugin passes each event's data on as a chunk.
type passthrough struct {
	sdk.Unimplemented
	events bool
}

func (p passthrough) ChatStream(s *sdk.Stream) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	h := sdk.Relay
	if p.events {
		h = sdk.Handler{Event: func(s *sdk.Stream, data []byte) error { return s.EmitChunk(data) }}
	}
	return s.Send(sdk.Request{
		Method: "POST",
		URL:    cfg.BaseURL + "/chat/completions",
		Header: [][2]string{{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}},
		Body:   s.Request(),
	}, h)
}

// TestCases runs golden cases end to end, as a plugin's own tests do.
func TestCases(t *testing.T) {
	cases := map[string]string{
		"stream": streamCase,
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
fail 429 {"error":{"message":"Rate limit reached","type":"requests"}}
`,
		"events in pieces": `-- op --
chat_stream
-- request --
{"model":"m","stream":true}
-- upstream --
HTTP 200
Content-Type: text/event-stream

data: {"choices":[{"delta":{"con<<flush>>tent":"a"}}]}

data: {"multi":
data: "line"}

da<<flush>>ta: [DO<<flush>>NE]

data: {"after":"done"}

-- want upstream --
POST /v1/chat/completions
Accept: text/event-stream

{"stream":true,"model":"m"}
-- want emits --
chunk {"choices":[{"delta":{"content":"a"}}]}
chunk {"multi":
| "line"}
`,
	}
	for name, text := range cases {
		for _, events := range []bool{false, true} {
			mode := "relay"
			if events {
				mode = "events"
			}
			t.Run(name+"/"+mode, func(t *testing.T) {
				c, err := plugintest.ParseCase(name, []byte(text))
				if err != nil {
					t.Fatalf("ParseCase: %v", err)
				}
				up := c.StartUpstream()
				defer up.Close()
				res := plugintest.Run(passthrough{events: events}, c.Op, c.Request, plugintest.Options{
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
}
