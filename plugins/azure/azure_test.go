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
