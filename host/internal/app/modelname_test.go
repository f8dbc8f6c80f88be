package app_test

import (
	"encoding/json"
	"testing"
)

// TestModelNameCannotSteerTheURL: a model name that could leave the path
// of an upstream URL (plugins put models into paths: gemini's
// /models/{model}:generateContent, Azure's deployments) is refused with 400
// before it is routed, for every provider, and nothing reaches an upstream.
func TestModelNameCannotSteerTheURL(t *testing.T) {
	p := startProxy(t, nil)
	for _, model := range []string{
		"fake/../../admin/delete-everything?confirm=yes&x=",
		"fake/gpt-4o-mini?x=1",
		"fake/gpt-4o-mini#x",
		"fake/..",
		"fake/./gpt-4o-mini",
		"fake//gpt-4o-mini",
		"fake/gpt-4o-mini%2F..%2F..",
		"fake/gpt 4o",
		"fake/gpt-4o\nmini",
		"demo/../x",
		"hostile/ok?x",
		"gpt-4o-mini\x00",
	} {
		body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
			b := string(body)
			if path == "/v1/embeddings" {
				eb, _ := json.Marshal(map[string]string{"model": model, "input": "hi"})
				b = string(eb)
			}
			resp, out := rawPost(t, p.URL+path, adminKey, b)
			checkOpenAIError(t, out)
			var e struct {
				Error struct{ Code, Param string } `json:"error"`
			}
			_ = json.Unmarshal(out, &e)
			if resp.StatusCode != 400 || e.Error.Code != "invalid_model" || e.Error.Param != "model" {
				t.Errorf("%s %q: %d %s", path, model, resp.StatusCode, out)
			}
		}
	}
	if n := len(p.Upstream.Requests()); n != 0 {
		t.Fatalf("the upstream received %d requests", n)
	}
	// Names with every character allowed still route.
	if _, err := p.client(adminKey).Chat.Completions.New(t.Context(), chatParams("fake/ft:gpt-4o-mini:acme@v1+q.2_x", "hi")); err != nil {
		t.Fatal(err)
	}
	if got := lastUpstream(t, p); got.Path != "/v1/chat/completions" {
		t.Fatalf("upstream path %q", got.Path)
	}
}
