package app_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// startEveryProvider is the usual test proxy plus the anthropic and
// gemini plugins in front of the fake upstream's Messages and Gemini APIs:
// one model on each of the three kinds of upstream.
func startEveryProvider(t testing.TB, tweaks ...func(*config.Config)) *proxy {
	t.Helper()
	return startProxyWith(t, func(cfg *config.Config) {
		dir := cfg.Plugins.Dir
		testplugins.Install(t, testplugins.Build(t, "plugins/anthropic"), dir, "anthropic.wasm")
		testplugins.Install(t, testplugins.Build(t, "plugins/gemini"), dir, "gemini.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1") // the fake upstream
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "anthropic", Plugin: "anthropic", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"claude-test"}, AllowPrivateNetwork: true,
		}, config.ProviderConfig{
			Name: "gemini", Plugin: "gemini", BaseURL: root + "/v1beta", APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gemini-test"}, AllowPrivateNetwork: true,
		})
		for _, tw := range tweaks {
			tw(cfg)
		}
	}, fakeupstream.Options{})
}

// threeWays are the models of startEveryProvider, by the kind of upstream.
var threeWays = []struct{ name, model string }{
	{"openai", "gpt-4o-mini"}, {"anthropic", "claude-test"}, {"gemini", "gemini-test"},
}

func (p *proxy) anthropic(key string, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(p.URL + "/"), aoption.WithAPIKey(key),
		aoption.WithMaxRetries(0), aoption.WithRequestTimeout(20 * time.Second),
	}, opts...)...)
}

func userText(text string) []anthropic.MessageParam {
	return []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))}
}

var weatherToolParam = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
	Name: "get_weather", Description: anthropic.String("the weather in a city"),
	InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}},
}}}

// eventTypes checks a Messages stream's event order and returns its events'
// types, pings left out.
func checkEventOrder(t *testing.T, types []string) {
	t.Helper()
	if len(types) < 4 || types[0] != "message_start" || types[len(types)-2] != "message_delta" || types[len(types)-1] != "message_stop" {
		t.Fatalf("event order %v", types)
	}
	open := false
	for _, ty := range types[1 : len(types)-2] {
		switch ty {
		case "content_block_start":
			if open {
				t.Fatalf("a block started before the last one stopped: %v", types)
			}
			open = true
		case "content_block_delta":
			if !open {
				t.Fatalf("a delta outside a block: %v", types)
			}
		case "content_block_stop":
			if !open {
				t.Fatalf("a stop without a start: %v", types)
			}
			open = false
		default:
			t.Fatalf("unexpected event %q in %v", ty, types)
		}
	}
	if open {
		t.Fatalf("a block was never stopped: %v", types)
	}
}

