package app_test

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// TestRequestLogRows: every finished /v1 request becomes one row in the
// database, written in the background, with usage from streams too.
func TestRequestLogRows(t *testing.T) {
	p := startProxy(t, func(cfg *config.Config) {
		cfg.Prices = map[string]config.PriceConfig{"gpt-4o-mini": {Input: 1, Output: 2}}
	})
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
			r.PromptTokens == 0 || r.CompletionTokens == 0 || r.ErrorType.Valid || r.KeyID.Valid || r.LatencyMS <= 0 ||
			r.RequestBody.Valid || r.ResponseBody.Valid { // bodies are off by default
			t.Fatalf("row %+v", r)
		}
	}
	for _, r := range []store.RequestLog{chat, stream} {
		if want := float64(r.PromptTokens+2*r.CompletionTokens) / 1e6; math.Abs(r.CostUSD-want) > 1e-12 {
			t.Fatalf("cost %v, want %v: %+v", r.CostUSD, want, r)
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

	// The writer counts a batch once its transaction has committed: the
	// rows can be read a moment before the count moves.
	var st struct {
		RequestLog struct{ Queued, Written, Dropped int64 } `json:"request_log"`
	}
	waitFor(t, func() bool {
		status, b := adminCall(t, p, "GET", "/api/stats", "")
		if status != 200 || json.Unmarshal(b, &st) != nil {
			t.Fatalf("stats: %d %s", status, b)
		}
		return st.RequestLog.Written == 4
	})
	if st.RequestLog.Dropped != 0 || st.RequestLog.Queued != 4 {
		t.Fatalf("stats %+v", st)
	}

	// The same rows through the admin API.
	type page struct {
		Data []struct {
			ID     string `json:"id"`
			Model  string `json:"model"`
			Status int    `json:"status"`
		} `json:"data"`
		NextCursor string `json:"next_cursor"`
	}
	get := func(path string, v any) int {
		t.Helper()
		status, b := adminCall(t, p, "GET", path, "")
		if v != nil && status == 200 {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s: %v %s", path, err, b)
			}
		}
		return status
	}
	var pg page
	if get("/api/logs?model=gpt-4o-mini", &pg) != 200 || len(pg.Data) != 2 {
		t.Fatalf("logs by model: %+v", pg)
	}
	pg = page{}
	if get("/api/logs?status=4xx", &pg) != 200 || len(pg.Data) != 2 {
		t.Fatalf("logs by status class: %+v", pg)
	}
	seen := map[string]bool{}
	cursor := ""
	for i := 0; i < 10; i++ {
		pg = page{}
		get("/api/logs?limit=1&cursor="+cursor, &pg)
		for _, r := range pg.Data {
			seen[r.ID] = true
		}
		if cursor = pg.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("pagination saw %d rows", len(seen))
	}
	if status, b := adminCall(t, p, "GET", "/api/logs?limit=0", ""); status != 400 || !strings.Contains(string(b), `"param":"limit"`) {
		t.Fatalf("bad limit: %d %s", status, b)
	}
	pg = page{}
	if get("/api/logs?model="+url.QueryEscape("x' OR 1=1 --"), &pg) != 200 || len(pg.Data) != 0 {
		t.Fatalf("injection: %+v", pg)
	}
	var usage struct {
		Data []struct {
			Group    string `json:"group"`
			Requests int64  `json:"requests"`
			Errors   int64  `json:"errors"`
		} `json:"data"`
	}
	if get("/api/usage?group_by=model&bucket=day", &usage) != 200 {
		t.Fatal("usage failed")
	}
	byModel := map[string][2]int64{}
	for _, u := range usage.Data {
		r := byModel[u.Group]
		byModel[u.Group] = [2]int64{r[0] + u.Requests, r[1] + u.Errors}
	}
	if byModel["gpt-4o-mini"] != [2]int64{2, 0} || byModel["no-such-model"] != [2]int64{1, 1} {
		t.Fatalf("usage by model: %+v", usage.Data)
	}
}

// TestRetention: rows older than [logs] retention_days are pruned by the
// running proxy, newer ones are kept, and so are their usage rollups; the
// days that are over get their day rollups.
func TestRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seeded.db")
	st := openDB(t, path)
	now := time.Now()
	rows := []store.RequestLog{
		{ID: "req_old", TS: now.AddDate(0, 0, -8).UnixMilli(), Model: "m", Status: 200},
		{ID: "req_new", TS: now.AddDate(0, 0, -6).UnixMilli(), Model: "m", Status: 200},
	}
	if err := st.InsertLogs(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	st.Close()
	p := startProxy(t, func(cfg *config.Config) {
		cfg.Database.Path = path
		cfg.Logs.RetentionDays = 7
	})
	var ids []string
	var rollups []struct {
		Period int64 `db:"period"`
		Bucket int64 `db:"bucket"`
	}
	waitFor(t, func() bool {
		ids, rollups = nil, nil
		db := p.App.Store().Reader()
		if err := db.Select(&ids, `SELECT id FROM request_logs ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		if err := db.Select(&rollups, `SELECT period, bucket FROM usage_rollups ORDER BY period, bucket`); err != nil {
			t.Fatal(err)
		}
		return len(ids) == 1 && len(rollups) == 2
	})
	if ids[0] != "req_new" {
		t.Fatalf("kept %v", ids)
	}
	newTS := rows[1].TS
	if rollups[0].Period != store.PeriodHour || rollups[0].Bucket != store.FloorBucket(newTS, store.PeriodHour) ||
		rollups[1].Period != store.PeriodDay || rollups[1].Bucket != store.FloorBucket(newTS, store.PeriodDay) {
		t.Fatalf("rollups %+v, want the hour and the day of req_new", rollups)
	}
}
