// Command demo is a provider plugin that answers on its own, without an
// upstream, so a fresh LLM Proxy shows the whole request path (client key,
// routing, a wasm plugin, streaming, usage) before any provider key is set.
//
//   - demo-echo answers "You said: <last user message>".
//   - demo-story answers a short fixed story.
//   - Embeddings are 8 numbers derived from the input text.
//
// It decodes requests with encoding/json: it is an example, not a hot path.
package main

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/llm-proxy/llm-proxy/sdk"
)

const story = "Once upon a time a small proxy carried words between people and the models " +
	"they talked to. Each word went through a tiny WebAssembly plugin, and every one " +
	"arrived safely. The end."

type plugin struct{}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// text returns a message's text, whether content is a string or an array
// of parts.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func answer(c *sdk.Call) (req chatRequest, reply string, promptTokens int, err error) {
	if err = json.Unmarshal(c.Request(), &req); err != nil {
		return req, "", 0, &sdk.HTTPError{Status: 400, Message: "demo: " + err.Error()}
	}
	last := ""
	for _, m := range req.Messages {
		t := text(m.Content)
		promptTokens += len(strings.Fields(t))
		if m.Role == "user" {
			last = t
		}
	}
	if strings.Contains(req.Model, "story") {
		return req, story, max(promptTokens, 1), nil
	}
	return req, "You said: " + last, max(promptTokens, 1), nil
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt int, reply string) usage {
	n := len(strings.Fields(reply))
	return usage{prompt, n, prompt + n}
}

func id() string { return "chatcmpl-demo" + strconv.FormatInt(time.Now().UnixNano(), 36) }

func (plugin) Chat(c *sdk.Call) error {
	req, reply, prompt, err := answer(c)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"id": id(), "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": reply},
			"finish_reason": "stop",
		}},
		"usage": newUsage(prompt, reply),
	})
	return c.EmitBody(body)
}

func (plugin) ChatStream(c *sdk.Call) error {
	req, reply, prompt, err := answer(c)
	if err != nil {
		return err
	}
	cid, created := id(), time.Now().Unix()
	chunk := func(delta map[string]any, finish any, u *usage) error {
		ch := map[string]any{
			"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		if u != nil {
			ch["choices"] = []any{}
			ch["usage"] = u
		}
		b, _ := json.Marshal(ch)
		return c.EmitChunk(b)
	}
	if err := chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil); err != nil {
		return err
	}
	words := strings.SplitAfter(reply, " ")
	for _, w := range words {
		if err := chunk(map[string]any{"content": w}, nil, nil); err != nil {
			return err
		}
		if strings.Contains(req.Model, "story") {
			time.Sleep(30 * time.Millisecond) // show the tokens arriving
		}
	}
	if err := chunk(map[string]any{}, "stop", nil); err != nil {
		return err
	}
	u := newUsage(prompt, reply)
	return chunk(nil, nil, &u)
}

func (plugin) Embeddings(c *sdk.Call) error {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(c.Request(), &req); err != nil {
		return &sdk.HTTPError{Status: 400, Message: "demo: " + err.Error()}
	}
	var inputs []string
	if json.Unmarshal(req.Input, &inputs) != nil {
		var s string
		if err := json.Unmarshal(req.Input, &s); err != nil {
			return &sdk.HTTPError{Status: 400, Message: "demo: input must be a string or an array of strings"}
		}
		inputs = []string{s}
	}
	data := make([]any, len(inputs))
	tokens := 0
	for i, in := range inputs {
		tokens += len(strings.Fields(in))
		vec := make([]float64, 8)
		for j := range vec {
			h := fnv.New32a()
			h.Write([]byte{byte(j)})
			h.Write([]byte(in))
			vec[j] = float64(h.Sum32()%2000)/1000 - 1
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": vec}
	}
	body, _ := json.Marshal(map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
	return c.EmitBody(body)
}

func (plugin) Models(c *sdk.Call) error {
	return c.EmitBody([]byte(`{"object":"list","data":[` +
		`{"id":"demo-echo","object":"model","created":0,"owned_by":"llm-proxy"},` +
		`{"id":"demo-story","object":"model","created":0,"owned_by":"llm-proxy"}]}`))
}

func init() { sdk.Register(plugin{}) }

func main() {}
