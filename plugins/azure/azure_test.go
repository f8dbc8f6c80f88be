package main

import (
	"os"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// testOptions are the provider options every case runs with.
var testOptions = map[string]any{"deployments": map[string]string{"gpt-4o": "prod-gpt4o", "text-embedding-3-small": "emb-small"}}

// TestGolden runs every testdata/*.case natively. The host's plugin tests
// run the same files against the built azure.wasm.
func TestGolden(t *testing.T) {
	raw, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := abi.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := plugintest.LoadCases("testdata")
	if err != nil || len(cases) < 5 {
		t.Fatal(err, len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := c.StartUpstream()
			defer u.Close()
			res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
				Provider: "azure", BaseURL: u.URL, Auth: m.Auth, Secret: "test-key", Options: testOptions,
			})
			if res.Ret != 0 {
				t.Fatalf("handle returned %d; logs %v", res.Ret, res.Logs)
			}
			if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
			if c.Op == abi.OpChatStream && c.Upstream.Status == 200 && !res.Finished {
				t.Fatal("the stream was not finished")
			}
		})
	}
}

// TestAPIVersionOption: api_version replaces the default.
func TestAPIVersionOption(t *testing.T) {
	c, err := plugintest.ParseCase("v", []byte("-- op --\nchat\n-- request --\n{\"model\":\"m\",\"messages\":[]}\n-- upstream --\nHTTP 200\n\n{}\n-- want upstream --\nPOST /openai/deployments/m/chat/completions?api-version=2025-04-01-preview\n\n-- want emits --\nbody {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	u := c.StartUpstream()
	defer u.Close()
	res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{BaseURL: u.URL, Options: map[string]any{"api_version": "2025-04-01-preview"}})
	if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
}

// TestV1API: api_version "v1" sends requests to /openai/v1/... without an
// api-version, with the body's model rewritten to the deployment when the
// table maps it, and unchanged (byte for byte) when it does not.
func TestV1API(t *testing.T) {
	v1 := map[string]any{"api_version": "v1", "deployments": map[string]string{"gpt-4o": "prod-gpt4o"}}
	for name, text := range map[string]string{
		"mapped": "-- op --\nchat\n-- request --\n{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":{\"model\":\"x\"}}\n" +
			"-- upstream --\nHTTP 200\nContent-Type: application/json\n\n{\"id\":\"c\"}\n" +
			"-- want upstream --\nPOST /openai/v1/chat/completions\napi-key: test-key\n\n" +
			"{\"model\":\"prod-gpt4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":{\"model\":\"x\"}}\n" +
			"-- want emits --\nbody {\"id\":\"c\"}\n",
		"unmapped": "-- op --\nchat_stream\n-- request --\n{ \"model\" : \"my-deployment\",\"stream\":true,\"messages\":[]}\n" +
			"-- upstream --\nHTTP 200\nContent-Type: text/event-stream\n\ndata: {\"id\":\"c\",\"choices\":[]}\n\ndata: [DONE]\n\n" +
			"-- want upstream --\nPOST /openai/v1/chat/completions\n\n{ \"model\" : \"my-deployment\",\"stream\":true,\"messages\":[]}\n" +
			"-- want emits --\nchunk {\"id\":\"c\",\"choices\":[]}\n",
		"embeddings": "-- op --\nembeddings\n-- request --\n{\"input\":\"a\",\"model\":\"gpt-4o\"}\n" +
			"-- upstream --\nHTTP 200\n\n{\"object\":\"list\"}\n" +
			"-- want upstream --\nPOST /openai/v1/embeddings\n\n{\"input\":\"a\",\"model\":\"prod-gpt4o\"}\n" +
			"-- want emits --\nbody {\"object\":\"list\"}\n",
		"models": "-- op --\nmodels\n-- request --\n{}\n" +
			"-- upstream --\nHTTP 200\n\n{\"object\":\"list\",\"data\":[]}\n" +
			"-- want upstream --\nGET /openai/v1/models\n\n" +
			"-- want emits --\nbody {\"object\":\"list\",\"data\":[]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := plugintest.ParseCase(name, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			u := c.StartUpstream()
			defer u.Close()
			res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{BaseURL: u.URL, Auth: abi.Auth{Type: "header", Name: "api-key", Format: "{key}"}, Secret: "test-key", Options: v1})
			if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
				t.Fatal(strings.Join(diffs, "\n"))
			}
		})
	}
}
