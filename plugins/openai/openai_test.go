package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/sdk/abi"
	"github.com/llm-proxy/llm-proxy/sdk/plugintest"
)

// TestGolden runs every testdata/*.case natively. The host's plugin tests
// run the same files against the built openai.wasm.
func TestGolden(t *testing.T) {
	raw, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m abi.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	cases, err := plugintest.LoadCases("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 5 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			u := c.StartUpstream()
			defer u.Close()
			res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
				Provider: "test", BaseURL: u.URL + "/v1", Auth: m.Auth, Secret: "test-key",
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

func TestOrganizationHeaders(t *testing.T) {
	c, err := plugintest.ParseCase("org", []byte("-- op --\nchat\n-- request --\n{}\n-- upstream --\nHTTP 200\n\n{}\n-- want upstream --\nPOST /v1/chat/completions\nOpenAI-Organization: org-1\nOpenAI-Project: proj-2\n\n-- want emits --\nbody {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	u := c.StartUpstream()
	defer u.Close()
	res := plugintest.Run(plugin{}, c.Op, c.Request, plugintest.Options{
		BaseURL: u.URL + "/v1/", Options: map[string]any{"organization": "org-1", "project": "proj-2"},
	})
	if diffs := c.Check(u, res.Emits); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
}
