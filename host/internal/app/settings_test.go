package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

type settingsAnswer struct {
	RetentionDays int      `json:"retention_days"`
	LogBodies     bool     `json:"log_bodies"`
	MaxBodyBytes  int      `json:"max_body_bytes"`
	RedactFields  []string `json:"redact_fields"`
	Changed       []string `json:"changed"`
}

func getSettings(t *testing.T, p *proxy) settingsAnswer {
	t.Helper()
	status, body := adminCall(t, p, "GET", "/api/settings", "")
	var s settingsAnswer
	if status != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("settings: %d %s", status, body)
	}
	return s
}

// bodyOf makes one chat request and returns the request body stored in its
// log row (NULL: not valid).
func bodyOf(t *testing.T, p *proxy, text string) sql.NullString {
	t.Helper()
	var resp *http.Response
	_, err := p.client(adminKey).Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	var body sql.NullString
	waitFor(t, func() bool {
		err := p.App.Store().Reader().Get(&body, `SELECT request_body FROM request_logs WHERE id = ?`, id)
		return err == nil
	})
	return body
}

func TestSettings(t *testing.T) {
	var cfgPath string
	p, cfg := startProxyConfig(t)
	cfgPath = cfg.Database.Path

	s := getSettings(t, p)
	if s.RetentionDays != 30 || s.LogBodies || s.MaxBodyBytes != 64<<10 || len(s.RedactFields) == 0 || len(s.Changed) != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	if b := bodyOf(t, p, "before"); b.Valid {
		t.Fatalf("a body stored with body logging off: %q", b.String)
	}

	// Body logging on, at run time.
	status, body := adminCall(t, p, "PATCH", "/api/settings", `{"log_bodies": true}`)
	if status != 200 || !strings.Contains(string(body), `"log_bodies":true`) || !strings.Contains(string(body), `"changed":["log_bodies"]`) {
		t.Fatalf("patch: %d %s", status, body)
	}
	if b := bodyOf(t, p, "during"); !b.Valid || !strings.Contains(b.String, "during") {
		t.Fatalf("no body stored with body logging on: %+v", b)
	}

	// Retention: rows older than the new retention go at once.
	old := time.Now().Add(-72 * time.Hour).UnixMilli()
	if err := p.App.Store().InsertLogs(context.Background(), []store.RequestLog{
		{ID: "req_old_1", TS: old, Model: "m", Status: 200}, {ID: "req_old_2", TS: old + 1, Model: "m", Status: 200},
	}); err != nil {
		t.Fatal(err)
	}
	if status, body := adminCall(t, p, "PATCH", "/api/settings", `{"retention_days": 2}`); status != 200 {
		t.Fatalf("patch: %d %s", status, body)
	}
	waitFor(t, func() bool {
		var n int
		p.App.Store().Reader().Get(&n, `SELECT count(*) FROM request_logs WHERE id LIKE 'req_old_%'`)
		return n == 0
	})

	// Refusals change nothing.
	for _, b := range []string{`{"retention_days": -1}`, `{"retention_days": 99999}`, `{"log_bodies": "yes"}`, `{"max_body_bytes": 1}`, `nope`} {
		if status, body := adminCall(t, p, "PATCH", "/api/settings", b); status != 400 {
			t.Errorf("%s: %d %s", b, status, body)
		}
	}

	// The changes outlive a restart.
	p.Stop()
	p = startOn(t, cfg, p.Upstream)
	if cfg.Database.Path != cfgPath {
		t.Fatal("another database")
	}
	s = getSettings(t, p)
	if s.RetentionDays != 2 || !s.LogBodies || len(s.Changed) != 2 {
		t.Fatalf("after a restart: %+v", s)
	}
	if b := bodyOf(t, p, "after restart"); !b.Valid {
		t.Fatal("body logging off after a restart")
	}
	if status, body := adminCall(t, p, "PATCH", "/api/settings", `{"log_bodies": false}`); status != 200 {
		t.Fatalf("patch: %d %s", status, body)
	}
	if b := bodyOf(t, p, "off again"); b.Valid {
		t.Fatal("a body stored after body logging was turned off")
	}
}
