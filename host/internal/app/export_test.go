package app_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

func TestLogExport(t *testing.T) {
	p := startProxy(t, nil)
	// 1,234 rows over three models, one of them named like a formula: more
	// than two pages of /api/logs.
	base := time.Now().Add(-time.Hour).UnixMilli()
	rows := make([]store.RequestLog, 1234)
	models := []string{"gpt-4o-mini", "gpt-4o", "=HYPERLINK(\"http://evil\")"}
	for i := range rows {
		rows[i] = store.RequestLog{ID: fmt.Sprintf("req_export_%05d", i), TS: base + int64(i), Model: models[i%3],
			Provider: "fake", Status: 200, PromptTokens: int64(i), CompletionTokens: 1, LatencyMS: 1.5}
	}
	if err := p.App.Store().InsertLogs(context.Background(), rows); err != nil {
		t.Fatal(err)
	}

	status, body := adminCall(t, p, "GET", "/api/logs/export?format=csv", "")
	if status != 200 {
		t.Fatalf("csv: %d %s", status, body)
	}
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+1234 || recs[0][0] != "id" || recs[0][3] != "model" {
		t.Fatalf("%d records, header %v", len(recs), recs[0])
	}
	if recs[1][0] != "req_export_01233" || recs[1234][0] != "req_export_00000" {
		t.Fatalf("not newest first: %v ... %v", recs[1][0], recs[1234][0])
	}
	formulas := 0
	for _, r := range recs[1:] {
		if strings.HasPrefix(r[3], "=") {
			t.Fatalf("a formula cell: %q", r[3])
		}
		if strings.HasPrefix(r[3], "'=HYPERLINK") {
			formulas++
		}
	}
	if formulas != 411 {
		t.Fatalf("%d defused cells, want 411", formulas)
	}

	status, body = adminCall(t, p, "GET", "/api/logs/export?format=json&model=gpt-4o&limit=100", "")
	var got []struct {
		ID    string `json:"id"`
		Model string `json:"model"`
	}
	if status != 200 || json.Unmarshal(body, &got) != nil || len(got) != 100 {
		t.Fatalf("json: %d %d rows %.200s", status, len(got), body)
	}
	for _, r := range got {
		if r.Model != "gpt-4o" {
			t.Fatalf("filter not applied: %+v", r)
		}
	}
	status, body = adminCall(t, p, "GET", "/api/logs/export?format=json&model=none", "")
	if status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("empty: %d %s", status, body)
	}
	for _, q := range []string{"format=xml", "limit=0", "limit=100001", "status=abc", "from=yesterday"} {
		if status, body := adminCall(t, p, "GET", "/api/logs/export?"+q, ""); status != 400 || !strings.Contains(string(body), "invalid_filter") {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
}

func TestOverviewAPI(t *testing.T) {
	p := startProxy(t, nil)
	c := p.client(adminKey)
	for i := 0; i < 3; i++ {
		if _, err := c.Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "hi")); err != nil {
			t.Fatal(err)
		}
	}
	c.Chat.Completions.New(context.Background(), chatParams("no-such-model", "hi"))
	for _, r := range []string{"1h", "24h"} {
		var o struct {
			Range    string `json:"range"`
			InFlight *int   `json:"in_flight"`
			Totals   struct {
				Requests, Errors, CompletionTokens int64
				P50MS                              float64 `json:"p50_ms"`
			} `json:"totals"`
			Series []json.RawMessage `json:"series"`
		}
		waitFor(t, func() bool {
			status, body := adminCall(t, p, "GET", "/api/overview?range="+r, "")
			if status != 200 || json.Unmarshal(body, &o) != nil {
				t.Fatalf("%s: %d %s", r, status, body)
			}
			return o.Totals.Requests == 4
		})
		if o.Range != r || o.InFlight == nil || o.Totals.Errors != 1 || o.Totals.P50MS <= 0 || (r == "1h") != (len(o.Series) == 60) {
			t.Fatalf("%s: %+v, %d buckets", r, o, len(o.Series))
		}
	}
	if status, body := adminCall(t, p, "GET", "/api/overview?range=7d", ""); status != 400 || !strings.Contains(string(body), "invalid_filter") {
		t.Fatalf("bad range: %d %s", status, body)
	}
}
