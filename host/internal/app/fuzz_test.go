package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// FuzzV1 sends fuzzed bodies through the whole /v1 path of a real proxy:
// the host's parsing and routing, the real openai, gemini, anthropic,
// azure and demo plugins in wazero, and the fake upstreams. Every answer
// must be a 200 or an OpenAI-shaped error, nothing may crash, and the heap
// must not keep growing: after every 200 inputs it is measured after a
// collection, and may not exceed the first measure by more than 256 MiB.
//
//	go test -run XXX -fuzz FuzzV1 -fuzztime 5m ./host/internal/app
func FuzzV1(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}`,
		`{"model":"gemini-test","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]}`,
		`{"model":"gemini-test","stream":true,"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}`,
		`{"model":"claude-test","max_tokens":50,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"tool_choice":"required","tools":[{"type":"function","function":{"name":"f"}}]}`,
		`{"model":"claude-test","stream":true,"temperature":0.5,"stop":["x"],"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o-azure","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"demo-story","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gemini/gemini-test","n":2,"logprobs":true,"messages":[{"role":"developer","content":"d"},{"role":"user","content":"hi"}]}`,
		`{"model":"gemini-embed","input":["a","b"]}`,
		`{"model":"text-embedding-3-small","input":"a","dimensions":8}`,
		`{"model":"embed-azure","input":[[1,2,3]]}`,
		``, `{}`, `[]`, `{"model":"gpt-4o-mini","messages":[{}]}`,
	} {
		f.Add([]byte(s), strings.Contains(s, `"input"`))
	}
	p := startGeminiProxy(f, fakeupstream.Options{}, func(cfg *config.Config) {
		testplugins.Install(f, testplugins.Build(f, "plugins/anthropic"), cfg.Plugins.Dir, "anthropic.wasm")
		testplugins.Install(f, testplugins.Build(f, "plugins/azure"), cfg.Plugins.Dir, "azure.wasm")
		root := strings.TrimSuffix(cfg.Providers[0].BaseURL, "/v1")
		cfg.Providers = append(cfg.Providers, config.ProviderConfig{
			Name: "anthropic", Plugin: "anthropic", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"claude-test"}, AllowPrivateNetwork: true,
		}, config.ProviderConfig{
			Name: "azure", Plugin: "azure", BaseURL: root, APIKeyEnv: "FAKE_UPSTREAM_KEY",
			Models: []string{"gpt-4o-azure", "embed-azure"}, AllowPrivateNetwork: true,
			Options: map[string]any{"deployments": map[string]any{"gpt-4o-azure": "prod-4o"}},
		})
	})
	hc := &http.Client{Timeout: time.Minute}
	var inputs atomic.Int64
	var firstHeap atomic.Uint64
	f.Fuzz(func(t *testing.T, body []byte, embeddings bool) {
		path := "/v1/chat/completions"
		if embeddings {
			path = "/v1/embeddings"
		}
		req, _ := http.NewRequest("POST", p.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch {
		case resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
			if !bytes.HasPrefix(out, []byte("data: ")) {
				t.Fatalf("a stream that is not server-sent events: %.300s", out)
			}
		case resp.StatusCode == 200:
			if !json.Valid(out) {
				t.Fatalf("a 200 that is not JSON: %.300s", out)
			}
		case resp.StatusCode >= 400 && resp.StatusCode < 600:
			checkOpenAIError(t, out)
		default:
			t.Fatalf("status %d: %.300s", resp.StatusCode, out)
		}
		if inputs.Add(1)%200 == 0 {
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			firstHeap.CompareAndSwap(0, ms.HeapAlloc)
			if first := firstHeap.Load(); ms.HeapAlloc > first+256<<20 {
				t.Fatalf("heap grew from %d MiB to %d MiB after %d inputs", first>>20, ms.HeapAlloc>>20, inputs.Load())
			}
		}
	})
}
