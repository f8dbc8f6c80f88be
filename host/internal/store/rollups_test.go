package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
)

// day0 is a midnight UTC, the start of the random rows' span.
var day0 = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// randomRows returns n rows spread over days days from day0, in random
// order, with a few keys (and the admin key), models, providers and
// statuses. Latencies, costs and TTFBs are multiples of 1/64, so that sums
// are exact whatever the order of addition.
func randomRows(rng *rand.Rand, prefix string, n, days int) []RequestLog {
	keys := []string{"", "key_a", "key_b", "key_c"}
	models := []string{"gpt-4o", "gpt-4o-mini", "claude", ""}
	providers := []string{"openai", "anthropic", ""}
	statuses := []int{200, 200, 200, 201, 0, 400, 404, 429, 500, 502, 599}
	rows := make([]RequestLog, n)
	for i := range rows {
		r := RequestLog{
			ID:               fmt.Sprintf("%s-%06d", prefix, i),
			TS:               day0 + rng.Int64N(int64(days)*PeriodDay),
			Model:            models[rng.IntN(len(models))],
			Provider:         providers[rng.IntN(len(providers))],
			Status:           statuses[rng.IntN(len(statuses))],
			LatencyMS:        float64(rng.IntN(64*60000)) / 64,
			TTFBMS:           float64(rng.IntN(64*2000)) / 64,
			PromptTokens:     rng.Int64N(5000),
			CompletionTokens: rng.Int64N(2000),
			CachedTokens:     rng.Int64N(100),
			CostUSD:          float64(rng.IntN(1<<20)) / 64,
		}
		if k := keys[rng.IntN(len(keys))]; k != "" {
			r.KeyID = sql.NullString{String: k, Valid: true}
		}
		rows[i] = r
	}
	return rows
}

// insertInBatches stores rows with InsertLogs in batches of random sizes.
func insertInBatches(t *testing.T, s *Store, rng *rand.Rand, rows []RequestLog) {
	t.Helper()
	for len(rows) > 0 {
		n := min(len(rows), 1+rng.IntN(200))
		if err := s.InsertLogs(t.Context(), rows[:n]); err != nil {
			t.Fatalf("InsertLogs: %v", err)
		}
		rows = rows[n:]
	}
}

// wantRollups sums the request_logs of s the slow and obvious way: every
// row in its hour, and in its day when the day is before daysUntil.
func wantRollups(t *testing.T, s *Store, daysUntil int64) map[rollupKey]*Rollup {
	t.Helper()
	var rows []RequestLog
	if err := s.Reader().SelectContext(t.Context(), &rows, `SELECT * FROM request_logs`); err != nil {
		t.Fatal(err)
	}
	want := map[rollupKey]*Rollup{}
	lat := map[rollupKey]*histogram.Hist{}
	ttfb := map[rollupKey]*histogram.Hist{}
	for _, r := range rows {
		for _, p := range periods {
			b := FloorBucket(r.TS, p)
			if p == PeriodDay && b >= daysUntil {
				continue
			}
			k := rollupKey{p, b, r.KeyID.String, r.Model, r.Provider}
			w := want[k]
			if w == nil {
				w = &Rollup{Period: p, Bucket: b, KeyID: k.key, Model: k.model, Provider: k.provider}
				want[k], lat[k], ttfb[k] = w, new(histogram.Hist), new(histogram.Hist)
			}
			w.Requests++
			if r.Status >= 400 {
				w.Errors++
			}
			if r.Status >= 500 {
				w.ServerErrors++
			}
			w.PromptTokens += r.PromptTokens
			w.CompletionTokens += r.CompletionTokens
			w.CachedTokens += r.CachedTokens
			w.CostUSD += r.CostUSD
			w.LatencySumMS += r.LatencyMS
			w.TTFBSumMS += r.TTFBMS
			lat[k].Add(r.LatencyMS)
			ttfb[k].Add(r.TTFBMS)
		}
	}
	for k, w := range want {
		w.LatencyHist = lat[k].AppendBinary(nil)
		w.TTFBHist = ttfb[k].AppendBinary(nil)
	}
	return want
}

