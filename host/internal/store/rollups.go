package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
)

// Periods of the usage_rollups table: every request is counted in its hour
// and, once CompactRollups has summed that day, in its day (UTC), so that
// a long range reads days and a short one hours.
const (
	PeriodHour int64 = 3_600_000
	PeriodDay  int64 = 86_400_000
)

// periods lists the periods of the rollups.
var periods = [...]int64{PeriodHour, PeriodDay}

// histMergeFunc is the SQL function that adds two encoded histograms
// (host/internal/histogram) together; the rollup upsert calls it. It is
// registered with the driver for every connection of the process.
const histMergeFunc = "llmproxy_hist_merge"

func init() {
	sqlite.MustRegisterFunction(histMergeFunc, &sqlite.FunctionImpl{
		NArgs:         2,
		Deterministic: true,
		// The arguments are read during the call only: they need no
		// copy.
		VolatileArgs: true,
		Scalar: func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			a, ok1 := args[0].([]byte)
			b, ok2 := args[1].([]byte)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%s: arguments must be BLOBs", histMergeFunc)
			}
			return histogram.MergeEncoded(a, b)
		},
	})
}

// Rollup is one row of the usage_rollups table: the requests of one group
// (key, model, provider) in one hour or day. The db tags are the column
// names.
type Rollup struct {
	// Period is PeriodHour or PeriodDay, Bucket the start of the hour or
	// day in Unix milliseconds.
	Period int64 `db:"period"`
	Bucket int64 `db:"bucket"`
	// KeyID is the client key, "" for the admin key (whose request_logs
	// key_id is NULL).
	KeyID    string `db:"key_id"`
	Model    string `db:"model"`
	Provider string `db:"provider"`
	// Requests counts the requests, Errors those with a status of 400 or
	// more, ServerErrors those with a status of 500 or more.
	Requests     int64 `db:"requests"`
	Errors       int64 `db:"errors"`
	ServerErrors int64 `db:"server_errors"`
	// Sums over the row's requests.
	PromptTokens     int64   `db:"prompt_tokens"`
	CompletionTokens int64   `db:"completion_tokens"`
	CachedTokens     int64   `db:"cached_tokens"`
	CostUSD          float64 `db:"cost_usd"`
	LatencySumMS     float64 `db:"latency_sum_ms"`
	TTFBSumMS        float64 `db:"ttfb_sum_ms"`
	// LatencyHist and TTFBHist are histograms encoded by
	// histogram.Hist.AppendBinary.
	LatencyHist []byte `db:"latency_hist"`
	TTFBHist    []byte `db:"ttfb_hist"`
}

// RollupColumns are the columns of usage_rollups in the order of the
// fields of Rollup, for SELECT statements.
const RollupColumns = `period, bucket, key_id, model, provider,
	requests, errors, server_errors, prompt_tokens, completion_tokens, cached_tokens, cost_usd,
	latency_sum_ms, ttfb_sum_ms, latency_hist, ttfb_hist`

// upsertRollupSQL adds one group's sums to its rollup row, creating the
// row if needed. Its parameters are in the order of RollupColumns.
const upsertRollupSQL = `INSERT INTO usage_rollups (` + RollupColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (period, bucket, key_id, model, provider) DO UPDATE SET
	requests          = usage_rollups.requests + excluded.requests,
	errors            = usage_rollups.errors + excluded.errors,
	server_errors     = usage_rollups.server_errors + excluded.server_errors,
	prompt_tokens     = usage_rollups.prompt_tokens + excluded.prompt_tokens,
	completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens,
	cached_tokens     = usage_rollups.cached_tokens + excluded.cached_tokens,
	cost_usd          = usage_rollups.cost_usd + excluded.cost_usd,
	latency_sum_ms    = usage_rollups.latency_sum_ms + excluded.latency_sum_ms,
	ttfb_sum_ms       = usage_rollups.ttfb_sum_ms + excluded.ttfb_sum_ms,
	latency_hist      = ` + histMergeFunc + `(usage_rollups.latency_hist, excluded.latency_hist),
	ttfb_hist         = ` + histMergeFunc + `(usage_rollups.ttfb_hist, excluded.ttfb_hist)`

// FloorBucket returns the start of the bucket of length period that holds
// the time ts (Unix milliseconds), rounding towards the past also before
// 1970.
func FloorBucket(ts, period int64) int64 {
	b := ts - ts%period
	if b > ts {
		b -= period
	}
	return b
}

// noDays is the days_until of a database where no day is summed yet.
const noDays = math.MinInt64

// readDaysUntil returns usage_rollup_state.days_until, or noDays when it
// is NULL.
func readDaysUntil(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var until sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT days_until FROM usage_rollup_state WHERE id = 1`).Scan(&until); err != nil {
		return 0, fmt.Errorf("read rollup state: %w", err)
	}
	if !until.Valid {
		return noDays, nil
	}
	return until.Int64, nil
}

