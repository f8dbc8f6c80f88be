package main

import (
	"encoding/json"
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
// run the same files against the built anthropic.wasm.
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
				Provider: "claude", BaseURL: u.URL, Auth: m.Auth, Secret: "test-key",
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

// TestOptions: the provider's options set the default max_tokens, the
// anthropic-version and an anthropic-beta header.
func TestOptions(t *testing.T) {
	c, err := plugintest.ParseCase("options", []byte(`-- op --
chat
-- request --
{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}
-- upstream --
HTTP 200
Content-Type: application/json
Date: Tue, 14 Nov 2023 22:13:20 GMT

{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":0}}
-- want upstream --
POST /v1/messages
anthropic-version: 2024-01-01
anthropic-beta: feature-x
x-api-key: k

{"model":"claude-x","max_tokens":123,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}
-- want emits --
body {"id":"chatcmpl-msg_1","object":"chat.completion","created":1700000000,"model":"claude-x","choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	u := c.StartUpstream()
	defer u.Close()
	res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
		BaseURL: u.URL + "/", Auth: manifest(t).Auth, Secret: "k",
		Options: map[string]any{"max_tokens": 123, "anthropic_version": "2024-01-01", "anthropic_beta": "feature-x"},
	})
	if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
}

// TestRequestRefusals: requests the Messages API cannot express are
// refused with a 400 that names the field, before anything is sent.
func TestRequestRefusals(t *testing.T) {
	tests := []struct{ name, req, param string }{
		{"n above 1", `{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}`, "n"},
		{"no messages", `{"model":"m","messages":[{"role":"system","content":"only a system prompt"}]}`, "messages"},
		{"unknown role", `{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}`, "messages[0].role"},
		{"text part not a string", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}`, "messages[0].content[0]"},
		{"tool without id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id"},
		{"arguments not an object", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[0].tool_calls[0]"},
		{"arguments not JSON", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}`, "messages[0].tool_calls[0]"},
		{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}`, "messages[0].content"},
		{"image in a system message", `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"x"}]}`, "messages[0].content"},
		{"ftp image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0]"},
		{"data URL not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0]"},
		{"file not a PDF", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:text/plain;base64,eA=="}}]}]}`, "messages[0].content[0]"},
		{"custom tool", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{"name":"g"}}]}`, "tools[0]"},
		{"bad tool_choice", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice"},
		{"stop of numbers", `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}`, "stop"},
		{"temperature as text", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}`, "temperature"},
		{"schema missing", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}`, "response_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := plugintest.Run(plugin{}, abi.OpChat, []byte(tt.req), plugintest.Options{BaseURL: "http://127.0.0.1:1"})
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
}
