package logquery

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Bucket sizes of a [UsageQuery].
const (
	BucketMinute = "minute"
	BucketHour   = "hour"
	BucketDay    = "day"
)

// bucketSizes are the bucket lengths in milliseconds. Buckets start on the
// minute, the hour or at midnight UTC: Unix time has no time zone, and a
// day is 86,400,000 ms in it.
var bucketSizes = map[string]int64{
	BucketMinute: 60_000,
	BucketHour:   store.PeriodHour,
	BucketDay:    store.PeriodDay,
}

// MaxMinuteRange is the longest range a usage query by the minute may
// cover: minutes are counted from the raw rows, whose number grows with
// the range.
const MaxMinuteRange = 6 * time.Hour

// Groupings of a [UsageQuery].
const (
	GroupNone     = ""
	GroupKey      = "key"
	GroupModel    = "model"
	GroupProvider = "provider"
)

// groupings lists the valid values of UsageQuery.GroupBy.
var groupings = map[string]bool{GroupNone: true, GroupKey: true, GroupModel: true, GroupProvider: true}

// UsageQuery selects what [Usage] adds up.
type UsageQuery struct {
	// From and To bound the request time: From <= ts < To; a zero time
	// leaves that side open. The first and last buckets cover only the
	// part of them inside the range. By the minute, both must be set and
	// at most MaxMinuteRange apart.
	From, To time.Time
	// Bucket is the time step: "minute", "hour" (also when empty) or
	// "day". Buckets start on the minute, on the hour or at midnight UTC.
	Bucket string
	// GroupBy splits every bucket by "key", "model" or "provider"; empty
	// gives one row per bucket.
	GroupBy string
	// KeyID, Model and Provider match their column exactly when non-empty,
	// as in [LogFilter]; KeyID "admin" selects the admin key's requests.
	KeyID, Model, Provider string
}

// UsageRow holds the totals of one bucket, or of one group in a bucket.
type UsageRow struct {
	// Bucket is the start of the bucket, in UTC.
	Bucket time.Time `json:"bucket"`
	// Group is the key id ("admin" for the admin key), model or provider
	// of the row; absent without grouping. A model or provider can be an
	// empty string (a request that failed before routing), and is then
	// absent too.
	Group string `json:"group,omitempty"`
	// Requests counts the requests, Errors those whose status is 400 or
	// more.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Token sums, and the sum of their cost in US dollars.
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	// Latency percentiles, in milliseconds, by the nearest-rank method
	// (the P-th percentile of n latencies is the ceil(P*n/100)-th
	// smallest), read from histograms: each is within 1 %
	// ([histogram.RelativeError]) of the exact value, for latencies from
	// 1 µs to about 2.8 hours.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
}

// Usage returns the totals of the requests selected by q per bucket (and
// per group), ordered by bucket, then group. Buckets and groups without
// requests have no row: a chart fills the gaps with zeros. A bad Bucket,
// GroupBy or range is an error wrapping [ErrBadFilter].
//
// # Where the numbers come from
//
// Hours and days are read from usage_rollups (see the store package),
// which holds per hour, and per day for the days it has summed, the
// counts, token and cost sums and a latency histogram of every key, model
// and provider. A range is split in up to five parts: the
// whole days inside it (for daily buckets) come from day rows, the other
// whole hours from hour rows, and the parts of an hour at either end, if
// the range does not start or end on the hour, from the raw request_logs
// rows of those minutes. Counts, tokens and costs are therefore exact for
// any range, to the millisecond, and percentiles are within 1 % of the
// exact ones, since raw latencies are put in the same histogram buckets.
// Minutes are always counted from raw rows.
//
// The parts are read in one read transaction, so they come from the same
// snapshot of the database even while batches are written.
//
// # Cost
//
// Thirty days by day read about 30 rows per group (key × model × provider
// in use); a day by the hour about 24 per group; the raw
// rows at the ends are at most two hours' worth, read through the ts
// index. The cost no longer grows with the number of requests in the
// range, only with the number of groups and with the traffic of the two
// edge hours.
func Usage(ctx context.Context, db *sqlx.DB, q UsageQuery) ([]UsageRow, error) {
	if q.Bucket == "" {
		q.Bucket = BucketHour
	}
	size, ok := bucketSizes[q.Bucket]
	if !ok {
		return nil, fmt.Errorf("usage: %w", badValue("bucket", q.Bucket, `must be "minute", "hour" or "day"`))
	}
	if !groupings[q.GroupBy] {
		return nil, fmt.Errorf("usage: %w", badValue("group_by", q.GroupBy, `must be "key", "model" or "provider"`))
	}
	if q.Bucket == BucketMinute && (q.From.IsZero() || q.To.IsZero() || q.To.Sub(q.From) > MaxMinuteRange) {
		return nil, fmt.Errorf("usage: %w", badValue("bucket", q.Bucket, "covers at most "+MaxMinuteRange.String()+": give from and to"))
	}
	if hasNUL(q.KeyID, q.Model, q.Provider) {
		return []UsageRow{}, nil
	}
	return usage(ctx, db, q, size, size)
}