// checkRollups fails the test unless usage_rollups holds exactly the sums
// of request_logs, histograms included, bucket for bucket.
func checkRollups(t *testing.T, s *Store) {
	t.Helper()
	until, err := readDaysUntil(t.Context(), s.Reader())
	if err != nil {
		t.Fatal(err)
	}
	want := wantRollups(t, s, until)
	var got []Rollup
	if err := s.Reader().SelectContext(t.Context(), &got, `SELECT `+RollupColumns+` FROM usage_rollups`); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, g := range got {
		k := rollupKey{g.Period, g.Bucket, g.KeyID, g.Model, g.Provider}
		w := want[k]
		delete(want, k)
		if w == nil {
			t.Errorf("rollup %+v counts no request", k)
			bad++
		} else if g.Requests != w.Requests || g.Errors != w.Errors || g.ServerErrors != w.ServerErrors || g.PromptTokens != w.PromptTokens || g.CompletionTokens != w.CompletionTokens ||
			g.CachedTokens != w.CachedTokens || g.CostUSD != w.CostUSD || g.LatencySumMS != w.LatencySumMS ||
			g.TTFBSumMS != w.TTFBSumMS || !bytes.Equal(g.LatencyHist, w.LatencyHist) || !bytes.Equal(g.TTFBHist, w.TTFBHist) {
			t.Errorf("rollup %+v:\n got %+v\nwant %+v", k, g, *w)
			bad++
		}
		if bad > 5 {
			t.Fatal("too many differences")
		}
	}
	for k := range want {
		t.Errorf("no rollup for %+v", k)
		if bad++; bad > 5 {
			t.Fatal("too many differences")
		}
	}
}

// TestRollupsMatchRawRows stores random rows in batches of random sizes,
// some of them late (in days already summed), and checks after each step
// that the hour and day rollups are exactly the sums of the raw rows.
func TestRollupsMatchRawRows(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		rng := rand.New(rand.NewPCG(11, 12))

		// Four days of rows, in random order.
		insertInBatches(t, s, rng, randomRows(rng, "a", 1200, 4))
		checkRollups(t, s)
		var days int64
		if err := s.Reader().Get(&days, `SELECT count(*) FROM usage_rollups WHERE period = ?`, PeriodDay); err != nil || days != 0 {
			t.Fatalf("%d day rows before any compaction (%v)", days, err)
		}

		// Sum the first three days, then store more rows over all four: the
		// late ones must update both their hour and their day.
		n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+3*PeriodDay+5))
		if err != nil || n != 3 {
			t.Fatalf("CompactRollups = %d, %v; want 3 days", n, err)
		}
		checkRollups(t, s)
		insertInBatches(t, s, rng, randomRows(rng, "b", 800, 4))
		checkRollups(t, s)

		// Nothing more to sum until the fourth day is over; then it is.
		if n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+4*PeriodDay-1)); err != nil || n != 0 {
			t.Fatalf("CompactRollups before the end of day 4 = %d, %v; want 0", n, err)
		}
		if n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+4*PeriodDay)); err != nil || n != 1 {
			t.Fatalf("CompactRollups at the end of day 4 = %d, %v; want 1", n, err)
		}
		checkRollups(t, s)
		until, err := readDaysUntil(t.Context(), s.Reader())
		if err != nil || until != day0+4*PeriodDay {
			t.Fatalf("days_until = %d (%v), want %d", until, err, day0+4*PeriodDay)
		}

		// Many days later, with empty days in between.
		late := randomRows(rng, "c", 300, 1)
		for i := range late {
			late[i].TS += 9 * PeriodDay
		}
		insertInBatches(t, s, rng, late)
		if n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+12*PeriodDay)); err != nil || n != 1 {
			t.Fatalf("CompactRollups over empty days = %d, %v; want 1", n, err)
		}
		checkRollups(t, s)
		if until, _ := readDaysUntil(t.Context(), s.Reader()); until != day0+12*PeriodDay {
			t.Errorf("days_until = %d, want %d (the end of the range)", until, day0+12*PeriodDay)
		}
	})
}

