package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

func chatParams(model, text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
	}
}

func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *openai.Error, got %T %v", err, err)
	}
	return e
}

// lastUpstream returns the last request the fake upstream received.
func lastUpstream(t *testing.T, p *proxy) fakeupstream.Recorded {
	t.Helper()
	reqs := p.Upstream.Requests()
	if len(reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return reqs[len(reqs)-1]
}

func TestOpenAIEndToEnd(t *testing.T) {
	p := startProxy(t, nil)
	c := p.client(adminKey)
	ctx := context.Background()

	t.Run("chat", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "hello proxy"),
			option.WithJSONSet("x_vendor_field", map[string]any{"keep": true}))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != "echo: hello proxy" {
			t.Fatalf("content %q", got)
		}
		if resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 {
			t.Fatalf("usage %+v", resp.Usage)
		}
		up := lastUpstream(t, p)
		if got := up.Header.Get("Authorization"); got != "Bearer "+upstreamKey {
			t.Fatalf("upstream Authorization %q: the host must inject the provider key", got)
		}
		if !gjson.GetBytes(up.Body, "x_vendor_field.keep").Bool() {
			t.Fatalf("unknown field not passed through: %s", up.Body)
		}
		if gjson.GetBytes(up.Body, "stream_options").Exists() {
			t.Fatalf("non-stream request got stream_options: %s", up.Body)
		}
	})

	t.Run("provider prefix", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, chatParams("fake/gpt-4o-mini", "prefixed"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Message.Content != "echo: prefixed" {
			t.Fatalf("content %q", resp.Choices[0].Message.Content)
		}
		if m := gjson.GetBytes(lastUpstream(t, p).Body, "model").String(); m != "gpt-4o-mini" {
			t.Fatalf("upstream got model %q, want the prefix removed", m)
		}
	})

	t.Run("stream without usage", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "stream me please"))
		var text strings.Builder
		chunks := 0
		for s.Next() {
			ch := s.Current()
			chunks++
			if len(ch.Choices) == 0 {
				t.Fatalf("client got the usage-only chunk it did not ask for: %s", ch.RawJSON())
			}
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "echo: stream me please" || chunks < 3 {
			t.Fatalf("reassembled %q from %d chunks", text.String(), chunks)
		}
		if !gjson.GetBytes(lastUpstream(t, p).Body, "stream_options.include_usage").Bool() {
			t.Fatal("the proxy must ask the upstream for usage on every stream")
		}
		waitFor(t, func() bool { return strings.Contains(p.Logs.String(), "op=chat_stream model=gpt-4o-mini status=200") })
		if !strings.Contains(p.Logs.String(), "completion_tokens=") {
			t.Fatalf("stream usage not logged:\n%s", p.Logs.String())
		}
	})

	t.Run("stream with usage", func(t *testing.T) {
		params := chatParams("gpt-4o-mini", "count my tokens")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if acc.Choices[0].Message.Content != "echo: count my tokens" {
			t.Fatalf("content %q", acc.Choices[0].Message.Content)
		}
		if acc.Usage.TotalTokens == 0 {
			t.Fatal("usage chunk missing")
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, m := range page.Data {
			ids[m.ID] = true
		}
		for _, want := range []string{"gpt-4o-mini", "fake/gpt-4o-mini", "demo-echo", "demo/demo-story"} {
			if !ids[want] {
				t.Errorf("model %q missing from %v", want, ids)
			}
		}
		m, err := c.Models.Get(ctx, "fake/gpt-4o-mini")
		if err != nil || m.OwnedBy != "fake" {
			t.Fatalf("get model: %v %+v", err, m)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two words"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 2 || len(resp.Data[1].Embedding) != fakeupstream.DefaultEmbeddingDimensions {
			t.Fatalf("embeddings %+v", resp.Data)
		}
		want := fakeupstream.Embedding("two words", fakeupstream.DefaultEmbeddingDimensions)
		if float32(resp.Data[1].Embedding[0]) != want[0] {
			t.Fatalf("embedding changed on the way: %v vs %v", resp.Data[1].Embedding[0], want[0])
		}
	})

	t.Run("tool call round trip", func(t *testing.T) {
		params := chatParams("gpt-4o-mini", "weather in Paris?")
		params.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:       "get_weather",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})}
		params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")}
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		calls := resp.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || resp.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("tool calls %+v", resp.Choices[0])
		}
		if !gjson.GetBytes(lastUpstream(t, p).Body, "tools.0.function.name").Exists() {
			t.Fatal("tools not passed upstream")
		}
		params.Messages = append(params.Messages, resp.Choices[0].Message.ToParam(),
			openai.ToolMessage(`{"temp_c":21}`, calls[0].ID))
		resp, err = c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != `tool said: {"temp_c":21}` {
			t.Fatalf("content %q", got)
		}
	})

	t.Run("image content parts", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("describe"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
			}),
		}, ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}}
		if _, err := c.Chat.Completions.New(ctx, params); err != nil {
			t.Fatal(err)
		}
		body := lastUpstream(t, p).Body
		if gjson.GetBytes(body, "messages.0.content.1.image_url.url").String() != "data:image/png;base64,iVBORw0KGgo=" ||
			gjson.GetBytes(body, "response_format.type").String() != "json_object" {
			t.Fatalf("content parts or response_format changed: %s", body)
		}
	})
}