// usage runs a checked query: size is the bucket length that decides which
// parts are read from raw rows and which from rollups, accSize the length
// the results are summed in (size, or one bucket for the whole range).
func usage(ctx context.Context, db *sqlx.DB, q UsageQuery, size, accSize int64) ([]UsageRow, error) {
	lo, hi := openStart, openEnd
	if !q.From.IsZero() {
		lo = ceilMilli(q.From)
	}
	if !q.To.IsZero() {
		hi = ceilMilli(q.To)
	}

	tx, err := db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var until sql.NullInt64
	if err := tx.GetContext(ctx, &until, `SELECT days_until FROM usage_rollup_state WHERE id = 1`); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	daysUntil := openStart
	if until.Valid {
		daysUntil = until.Int64
	}

	acc := usageAcc{size: accSize, groupBy: q.GroupBy, rows: map[usageKey]*usageSums{}}
	for _, part := range usageParts(lo, hi, size, daysUntil) {
		query, args := rollupUsageSQL(part, q)
		if part.period == 0 {
			query, args = rawUsageSQL(part, q)
		}
		if err := acc.add(ctx, tx, query, args, part.period == 0); err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
	}
	return acc.result(), nil
}

// openStart and openEnd stand for an open side of a range: far beyond any
// stored time, yet far from overflowing, and whole days.
const (
	openStart = -(1 << 62) / store.PeriodDay * store.PeriodDay
	openEnd   = (1 << 62) / store.PeriodDay * store.PeriodDay
)

// usagePart is one part of a usage range: [lo, hi) read from the rollups
// of period, or from raw rows when period is 0.
type usagePart struct {
	period, lo, hi int64
}

// usageParts splits [lo, hi) into the parts Usage reads (see Usage): raw
// rows for the partial hours at the ends, day rows for the whole days
// before daysUntil when buckets are days, hour rows for the rest. Buckets
// by the minute read raw rows only.
func usageParts(lo, hi, size, daysUntil int64) []usagePart {
	if lo >= hi {
		return nil
	}
	hLo := ceilBucket(lo, store.PeriodHour)
	hHi := store.FloorBucket(hi, store.PeriodHour)
	if size < store.PeriodHour || hLo >= hHi {
		return []usagePart{{0, lo, hi}}
	}
	var parts []usagePart
	add := func(period, lo, hi int64) {
		if lo < hi {
			parts = append(parts, usagePart{period, lo, hi})
		}
	}
	add(0, lo, hLo)
	dLo := ceilBucket(hLo, store.PeriodDay)
	dHi := min(store.FloorBucket(hHi, store.PeriodDay), daysUntil)
	if size == store.PeriodDay && dLo < dHi {
		add(store.PeriodHour, hLo, dLo)
		add(store.PeriodDay, dLo, dHi)
		add(store.PeriodHour, dHi, hHi)
	} else {
		add(store.PeriodHour, hLo, hHi)
	}
	add(0, hHi, hi)
	return parts
}

// ceilBucket returns the start of the first bucket of length period that
// starts at or after ts.
func ceilBucket(ts, period int64) int64 {
	b := store.FloorBucket(ts, period)
	if b < ts {
		b += period
	}
	return b
}

// usageKey identifies one result row.
type usageKey struct {
	bucket int64
	group  string
}

// usageSums are the totals of one result row.
type usageSums struct {
	requests, errors, prompt, completion, cached int64
	cost                                         float64
	latency                                      histogram.Sum
}

// usageAcc adds up the parts of a usage query per result row: a bucket
// and group can have rows from several parts (the raw rows of an edge hour
// and the rollups of the other hours of a day).
type usageAcc struct {
	size    int64
	groupBy string
	rows    map[usageKey]*usageSums
}