// TestMessagesAPI drives /v1/messages with Anthropic's own Go SDK through
// the openai, anthropic and gemini plugins.
func TestMessagesAPI(t *testing.T) {
	p := startEveryProvider(t)
	c := p.anthropic(adminKey)
	ctx := context.Background()

	for _, w := range threeWays {
		t.Run(w.name, func(t *testing.T) {
			t.Run("chat", func(t *testing.T) {
				var head http.Header
				msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{
					Model: anthropic.Model(w.model), MaxTokens: 100,
					System:   []anthropic.TextBlockParam{{Text: "be brief"}},
					Messages: userText("hello there"),
				}, aoption.WithMiddleware(headerInto(&head)))
				if err != nil {
					t.Fatal(err)
				}
				if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != "echo: hello there" {
					t.Fatalf("content %+v", msg.Content)
				}
				if msg.Role != "assistant" || msg.Type != "message" || msg.StopReason != anthropic.StopReasonEndTurn || string(msg.Model) != w.model ||
					!strings.HasPrefix(msg.ID, "msg_") || msg.Usage.InputTokens < 1 || msg.Usage.OutputTokens < 1 {
					t.Fatalf("message %s", msg.RawJSON())
				}
				d := getLog(t, p, head.Get("X-Request-Id"))
				if d.API != "messages" || d.Status != 200 || d.Provider != w.name && !(w.name == "openai" && d.Provider == "fake") ||
					d.PromptTokens < 1 || d.Completion < 1 {
					t.Fatalf("log row %+v", d)
				}
				if !strings.Contains(p.Logs.String(), "id="+d.ID+" key=admin op=") || !strings.Contains(p.Logs.String(), "api=messages") {
					t.Fatalf("the log line does not name the API:\n%s", p.Logs.String())
				}
			})

			t.Run("stream", func(t *testing.T) {
				s := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
					Model: anthropic.Model(w.model), MaxTokens: 100, Messages: userText("stream to me"),
				})
				var types []string
				acc := anthropic.Message{}
				for s.Next() {
					ev := s.Current()
					types = append(types, ev.Type)
					if err := acc.Accumulate(ev); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				checkEventOrder(t, types)
				if len(acc.Content) != 1 || acc.Content[0].Text != "echo: stream to me" || acc.StopReason != anthropic.StopReasonEndTurn || acc.Usage.OutputTokens < 1 {
					t.Fatalf("accumulated %+v", acc)
				}
			})

			t.Run("tools", func(t *testing.T) {
				params := anthropic.MessageNewParams{
					Model: anthropic.Model(w.model), MaxTokens: 100, Tools: weatherToolParam,
					Messages: userText("weather in Paris?"),
				}
				msg, err := c.Messages.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				var use *anthropic.ContentBlockUnion
				for i := range msg.Content {
					if msg.Content[i].Type == "tool_use" {
						use = &msg.Content[i]
					}
				}
				if msg.StopReason != anthropic.StopReasonToolUse || use == nil || use.Name != "get_weather" ||
					gjson.GetBytes(use.Input, "city").Str != "Paris" || use.ID == "" {
					t.Fatalf("tool use %s", msg.RawJSON())
				}
				// The result goes back with the call, as the SDK builds it.
				params.Messages = append(params.Messages, msg.ToParam(),
					anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "sunny, 21°C", false)))
				again, err := c.Messages.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				if len(again.Content) == 0 || !strings.Contains(again.Content[0].Text, "tool said:") || !strings.Contains(again.Content[0].Text, "sunny, 21°C") {
					t.Fatalf("tool round trip %s", again.RawJSON())
				}
			})

			t.Run("streamed tool input", func(t *testing.T) {
				s := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
					Model: anthropic.Model(w.model), MaxTokens: 100, Tools: weatherToolParam,
					Messages: userText("weather in Paris?"),
				})
				var types []string
				acc := anthropic.Message{}
				deltas := 0
				for s.Next() {
					ev := s.Current()
					types = append(types, ev.Type)
					if ev.Type == "content_block_delta" && ev.Delta.Type == "input_json_delta" {
						deltas++
					}
					if err := acc.Accumulate(ev); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				checkEventOrder(t, types)
				last := acc.Content[len(acc.Content)-1]
				if acc.StopReason != anthropic.StopReasonToolUse || last.Type != "tool_use" || last.Name != "get_weather" ||
					gjson.GetBytes(last.Input, "city").Str != "Paris" || deltas < 1 {
					t.Fatalf("streamed tool use: %d input deltas, %+v", deltas, acc)
				}
			})

			t.Run("image", func(t *testing.T) {
				png := base64.StdEncoding.EncodeToString(fakeupstream.ImagePNG)
				msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{
					Model: anthropic.Model(w.model), MaxTokens: 100,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(
						anthropic.NewImageBlockBase64("image/png", png), anthropic.NewTextBlock("what is this?"))},
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(msg.Content) == 0 || !strings.Contains(msg.Content[0].Text, "what is this?") {
					t.Fatalf("image message %s", msg.RawJSON())
				}
				up := lastUpstream(t, p)
				if !strings.Contains(string(up.Body), png) {
					t.Fatalf("the image did not reach the upstream: %s", up.Body)
				}
			})
		})
	}
}

// headerInto is a middleware that keeps the response's headers.
func headerInto(h *http.Header) aoption.Middleware {
	return func(r *http.Request, next aoption.MiddlewareNext) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			*h = resp.Header
		}
		return resp, err
	}
}

