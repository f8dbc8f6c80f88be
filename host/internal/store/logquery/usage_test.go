package logquery

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// exactUsageSQL is how Usage was computed before the rollups: straight
// from request_logs, percentiles by nearest rank with window functions, in
// SQL that SQLite and PostgreSQL both run.
// It serves as the reference that Usage must agree with. {bucket},
// {group} and {where} are replaced by fragments of the test.
const exactUsageSQL = `SELECT b, g, max(n), max(errors), max(prompt), max(completion), max(cached), max(cost),
	max(CASE WHEN rn = (n * 50 + 99) / 100 THEN latency_ms END),
	max(CASE WHEN rn = (n * 95 + 99) / 100 THEN latency_ms END),
	max(CASE WHEN rn = (n * 99 + 99) / 100 THEN latency_ms END)
FROM (
	SELECT {bucket} AS b, {group} AS g, latency_ms,
		row_number() OVER w AS rn,
		count(*) OVER whole AS n,
		sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END) OVER whole AS errors,
		sum(prompt_tokens) OVER whole AS prompt,
		sum(completion_tokens) OVER whole AS completion,
		sum(cached_tokens) OVER whole AS cached,
		coalesce(sum(cost_usd) OVER whole, 0) AS cost
	FROM request_logs{where}
	WINDOW w AS (PARTITION BY {bucket}, {group} ORDER BY latency_ms),
		whole AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) AS ranked
WHERE rn IN ((n * 50 + 99) / 100, (n * 95 + 99) / 100, (n * 99 + 99) / 100)
GROUP BY b, g
ORDER BY b, g`

