package app

import (
	"context"
	"database/sql"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/bodylog"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// storeSink writes request log batches to the database: one transaction
// per batch, on the request log's single writer goroutine. With [logs]
// bodies on, bodies is set and the bodies are redacted and marked here,
// off the request path.
type storeSink struct {
	st     *store.Store
	bodies *bodylog.Policy
	rows   []store.RequestLog
}

func (s *storeSink) WriteBatch(ctx context.Context, batch []requestlog.Entry) error {
	s.rows = s.rows[:0]
	for i := range batch {
		s.rows = append(s.rows, withBodies(&batch[i], s.bodies))
	}
	err := s.st.InsertLogs(ctx, s.rows)
	clear(s.rows) // let the bodies be collected
	return err
}

// withBodies is e's row with its bodies redacted and capped by the body
// policy (none without one).
func withBodies(e *requestlog.Entry, bodies *bodylog.Policy) store.RequestLog {
	row := e.RequestLog
	body := func(b []byte, size int) sql.NullString {
		if b == nil || bodies == nil {
			return sql.NullString{}
		}
		return sql.NullString{String: bodies.Prepare(b, size), Valid: true}
	}
	row.RequestBody, row.ResponseBody = body(e.RequestBytes, e.RequestSize), body(e.ResponseBytes, e.ResponseSize)
	return row
}

// compactAfter is how long after midnight (UTC) the day's usage rollups
// are summed: most requests that started that day have been logged by then.
// One that is logged later still counts, just at a little more cost.
const compactAfter = time.Hour

// pruneLoop maintains the request log, every hour, once at start and
// whenever the retention setting changes: it sums the usage rollups of the
// days that are over into day rows, then deletes log rows and rollups
// older than the retention, in small batches so the writer is never held
// long.
func (a *App) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		a.maintainLog(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.settings.pruneNow:
		}
	}
}

// maintainLog does one round of pruneLoop's work.
func (a *App) maintainLog(ctx context.Context, now time.Time) {
	warn := func(what string, err error) {
		if ctx.Err() == nil {
			a.log.Warn(what, "err", err)
		}
	}
	if n, err := a.store.PruneResponses(ctx, now.UnixMilli(), 500); err != nil {
		warn("kept responses", err)
	} else if n > 0 {
		a.log.Info("expired responses deleted", "rows", n)
	}
	if n, err := a.store.CompactRollups(ctx, now.Add(-compactAfter)); err != nil {
		warn("usage rollups", err)
	} else if n > 0 {
		a.log.Info("usage rollups summed per day", "days", n)
	}
	days := a.settings.retentionDays()
	if days <= 0 {
		return
	}
	before := now.AddDate(0, 0, -days)
	if n, err := a.store.PruneLogs(ctx, before, 500); err != nil {
		// Rollups go only after their rows: /api/logs trusts them to say
		// where rows are.
		warn("request log retention", err)
		return
	} else if n > 0 {
		a.log.Info("request log pruned", "rows", n, "older_than", before.Format(time.RFC3339))
	}
	if n, err := a.store.PruneRollups(ctx, before, 500); err != nil {
		warn("usage rollup retention", err)
	} else if n > 0 {
		a.log.Info("usage rollups pruned", "rows", n, "older_than", before.Format(time.RFC3339))
	}
}

// responsesTTL is how long Responses API responses are kept; 0 keeps none.
func responsesTTL(c config.ResponsesConfig) time.Duration {
	if !c.Store {
		return 0
	}
	return c.TTL.Std()
}
