package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
)

// TestDeeplyNestedJSONRefused: a body that opens thousands of arrays is
// refused with 400 invalid_json on every route that reads JSON, before a
// parser recurses into it. Before the depth check, 4 MiB of "[" grew the
// stack of the goroutine validating it by hundreds of megabytes, never
// given back, and 6.5 MB overflowed it and ended the process.
func TestDeeplyNestedJSONRefused(t *testing.T) {
	p := startProxy(t, func(c *config.Config) { c.Server.MaxBodyBytes = 8 * config.MiB })
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	deep := func(prefix string, n int) string { return prefix + strings.Repeat("[", n) }
	tests := []struct {
		method, path, key, body string
	}{
		{"POST", "/v1/chat/completions", adminKey, deep("", 6_500_000)},
		{"POST", "/v1/chat/completions", adminKey, deep(`{"model":"gpt-4o-mini","messages":`, 4<<20)},
		{"POST", "/v1/embeddings", adminKey, deep(`{"model":"text-embedding-3-small","input":`, 1<<20)},
		{"POST", "/api/keys", adminKey, deep(`{"name":`, 1<<20)},
		{"PATCH", "/api/settings", adminKey, deep(`{"retention_days":`, 1<<20)},
		{"POST", "/api/providers", adminKey, deep(`{"name":"x","options":`, 1<<20)},
		{"POST", "/api/login", "", deep(`{"username":`, 1<<20)},
		// At the bound it is only invalid JSON, refused by the parser.
		{"POST", "/v1/chat/completions", adminKey, deep(`{"model":"gpt-4o-mini","messages":`, 511)},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, p.URL+tt.path, strings.NewReader(tt.body))
		req.Header.Set("Content-Type", "application/json")
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s (%d bytes): %v", tt.method, tt.path, len(tt.body), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkOpenAIError(t, body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != 400 || e.Error.Code != "invalid_json" {
			t.Errorf("%s %s (%d bytes): %d %s", tt.method, tt.path, len(tt.body), resp.StatusCode, body)
		}
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.StackSys) - int64(before.StackSys); grew > 64<<20 {
		t.Errorf("goroutine stacks grew by %d MiB", grew>>20)
	}
	// Still serving.
	if _, err := p.client(adminKey).Chat.Completions.New(t.Context(), chatParams("gpt-4o-mini", "hi")); err != nil {
		t.Fatal(err)
	}
}
