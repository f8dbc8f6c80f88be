package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

func manifest(t testing.TB) abi.Manifest {
	raw, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := abi.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return *m
}

// TestGolden runs every testdata/*.case natively. The host's plugin tests
// run the same files against the built gemini.wasm.
func TestGolden(t *testing.T) {
	m := manifest(t)
	cases, err := plugintest.LoadCases("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := c.StartUpstream()
			defer u.Close()
			res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
				Provider: "gemini", BaseURL: u.URL + "/v1beta", Auth: m.Auth, Secret: "test-key",
			})
			if res.Ret != 0 {
				t.Fatalf("handle returned %d; logs %v", res.Ret, res.Logs)
			}
			if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
		})
	}
}

// TestRequestRefusals: requests Gemini cannot take are refused with a 400
// that names the field, before anything is sent.
func TestRequestRefusals(t *testing.T) {
	tests := []struct{ name, req, param string }{
		{"http image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "messages[0].content[0]"},
		{"data URL not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0]"},
		{"n of 0", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}`, "n"},
		{"no content", `{"model":"m","messages":[{"role":"system","content":"only"}]}`, "messages"},
		{"arguments not an object", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[0].tool_calls[0]"},
		{"custom tool", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{"name":"g"}}]}`, "tools[0]"},
		{"bad tool_choice", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice"},
		{"temperature as text", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}`, "temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(plugin{}, abi.OpChat, []byte(tt.req), plugintest.Options{BaseURL: "http://127.0.0.1:1/v1beta"})
			if len(res.Emits) != 1 || res.Emits[0].Kind != "fail" || res.Emits[0].Status != 400 {
				t.Fatalf("emits %v", res.Emits)
			}
			var e struct {
				Error struct {
					Message, Type string
					Param         *string
				}
			}
			if err := json.Unmarshal(res.Emits[0].Data, &e); err != nil || e.Error.Type != "invalid_request_error" || e.Error.Message == "" {
				t.Fatalf("not an OpenAI error: %s", res.Emits[0].Data)
			}
			if e.Error.Param == nil || *e.Error.Param != tt.param {
				t.Fatalf("param %v, want %q: %s", e.Error.Param, tt.param, res.Emits[0].Data)
			}
		})
	}
	res := plugintest.Run(plugin{}, abi.OpEmbeddings, []byte(`{"model":"m","input":[[1,2,3]]}`), plugintest.Options{BaseURL: "http://127.0.0.1:1/v1beta"})
	if len(res.Emits) != 1 || res.Emits[0].Status != 400 {
		t.Fatalf("token input: %v", res.Emits)
	}
}

// TestCallIDs: ids are stable, carry the signature, and are told apart
// from ids the plugin did not make.
func TestCallIDs(t *testing.T) {
	id := callID(nil, []byte("resp-g2"), 0, []byte("get_weather"), []byte("CiQBsig1=="))
	if string(id) != "call_3ee28e14637b9ec1_ts_CiQBsig1==" {
		t.Fatalf("id %s", id)
	}
	if sig, ours := signatureOf(id); !ours || string(sig) != "CiQBsig1==" {
		t.Fatalf("signatureOf %q %v", sig, ours)
	}
	if sig, ours := signatureOf([]byte("call_76d7b9c032fd9f41")); !ours || sig != nil {
		t.Fatal("our id without a signature")
	}
	for _, foreign := range []string{"call_abc", "toolu_01", "call_76d7b9c032fd9f4Z", "call_76d7b9c032fd9f41x"} {
		if _, ours := signatureOf([]byte(foreign)); ours {
			t.Errorf("%s taken as ours", foreign)
		}
	}
}

// TestFetchedImage: an http(s) image URL is downloaded by the host and sent
// inline; a URL that is not an image is a 400 naming the part.
func TestFetchedImage(t *testing.T) {
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cat.png" {
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG\r\n\x1a\n"))
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html></html>"))
	}))
	defer img.Close()
	c, err := plugintest.ParseCase("fetched", []byte(`-- op --
chat
-- request --
{"model":"gemini-x","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"`+img.URL+`/cat.png"}}]}]}
-- upstream --
HTTP 200
Content-Type: application/json
Date: Tue, 14 Nov 2023 22:13:20 GMT

{"candidates":[{"content":{"role":"model","parts":[{"text":"a cat"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":260,"candidatesTokenCount":2,"totalTokenCount":262}}
-- want upstream --
POST /v1beta/models/gemini-x:generateContent

{"contents":[{"role":"user","parts":[{"text":"what is it?"},{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}]}
-- want emits --
body {"id":"chatcmpl-gemini","object":"chat.completion","created":1700000000,"model":"gemini-x","choices":[{"index":0,"message":{"role":"assistant","content":"a cat","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":260,"completion_tokens":2,"total_tokens":262,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	u := c.StartUpstream()
	defer u.Close()
	res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{BaseURL: u.URL + "/v1beta"})
	if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
	res = plugintest.Run(plugin{}, abi.OpChat, []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"`+img.URL+`/page.html"}}]}]}`),
		plugintest.Options{BaseURL: u.URL + "/v1beta"})
	if len(res.Emits) != 1 || res.Emits[0].Status != 400 || !strings.Contains(string(res.Emits[0].Data), "is not an image") {
		t.Fatalf("%v", res.Emits)
	}
}