// TestMessagesErrors: every error reaches an Anthropic client in
// Anthropic's shape, with the status Anthropic would use.
func TestMessagesErrors(t *testing.T) {
	p := startEveryProvider(t)
	ctx := context.Background()
	expect := func(t *testing.T, err error, status int, typ string) *anthropic.Error {
		t.Helper()
		var ae *anthropic.Error
		if !errors.As(err, &ae) {
			t.Fatalf("want an API error, got %v", err)
		}
		raw := ae.RawJSON()
		if ae.StatusCode != status || gjson.Get(raw, "type").Str != "error" || gjson.Get(raw, "error.type").Str != typ ||
			gjson.Get(raw, "error.message").Str == "" || !strings.HasPrefix(gjson.Get(raw, "request_id").Str, "req_") {
			t.Fatalf("status %d, body %s; want %d %s", ae.StatusCode, raw, status, typ)
		}
		return ae
	}
	params := func(model string) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 50, Messages: userText("hi")}
	}

	t.Run("401", func(t *testing.T) {
		c := p.anthropic("sk-wrong")
		_, err := c.Messages.New(ctx, params("gpt-4o-mini"))
		expect(t, err, 401, "authentication_error")
		// The key as a bearer token works as well.
		c = anthropic.NewClient(aoption.WithBaseURL(p.URL+"/"), aoption.WithAuthToken(adminKey), aoption.WithMaxRetries(0))
		if _, err := c.Messages.New(ctx, params("gpt-4o-mini")); err != nil {
			t.Fatal(err)
		}
	})
	c := p.anthropic(adminKey)
	t.Run("404", func(t *testing.T) {
		_, err := c.Messages.New(ctx, params("no-such-model"))
		expect(t, err, 404, "not_found_error")
	})
	t.Run("400", func(t *testing.T) {
		resp, body := rawPost(t, p.URL+"/v1/messages", adminKey, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 400 || gjson.GetBytes(body, "error.type").Str != "invalid_request_error" ||
			!strings.Contains(gjson.GetBytes(body, "error.message").Str, "max_tokens") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		_, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "gpt-4o-mini", MaxTokens: 50, Messages: userText("hi"),
			Tools: []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}})
		ae := expect(t, err, 400, "invalid_request_error")
		if !strings.Contains(ae.RawJSON(), "web_search") {
			t.Fatalf("the error does not name the tool: %s", ae.RawJSON())
		}
	})
	for _, m := range []string{"fail-429", "anthropic/fail-429"} {
		t.Run("upstream 429 "+m, func(t *testing.T) {
			_, err := c.Messages.New(ctx, params(m))
			ae := expect(t, err, 429, "rate_limit_error")
			if ae.Response.Header.Get("Retry-After") == "" {
				t.Fatalf("no retry-after: %v", ae.Response.Header)
			}
		})
	}
	for _, m := range []string{"fail-500", "anthropic/fail-500", "anthropic/fail-529"} {
		t.Run("upstream 5xx "+m, func(t *testing.T) {
			_, err := c.Messages.New(ctx, params(m))
			var ae *anthropic.Error
			if !errors.As(err, &ae) || ae.StatusCode < 500 {
				t.Fatalf("want a 5xx, got %v", err)
			}
			if typ := gjson.Get(ae.RawJSON(), "error.type").Str; typ != "api_error" && typ != "overloaded_error" {
				t.Fatalf("error type %q: %s", typ, ae.RawJSON())
			}
		})
	}
	t.Run("error after the stream began", func(t *testing.T) {
		for _, m := range []string{fakeupstream.ModelStreamErrorMidway, "anthropic/" + fakeupstream.ModelStreamErrorEvent} {
			s := c.Messages.NewStreaming(ctx, params(m))
			n := 0
			for s.Next() {
				n++
			}
			if err := s.Err(); err == nil || n == 0 || !strings.Contains(err.Error(), "error") {
				t.Fatalf("%s: %d events, then %v", m, n, err)
			}
		}
	})
}

// TestMessagesAbortAndConcurrency: a client that leaves a stream is logged
// as 499 and its upstream is let go; 20 streams at once all complete.
func TestMessagesAbortAndConcurrency(t *testing.T) {
	p := startEveryProvider(t)
	c := p.anthropic(adminKey)

	t.Run("abort", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var head http.Header
		s := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: fakeupstream.ModelSlowStream, MaxTokens: 50, Messages: userText("slowly")},
			aoption.WithMiddleware(headerInto(&head)))
		if !s.Next() {
			t.Fatal(s.Err())
		}
		cancel()
		for s.Next() {
		}
		d := getLog(t, p, head.Get("X-Request-Id"))
		if d.Status != 499 || d.API != "messages" {
			t.Fatalf("log row %+v", d)
		}
	})

	t.Run("20 streams", func(t *testing.T) {
		concurrently(t, 20, func(i int) error {
			model := threeWays[i%3].model
			s := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 50, Messages: userText("together")})
			acc := anthropic.Message{}
			for s.Next() {
				if err := acc.Accumulate(s.Current()); err != nil {
					return err
				}
			}
			if err := s.Err(); err != nil {
				return err
			}
			if len(acc.Content) != 1 || acc.Content[0].Text != "echo: together" {
				return errors.New(model + ": " + acc.RawJSON())
			}
			return nil
		})
	})
}

// bodyInto is a middleware that keeps the request body the client sent.
func bodyInto(b *[]byte) aoption.Middleware {
	return func(r *http.Request, next aoption.MiddlewareNext) (*http.Response, error) {
		if r.GetBody != nil {
			if rc, err := r.GetBody(); err == nil {
				*b, _ = io.ReadAll(rc)
				rc.Close()
			}
		}
		return next(r)
	}
}

