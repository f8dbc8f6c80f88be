package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// startAnthropicProxy is the usual test proxy plus a provider "anthropic"
// served by the real anthropic.wasm, in front of the fake upstream's
// Messages API (same server, API root as base URL, key sent as x-api-key).
func startAnthropicProxy(t testing.TB, upOpts fakeupstream.Options, tweaks ...func(*config.Config)) *proxy {
	t.Helper()
	return startProxyWith(t, func(cfg *config.Config) {
		for _, tw := range tweaks {
			tw(cfg)
		}
		testplugins.Install(t, testplugins.Build(t, "plugins/anthropic"), cfg.Plugins.Dir, "anthropic.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1") // the fake upstream
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "anthropic", Plugin: "anthropic", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"claude-test"}, AllowPrivateNetwork: true,
		})
	}, upOpts)
}

func weatherTool() []openai.ChatCompletionToolUnionParam {
	return []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}
}

func TestAnthropicEndToEnd(t *testing.T) {
	p := startAnthropicProxy(t, fakeupstream.Options{})
	c := p.client(adminKey)
	ctx := context.Background()

	t.Run("chat", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "claude-test", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("be brief"), openai.DeveloperMessage("and kind"), openai.UserMessage("hello claude"),
		}}
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != "echo: hello claude" || resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("content %q finish %q", got, resp.Choices[0].FinishReason)
		}
		if resp.Object != "chat.completion" || resp.Usage.PromptTokens != 2 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Fatalf("%+v", resp)
		}
		up := lastUpstream(t, p)
		if up.Path != "/v1/messages" || up.Header.Get("x-api-key") != upstreamKey || up.Header.Get("Authorization") != "" || up.Header.Get("anthropic-version") == "" {
			t.Fatalf("upstream %s, headers %v: the host must inject the key as x-api-key", up.Path, up.Header)
		}
		if n := gjson.GetBytes(up.Body, "system.#").Int(); n != 2 || gjson.GetBytes(up.Body, "max_tokens").Int() != 4096 {
			t.Fatalf("system or max_tokens not mapped: %s", up.Body)
		}
		waitFor(t, func() bool {
			return strings.Contains(p.Logs.String(), "op=chat model=claude-test status=200") && strings.Contains(p.Logs.String(), "plugin=anthropic@")
		})
	})

	t.Run("stream without usage", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("claude-test", "stream me please"))
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
		if !gjson.GetBytes(lastUpstream(t, p).Body, "stream").Bool() {
			t.Fatal("upstream not asked to stream")
		}
		waitFor(t, func() bool {
			return strings.Contains(p.Logs.String(), "op=chat_stream model=claude-test status=200")
		})
		if !strings.Contains(p.Logs.String(), "completion_tokens=4") {
			t.Fatalf("stream usage not recorded:\n%s", p.Logs.String())
		}
	})

	t.Run("stream with usage", func(t *testing.T) {
		params := chatParams("claude-test", "count my tokens")
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

	t.Run("tool call round trip", func(t *testing.T) {
		params := chatParams("claude-test", "weather in Paris?")
		params.Tools = weatherTool()
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		calls := resp.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments != `{"city":"Paris"}` ||
			!strings.HasPrefix(calls[0].ID, "toolu_") || resp.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("tool calls %+v", resp.Choices[0])
		}
		if gjson.GetBytes(lastUpstream(t, p).Body, "tools.0.input_schema.type").String() != "object" {
			t.Fatalf("tools not mapped: %s", lastUpstream(t, p).Body)
		}
		params.Messages = append(params.Messages, resp.Choices[0].Message.ToParam(), openai.ToolMessage(`{"temp_c":21}`, calls[0].ID))
		resp, err = c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != `tool said: {"temp_c":21}` {
			t.Fatalf("content %q", got)
		}
		up := lastUpstream(t, p).Body
		if gjson.GetBytes(up, "messages.1.content.0.input.city").String() != "Paris" || gjson.GetBytes(up, "messages.2.content.0.type").String() != "tool_result" {
			t.Fatalf("round trip not mapped: %s", up)
		}
	})

	t.Run("streamed tool call", func(t *testing.T) {
		params := chatParams("claude-test", "weather in Paris?")
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
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments != `{"city":"Paris"}` || acc.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("accumulated %+v", acc.Choices[0])
		}
	})

	t.Run("image data URL", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "claude-test", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("describe"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/cat.png"}),
			}),
		}}
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != "echo: describe [image image/png 8 bytes] [image url https://example.com/cat.png]" {
			t.Fatalf("content %q", got)
		}
	})
}