// rollupKey identifies one rollup row.
type rollupKey struct {
	period, bucket       int64
	key, model, provider string
}

func compareKeys(a, b rollupKey) int {
	return cmp.Or(
		cmp.Compare(a.period, b.period),
		cmp.Compare(a.bucket, b.bucket),
		strings.Compare(a.key, b.key),
		strings.Compare(a.model, b.model),
		strings.Compare(a.provider, b.provider),
	)
}

// rollupSums are the sums of one group, before they are written.
type rollupSums struct {
	requests, errors, serverErrors int64
	prompt, completion, cached     int64
	cost, latency, ttfb            float64
	latHist, ttfbHist              histogram.Hist
}

// rollupAgg sums request logs, or rollup rows, per rollup row in memory,
// then writes the sums with one upsert per row.
type rollupAgg struct {
	// daysUntil is usage_rollup_state.days_until: a request in a day
	// before it is added to its day row as well as its hour row.
	daysUntil int64
	groups    map[rollupKey]*rollupSums
	free      []*rollupSums
	keys      []rollupKey
}

func newRollupAgg(daysUntil int64) *rollupAgg {
	return &rollupAgg{daysUntil: daysUntil, groups: make(map[rollupKey]*rollupSums)}
}

// sums returns the sums of k, creating them if needed.
func (a *rollupAgg) sums(k rollupKey) *rollupSums {
	s := a.groups[k]
	if s == nil {
		if n := len(a.free); n > 0 {
			s, a.free = a.free[n-1], a.free[:n-1]
		} else {
			s = new(rollupSums)
		}
		a.groups[k] = s
	}
	return s
}

// add counts r in its hour, and in its day if that day is summed already.
func (a *rollupAgg) add(r *RequestLog) {
	k := rollupKey{
		period: PeriodHour, bucket: FloorBucket(r.TS, PeriodHour),
		key: r.KeyID.String, model: r.Model, provider: r.Provider,
	}
	for {
		s := a.sums(k)
		s.requests++
		if r.Status >= 400 {
			s.errors++
		}
		if r.Status >= 500 {
			s.serverErrors++
		}
		s.prompt += r.PromptTokens
		s.completion += r.CompletionTokens
		s.cached += r.CachedTokens
		s.cost += r.CostUSD
		s.latency += r.LatencyMS
		s.ttfb += r.TTFBMS
		s.latHist.Add(r.LatencyMS)
		s.ttfbHist.Add(r.TTFBMS)
		if k.period == PeriodDay {
			return
		}
		if k.bucket = FloorBucket(r.TS, PeriodDay); k.bucket >= a.daysUntil {
			return
		}
		k.period = PeriodDay
	}
}

// addRollup adds the sums of the rollup row r to the row k.
func (a *rollupAgg) addRollup(k rollupKey, r *Rollup) error {
	s := a.sums(k)
	s.requests += r.Requests
	s.errors += r.Errors
	s.serverErrors += r.ServerErrors
	s.prompt += r.PromptTokens
	s.completion += r.CompletionTokens
	s.cached += r.CachedTokens
	s.cost += r.CostUSD
	s.latency += r.LatencySumMS
	s.ttfb += r.TTFBSumMS
	if err := s.latHist.MergeBinary(r.LatencyHist); err != nil {
		return err
	}
	return s.ttfbHist.MergeBinary(r.TTFBHist)
}