// exactUsage runs exactUsageSQL for q.
func exactUsage(t testing.TB, db *sqlx.DB, q UsageQuery) []UsageRow {
	t.Helper()
	size := bucketSizes[cmpOr(q.Bucket, BucketHour)]
	group := map[string]string{
		GroupNone: "''", GroupKey: "coalesce(key_id, 'admin')", GroupModel: "model", GroupProvider: "provider",
	}[q.GroupBy]
	var w where
	w.dimensions(q.From, q.To, q.KeyID, q.Model, q.Provider)
	query := strings.NewReplacer(
		"{bucket}", fmt.Sprintf("ts - ts %% %d", size),
		"{group}", group,
		"{where}", w.String(),
	).Replace(exactUsageSQL)
	rows, err := db.QueryContext(t.Context(), query, w.args...)
	if err != nil {
		t.Fatalf("exact usage: %v", err)
	}
	defer rows.Close()
	out := []UsageRow{}
	for rows.Next() {
		var (
			r      UsageRow
			bucket int64
		)
		if err := rows.Scan(&bucket, &r.Group, &r.Requests, &r.Errors,
			&r.PromptTokens, &r.CompletionTokens, &r.CachedTokens, &r.CostUSD,
			&r.LatencyP50MS, &r.LatencyP95MS, &r.LatencyP99MS); err != nil {
			t.Fatal(err)
		}
		r.Bucket = fromMilli(bucket)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// randomLogs returns n rows over days days from t0, in random order.
// Latencies and costs are multiples of 1/64, so that sums do not depend on
// the order of addition and totals can be compared exactly.
func randomLogs(rng *rand.Rand, n, days int) []store.RequestLog {
	keys := []string{"", "", "key_a", "key_b", "key_c", "key_d"}
	models := []string{"gpt-4o", "gpt-4o-mini", "claude", "llama", ""}
	providers := []string{"openai", "anthropic", "groq"}
	statuses := []int{200, 200, 200, 200, 201, 400, 401, 404, 429, 500, 502, 503}
	rows := make([]store.RequestLog, n)
	for i := range rows {
		m := rng.IntN(len(models))
		r := store.RequestLog{
			ID:               fmt.Sprintf("r%07d", i),
			TS:               t0.UnixMilli() + rng.Int64N(int64(days)*store.PeriodDay),
			Model:            models[m],
			Provider:         providers[m%len(providers)],
			Status:           statuses[rng.IntN(len(statuses))],
			LatencyMS:        float64(rng.IntN(64*5000)+1) / 64,
			TTFBMS:           float64(rng.IntN(64*100)) / 64,
			PromptTokens:     rng.Int64N(4000),
			CompletionTokens: rng.Int64N(1000),
			CachedTokens:     rng.Int64N(50),
			CostUSD:          float64(rng.IntN(1<<16)) / 1024,
		}
		if rng.IntN(20) == 0 {
			r.LatencyMS = float64(rng.IntN(64)) / 64 // sub-millisecond, even 0
		}
		if k := keys[rng.IntN(len(keys))]; k != "" {
			r.KeyID = sql.NullString{String: k, Valid: true}
		}
		rows[i] = r
	}
	return rows
}

// TestUsageMatchesRawRows stores random rows over ten days in batches of
// random sizes, partly out of order and partly after their days were
// summed, and checks that Usage over many ranges, buckets, groupings and
// filters agrees with the exact figures computed from request_logs: the
// same rows, requests, errors, tokens and costs exactly, and percentiles
// within 1 % of the exact ones.
func TestUsageMatchesRawRows(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(21, 22))
	s := openStore(t, nil)
	insert := func(rows []store.RequestLog) {
		for len(rows) > 0 {
			n := min(len(rows), 1+rng.IntN(400))
			if err := s.InsertLogs(t.Context(), rows[:n]); err != nil {
				t.Fatalf("InsertLogs: %v", err)
			}
			rows = rows[n:]
		}
	}
	rows := randomLogs(rng, 6000, 10)
	// Most rows come in time order, as they do in production; the
	// first days are summed halfway, then late rows and the rest arrive.
	slices.SortFunc(rows[:4500], func(a, b store.RequestLog) int { return int(a.TS - b.TS) })
	insert(rows[:4500])
	if _, err := s.CompactRollups(t.Context(), t0.Add(6*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	insert(rows[4500:])
	db := s.Reader()

	check := func(t *testing.T, q UsageQuery) {
		t.Helper()
		got, err := Usage(t.Context(), db, q)
		if err != nil {
			t.Fatalf("Usage(%+v): %v", q, err)
		}
		checkUsage(t, got, exactUsage(t, db, q))
	}

	day := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(24*time.Hour))) }
	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"everything", time.Time{}, time.Time{}},
		{"whole days", day(1), day(9)},
		{"whole hours", day(1).Add(5 * time.Hour), day(8).Add(17 * time.Hour)},
		{"ragged ends", day(0.3).Add(1234567 * time.Microsecond), day(8.71).Add(7 * time.Millisecond)},
		{"open start", time.Time{}, day(4.5)},
		{"open end", day(5.55), time.Time{}},
		{"within one hour", day(3).Add(10 * time.Minute), day(3).Add(50 * time.Minute)},
		{"across one hour boundary", day(3).Add(50 * time.Minute), day(3).Add(70 * time.Minute)},
		{"one whole hour", day(3).Add(time.Hour), day(3).Add(2 * time.Hour)},
		{"days not yet summed", day(6.2), day(9.9)},
		{"summed and not", day(2.7), day(7.4)},
		{"a millisecond", day(2).Add(time.Hour), day(2).Add(time.Hour + time.Millisecond)},
	}
	filters := []UsageQuery{
		{},
		{KeyID: AdminKey},
		{KeyID: "key_b"},
		{Model: "claude"},
		{Provider: "openai", KeyID: "key_a"},
		{Model: ""}, // no filter: the empty model is not selectable
	}
	groups := []string{GroupNone, GroupKey, GroupModel, GroupProvider}
	for i, r := range ranges {
		for j, bucket := range []string{BucketHour, BucketDay} {
			// Every grouping and filter comes up over the ranges.
			group := groups[(2*i+j)%len(groups)]
			f := filters[(i+j)%len(filters)]
			q := UsageQuery{From: r.from, To: r.to, Bucket: bucket, GroupBy: group,
				KeyID: f.KeyID, Model: f.Model, Provider: f.Provider}
			t.Run(fmt.Sprintf("%s/%s/%q/%+v", r.name, bucket, group, f), func(t *testing.T) {
				t.Parallel()
				check(t, q)
			})
		}
	}
	t.Run("by the minute", func(t *testing.T) {
		t.Parallel()
		for _, group := range []string{GroupNone, GroupKey, GroupModel} {
			from := day(7).Add(13*time.Minute + 500*time.Millisecond)
			check(t, UsageQuery{From: from, To: from.Add(5 * time.Hour), Bucket: BucketMinute, GroupBy: group})
		}
	})
	t.Run("random ranges", func(t *testing.T) {
		t.Parallel()
		rng := rand.New(rand.NewPCG(23, 24))
		for range 20 {
			a := t0.Add(time.Duration(rng.Int64N(int64(10 * 24 * time.Hour))))
			b := t0.Add(time.Duration(rng.Int64N(int64(10 * 24 * time.Hour))))
			if b.Before(a) {
				a, b = b, a
			}
			check(t, UsageQuery{From: a, To: b.Add(time.Millisecond), Bucket: []string{BucketHour, BucketDay}[rng.IntN(2)],
				GroupBy: []string{GroupNone, GroupKey, GroupModel, GroupProvider}[rng.IntN(4)]})
		}
	})
}

