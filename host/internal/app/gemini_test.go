package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// startGeminiProxy is the usual test proxy plus a provider "gemini" served
// by the real gemini.wasm, in front of the fake upstream's Gemini API (same
// server, /v1beta as base URL, key sent as x-goog-api-key).
func startGeminiProxy(t testing.TB, upOpts fakeupstream.Options, tweaks ...func(*config.Config)) *proxy {
	t.Helper()
	return startProxyWith(t, func(cfg *config.Config) {
		for _, tw := range tweaks {
			tw(cfg)
		}
		testplugins.Install(t, testplugins.Build(t, "plugins/gemini"), cfg.Plugins.Dir, "gemini.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1") // the fake upstream
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "gemini", Plugin: "gemini", BaseURL: root + "/v1beta", APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gemini-test", "gemini-embed"}, AllowPrivateNetwork: true, AllowImageFetch: true,
		}, config.ProviderConfig{
			// The same, without the operator's leave to fetch images.
			Name: "gemini-nofetch", Plugin: "gemini", BaseURL: root + "/v1beta", APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gemini-nofetch"}, AllowPrivateNetwork: true,
		})
	}, upOpts)
}

func TestGeminiEndToEnd(t *testing.T) {
	p := startGeminiProxy(t, fakeupstream.Options{})
	c := p.client(adminKey)
	ctx := context.Background()

	t.Run("chat", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemini-test", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("be brief"), openai.UserMessage("hello gemini"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != "echo: hello gemini" || resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("content %q finish %q", got, resp.Choices[0].FinishReason)
		}
		if resp.Usage.PromptTokens != 2 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Fatalf("usage %+v", resp.Usage)
		}
		up := lastUpstream(t, p)
		if up.Path != "/v1beta/models/gemini-test:generateContent" || up.Header.Get("x-goog-api-key") != upstreamKey || up.Header.Get("Authorization") != "" {
			t.Fatalf("upstream %s, headers %v: the host must inject the key as x-goog-api-key", up.Path, up.Header)
		}
		if gjson.GetBytes(up.Body, "systemInstruction.parts.0.text").String() != "be brief" {
			t.Fatalf("system not mapped: %s", up.Body)
		}
	})

	t.Run("stream without usage", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("gemini-test", "stream me please"))
		var text strings.Builder
		chunks, finish := 0, ""
		for s.Next() {
			ch := s.Current()
			chunks++
			if len(ch.Choices) == 0 {
				t.Fatalf("client got the usage-only chunk it did not ask for: %s", ch.RawJSON())
			}
			text.WriteString(ch.Choices[0].Delta.Content)
			if ch.Choices[0].FinishReason != "" {
				finish = ch.Choices[0].FinishReason
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "echo: stream me please" || chunks < 3 || finish != "stop" {
			t.Fatalf("reassembled %q from %d chunks, finish %q", text.String(), chunks, finish)
		}
		if up := lastUpstream(t, p); up.Path != "/v1beta/models/gemini-test:streamGenerateContent" || up.Query != "alt=sse" {
			t.Fatalf("upstream %s?%s", up.Path, up.Query)
		}
	})

	t.Run("stream with usage", func(t *testing.T) {
		params := chatParams("gemini-test", "count my tokens")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if acc.Choices[0].Message.Content != "echo: count my tokens" || acc.Usage.PromptTokens != 3 || acc.Usage.CompletionTokens != 4 {
			t.Fatalf("content %q usage %+v", acc.Choices[0].Message.Content, acc.Usage)
		}
	})

	t.Run("tool call round trip with the thought signature", func(t *testing.T) {
		params := chatParams("gemini-test", "weather in Paris?")
		params.Tools = weatherTool()
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		calls := resp.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments != `{"city":"Paris"}` ||
			!strings.Contains(calls[0].ID, "_ts_") || resp.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("tool calls %+v", resp.Choices[0])
		}
		params.Messages = append(params.Messages, resp.Choices[0].Message.ToParam(), openai.ToolMessage(`{"temp_c":21}`, calls[0].ID))
		// The fake refuses a replayed call without its signature.
		resp, err = c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != `tool said: {"temp_c":21}` {
			t.Fatalf("content %q", got)
		}
		if n := gjson.GetBytes(lastUpstream(t, p).Body, "contents.2.parts.0.functionResponse.name").String(); n != "get_weather" {
			t.Fatalf("function name not found through the tool_call_id: %s", lastUpstream(t, p).Body)
		}
	})

	t.Run("streamed tool call round trip", func(t *testing.T) {
		params := chatParams("gemini-test", "weather in Paris?")
		params.Tools = weatherTool()
		s := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		calls := acc.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Arguments != `{"city":"Paris"}` || acc.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("accumulated %+v", acc.Choices[0])
		}
		params.Messages = append(params.Messages, acc.Choices[0].Message.ToParam(), openai.ToolMessage("sunny", calls[0].ID))
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil || resp.Choices[0].Message.Content != `tool said: {"output":"sunny"}` {
			t.Fatalf("%v %+v", err, resp)
		}
	})

	t.Run("image data URL", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gemini-test", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("describe"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
			}),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != "echo: describe [image/png 8 bytes]" {
			t.Fatalf("content %q", got)
		}
	})

	t.Run("image URL on a private address refused", func(t *testing.T) {
		// Images are fetched from public addresses only, even for a
		// provider that may reach private networks (as this one does):
		// the loopback image is refused before any connection. Fetching
		// itself is tested in egress (TestFetchImage) and, through the
		// wasm plugin, in plugin (TestFetchImages*).
		before, calls := countPath(p, fakeupstream.ImagePath), len(p.Upstream.Requests())
		url := strings.TrimSuffix(p.Upstream.URL, "/v1") + fakeupstream.ImagePath
		body, _ := json.Marshal(map[string]any{"model": "gemini-test", "messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "describe"},
			map[string]any{"type": "image_url", "image_url": map[string]string{"url": url}},
		}}}})
		resp, b := rawPost(t, p.URL+"/v1/chat/completions", adminKey, string(body))
		if resp.StatusCode != 400 || gjson.GetBytes(b, "error.param").String() != "messages[0].content[1]" ||
			!strings.Contains(gjson.GetBytes(b, "error.message").String(), "the image URL is not allowed (images are fetched from public") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if countPath(p, fakeupstream.ImagePath) != before || len(p.Upstream.Requests()) != calls {
			t.Fatal("the image or the provider was reached")
		}
	})

	t.Run("image URL without the operator's leave refused", func(t *testing.T) {
		calls := len(p.Upstream.Requests())
		body, _ := json.Marshal(map[string]any{"model": "gemini-nofetch", "messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "image_url", "image_url": map[string]string{"url": "https://images.example/cat.png"}},
		}}}})
		resp, b := rawPost(t, p.URL+"/v1/chat/completions", adminKey, string(body))
		if resp.StatusCode != 400 || gjson.GetBytes(b, "error.param").String() != "messages[0].content[0]" ||
			!strings.Contains(gjson.GetBytes(b, "error.message").String(), "only where the gateway's operator allows it") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if len(p.Upstream.Requests()) != calls {
			t.Fatal("the provider was reached")
		}
	})

	t.Run("blocked prompt is an answer", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			if !stream {
				resp, err := c.Chat.Completions.New(ctx, chatParams("gemini/"+fakeupstream.ModelBlocked, "x"))
				if err != nil || resp.Choices[0].FinishReason != "content_filter" || resp.Choices[0].Message.Refusal == "" {
					t.Fatalf("%v %+v", err, resp)
				}
				continue
			}
			s := c.Chat.Completions.NewStreaming(ctx, chatParams("gemini/"+fakeupstream.ModelBlocked, "x"))
			finish := ""
			for s.Next() {
				if ch := s.Current(); len(ch.Choices) > 0 && ch.Choices[0].FinishReason != "" {
					finish = ch.Choices[0].FinishReason
				}
			}
			if s.Err() != nil || finish != "content_filter" {
				t.Fatalf("stream: %v, finish %q", s.Err(), finish)
			}
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model:      "gemini-embed",
			Input:      openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}},
			Dimensions: openai.Int(4),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 2 || len(resp.Data[1].Embedding) != 4 || float32(resp.Data[1].Embedding[0]) != fakeupstream.Embedding("two words", 4)[0] {
			t.Fatalf("embeddings %+v", resp.Data)
		}
	})
}