// len returns the number of rollup rows held.
func (a *rollupAgg) len() int { return len(a.groups) }

// flush upserts every group held, in primary key order, through stmt (a
// prepared upsertRollupSQL), and forgets them.
func (a *rollupAgg) flush(ctx context.Context, stmt *sql.Stmt) error {
	return a.flushTo(func(args ...any) error {
		_, err := stmt.ExecContext(ctx, args...)
		return err
	})
}

// flushTo is flush with the upsert's arguments handed to exec, which may
// keep them: they are not reused.
func (a *rollupAgg) flushTo(exec func(args ...any) error) error {
	a.keys = a.keys[:0]
	for k := range a.groups {
		a.keys = append(a.keys, k)
	}
	slices.SortFunc(a.keys, compareKeys)
	for _, k := range a.keys {
		s := a.groups[k]
		if err := exec(
			k.period, k.bucket, k.key, k.model, k.provider,
			s.requests, s.errors, s.serverErrors, s.prompt, s.completion, s.cached, s.cost,
			s.latency, s.ttfb, s.latHist.AppendBinary(nil), s.ttfbHist.AppendBinary(nil),
		); err != nil {
			return fmt.Errorf("rollup of %s: %w", time.UnixMilli(k.bucket).UTC().Format(time.RFC3339), err)
		}
		delete(a.groups, k)
		s.latHist.Reset()
		s.ttfbHist.Reset()
		*s = rollupSums{latHist: s.latHist, ttfbHist: s.ttfbHist}
		a.free = append(a.free, s)
	}
	return nil
}

// CompactRollups sums the hour rows of every day that ended by before
// (UTC days) and has no day rows yet into day rows, one day per
// transaction, and returns how many days it summed. Usage over a long
// range then reads one row per group and day instead of 24. Days are
// summed in order and usage_rollup_state.days_until records the progress,
// so an interrupted run is resumed by the next; from then on, InsertLogs
// keeps the day rows of those days up to date itself. Call it some time
// after midnight: the proxy does so hourly, with its retention.
func (s *Store) CompactRollups(ctx context.Context, before time.Time) (int, error) {
	st, err := s.statements(ctx)
	if err != nil {
		return 0, fmt.Errorf("compact rollups: %w", err)
	}
	// Days that start before limit have ended by before.
	limit := FloorBucket(before.UnixMilli(), PeriodDay)
	for days := 0; ; days++ {
		if err := ctx.Err(); err != nil {
			return days, fmt.Errorf("compact rollups: %w", err)
		}
		done, err := s.compactDay(ctx, st, limit)
		if err != nil {
			return days, fmt.Errorf("compact rollups: %w", err)
		}
		if done {
			return days, nil
		}
	}
}

// compactDay sums the first day not summed yet, if it starts before limit,
// and reports whether there was none.
func (s *Store) compactDay(ctx context.Context, st *writeStmts, limit int64) (done bool, err error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	until, err := readDaysUntil(ctx, tx)
	if err != nil {
		return false, err
	}
	// The day of the oldest hour row not summed yet; days without hour
	// rows have nothing to sum.
	var next sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(bucket) FROM usage_rollups WHERE period = ? AND bucket >= ?`,
		PeriodHour, until).Scan(&next); err != nil {
		return false, err
	}
	if !next.Valid || FloorBucket(next.Int64, PeriodDay) >= limit {
		if until < limit {
			if _, err := tx.ExecContext(ctx, `UPDATE usage_rollup_state SET days_until = ? WHERE id = 1`, limit); err != nil {
				return false, err
			}
		}
		return true, tx.Commit()
	}
	day := FloorBucket(next.Int64, PeriodDay)
	var hours []Rollup
	if err := tx.SelectContext(ctx, &hours, `SELECT `+RollupColumns+` FROM usage_rollups
		WHERE period = ? AND bucket >= ? AND bucket < ?`, PeriodHour, day, day+PeriodDay); err != nil {
		return false, err
	}
	agg := newRollupAgg(noDays)
	for i := range hours {
		h := &hours[i]
		k := rollupKey{period: PeriodDay, bucket: day, key: h.KeyID, model: h.Model, provider: h.Provider}
		if err := agg.addRollup(k, h); err != nil {
			return false, fmt.Errorf("rollup of %s: %w", time.UnixMilli(h.Bucket).UTC().Format(time.RFC3339), err)
		}
	}
	if err := agg.flush(ctx, tx.StmtContext(ctx, st.upsertRollup)); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE usage_rollup_state SET days_until = ? WHERE id = 1`, day+PeriodDay); err != nil {
		return false, err
	}
	return false, tx.Commit()
}