func TestUsageParts(t *testing.T) {
	t.Parallel()
	const (
		h = store.PeriodHour
		d = store.PeriodDay
	)
	day0 := t0.UnixMilli()
	raw := func(lo, hi int64) usagePart { return usagePart{0, lo, hi} }
	hours := func(lo, hi int64) usagePart { return usagePart{h, lo, hi} }
	days := func(lo, hi int64) usagePart { return usagePart{d, lo, hi} }
	tests := []struct {
		name         string
		lo, hi, size int64
		until        int64
		want         []usagePart
	}{
		{"empty", day0, day0, h, openStart, nil},
		{"inside an hour", day0 + 5, day0 + h - 5, h, openStart, []usagePart{raw(day0+5, day0+h-5)}},
		{"across an hour boundary", day0 + 5, day0 + h + 5, h, openStart, []usagePart{raw(day0+5, day0+h+5)}},
		{"whole hours", day0 + h, day0 + 5*h, h, openStart, []usagePart{hours(day0+h, day0+5*h)}},
		{"ragged hours", day0 + 5, day0 + 5*h + 5, h, openStart,
			[]usagePart{raw(day0+5, day0+h), hours(day0+h, day0+5*h), raw(day0+5*h, day0+5*h+5)}},
		{"days by the hour", day0, day0 + 3*d, h, day0 + 3*d, []usagePart{hours(day0, day0+3*d)}},
		{"days by the day", day0, day0 + 3*d, d, day0 + 3*d, []usagePart{days(day0, day0+3*d)}},
		{"days not summed", day0, day0 + 3*d, d, openStart, []usagePart{hours(day0, day0+3*d)}},
		{"days partly summed", day0, day0 + 3*d, d, day0 + d, []usagePart{days(day0, day0+d), hours(day0+d, day0+3*d)}},
		{"everything by the day", day0 + 5, day0 + 3*d + 5, d, day0 + 2*d, []usagePart{
			raw(day0+5, day0+h), hours(day0+h, day0+d), days(day0+d, day0+2*d), hours(day0+2*d, day0+3*d), raw(day0+3*d, day0+3*d+5),
		}},
		{"open ends", openStart, openEnd, d, day0, []usagePart{days(openStart, day0), hours(day0, openEnd)}},
		{"minutes", day0, day0 + 3*h, 60000, day0 + d, []usagePart{raw(day0, day0+3*h)}},
	}
	for _, tt := range tests {
		if got := usageParts(tt.lo, tt.hi, tt.size, tt.until); !slices.Equal(got, tt.want) {
			t.Errorf("%s: usageParts = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestUsageByMinuteLimits(t *testing.T) {
	t.Parallel()
	db := openStore(t, nil).Reader()
	for _, q := range []UsageQuery{
		{Bucket: BucketMinute},
		{Bucket: BucketMinute, From: t0},
		{Bucket: BucketMinute, To: t0},
		{Bucket: BucketMinute, From: t0, To: t0.Add(MaxMinuteRange + time.Millisecond)},
	} {
		_, err := Usage(t.Context(), db, q)
		checkBadParam(t, err, "bucket")
	}
	if _, err := Usage(t.Context(), db, UsageQuery{Bucket: BucketMinute, From: t0, To: t0.Add(MaxMinuteRange)}); err != nil {
		t.Errorf("Usage over MaxMinuteRange: %v", err)
	}
}
