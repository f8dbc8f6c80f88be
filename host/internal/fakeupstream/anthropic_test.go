package fakeupstream

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

var anthropicHeaders = map[string]string{"x-api-key": "ak", "anthropic-version": "2023-06-01"}

func messages(t *testing.T, s *Server, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, strings.TrimSuffix(s.URL, "/v1")+"/v1/messages", body, anthropicHeaders)
}

type anthropicReply struct {
	ID         string
	Type       string
	Content    []anthropicBlock
	StopReason string `json:"stop_reason"`
	Usage      struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	}
	Error struct{ Type, Message string }
}

func decodeReply(t *testing.T, b []byte) anthropicReply {
	t.Helper()
	var r anthropicReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return r
}

func TestAnthropicMessages(t *testing.T) {
	s := startServer(t, Options{APIKey: "ak"})
	resp, b := messages(t, s, `{"model":"claude-x","max_tokens":10,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hello there"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}`)
	r := decodeReply(t, b)
	if resp.StatusCode != 200 || r.Type != "message" || r.StopReason != "end_turn" || len(r.Content) != 1 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if want := "echo: hello there [image image/png 8 bytes] [image url https://example.com/a.png]"; r.Content[0].Text != want {
		t.Fatalf("text %q, want %q", r.Content[0].Text, want)
	}
	if r.Usage.InputTokens != 2 || r.Usage.OutputTokens != countWords(r.Content[0].Text) {
		t.Fatalf("usage %+v", r.Usage)
	}
}

func TestAnthropicToolRoundTrip(t *testing.T) {
	s := startServer(t, Options{})
	tools := `"tools":[{"name":"get_weather","input_schema":{"type":"object"}}]`
	_, b := messages(t, s, `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"weather?"}],`+tools+`}`)
	r := decodeReply(t, b)
	if r.StopReason != "tool_use" || r.Content[0].Type != "tool_use" || r.Content[0].Name != "get_weather" || string(r.Content[0].Input) != anthropicToolInput {
		t.Fatalf("%s", b)
	}
	id := r.Content[0].ID
	_, b = messages(t, s, `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":[{"type":"tool_use","id":"`+id+`","name":"get_weather","input":{"city":"Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"`+id+`","content":"21C"}]}],`+tools+`}`)
	if r := decodeReply(t, b); r.Content[0].Text != "tool said: 21C" {
		t.Fatalf("%s", b)
	}
	_, b = messages(t, s, `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}],`+tools+`,"tool_choice":{"type":"none"}}`)
	if r := decodeReply(t, b); r.Content[0].Text != "echo: x" {
		t.Fatalf("tool_choice none: %s", b)
	}
}