// waitFor polls cond. The ceiling is generous: loading a build that was
// never compiled takes seconds under the race detector, which instruments
// wazero's compiler. Tests that care about speed measure it themselves.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rawPost(t *testing.T, url, key, body string) (*http.Response, []byte) {
	t.Helper()
	return rawDo(t, "POST", url, key, body)
}

// rawGet is rawPost's GET.
func rawGet(t *testing.T, url, key string) (*http.Response, []byte) {
	t.Helper()
	return rawDo(t, "GET", url, key, "")
}

// rawDo sends one request with key, when set, as the bearer; anything
// but a GET says its body is JSON.
func rawDo(t *testing.T, method, url, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// checkOpenAIError asserts the body is exactly OpenAI's error shape.
func checkOpenAIError(t *testing.T, body []byte) {
	t.Helper()
	var e struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e.Error[k]; !ok {
			t.Fatalf("error without %q: %s", k, body)
		}
	}
}

func TestErrors(t *testing.T) {
	p := startProxy(t, nil)
	ctx := context.Background()
	chatURL := p.URL + "/v1/chat/completions"

	t.Run("401 no key", func(t *testing.T) {
		resp, body := rawPost(t, chatURL, "", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		checkOpenAIError(t, body)
	})
	t.Run("401 wrong key", func(t *testing.T) {
		_, err := p.client("sk-wrong").Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "x"))
		if e := apiError(t, err); e.StatusCode != 401 || e.Code != "invalid_api_key" {
			t.Fatalf("%d %q", e.StatusCode, e.Code)
		}
	})
	t.Run("404 unknown model", func(t *testing.T) {
		_, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams("no-such-model", "x"))
		if e := apiError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" || e.Param != "model" {
			t.Fatalf("%d %q %q", e.StatusCode, e.Code, e.Param)
		}
	})
	t.Run("400 malformed JSON", func(t *testing.T) {
		resp, body := rawPost(t, chatURL, adminKey, `{"model": "gpt-4o-mini", "messages": [`)
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		checkOpenAIError(t, body)
	})
	t.Run("400 invalid fields", func(t *testing.T) {
		for _, body := range []string{`[]`, `{"messages":[{"role":"user","content":"x"}]}`, `{"model":"gpt-4o-mini"}`,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":"yes"}`, `{"model":7,"messages":[]}`} {
			resp, b := rawPost(t, chatURL, adminKey, body)
			if resp.StatusCode != 400 {
				t.Fatalf("%s: status %d %s", body, resp.StatusCode, b)
			}
			checkOpenAIError(t, b)
		}
	})
	t.Run("413 body too large", func(t *testing.T) {
		// The declared length alone is over the limit: the proxy answers
		// before reading a byte of the body.
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", adminKey, 5<<20)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 413 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		checkOpenAIError(t, body)
	})
	t.Run("429 passed on with Retry-After", func(t *testing.T) {
		resp, body := rawPost(t, chatURL, adminKey, `{"model":"fail-429","messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
			t.Fatalf("status %d retry-after %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		checkOpenAIError(t, body)
		if gjson.GetBytes(body, "error.code").String() != "rate_limit_exceeded" {
			t.Fatalf("upstream error code lost: %s", body)
		}
		// Streams fail before their first byte with the same status.
		resp, _ = rawPost(t, chatURL, adminKey, `{"model":"fail-429","stream":true,"messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 429 {
			t.Fatalf("stream status %d", resp.StatusCode)
		}
	})
	t.Run("upstream 500 becomes 502", func(t *testing.T) {
		_, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail500, "x"))
		if e := apiError(t, err); e.StatusCode != 502 {
			t.Fatalf("status %d", e.StatusCode)
		}
	})
	t.Run("upstream 400 stays 400", func(t *testing.T) {
		_, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail400, "x"))
		if e := apiError(t, err); e.StatusCode != 400 {
			t.Fatalf("status %d", e.StatusCode)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		resp, body := rawPost(t, p.URL+"/v1/nope", adminKey, `{}`)
		if resp.StatusCode != 404 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		checkOpenAIError(t, body)
	})
	t.Run("error after the first byte is an event", func(t *testing.T) {
		s := p.client(adminKey).Chat.Completions.NewStreaming(ctx, chatParams(fakeupstream.ModelStreamErrorMidway, "x"))
		n := 0
		for s.Next() {
			n++
		}
		if s.Err() == nil || n == 0 {
			t.Fatalf("want chunks then an error, got %d chunks, err %v", n, s.Err())
		}
	})
}