// groupColumns are the columns that hold the group of a row, in
// usage_rollups and in request_logs (where the admin key is NULL).
var groupColumns = map[string][2]string{
	GroupNone:     {"''", "''"},
	GroupKey:      {"key_id", "coalesce(key_id, '')"},
	GroupModel:    {"model", "model"},
	GroupProvider: {"provider", "provider"},
}

// rollupUsageSQL returns the statement that reads the rollups of a part,
// with its arguments. Both it and rawUsageSQL return rows of time, group,
// requests, errors, prompt, completion and cached tokens, cost and
// latency, where the latency is an encoded histogram for a rollup row and
// one value for a raw row.
//
// Summing in SQL instead, with an aggregate function for the histograms,
// was slower: the function's calls cost more than reading the rows.
func rollupUsageSQL(part usagePart, q UsageQuery) (string, []any) {
	var w where
	w.add("period = ? AND bucket >= ? AND bucket < ?", part.period, part.lo, part.hi)
	switch q.KeyID {
	case "":
	case AdminKey:
		w.add("key_id = ''")
	default:
		w.add("key_id = ?", q.KeyID)
	}
	if q.Model != "" {
		w.add("model = ?", q.Model)
	}
	if q.Provider != "" {
		w.add("provider = ?", q.Provider)
	}
	return `SELECT bucket, ` + groupColumns[q.GroupBy][0] + `, requests, errors,
		prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_hist
		FROM usage_rollups` + w.String(), w.args
}

// rawUsageSQL returns the statement that reads the raw rows of a part,
// with its arguments.
func rawUsageSQL(part usagePart, q UsageQuery) (string, []any) {
	var w where
	w.dimensionsMilli(part.lo, part.hi, q.KeyID, q.Model, q.Provider)
	return `SELECT ts, ` + groupColumns[q.GroupBy][1] + `, 1, CASE WHEN status >= 400 THEN 1 ELSE 0 END,
		prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms
		FROM request_logs` + w.String(), w.args
}

// add runs the statement of one part and adds its rows.
func (a *usageAcc) add(ctx context.Context, tx *sqlx.Tx, query string, args []any, raw bool) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		ts, requests, errors, prompt, completion, cached int64
		group                                            string
		cost, latency                                    float64
		hist                                             sql.RawBytes
	)
	last := usageKey{bucket: math.MinInt64}
	var s *usageSums
	for rows.Next() {
		if raw {
			err = rows.Scan(&ts, &group, &requests, &errors, &prompt, &completion, &cached, &cost, &latency)
		} else {
			err = rows.Scan(&ts, &group, &requests, &errors, &prompt, &completion, &cached, &cost, &hist)
		}
		if err != nil {
			return err
		}
		k := usageKey{bucket: store.FloorBucket(ts, a.size), group: group}
		if a.groupBy == GroupKey {
			k.group = cmp.Or(group, AdminKey)
		}
		// Rows come in time order: most belong to the row before.
		if k != last {
			if s = a.rows[k]; s == nil {
				s = new(usageSums)
				a.rows[k] = s
			}
			last = k
		}
		s.requests += requests
		s.errors += errors
		s.prompt += prompt
		s.completion += completion
		s.cached += cached
		s.cost += cost
		if raw {
			s.latency.AddValue(latency)
		} else if err := s.latency.AddEncoded(hist); err != nil {
			return fmt.Errorf("rollup of %s: %w", fromMilli(ts).Format(time.RFC3339), err)
		}
	}
	return rows.Err()
}

// result returns the rows, ordered by bucket, then group.
func (a *usageAcc) result() []UsageRow {
	out := make([]UsageRow, 0, len(a.rows))
	for k, s := range a.rows {
		out = append(out, UsageRow{
			Bucket: fromMilli(k.bucket), Group: k.group,
			Requests: s.requests, Errors: s.errors,
			PromptTokens: s.prompt, CompletionTokens: s.completion, CachedTokens: s.cached,
			CostUSD:      s.cost,
			LatencyP50MS: s.latency.Percentile(50),
			LatencyP95MS: s.latency.Percentile(95),
			LatencyP99MS: s.latency.Percentile(99),
		})
	}
	slices.SortFunc(out, func(x, y UsageRow) int {
		return cmp.Or(x.Bucket.Compare(y.Bucket), strings.Compare(x.Group, y.Group))
	})
	return out
}