// TestGeminiErrors: the upstream's failures reach an OpenAI client as
// OpenAI-shaped errors with the status a gateway should give.
func TestGeminiErrors(t *testing.T) {
	p := startGeminiProxy(t, fakeupstream.Options{})
	ctx := context.Background()
	c := p.client(adminKey)
	chatURL := p.URL + "/v1/chat/completions"
	tests := []struct {
		model, typ, code string
		status           int
	}{
		{fakeupstream.ModelFail400, "invalid_request_error", "INVALID_ARGUMENT", 400},
		{fakeupstream.ModelFail401, "api_error", "upstream_auth_failed", 502},
		{fakeupstream.ModelFail429, "rate_limit_error", "RESOURCE_EXHAUSTED", 429},
		{fakeupstream.ModelFail500, "api_error", "INTERNAL", 502},
		{fakeupstream.ModelFail503, "overloaded_error", "UNAVAILABLE", 503},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			for _, stream := range []string{"false", "true"} {
				resp, b := rawPost(t, chatURL, adminKey, `{"model":"gemini/`+tt.model+`","stream":`+stream+`,"messages":[{"role":"user","content":"x"}]}`)
				if resp.StatusCode != tt.status {
					t.Fatalf("stream=%s: status %d, want %d: %s", stream, resp.StatusCode, tt.status, b)
				}
				checkOpenAIError(t, b)
				if typ := gjson.GetBytes(b, "error.type").String(); typ != tt.typ || gjson.GetBytes(b, "error.code").String() != tt.code {
					t.Fatalf("stream=%s: error %s, want type %q code %q", stream, b, tt.typ, tt.code)
				}
				// The fake names 6.2 s in a RetryInfo detail and sends no
				// header; the plugin passes it on as retry_after.
				if tt.status == 429 && resp.Header.Get("Retry-After") != "7" {
					t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
			}
		})
	}
	t.Run("error event after the first byte", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("gemini/"+fakeupstream.ModelStreamErrorEvent, "one two three four"))
		var text strings.Builder
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if s.Err() == nil || text.Len() == 0 || !strings.Contains(s.Err().Error(), "overloaded") {
			t.Fatalf("want chunks then the upstream's error, got %q, err %v", text.String(), s.Err())
		}
	})
	t.Run("http image refused before sending", func(t *testing.T) {
		resp, b := rawPost(t, chatURL, adminKey, `{"model":"gemini-test","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`)
		if resp.StatusCode != 400 || gjson.GetBytes(b, "error.param").String() != "messages[0].content[0]" {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("provider connection test lists models", func(t *testing.T) {
		st, b := adminCall(t, p, "POST", "/api/providers/gemini/test", "")
		if st != 200 || !gjson.GetBytes(b, "ok").Bool() || gjson.GetBytes(b, "models.0").String() != "gemini-fake-1" {
			t.Fatalf("%d %s", st, b)
		}
	})
}

// countPath counts the requests the fake upstream received for path.
func countPath(p *proxy, path string) int {
	n := 0
	for _, r := range p.Upstream.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}