func TestRollupsOfOneBatch(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		h := day0 + 5*PeriodHour
		rows := []RequestLog{
			{ID: "1", TS: h, Model: "m", Provider: "p", Status: 200, LatencyMS: 100, TTFBMS: 10, PromptTokens: 1, CompletionTokens: 2, CachedTokens: 3, CostUSD: 0.5},
			{ID: "2", TS: h + PeriodHour - 1, Model: "m", Provider: "p", Status: 204, LatencyMS: 300, TTFBMS: 30, PromptTokens: 10, CompletionTokens: 20, CachedTokens: 30, CostUSD: 0.25},
			{ID: "3", TS: h + PeriodHour, Model: "m", Provider: "p", Status: 200, LatencyMS: 1},
			{ID: "4", TS: h, Model: "m", Provider: "p", Status: 503, LatencyMS: 2, KeyID: sql.NullString{String: "k", Valid: true}},
		}
		if err := s.InsertLogs(t.Context(), rows); err != nil {
			t.Fatal(err)
		}
		var got []Rollup
		if err := s.Reader().Select(&got, `SELECT `+RollupColumns+` FROM usage_rollups ORDER BY bucket, key_id`); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("%d rollups, want 3: %+v", len(got), got)
		}
		first := got[0]
		if first.Period != PeriodHour || first.Bucket != h || first.KeyID != "" || first.Requests != 2 || first.Errors != 0 ||
			first.PromptTokens != 11 || first.CompletionTokens != 22 || first.CachedTokens != 33 || first.CostUSD != 0.75 ||
			first.LatencySumMS != 400 || first.TTFBSumMS != 40 {
			t.Errorf("first hour, admin key: %+v", first)
		}
		var hist histogram.Hist
		if err := hist.MergeBinary(first.LatencyHist); err != nil {
			t.Fatal(err)
		}
		if hist.Count() != 2 || hist.Percentile(50) < 99 || hist.Percentile(50) > 101 || hist.Percentile(100) < 297 || hist.Percentile(100) > 303 {
			t.Errorf("latency histogram: %v", hist.Bins())
		}
		if got[1].KeyID != "k" || got[1].Errors != 1 || got[1].ServerErrors != 1 || got[1].Bucket != h {
			t.Errorf("second rollup: %+v", got[1])
		}
		if got[2].Bucket != h+PeriodHour || got[2].Requests != 1 {
			t.Errorf("third rollup: %+v", got[2])
		}

		// A second batch in the same hour is added to the same row.
		if err := s.InsertLogs(t.Context(), []RequestLog{{ID: "5", TS: h + 7, Model: "m", Provider: "p", Status: 299, LatencyMS: 100, CostUSD: 1}}); err != nil {
			t.Fatal(err)
		}
		var again Rollup
		if err := s.Reader().Get(&again, `SELECT `+RollupColumns+` FROM usage_rollups WHERE bucket = ? AND key_id = ''`, h); err != nil {
			t.Fatal(err)
		}
		if again.Requests != 3 || again.CostUSD != 1.75 {
			t.Errorf("after a second batch: %+v", again)
		}
		checkRollups(t, s)

		t.Run("a failed batch adds nothing", func(t *testing.T) {
			err := s.InsertLogs(t.Context(), []RequestLog{{ID: "6", TS: h, Status: 200}, {ID: "1", TS: h, Status: 200}})
			if err == nil {
				t.Fatal("InsertLogs with a duplicate id succeeded")
			}
			checkRollups(t, s)
		})
	})
}

