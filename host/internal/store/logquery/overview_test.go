package logquery

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

func TestOverview(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 30, 15, 0, time.UTC)
	// Per minute of the last hour: minute m (0 = an hour ago) has m+1
	// requests with latencies 10, 20, ..., the last of them a 500. Also
	// rows outside both ranges, and rows earlier today.
	var rows []store.RequestLog
	hourStart := now.Truncate(time.Minute).Add(time.Minute - time.Hour)
	for m := 0; m < 60; m++ {
		for i := 0; i <= m; i++ {
			status := 200
			if i == m {
				status = 500
			}
			rows = append(rows, store.RequestLog{ID: fmt.Sprintf("r%02d%02d", m, i),
				TS:    hourStart.Add(time.Duration(m)*time.Minute + time.Duration(i)*time.Millisecond).UnixMilli(),
				Model: "m", Provider: "p", Status: status, LatencyMS: float64(10 * (i + 1)),
				PromptTokens: 1, CompletionTokens: 2, CachedTokens: 0, CostUSD: 0.001})
		}
	}
	for i := 0; i < 10; i++ {
		rows = append(rows,
			store.RequestLog{ID: fmt.Sprintf("old%d", i), TS: now.Add(-5 * time.Hour).UnixMilli(), Model: "m", Status: 200, LatencyMS: 1000, PromptTokens: 7},
			store.RequestLog{ID: fmt.Sprintf("ancient%d", i), TS: now.Add(-30 * time.Hour).UnixMilli(), Model: "m", Status: 200, LatencyMS: 1},
			store.RequestLog{ID: fmt.Sprintf("future%d", i), TS: now.Add(time.Hour).UnixMilli(), Model: "m", Status: 200, LatencyMS: 1})
	}
	st := openStore(t, rows)

	h, err := OverviewHour(context.Background(), st.Reader(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Series) != 60 || h.BucketSeconds != 60 || !h.From.Equal(hourStart) || !h.To.Equal(hourStart.Add(time.Hour)) {
		t.Fatalf("shape: %d buckets of %d s, %v..%v", len(h.Series), h.BucketSeconds, h.From, h.To)
	}
	for m, p := range h.Series {
		n := int64(m + 1)
		// Nearest rank over 10, 20, ..., 10n.
		p50 := 10 * math.Ceil(0.5*float64(n))
		p95 := 10 * math.Ceil(0.95*float64(n))
		if p.Requests != n || p.Errors != 1 || p.PromptTokens != n || p.CompletionTokens != 2*n || p.P50MS != p50 || p.P95MS != p95 ||
			!p.T.Equal(hourStart.Add(time.Duration(m)*time.Minute)) {
			t.Fatalf("minute %d: %+v (want p50 %v p95 %v)", m, p, p50, p95)
		}
	}
	if h.Totals.Requests != 1830 || h.Totals.Errors != 60 || math.Abs(h.Totals.CostUSD-1.83) > 1e-9 || h.Totals.T != nil {
		t.Fatalf("hour totals: %+v", h.Totals)
	}

	d, err := OverviewDay(context.Background(), st.Reader(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Series) != 24 || d.BucketSeconds != 3600 || !d.To.Equal(now.Truncate(time.Hour).Add(time.Hour)) {
		t.Fatalf("day shape: %d buckets, to %v", len(d.Series), d.To)
	}
	if d.Totals.Requests != 1840 || d.Totals.Errors != 60 || d.Totals.PromptTokens != 1830+70 {
		t.Fatalf("day totals: %+v", d.Totals)
	}
	var sum int64
	for _, p := range d.Series {
		sum += p.Requests
	}
	if sum != 1840 {
		t.Fatalf("the hours hold %d requests", sum)
	}
	// Percentiles of the whole day merge every histogram, within 1 % of
	// the exact nearest-rank values (180 and 480 ms), not an average of
	// the hours'.
	if math.Abs(d.Totals.P50MS-180) > 1.8 || math.Abs(d.Totals.P95MS-480) > 4.8 {
		t.Fatalf("day percentiles: p50 %v p95 %v, want 180 and 480 within 1 %%", d.Totals.P50MS, d.Totals.P95MS)
	}
}
