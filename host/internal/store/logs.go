package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RequestLog is one row of the request_logs table: one finished /v1
// request. The db tags are the column names, so sqlx can scan query results
// straight into it.
type RequestLog struct {
	// ID identifies the request; it is the primary key and must be unique.
	ID string `db:"id"`
	// TS is when the request arrived, in Unix milliseconds.
	TS int64 `db:"ts"`
	// KeyID is the id of the client key that made the request; NULL for
	// the admin key.
	KeyID sql.NullString `db:"key_id"`
	// Model is the model the client asked for, Provider the provider it was
	// routed to, and Plugin and PluginVersion the plugin that served it.
	// Empty when the request failed before routing.
	Model         string `db:"model"`
	Provider      string `db:"provider"`
	Plugin        string `db:"plugin"`
	PluginVersion string `db:"plugin_version"`
	// Status is the HTTP status returned to the client.
	Status int `db:"status"`
	// ErrorType is the OpenAI error type of a failed request; NULL on
	// success.
	ErrorType sql.NullString `db:"error_type"`
	// LatencyMS is the time to the last byte and TTFBMS the time to the
	// first byte, both in milliseconds.
	LatencyMS float64 `db:"latency_ms"`
	TTFBMS    float64 `db:"ttfb_ms"`
	// Stream reports whether the client asked for a streamed response.
	Stream bool `db:"stream"`
	// Token counts as reported by the upstream, and the cost they add up to.
	PromptTokens     int64   `db:"prompt_tokens"`
	CompletionTokens int64   `db:"completion_tokens"`
	CachedTokens     int64   `db:"cached_tokens"`
	CostUSD          float64 `db:"cost_usd"`
	// RequestBody and ResponseBody are NULL unless body logging is on.
	RequestBody  sql.NullString `db:"request_body"`
	ResponseBody sql.NullString `db:"response_body"`
}

// insertLogSQL inserts one RequestLog; its parameters are in the order of
// logArgs.
const insertLogSQL = `INSERT INTO request_logs (
	id, ts, key_id, model, provider, plugin, plugin_version, status,
	error_type, latency_ms, ttfb_ms, stream, prompt_tokens,
	completion_tokens, cached_tokens, cost_usd, request_body, response_body
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// logArgs returns the parameters of insertLogSQL for r.
func logArgs(r *RequestLog) []any {
	return []any{
		r.ID, r.TS, r.KeyID, r.Model, r.Provider, r.Plugin, r.PluginVersion, r.Status,
		r.ErrorType, r.LatencyMS, r.TTFBMS, r.Stream, r.PromptTokens,
		r.CompletionTokens, r.CachedTokens, r.CostUSD, r.RequestBody, r.ResponseBody,
	}
}

// InsertLogs stores rows in one transaction through one prepared
// statement: either every row is stored or, on error, none is. One
// transaction per batch is what makes logging cheap, since SQLite's cost
// is per commit, not per row. It is meant to be called by the single
// goroutine of the async request logger; an empty batch does nothing.
func (s *Store) InsertLogs(ctx context.Context, rows []RequestLog) (err error) {
	if len(rows) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	stmt, err := tx.PrepareContext(ctx, insertLogSQL)
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	defer stmt.Close()
	for i := range rows {
		if _, err := stmt.ExecContext(ctx, logArgs(&rows[i])...); err != nil {
			return fmt.Errorf("insert logs: row %d (id %q): %w", i, rows[i].ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("insert logs: commit: %w", err)
	}
	return nil
}

// DefaultPruneBatch is the batch size PruneLogs uses when given none.
const DefaultPruneBatch = 1000

// PruneLogs deletes the request logs older than before and returns how many
// it deleted. It deletes at most batch rows per statement (default 1000),
// each statement its own short transaction, until a statement deletes
// fewer than batch: the log writer gets the writer connection between two
// batches instead of waiting for one long delete. If ctx ends, PruneLogs
// stops and returns the count so far with the context's error.
func (s *Store) PruneLogs(ctx context.Context, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	cutoff := before.UnixMilli()
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune logs: %w", err)
		}
		res, err := s.w.ExecContext(ctx,
			`DELETE FROM request_logs WHERE id IN (
				SELECT id FROM request_logs WHERE ts < ? ORDER BY ts LIMIT ?
			)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("prune logs: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune logs: %w", err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}

// ignoreDone drops the error a rollback returns when the transaction has
// already ended (for instance because its context was cancelled).
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
