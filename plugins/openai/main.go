// Command openai is the LLM Proxy provider plugin for OpenAI and every API
// that speaks OpenAI's format (Groq, DeepSeek, Together, OpenRouter, vLLM,
// Ollama's /v1, ...).
//
// The unified request is already an OpenAI request, so the plugin sends it
// on unchanged (unknown fields included) and passes each upstream SSE event
// through as it arrives: no JSON is decoded on the request path or per chunk.
package main

import (
	"github.com/llm-proxy/llm-proxy/sdk"
)

// maxBody bounds a non-streamed upstream body that the plugin buffers; the
// host enforces its own, configurable limit as well.
const maxBody = 64 << 20

type plugin struct{}

func (plugin) Chat(c *sdk.Call) error       { return forward(c, "/chat/completions", false) }
func (plugin) ChatStream(c *sdk.Call) error { return forward(c, "/chat/completions", true) }
func (plugin) Embeddings(c *sdk.Call) error { return forward(c, "/embeddings", false) }

func (plugin) Models(c *sdk.Call) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	resp, err := c.Send("GET", cfg.BaseURL+"/models", headers(cfg, false), nil)
	if err != nil {
		return err
	}
	return finish(c, resp)
}

func forward(c *sdk.Call, path string, stream bool) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	resp, err := c.Send("POST", cfg.BaseURL+path, headers(cfg, stream), c.Request())
	if err != nil {
		return err
	}
	if stream && resp.StatusCode < 300 {
		return c.ForwardSSE(resp, nil)
	}
	return finish(c, resp)
}

func finish(c *sdk.Call, resp *sdk.Response) error {
	if resp.StatusCode >= 300 {
		return c.FailUpstream(resp)
	}
	body, err := resp.ReadAll(maxBody)
	if err != nil {
		return err
	}
	return c.EmitBody(body)
}

func headers(cfg *sdk.Config, stream bool) [][2]string {
	h := make([][2]string, 0, 4)
	h = append(h, [2]string{"Content-Type", "application/json"})
	if stream {
		h = append(h, [2]string{"Accept", "text/event-stream"})
	} else {
		h = append(h, [2]string{"Accept", "application/json"})
	}
	var s string
	if cfg.Option("organization", &s) && s != "" {
		h = append(h, [2]string{"OpenAI-Organization", s})
	}
	if cfg.Option("project", &s) && s != "" {
		h = append(h, [2]string{"OpenAI-Project", s})
	}
	return h
}

func init() { sdk.Register(plugin{}) }

func main() {}
