// Command openai is the LLM Proxy provider plugin for OpenAI and every API
// that speaks OpenAI's format (Groq, DeepSeek, Together, OpenRouter, vLLM,
// Ollama's /v1, ...).
//
// The unified request is already an OpenAI request, so the plugin sends it
// on unchanged (unknown fields included) and has the host relay the answer:
// no JSON is decoded, and no event of a stream calls into the plugin. An
// error answer is passed on with its status.
package main

import (
	"github.com/llm-proxy/llm-proxy/sdk"
)

type plugin struct{}

func (plugin) Chat(s *sdk.Stream) error       { return forward(s, "POST", "/chat/completions", false) }
func (plugin) ChatStream(s *sdk.Stream) error { return forward(s, "POST", "/chat/completions", true) }
func (plugin) Embeddings(s *sdk.Stream) error { return forward(s, "POST", "/embeddings", false) }
func (plugin) Models(s *sdk.Stream) error     { return forward(s, "GET", "/models", false) }

func forward(s *sdk.Stream, method, path string, stream bool) error {
	cfg, err := s.Config()
	if err != nil {
		return err
	}
	var body []byte
	if method == "POST" {
		body = s.Request()
	}
	return s.Send(sdk.Request{Method: method, URL: cfg.BaseURL + path, Header: headers(cfg, stream), Body: body}, sdk.Relay)
}

func headers(cfg *sdk.Config, stream bool) [][2]string {
	h := make([][2]string, 0, 4)
	h = append(h, [2]string{"Content-Type", "application/json"})
	if stream {
		h = append(h, [2]string{"Accept", "text/event-stream"})
	} else {
		h = append(h, [2]string{"Accept", "application/json"})
	}
	if s, ok := cfg.OptionString("organization"); ok && s != "" {
		h = append(h, [2]string{"OpenAI-Organization", s})
	}
	if s, ok := cfg.OptionString("project"); ok && s != "" {
		h = append(h, [2]string{"OpenAI-Project", s})
	}
	return h
}

func init() { sdk.Register(plugin{}) }

func main() {}