// TestInsertLogsChunks stores batches around the size of one multi-row
// statement, and a duplicate id inside a chunk, which must be reported
// with its row number and leave nothing behind.
func TestInsertLogsChunks(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, open func(testing.TB) *Store) {
		for _, n := range []int{chunkRows - 1, chunkRows, chunkRows + 1, 3*chunkRows + 5} {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				t.Parallel()
				s := open(t)
				rows := randomRows(rand.New(rand.NewPCG(5, uint64(n))), "r", n, 2)
				if err := s.InsertLogs(t.Context(), rows); err != nil {
					t.Fatal(err)
				}
				if got := countLogs(t, s.Reader()); got != int64(n) {
					t.Fatalf("%d rows stored, want %d", got, n)
				}
				checkRollups(t, s)
			})
		}
		t.Run("duplicate inside a chunk", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			rows := randomRows(rand.New(rand.NewPCG(5, 5)), "d", 2*chunkRows, 1)
			rows[chunkRows+3].ID = rows[chunkRows+1].ID
			err := s.InsertLogs(t.Context(), rows)
			if err == nil || !bytes.Contains([]byte(err.Error()), fmt.Appendf(nil, "row %d ", chunkRows+3)) {
				t.Fatalf("InsertLogs = %v, want an error naming row %d", err, chunkRows+3)
			}
			if got := countLogs(t, s.Reader()); got != 0 {
				t.Errorf("%d rows stored, want 0", got)
			}
			checkRollups(t, s)
		})
	})
}

func TestLoadLogs(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		rng := rand.New(rand.NewPCG(6, 6))
		rows := randomRows(rng, "l", 500, 3)
		n, err := s.LoadLogs(t.Context(), func(yield func(*RequestLog) bool) {
			var r RequestLog
			for i := range rows {
				r = rows[i]
				if !yield(&r) {
					return
				}
			}
		})
		if err != nil || n != len(rows) {
			t.Fatalf("LoadLogs = %d, %v; want %d", n, err, len(rows))
		}
		checkRollups(t, s)
	})
}

// TestBackfillMigration stores request logs in a database of schema
// version 1, then migrates it: the Go migration must sum every row.
func TestBackfillMigration(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	s := openStore(t)
	p, err := newMigrator(s.Writer().DB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	rows := randomRows(rng, "old", 1500, 3)
	tx, err := s.Writer().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Schema 1 has no attempts, trace and api columns: the last four.
	insertV1 := "INSERT INTO request_logs (id, ts, key_id, model, provider, plugin, plugin_version, status, " +
		"error_type, latency_ms, ttfb_ms, stream, prompt_tokens, completion_tokens, cached_tokens, cost_usd, " +
		"request_body, response_body) VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", logColumns-4), ", ") + ")"
	for i := range rows {
		if _, err := tx.Exec(insertV1, logArgs(nil, &rows[i])[:logColumns-4]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(t.Context()); err != nil {
		t.Fatalf("up: %v", err)
	}
	checkRollups(t, s)
	if n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+3*PeriodDay)); err != nil || n != 3 {
		t.Fatalf("CompactRollups = %d, %v", n, err)
	}
	checkRollups(t, s)

	st, err := MigrationStatus(t.Context(), s.Path())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, m := range st {
		names = append(names, m.Name)
	}
	if want := []string{"00001_init.sql", "00002_usage_rollups.sql", backfillName, "00004_provider_image_fetch.sql", "00005_request_attempts.sql", "00006_key_limits.sql", "00007_provider_limits.sql", "00008_routes.sql", "00009_provider_key_weights.sql", "00010_request_trace_id.sql", "00011_request_api.sql", "00012_responses.sql", "00013_sessions.sql", "00014_replicas.sql"}; !slices.Equal(names, want) {
		t.Errorf("migrations %v, want %v", names, want)
	}
}

func TestCompactRollupsCancelled(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	rng := rand.New(rand.NewPCG(9, 9))
	insertInBatches(t, s, rng, randomRows(rng, "x", 200, 3))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CompactRollups(ctx, time.UnixMilli(day0+3*PeriodDay)); !errors.Is(err, context.Canceled) {
		t.Fatalf("CompactRollups = %v, want context.Canceled", err)
	}
	// The next run does the work.
	if n, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+3*PeriodDay)); err != nil || n != 3 {
		t.Fatalf("CompactRollups = %d, %v; want 3", n, err)
	}
	checkRollups(t, s)
}