// TestAnthropicErrors: the upstream's failures reach an OpenAI client as
// OpenAI-shaped errors with the status a gateway should give.
func TestAnthropicErrors(t *testing.T) {
	p := startAnthropicProxy(t, fakeupstream.Options{})
	ctx := context.Background()
	c := p.client(adminKey)
	chatURL := p.URL + "/v1/chat/completions"
	tests := []struct {
		model, typ, code string
		status           int
	}{
		{fakeupstream.ModelFail400, "invalid_request_error", "", 400},
		{fakeupstream.ModelFail401, "api_error", "upstream_auth_failed", 502},
		{fakeupstream.ModelFail429, "rate_limit_error", "", 429},
		{fakeupstream.ModelFail500, "api_error", "", 502},
		{fakeupstream.ModelFail529, "overloaded_error", "", 503},
		{fakeupstream.ModelFail503, "overloaded_error", "", 503},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				body := `{"model":"anthropic/` + tt.model + `","stream":` + map[bool]string{false: "false", true: "true"}[stream] + `,"messages":[{"role":"user","content":"x"}]}`
				resp, b := rawPost(t, chatURL, adminKey, body)
				if resp.StatusCode != tt.status {
					t.Fatalf("stream=%v: status %d, want %d: %s", stream, resp.StatusCode, tt.status, b)
				}
				checkOpenAIError(t, b)
				if typ := gjson.GetBytes(b, "error.type").String(); typ != tt.typ || gjson.GetBytes(b, "error.code").String() != tt.code {
					t.Fatalf("stream=%v: error %s, want type %q code %q", stream, b, tt.typ, tt.code)
				}
				if tt.status == 429 && resp.Header.Get("Retry-After") != "7" {
					t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
				}
			}
			_, err := c.Chat.Completions.New(ctx, chatParams("anthropic/"+tt.model, "x"))
			if e := apiError(t, err); e.StatusCode != tt.status {
				t.Fatalf("SDK saw %d", e.StatusCode)
			}
		})
	}
	t.Run("error event after the first byte", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("anthropic/"+fakeupstream.ModelStreamErrorEvent, "one two three four"))
		var text strings.Builder
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		if s.Err() == nil || text.Len() == 0 || !strings.Contains(s.Err().Error(), "Overloaded") {
			t.Fatalf("want chunks then the upstream's error, got %q, err %v", text.String(), s.Err())
		}
	})
	t.Run("refused before sending", func(t *testing.T) {
		resp, b := rawPost(t, chatURL, adminKey, `{"model":"claude-test","n":3,"messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 400 || gjson.GetBytes(b, "error.param").String() != "n" {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("embeddings unsupported", func(t *testing.T) {
		_, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "claude-test", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
		if e := apiError(t, err); e.StatusCode != 400 {
			t.Fatalf("status %d", e.StatusCode)
		}
	})
	t.Run("provider connection test lists models", func(t *testing.T) {
		st, b := adminCall(t, p, "POST", "/api/providers/anthropic/test", "")
		if st != 200 || !gjson.GetBytes(b, "ok").Bool() || gjson.GetBytes(b, "models.0").String() != "claude-fake-1" {
			t.Fatalf("%d %s", st, b)
		}
	})
}
