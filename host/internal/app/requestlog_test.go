package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// TestRequestLogRows: every finished /v1 request becomes one row in the
// database, written in the background, with usage from streams too.
func TestRequestLogRows(t *testing.T) {
	p := startProxy(t, nil)
	c := p.client(adminKey)
	ctx := context.Background()
	if _, err := c.Chat.Completions.New(ctx, chatParams("gpt-4o-mini", "log me")); err != nil {
		t.Fatal(err)
	}
	s := c.Chat.Completions.NewStreaming(ctx, chatParams("gpt-4o-mini", "stream and log me"))
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Chat.Completions.New(ctx, chatParams("no-such-model", "x"))
	_, _ = c.Chat.Completions.New(ctx, chatParams(fakeupstream.ModelFail429, "x"))

	var rows []store.RequestLog
	waitFor(t, func() bool {
		rows = nil
		err := p.App.Store().Reader().SelectContext(ctx, &rows, `SELECT * FROM request_logs ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows) == 4
	})
	// Ids sort by millisecond; requests within one millisecond are in any
	// order, so rows are picked by what they are.
	var chat, stream, notFound, limited store.RequestLog
	for _, r := range rows {
		switch {
		case r.Model == "no-such-model":
			notFound = r
		case r.Model == fakeupstream.ModelFail429:
			limited = r
		case r.Stream:
			stream = r
		default:
			chat = r
		}
	}
	for _, r := range []store.RequestLog{chat, stream} {
		if r.Status != 200 || r.Provider != "fake" || r.Plugin != "openai" || r.PluginVersion != "1.0.0" ||
			r.PromptTokens == 0 || r.CompletionTokens == 0 || r.ErrorType.Valid || r.KeyID.Valid || r.LatencyMS <= 0 {
			t.Fatalf("row %+v", r)
		}
	}
	if chat.Stream || !stream.Stream || stream.TTFBMS <= 0 {
		t.Fatalf("stream flags: %+v / %+v", chat, stream)
	}
	if notFound.Status != 404 || notFound.ErrorType.String != "invalid_request_error" || notFound.Provider != "" {
		t.Fatalf("404 row %+v", notFound)
	}
	if limited.Status != 429 || limited.ErrorType.String == "" {
		t.Fatalf("429 row %+v", limited)
	}

	req, _ := http.NewRequest("GET", p.URL+"/api/stats", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		RequestLog struct{ Queued, Written, Dropped int64 } `json:"request_log"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.RequestLog.Written != 4 || st.RequestLog.Dropped != 0 {
		t.Fatalf("stats %+v %v", st, err)
	}
}
