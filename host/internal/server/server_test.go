package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/tidwall/sjson"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// noPlugins is a registry with nothing loaded: requests that get past
// validation and routing end in a 503.
type noPlugins struct{}

func (noPlugins) Lookup(name string) (*plugin.Version, error) { return nil, plugin.ErrNotLoaded }
func (noPlugins) List() []plugin.Info {
	return []plugin.Info{{Name: "secretive", SHA256: "0123456789abcdef", LastError: "load /srv/plugins/secretive.wasm: bad magic"}}
}
func (noPlugins) Ready() bool { return false }
func (noPlugins) Install(context.Context, string, []byte) (plugin.Info, error) {
	return plugin.Info{}, plugin.ErrBadFileName
}

func testServer() *Server {
	return New(Options{
		Router:   router.NewLive(router.New([]*router.Provider{{Name: "p", Plugin: "x", Models: []string{"m"}}}, nil)),
		Plugins:  noPlugins{},
		AdminKey: "k",
	})
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, body   string
		op           abi.Op
		ok           bool
		stream, incl bool
		param        string
	}{
		{"minimal", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, abi.OpChat, true, false, false, ""},
		{"stream with usage", `{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true}}`, abi.OpChat, true, true, true, ""},
		{"stream null", `{"model":"m","messages":[{}],"stream":null}`, abi.OpChat, true, false, false, ""},
		{"not json", `{"model":`, abi.OpChat, false, false, false, ""},
		{"array", `[1]`, abi.OpChat, false, false, false, ""},
		{"no model", `{"messages":[{}]}`, abi.OpChat, false, false, false, "model"},
		{"empty model", `{"model":"","messages":[{}]}`, abi.OpChat, false, false, false, "model"},
		{"no messages", `{"model":"m"}`, abi.OpChat, false, false, false, "messages"},
		{"empty messages", `{"model":"m","messages":[]}`, abi.OpChat, false, false, false, "messages"},
		{"stream string", `{"model":"m","messages":[{}],"stream":"true"}`, abi.OpChat, false, false, false, "stream"},
		{"stream_options string", `{"model":"m","messages":[{}],"stream_options":"x"}`, abi.OpChat, false, false, false, "stream_options"},
		{"duplicate model", `{"model":"m","messages":[{}],"model":"other"}`, abi.OpChat, false, false, false, "model"},
		{"duplicate stream", `{"model":"m","messages":[{}],"stream":false,"stream":true}`, abi.OpChat, false, false, false, "stream"},
		{"embeddings", `{"model":"m","input":"hi"}`, abi.OpEmbeddings, true, false, false, ""},
		{"embeddings no input", `{"model":"m"}`, abi.OpEmbeddings, false, false, false, "input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			model, stream, incl, err := parse([]byte(tc.body), tc.op)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				if err.Param != tc.param || err.Status != 400 {
					t.Fatalf("param %q status %d", err.Param, err.Status)
				}
				return
			}
			if model != "m" || stream != tc.stream || incl != tc.incl {
				t.Fatalf("got %q %v %v", model, stream, incl)
			}
		})
	}
}

// FuzzParseRequest sends arbitrary bodies through the real handler: no
// input may panic, every error must be OpenAI-shaped, and a request that
// passes validation must still be valid JSON after normalisation.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"x"}]}`,
		`{"model":"p/other","messages":[{}],"stream":true}`,
		`{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":false}}`,
		`{"model":"m","input":["a","b"]}`,
		`{"model":"\u00e9\\"","messages":[1]}`,
		`{"model":"m","messages":[{}],"stream_options":null,"stream":true}`,
		``, `null`, `{}`, `{"model":{"a":1}}`,
	} {
		f.Add([]byte(s), false)
	}
	s := testServer()
	f.Fuzz(func(t *testing.T, body []byte, embeddings bool) {
		path := "/v1/chat/completions"
		op := abi.OpChat
		if embeddings {
			path, op = "/v1/embeddings", abi.OpEmbeddings
		}
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode < 400 {
			t.Fatalf("status %d without plugins", resp.StatusCode)
		}
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("status %d, body not an OpenAI error: %s", resp.StatusCode, out)
		}
		if model, stream, _, perr := parse(body, op); perr == nil {
			n, err := sjson.SetBytes(bytes.Clone(body), "model", model+"-x")
			if stream && err == nil {
				n, err = sjson.SetBytes(n, "stream_options.include_usage", true)
			}
			if err != nil || !json.Valid(n) {
				t.Fatalf("normalised request invalid (%v): %s", err, n)
			}
		}
	})
}

func TestHasUsageObject(t *testing.T) {
	for in, want := range map[string]bool{
		`{"choices":[],"usage":{"prompt_tokens":1}}`:             true,
		`{"usage" :  {"prompt_tokens":1}}`:                       true,
		`{"choices":[{"delta":{"content":"x"}}],"usage":null}`:   false,
		`{"choices":[{"delta":{"content":"x"}}]}`:                false,
		`{"choices":[{"delta":{"content":"say \"usage\": {"}}]}`: false, // escaped quotes inside a string never match
	} {
		if got := hasUsageObject([]byte(in)); got != want {
			t.Errorf("%s: got %v", in, got)
		}
	}
}

// TestReadyzSaysNoMore: /readyz needs no key, so it tells only whether the
// proxy is ready: the plugins' names, versions, hashes and errors are for
// an admin (GET /api/plugins).
func TestReadyzSaysNoMore(t *testing.T) {
	resp, err := testServer().app.Test(httptest.NewRequest("GET", "/readyz", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || string(body) != `{"status":"not ready"}` {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