// backfillVersion is the Go migration that sums the request logs stored
// before usage_rollups existed (migration 2 creates the table).
const backfillVersion = 3

// backfillName is how MigrationStatus names the Go migration, which has no
// file.
const backfillName = "00003_backfill_usage_rollups (Go)"

// maxHeldRollups bounds how many rollup rows a backfill or a bulk load sums
// in memory before writing them out.
const maxHeldRollups = 20000

// backfillMigration sums every request log into hour rows of
// usage_rollups, in the migration's transaction; CompactRollups makes the
// day rows afterwards. It reads request_logs in its storage order (about
// time order, since ids start with their time) and writes sums whenever it
// holds maxHeldRollups of them, so its memory stays bounded however many
// rows there are, and the upsert makes the result right whatever the
// order. Down empties the table.
//
// If usage_rollups ever changes shape, this migration must keep writing
// the shape of version 2: give it its own copy of the statement then.
var backfillMigration = goose.NewGoMigration(backfillVersion,
	&goose.GoFunc{RunTx: backfillRollups},
	&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_rollups`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE usage_rollup_state SET days_until = NULL`)
		return err
	}},
)

// backfillRollups sums every row of request_logs into usage_rollups.
func backfillRollups(ctx context.Context, tx *sql.Tx) error {
	stmt, err := tx.PrepareContext(ctx, upsertRollupSQL)
	if err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	defer stmt.Close()
	daysUntil, err := readDaysUntil(ctx, tx)
	if err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT ts, key_id, model, provider, status, latency_ms, ttfb_ms,
		prompt_tokens, completion_tokens, cached_tokens, cost_usd FROM request_logs`)
	if err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	defer rows.Close()
	agg := newRollupAgg(daysUntil)
	var r RequestLog
	for rows.Next() {
		if err := rows.Scan(&r.TS, &r.KeyID, &r.Model, &r.Provider, &r.Status, &r.LatencyMS, &r.TTFBMS,
			&r.PromptTokens, &r.CompletionTokens, &r.CachedTokens, &r.CostUSD); err != nil {
			return fmt.Errorf("backfill rollups: %w", err)
		}
		agg.add(&r)
		if agg.len() >= maxHeldRollups {
			if err := agg.flush(ctx, stmt); err != nil {
				return fmt.Errorf("backfill rollups: %w", err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	if err := agg.flush(ctx, stmt); err != nil {
		return fmt.Errorf("backfill rollups: %w", err)
	}
	return nil
}

// PruneRollups deletes the rollup rows whose whole hour or day is older
// than before, that is every row that counts only requests PruneLogs
// deletes for the same time; the hour and the day that straddle before are
// kept. It deletes in statements of at most batch rows (default 1000), each
// its own short transaction, and returns how many rows it deleted. If ctx
// ends, it stops and returns the count so far with the context's error.
func (s *Store) PruneRollups(ctx context.Context, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	cutoff := before.UnixMilli()
	var total int64
	for _, p := range periods {
		for {
			if err := ctx.Err(); err != nil {
				return total, fmt.Errorf("prune rollups: %w", err)
			}
			// A bucket ends at bucket + p: it is wholly before the cutoff
			// when bucket <= cutoff - p.
			res, err := s.w.ExecContext(ctx,
				`DELETE FROM usage_rollups WHERE (period, bucket, key_id, model, provider) IN (
					SELECT period, bucket, key_id, model, provider FROM usage_rollups
					WHERE period = ? AND bucket <= ? LIMIT ?
				)`, p, cutoff-p, batch)
			if err != nil {
				return total, fmt.Errorf("prune rollups: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("prune rollups: %w", err)
			}
			total += n
			if n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}
