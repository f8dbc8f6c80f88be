package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// TestAzureEndToEnd: the azure plugin sends OpenAI requests to deployment
// URLs with api-version, the host adds the key as api-key, and answers,
// streams, embeddings and errors come back as from OpenAI.
func TestAzureEndToEnd(t *testing.T) {
	p := startProxyWith(t, func(cfg *config.Config) {
		testplugins.Install(t, testplugins.Build(t, "plugins/azure"), cfg.Plugins.Dir, "azure.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1")
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "azure", Plugin: "azure", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gpt-4o-azure", "embed-azure"}, AllowPrivateNetwork: true,
			Options: map[string]any{"deployments": map[string]any{"gpt-4o-azure": "prod-4o"}},
		})
	}, fakeupstream.Options{})
	c := p.client(adminKey)
	ctx := context.Background()

	resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-azure", "hello azure"))
	if err != nil || resp.Choices[0].Message.Content != "echo: hello azure" {
		t.Fatalf("%v %+v", err, resp)
	}
	up := lastUpstream(t, p)
	if up.Path != "/openai/deployments/prod-4o/chat/completions" || up.Query != "api-version=2024-10-21" ||
		up.Header.Get("api-key") != upstreamKey || up.Header.Get("Authorization") != "" {
		t.Fatalf("upstream %s?%s %v", up.Path, up.Query, up.Header)
	}

	params := chatParams("gpt-4o-azure", "stream it")
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := c.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if s.Err() != nil || acc.Choices[0].Message.Content != "echo: stream it" || acc.Usage.TotalTokens == 0 {
		t.Fatalf("%v %q %+v", s.Err(), acc.Choices[0].Message.Content, acc.Usage)
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed-azure", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil || len(emb.Data) != 1 {
		t.Fatalf("%v %+v", err, emb)
	}
	if up := lastUpstream(t, p); up.Path != "/openai/deployments/embed-azure/embeddings" {
		t.Fatalf("embeddings went to %s", up.Path)
	}

	r, b := rawPost(t, p.URL+"/v1/chat/completions", adminKey, `{"model":"azure/fail-429","messages":[{"role":"user","content":"x"}]}`)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "7" {
		t.Fatalf("%d %q %s", r.StatusCode, r.Header.Get("Retry-After"), b)
	}
	checkOpenAIError(t, b)
}

// TestAzureV1EndToEnd: with api_version "v1" the azure plugin uses Azure's
// v1 API, /openai/v1/..., with no api-version and the deployment in the
// body's model.
func TestAzureV1EndToEnd(t *testing.T) {
	p := startProxyWith(t, func(cfg *config.Config) {
		testplugins.Install(t, testplugins.Build(t, "plugins/azure"), cfg.Plugins.Dir, "azure.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1")
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "azure", Plugin: "azure", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gpt-4o-azure", "embed-azure"}, AllowPrivateNetwork: true,
			Options: map[string]any{"api_version": "v1", "deployments": map[string]any{"gpt-4o-azure": "prod-4o"}},
		})
	}, fakeupstream.Options{})
	c := p.client(adminKey)
	ctx := context.Background()

	resp, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-azure", "hello v1"))
	if err != nil || resp.Choices[0].Message.Content != "echo: hello v1" {
		t.Fatalf("%v %+v", err, resp)
	}
	up := lastUpstream(t, p)
	if up.Path != "/openai/v1/chat/completions" || up.Query != "" || up.Header.Get("api-key") != upstreamKey ||
		gjson.GetBytes(up.Body, "model").String() != "prod-4o" {
		t.Fatalf("upstream %s?%s %v %s", up.Path, up.Query, up.Header, up.Body)
	}

	s := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-azure", "stream v1"))
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if s.Err() != nil || acc.Choices[0].Message.Content != "echo: stream v1" {
		t.Fatalf("%v %q", s.Err(), acc.Choices[0].Message.Content)
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "embed-azure", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil || len(emb.Data) != 1 {
		t.Fatalf("%v %+v", err, emb)
	}
	if up := lastUpstream(t, p); up.Path != "/openai/v1/embeddings" || gjson.GetBytes(up.Body, "model").String() != "embed-azure" {
		t.Fatalf("embeddings went to %s with %s", up.Path, up.Body)
	}
}
