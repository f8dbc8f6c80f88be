package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/bodylog"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
)

type logDetail struct {
	ID           string  `json:"id"`
	Status       int     `json:"status"`
	Stream       bool    `json:"stream"`
	API          string  `json:"api"`
	Provider     string  `json:"provider"`
	PromptTokens int64   `json:"prompt_tokens"`
	Completion   int64   `json:"completion_tokens"`
	RequestBody  *string `json:"request_body"`
	ResponseBody *string `json:"response_body"`
}

func getLog(t *testing.T, p *proxy, id string) logDetail {
	t.Helper()
	var d logDetail
	waitFor(t, func() bool {
		status, b := adminCall(t, p, "GET", "/api/logs/"+id, "")
		if status == 404 {
			return false // not written yet
		}
		if status != 200 || json.Unmarshal(b, &d) != nil {
			t.Fatalf("GET /api/logs/%s: %d %s", id, status, b)
		}
		return true
	})
	return d
}

// TestRequestLogBodies: with [logs] bodies on, the request and response
// bodies of each request are stored, capped and redacted, and shown by
// GET /api/logs/{id} only; no key of any kind ends up in them.
func TestRequestLogBodies(t *testing.T) {
	const limit = 2048
	p := startProxy(t, func(cfg *config.Config) {
		cfg.Logs.Bodies = true
		cfg.Logs.MaxBodyBytes = limit
		// The fake upstream's system_fingerprint stands for a secret in a
		// response.
		cfg.Logs.RedactFields = append(config.DefaultRedactFields(), "system_fingerprint")
	})
	client := createKey(t, p, `{"name":"bodies"}`)
	c := p.client(client.Key)
	ctx := context.Background()
	const bodySecret = "sk-secret-in-the-body-7c1e"
	var resp *http.Response

	// A plain chat, with secrets in the body at two depths and inside a
	// tool call's arguments (a JSON text in a string).
	if _, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "keep this text"),
		option.WithJSONSet("messages", []any{
			map[string]any{"role": "user", "content": "sign me in"},
			map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "call_1", "type": "function",
				"function": map[string]any{"name": "login", "arguments": `{"user":"bo","password":"` + bodySecret + `"}`}}}},
			map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "signed in"},
			map[string]any{"role": "user", "content": "keep this text"},
		}),
		option.WithJSONSet("api_key", bodySecret),
		option.WithJSONSet("metadata", map[string]any{"nested": []any{map[string]any{"Password": bodySecret}}}),
		option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	chat := getLog(t, p, resp.Header.Get("X-Request-Id"))
	if chat.RequestBody == nil || chat.ResponseBody == nil {
		t.Fatalf("bodies not stored: %+v", chat)
	}
	req := *chat.RequestBody
	if !strings.Contains(req, `"keep this text"`) || !strings.Contains(req, `"api_key":"[REDACTED]"`) ||
		!strings.Contains(req, `"Password":"[REDACTED]"`) || !strings.Contains(req, `"arguments":"{\"user\":\"bo\",\"password\":\"[REDACTED]\"}"`) ||
		strings.Contains(req, bodySecret) || !json.Valid([]byte(req)) {
		t.Fatalf("request body: %s", req)
	}
	res := *chat.ResponseBody
	if !strings.Contains(res, `"echo: keep this text"`) || !strings.Contains(res, `"system_fingerprint":"[REDACTED]"`) || !json.Valid([]byte(res)) {
		t.Fatalf("response body: %s", res)
	}

	// A stream: the events as the client got them, each one redacted.
	s := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "stream this"), option.WithResponseInto(&resp))
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	stream := getLog(t, p, resp.Header.Get("X-Request-Id"))
	sse := *stream.ResponseBody
	if !stream.Stream || !strings.HasPrefix(sse, "data: {") || !strings.HasSuffix(sse, "data: [DONE]\n\n") ||
		strings.Count(sse, `"system_fingerprint":"[REDACTED]"`) < 3 || strings.Contains(sse, `"usage":{`) {
		// The usage chunk the proxy asked for on the client's behalf was
		// not sent to the client, so it is not stored either.
		t.Fatalf("stream body:\n%s", sse)
	}

	// A body over the cap keeps its first bytes and says how long it was.
	long := strings.Repeat("long words ", 400)
	if _, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", long), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	cut := getLog(t, p, resp.Header.Get("X-Request-Id"))
	for name, b := range map[string]string{"request": *cut.RequestBody, "response": *cut.ResponseBody} {
		i := strings.Index(b, "…[truncated from ")
		if i != limit {
			t.Fatalf("%s body cut at %d, want %d: ...%s", name, i, limit, b[limit-20:])
		}
		size, err := strconv.Atoi(strings.TrimSuffix(b[i+len("…[truncated from "):], " bytes]"))
		if err != nil || size <= limit || b[i:] != bodylog.TruncatedSuffix(size) {
			t.Fatalf("%s body mark %q", name, b[i:])
		}
	}

	// An error: the error as the client got it.
	_, err := c.Chat.Completions.New(ctx, chatParams("no-such-model", "x"), option.WithResponseInto(&resp))
	if apiError(t, err).StatusCode != 404 {
		t.Fatal(err)
	}
	notFound := getLog(t, p, resp.Header.Get("X-Request-Id"))
	if notFound.Status != 404 || !strings.Contains(*notFound.ResponseBody, `"code":"model_not_found"`) {
		t.Fatalf("error row: %+v", notFound)
	}

	// List pages carry no bodies.
	if status, b := adminCall(t, p, "GET", "/api/logs", ""); status != 200 || strings.Contains(string(b), "request_body") ||
		strings.Contains(string(b), "echo: ") {
		t.Fatalf("list: %d %s", status, b)
	}
	if status, b := adminCall(t, p, "GET", "/api/logs/req_nope", ""); status != 404 || !strings.Contains(string(b), "log_not_found") {
		t.Fatalf("unknown id: %d %s", status, b)
	}

	// Keys travel in headers, so no stored body holds one; the redacted
	// value is gone too.
	for _, secret := range []string{client.Key, adminKey, upstreamKey, testEncryptionKey, bodySecret} {
		var n int
		if err := p.App.Store().Reader().Get(&n, `SELECT count(*) FROM request_logs
			WHERE coalesce(request_body, '') LIKE ? OR coalesce(response_body, '') LIKE ?`, "%"+secret+"%", "%"+secret+"%"); err != nil || n != 0 {
			t.Fatalf("%d rows hold %q (%v)", n, secret, err)
		}
	}
}