func TestPruneRollups(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		rng := rand.New(rand.NewPCG(10, 10))
		insertInBatches(t, s, rng, randomRows(rng, "p", 1000, 4))
		if _, err := s.CompactRollups(t.Context(), time.UnixMilli(day0+4*PeriodDay)); err != nil {
			t.Fatal(err)
		}
		// The cutoff is in the middle of an hour of the third day.
		cutoff := day0 + 2*PeriodDay + 5*PeriodHour + 30*60000
		var before int64
		if err := s.Reader().Get(&before, `SELECT count(*) FROM usage_rollups`); err != nil {
			t.Fatal(err)
		}
		var wantGone int64
		if err := s.Reader().Get(&wantGone, `SELECT count(*) FROM usage_rollups WHERE bucket + period <= ?`, cutoff); err != nil {
			t.Fatal(err)
		}
		n, err := s.PruneRollups(t.Context(), time.UnixMilli(cutoff), 7)
		if err != nil {
			t.Fatalf("PruneRollups: %v", err)
		}
		if n != wantGone || n == 0 {
			t.Errorf("PruneRollups deleted %d rows, want %d", n, wantGone)
		}
		var left struct {
			N         int64 `db:"n"`
			FirstHour int64 `db:"first_hour"`
			FirstDay  int64 `db:"first_day"`
		}
		if err := s.Reader().Get(&left, `SELECT count(*) AS n,
			(SELECT min(bucket) FROM usage_rollups WHERE period = 3600000) AS first_hour,
			(SELECT min(bucket) FROM usage_rollups WHERE period = 86400000) AS first_day
			FROM usage_rollups`); err != nil {
			t.Fatal(err)
		}
		if left.N != before-n {
			t.Errorf("%d rows left, want %d", left.N, before-n)
		}
		// The hour and the day that hold the cutoff are kept whole.
		if left.FirstHour != day0+2*PeriodDay+5*PeriodHour || left.FirstDay != day0+2*PeriodDay {
			t.Errorf("first hour %v, first day %v; want the ones holding the cutoff",
				time.UnixMilli(left.FirstHour).UTC(), time.UnixMilli(left.FirstDay).UTC())
		}

		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.PruneRollups(ctx, time.UnixMilli(cutoff), 7); !errors.Is(err, context.Canceled) {
			t.Errorf("PruneRollups cancelled = %v", err)
		}
	})
}

func TestFloorBucket(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ ts, period, want int64 }{
		{0, PeriodHour, 0},
		{PeriodHour - 1, PeriodHour, 0},
		{PeriodHour, PeriodHour, PeriodHour},
		{-1, PeriodHour, -PeriodHour},
		{-PeriodDay, PeriodDay, -PeriodDay},
		{day0 + 5, PeriodDay, day0},
	} {
		if got := FloorBucket(tt.ts, tt.period); got != tt.want {
			t.Errorf("FloorBucket(%d, %d) = %d, want %d", tt.ts, tt.period, got, tt.want)
		}
	}
}

// TestRollupsConcurrentWriters: four writers (replicas) store batches at
// once into the same hours, keys and models; the rollups are still
// exactly the sums of the rows. On PostgreSQL this is the row locks and
// the second round of addRollups at work.
func TestRollupsConcurrentWriters(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, open func(testing.TB) *Store) {
		s := open(t)
		// One pool: on PostgreSQL, four connections writing at once; on
		// SQLite the one writer takes them in turn.
		writers := []*Store{s, s, s, s}
		var wg sync.WaitGroup
		errs := make(chan error, len(writers)*20)
		for w, st := range writers {
			rng := rand.New(rand.NewPCG(uint64(w), 77))
			rows := randomRows(rng, fmt.Sprintf("w%d", w), 2000, 1)
			wg.Go(func() {
				for i := 0; i < len(rows); i += 100 {
					if err := st.InsertLogs(t.Context(), rows[i:i+100]); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		checkRollups(t, s)
	})
}