func TestClientAbortCancelsUpstream(t *testing.T) {
	p := startProxy(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	s := p.client(adminKey).Chat.Completions.NewStreaming(ctx, chatParams(fakeupstream.ModelSlowStream, "x"))
	for i := 0; i < 3 && s.Next(); i++ {
	}
	cancel()
	s.Close()
	waitFor(t, func() bool { return p.Upstream.Canceled() == 1 })
	// The instance that served the aborted stream is healthy and serves on.
	resp, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "after abort"))
	if err != nil || resp.Choices[0].Message.Content != "echo: after abort" {
		t.Fatalf("%v %+v", err, resp)
	}
}

// TestClientAbortCancelsNonStreamUpstream: a client that gives up on a
// non-streamed request closes its connection; the proxy notices while it
// waits for the answer, cancels the upstream request, and logs a 499.
func TestClientAbortCancelsNonStreamUpstream(t *testing.T) {
	p := startProxy(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := p.client(adminKey).Chat.Completions.New(ctx, chatParams(fakeupstream.ModelSlowHeaders, "x"), option.WithMaxRetries(0)); err == nil {
		t.Fatal("the request outlived its client")
	}
	// The upstream would have answered after SlowHeadersDelay (3 s).
	waitFor(t, func() bool { return p.Upstream.Canceled() == 1 })
	if d := time.Since(start); d >= fakeupstream.SlowHeadersDelay {
		t.Fatalf("cancelled after %s: the upstream ran to its end", d)
	}
	resp, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "after abort"))
	if err != nil || resp.Choices[0].Message.Content != "echo: after abort" {
		t.Fatalf("%v %+v", err, resp)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	p := startProxy(t, func(cfg *config.Config) {
		d := config.Duration(500 * time.Millisecond)
		cfg.Plugins.LimitsOverride["openai"] = config.LimitsPatch{UpstreamTimeout: &d}
	})
	_, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams(fakeupstream.ModelSlowHeaders, "x"))
	if e := apiError(t, err); e.StatusCode != 504 {
		t.Fatalf("status %d", e.StatusCode)
	}
}

func TestDemoAndHealth(t *testing.T) {
	p := startProxy(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(p.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	resp, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams("demo-echo", "hi demo"))
	if err != nil || resp.Choices[0].Message.Content != "You said: hi demo" {
		t.Fatalf("%v %+v", err, resp)
	}
}