// TestAnthropicRefusals: what the real API refuses, the fake refuses, so a
// translation mistake fails the integration tests.
func TestAnthropicRefusals(t *testing.T) {
	s := startServer(t, Options{APIKey: "ak"})
	for name, body := range map[string]string{
		"unknown field":          `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"frequency_penalty":1}`,
		"no max_tokens":          `{"model":"m","messages":[{"role":"user","content":"x"}]}`,
		"roles not alternating":  `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}`,
		"empty text":             `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":" "}]}]}`,
		"system role":            `{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`,
		"orphan tool result":     `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"x"}]}]}`,
		"bad base64":             `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"%%"}}]}]}`,
		"ends with an assistant": `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}`,
	} {
		resp, b := messages(t, s, body)
		if r := decodeReply(t, b); resp.StatusCode != 400 || r.Type != "error" || r.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	resp, b := do(t, http.MethodPost, strings.TrimSuffix(s.URL, "/v1")+"/v1/messages", `{}`, map[string]string{"x-api-key": "wrong", "anthropic-version": "2023-06-01"})
	if r := decodeReply(t, b); resp.StatusCode != 401 || r.Error.Type != "authentication_error" {
		t.Fatalf("wrong key: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, http.MethodPost, strings.TrimSuffix(s.URL, "/v1")+"/v1/messages", `{}`, map[string]string{"x-api-key": "ak"})
	if resp.StatusCode != 400 || !strings.Contains(string(b), "anthropic-version") {
		t.Fatalf("no version: %d %s", resp.StatusCode, b)
	}
}

func TestAnthropicFailureModels(t *testing.T) {
	s := startServer(t, Options{})
	for model, want := range map[string]struct {
		status int
		typ    string
	}{
		ModelFail400: {400, "invalid_request_error"}, ModelFail401: {401, "authentication_error"},
		ModelFail429: {429, "rate_limit_error"}, ModelFail500: {500, "api_error"},
		ModelFail529: {529, "overloaded_error"}, ModelFail503: {503, "overloaded_error"},
	} {
		resp, b := messages(t, s, `{"model":"`+model+`","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`)
		if r := decodeReply(t, b); resp.StatusCode != want.status || r.Error.Type != want.typ {
			t.Errorf("%s: %d %s", model, resp.StatusCode, b)
		}
		if model == ModelFail429 && resp.Header.Get("Retry-After") != "7" {
			t.Errorf("429 without Retry-After")
		}
	}
}

// anthropicEvents reads a stream as (event name, data) pairs.
func anthropicEvents(t *testing.T, s *Server, body string) [][2]string {
	t.Helper()
	_, b := messages(t, s, body)
	var out [][2]string
	for _, ev := range strings.Split(strings.TrimSpace(string(b)), "\n\n") {
		name, data, ok := strings.Cut(ev, "\ndata: ")
		if !ok || !strings.HasPrefix(name, "event: ") || !json.Valid([]byte(data)) {
			t.Fatalf("malformed event %q", ev)
		}
		if typ := decodeReply(t, []byte(data)).Type; typ != strings.TrimPrefix(name, "event: ") {
			t.Fatalf("event %s carries type %q", name, typ)
		}
		out = append(out, [2]string{strings.TrimPrefix(name, "event: "), data})
	}
	return out
}

func TestAnthropicStream(t *testing.T) {
	s := startServer(t, Options{Chunks: 3})
	evs := anthropicEvents(t, s, `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"one two three"}]}`)
	var names []string
	var text strings.Builder
	for _, ev := range evs {
		names = append(names, ev[0])
		var d struct{ Delta struct{ Text string } }
		json.Unmarshal([]byte(ev[1]), &d)
		text.WriteString(d.Delta.Text)
	}
	if got := strings.Join(names, " "); got != "message_start ping content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop" {
		t.Fatalf("events %s", got)
	}
	if text.String() != "echo: one two three" {
		t.Fatalf("text %q", text.String())
	}

	evs = anthropicEvents(t, s, `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}]}`)
	var args strings.Builder
	for _, ev := range evs {
		var d struct {
			Delta struct {
				PartialJSON string `json:"partial_json"`
			}
		}
		json.Unmarshal([]byte(ev[1]), &d)
		args.WriteString(d.Delta.PartialJSON)
	}
	if args.String() != anthropicToolInput || !strings.Contains(evs[len(evs)-2][1], `"stop_reason":"tool_use"`) {
		t.Fatalf("tool stream: %v", evs)
	}

	evs = anthropicEvents(t, s, `{"model":"`+ModelStreamErrorEvent+`","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if last := evs[len(evs)-1]; last[0] != "error" || !strings.Contains(last[1], "overloaded_error") {
		t.Fatalf("last event %v", last)
	}
}

func TestAnthropicModels(t *testing.T) {
	s := startServer(t, Options{APIKey: "ak"})
	resp, b := do(t, http.MethodGet, s.URL+"/models", "", anthropicHeaders)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"claude-fake-1"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	// Without anthropic-version, /v1/models is the OpenAI list.
	resp, b = do(t, http.MethodGet, s.URL+"/models", "", map[string]string{"Authorization": "Bearer ak"})
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"object":"list"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
