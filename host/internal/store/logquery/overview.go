package logquery

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Ranges of an [Overview].
const (
	RangeHour = "1h"
	RangeDay  = "24h"
)

// OverviewPoint sums the requests of one bucket (or of the whole range).
type OverviewPoint struct {
	// T is the start of the bucket (absent in the totals).
	T                *time.Time `json:"t,omitempty"`
	Requests         int64      `json:"requests"`
	Errors           int64      `json:"errors"`
	PromptTokens     int64      `json:"prompt_tokens"`
	CompletionTokens int64      `json:"completion_tokens"`
	CachedTokens     int64      `json:"cached_tokens"`
	CostUSD          float64    `json:"cost_usd"`
	// P50MS and P95MS are latency percentiles in milliseconds (0 without
	// requests).
	P50MS float64 `json:"p50_ms"`
	P95MS float64 `json:"p95_ms"`
}

// Overview is the dashboard's front page: the last hour by minute, or the
// last day by hour, with totals.
type Overview struct {
	Range         string          `json:"range"`
	BucketSeconds int             `json:"bucket_seconds"`
	From          time.Time       `json:"from"`
	To            time.Time       `json:"to"`
	Totals        OverviewPoint   `json:"totals"`
	Series        []OverviewPoint `json:"series"`
}

// OverviewHour sums the 60 minutes that end with the current one (the
// current minute is partial), from the raw rows: an hour is small enough
// to read whole, and its percentiles are then exact.
func OverviewHour(ctx context.Context, db *sqlx.DB, now time.Time) (Overview, error) {
	const step = time.Minute
	to := now.UTC().Truncate(step).Add(step)
	from := to.Add(-60 * step)
	o := Overview{Range: RangeHour, BucketSeconds: 60, From: from, To: to, Series: make([]OverviewPoint, 60)}
	lat := make([][]float64, 60)
	for i := range o.Series {
		t := from.Add(time.Duration(i) * step)
		o.Series[i].T = &t
	}
	rows, err := db.QueryContext(ctx, `SELECT ts, status, latency_ms, prompt_tokens, completion_tokens, cached_tokens, cost_usd
		FROM request_logs WHERE ts >= ? AND ts < ?`, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	defer rows.Close()
	var all []float64
	for rows.Next() {
		var (
			ts, prompt, completion, cached int64
			status                         int
			latency, cost                  float64
		)
		if err := rows.Scan(&ts, &status, &latency, &prompt, &completion, &cached, &cost); err != nil {
			return Overview{}, fmt.Errorf("overview: %w", err)
		}
		i := int((ts - from.UnixMilli()) / step.Milliseconds())
		if i < 0 || i >= len(o.Series) {
			continue
		}
		p := &o.Series[i]
		p.Requests++
		if status >= 400 {
			p.Errors++
		}
		p.PromptTokens += prompt
		p.CompletionTokens += completion
		p.CachedTokens += cached
		p.CostUSD += cost
		lat[i] = append(lat[i], latency)
		all = append(all, latency)
	}
	if err := rows.Err(); err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	for i := range o.Series {
		p := &o.Series[i]
		p.P50MS, p.P95MS = percentiles(lat[i])
		addTotals(&o.Totals, p)
	}
	o.Totals.P50MS, o.Totals.P95MS = percentiles(all)
	return o, nil
}

func addTotals(t, p *OverviewPoint) {
	t.Requests += p.Requests
	t.Errors += p.Errors
	t.PromptTokens += p.PromptTokens
	t.CompletionTokens += p.CompletionTokens
	t.CachedTokens += p.CachedTokens
	t.CostUSD += p.CostUSD
}

// percentiles returns the nearest-rank 50th and 95th percentiles of v,
// which it sorts.
func percentiles(v []float64) (p50, p95 float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v))/100)) - 1
		return v[max(i, 0)]
	}
	return rank(50), rank(95)
}

// OverviewDay sums the 24 hours that end with the current one (the
// current hour is partial), from the hourly rollups (and the raw rows of
// the partial hour): its cost does not grow with the traffic. Percentiles
// come from the rollups' histograms, within their 1 % bound.
func OverviewDay(ctx context.Context, db *sqlx.DB, now time.Time) (Overview, error) {
	const step = time.Hour
	to := now.UTC().Truncate(step).Add(step)
	from := to.Add(-24 * step)
	o := Overview{Range: RangeDay, BucketSeconds: 3600, From: from, To: to, Series: make([]OverviewPoint, 24)}
	for i := range o.Series {
		t := from.Add(time.Duration(i) * step)
		o.Series[i].T = &t
	}
	q := UsageQuery{From: from, To: to, Bucket: BucketHour}
	hours, err := usage(ctx, db, q, store.PeriodHour, store.PeriodHour)
	if err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	for _, r := range hours {
		i := int(r.Bucket.Sub(from) / step)
		if i < 0 || i >= len(o.Series) {
			continue
		}
		t := o.Series[i].T
		o.Series[i] = pointOf(r)
		o.Series[i].T = t
	}
	// The whole range as one bucket, so its percentiles merge every
	// histogram rather than averaging the hours'.
	total, err := usage(ctx, db, q, store.PeriodHour, wholeRange)
	if err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	if len(total) == 1 {
		o.Totals = pointOf(total[0])
	}
	return o, nil
}

// wholeRange is a bucket length that puts every stored time in one bucket.
const wholeRange = int64(1) << 62

func pointOf(r UsageRow) OverviewPoint {
	return OverviewPoint{Requests: r.Requests, Errors: r.Errors, PromptTokens: r.PromptTokens,
		CompletionTokens: r.CompletionTokens, CachedTokens: r.CachedTokens, CostUSD: r.CostUSD,
		P50MS: r.LatencyP50MS, P95MS: r.LatencyP95MS}
}