// TestMessagesPassthrough: to an Anthropic provider a Messages request
// goes through unchanged, byte for byte, and its answer comes back as the
// upstream sent it, so what the OpenAI shape cannot carry survives both
// ways: thinking blocks and their signatures, cache_control markers,
// server tools and their blocks.
func TestMessagesPassthrough(t *testing.T) {
	p := startEveryProvider(t, func(cfg *config.Config) {
		cfg.Routes = append(cfg.Routes, config.RouteConfig{Model: "mixed", Targets: []config.RouteTarget{
			{Provider: "fake", Model: "gpt-4o-mini"}, {Provider: "anthropic", Model: "claude-test"}}})
	})
	c := p.anthropic(adminKey)
	ctx := context.Background()
	params := anthropic.MessageNewParams{
		Model: "claude-test", MaxTokens: 2048,
		Thinking: anthropic.ThinkingConfigParamOfEnabled(1024),
		System:   []anthropic.TextBlockParam{{Text: "You are terse.", CacheControl: anthropic.NewCacheControlEphemeralParam()}},
		Tools: []anthropic.ToolUnionParam{
			{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{MaxUses: anthropic.Int(1)}},
		},
		Messages: userText("what is new?"),
	}
	var sent []byte
	msg, err := c.Messages.New(ctx, params, aoption.WithMiddleware(bodyInto(&sent)))
	if err != nil {
		t.Fatal(err)
	}
	up := lastUpstream(t, p)
	if string(up.Body) != string(sent) || !strings.Contains(string(sent), "cache_control") || !strings.Contains(string(sent), "web_search_20250305") {
		t.Fatalf("the upstream got\n%s\nthe client sent\n%s", up.Body, sent)
	}
	var types []string
	for _, b := range msg.Content {
		types = append(types, b.Type)
	}
	if strings.Join(types, " ") != "thinking server_tool_use web_search_tool_result text" || msg.Content[0].Signature != fakeupstream.FakeSignature {
		t.Fatalf("content %s", msg.RawJSON())
	}
	// The signed thinking block goes back with the next turn, as Claude
	// needs it; the fake upstream checks its signature.
	params.Messages = append(params.Messages, msg.ToParam(), anthropic.NewUserMessage(anthropic.NewTextBlock("and then?")))
	if _, err := c.Messages.New(ctx, params); err != nil {
		t.Fatal(err)
	}

	t.Run("stream", func(t *testing.T) {
		params.Tools = nil
		s := c.Messages.NewStreaming(ctx, params)
		acc := anthropic.Message{}
		var deltas []string
		for s.Next() {
			ev := s.Current()
			if ev.Type == "content_block_delta" {
				deltas = append(deltas, ev.Delta.Type)
			}
			if err := acc.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Content) != 2 || acc.Content[0].Type != "thinking" || acc.Content[0].Signature != fakeupstream.FakeSignature ||
			acc.Content[1].Text != "echo: and then?" || !slices.Contains(deltas, "signature_delta") || acc.Usage.OutputTokens < 1 {
			t.Fatalf("deltas %v, accumulated %s", deltas, acc.RawJSON())
		}
	})

	t.Run("mixed route", func(t *testing.T) {
		// A route whose first target cannot be sent a server tool: the
		// request moves on to the Anthropic one.
		params := anthropic.MessageNewParams{Model: "mixed", MaxTokens: 100, Messages: userText("search this"),
			Tools: []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}}
		var head http.Header
		msg, err := c.Messages.New(ctx, params, aoption.WithMiddleware(headerInto(&head)))
		if err != nil {
			t.Fatal(err)
		}
		if head.Get("X-LLM-Proxy-Provider") != "anthropic" || head.Get("X-LLM-Proxy-Attempts") != "2" || msg.Content[0].Type != "server_tool_use" {
			t.Fatalf("headers %v, answer %s", head, msg.RawJSON())
		}
		// Without the server tool, the first target serves it.
		params.Tools = nil
		if _, err := c.Messages.New(ctx, params, aoption.WithMiddleware(headerInto(&head))); err != nil || head.Get("X-LLM-Proxy-Provider") != "fake" {
			t.Fatalf("%v, headers %v", err, head)
		}
	})

	t.Run("count_tokens", func(t *testing.T) {
		n, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-test", Messages: userText(strings.Repeat("word ", 400))})
		if err != nil {
			t.Fatal(err)
		}
		if n.InputTokens < 400 || n.InputTokens > 1000 {
			t.Fatalf("input_tokens %d for 400 words", n.InputTokens)
		}
		_, err = c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "nope", Messages: userText("x")})
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != 404 {
			t.Fatalf("unknown model: %v", err)
		}
	})
}

// concurrently runs fn(0) to fn(n-1) at once and reports their errors.
func concurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
