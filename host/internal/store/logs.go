package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"
)

// RequestLog is one row of the request_logs table: one finished /v1
// request. It is the request log's one record: the handler fills it
// (inside a requestlog.Entry), the writer stores it, the rollups sum it,
// and logquery.RowOf shows it. The db tags are the column names, so sqlx
// can scan query results straight into it.
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
	// Attempts counts the targets the request was tried on; AttemptLog
	// lists them as JSON, and is NULL when there was one.
	Attempts   int            `db:"attempts"`
	AttemptLog sql.NullString `db:"attempt_log"`
	// TraceID is the request's OpenTelemetry trace id; "" when it was not
	// traced.
	TraceID string `db:"trace_id"`
	// API is the API the client spoke: "openai" (chat completions and
	// embeddings), "messages" (Anthropic's) or "responses" (OpenAI's).
	API string `db:"api"`
}

// insertLogSQL inserts one RequestLog; its parameters are in the order of
// logArgs.
const insertLogSQL = `INSERT INTO request_logs (
	id, ts, key_id, model, provider, plugin, plugin_version, status,
	error_type, latency_ms, ttfb_ms, stream, prompt_tokens,
	completion_tokens, cached_tokens, cost_usd, request_body, response_body,
	attempts, attempt_log, trace_id, api
) VALUES ` + logValues

// logValues is the VALUES tuple of one row, and logColumns the number of
// parameters in it.
const (
	logValues  = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	logColumns = 22
)

// chunkRows is how many rows one execution of insertChunkSQL inserts.
// One statement for many rows saves the per-statement work of the driver
// and of database/sql, about a sixth of the cost of a row.
const chunkRows = 32

// insertChunkSQL inserts chunkRows rows.
var insertChunkSQL = insertLogSQL + strings.Repeat(", "+logValues, chunkRows-1)

// logArgs appends the parameters of one row of insertLogSQL for r.
func logArgs(args []any, r *RequestLog) []any {
	return append(args,
		r.ID, r.TS, r.KeyID, r.Model, r.Provider, r.Plugin, r.PluginVersion, r.Status,
		r.ErrorType, r.LatencyMS, r.TTFBMS, r.Stream, r.PromptTokens,
		r.CompletionTokens, r.CachedTokens, r.CostUSD, r.RequestBody, r.ResponseBody,
		max(r.Attempts, 1), r.AttemptLog, r.TraceID, r.API,
	)
}

// writeStmts are the statements of a logWriter, prepared once on the
// writer connection and reused by every transaction.
type writeStmts struct {
	mu                     sync.Mutex
	prepared               bool
	insertOne, insertChunk *sql.Stmt
	upsertRollup           *sql.Stmt
}

// statements returns the prepared statements of the writer connection,
// preparing them on first use.
func (s *Store) statements(ctx context.Context) (*writeStmts, error) {
	st := &s.stmts
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.prepared {
		return st, nil
	}
	var err error
	prepare := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var stmt *sql.Stmt
		stmt, err = s.w.PrepareContext(ctx, q)
		return stmt
	}
	one, chunk, upsert := prepare(insertLogSQL), prepare(insertChunkSQL), prepare(upsertRollupSQL)
	if err != nil {
		for _, stmt := range []*sql.Stmt{one, chunk, upsert} {
			if stmt != nil {
				stmt.Close()
			}
		}
		return nil, err
	}
	st.insertOne, st.insertChunk, st.upsertRollup, st.prepared = one, chunk, upsert, true
	return st, nil
}

// close closes the statements, if they were prepared.
func (st *writeStmts) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.prepared {
		return nil
	}
	st.prepared = false
	return errors.Join(st.insertOne.Close(), st.insertChunk.Close(), st.upsertRollup.Close())
}

// logWriter inserts request logs and keeps their rollups in step, inside
// one transaction.
type logWriter struct {
	ctx                context.Context
	one, chunk, upsert *sql.Stmt
	agg                *rollupAgg
	args               []any
	// On PostgreSQL a failed statement aborts its transaction: each chunk
	// runs under a savepoint, so that after a failed one the rows can be
	// tried one by one to name the bad one.
	tx         *sql.Tx
	savepoints bool
}

// newLogWriter starts writing in tx with the statements of st (nil: the
// statements are prepared in tx, as the migrations do).
func newLogWriter(ctx context.Context, tx *sql.Tx, st *writeStmts, d dialect) (*logWriter, error) {
	w := &logWriter{ctx: ctx, args: make([]any, 0, chunkRows*logColumns), tx: tx, savepoints: d == dialectPostgres}
	if st != nil {
		w.one = tx.StmtContext(ctx, st.insertOne)
		w.chunk = tx.StmtContext(ctx, st.insertChunk)
		w.upsert = tx.StmtContext(ctx, st.upsertRollup)
	} else {
		var err error
		if w.one, err = tx.PrepareContext(ctx, insertLogSQL); err != nil {
			return nil, err
		}
		if w.chunk, err = tx.PrepareContext(ctx, insertChunkSQL); err != nil {
			return nil, err
		}
		if w.upsert, err = tx.PrepareContext(ctx, upsertRollupSQL); err != nil {
			return nil, err
		}
	}
	daysUntil, err := readDaysUntil(ctx, tx)
	if err != nil {
		return nil, err
	}
	w.agg = newRollupAgg(daysUntil)
	return w, nil
}

// insert stores rows, whose first one is row number first of the caller's
// batch (for error messages), and counts them for the rollups.
func (w *logWriter) insert(rows []RequestLog, first int) error {
	i := 0
	for ; i+chunkRows <= len(rows); i += chunkRows {
		w.args = w.args[:0]
		for j := i; j < i+chunkRows; j++ {
			w.args = logArgs(w.args, &rows[j])
		}
		if err := w.savepoint("SAVEPOINT chunk"); err != nil {
			return err
		}
		if _, err := w.chunk.ExecContext(w.ctx, w.args...); err != nil {
			// A failed statement is undone on its own (on PostgreSQL, by
			// going back to the savepoint); row by row, the error names
			// its row.
			if err := w.savepoint("ROLLBACK TO SAVEPOINT chunk"); err != nil {
				return err
			}
			for j := i; j < i+chunkRows; j++ {
				if err := w.insertOne(&rows[j], first+j); err != nil {
					return err
				}
			}
			return fmt.Errorf("row %d to %d: %w", first+i, first+i+chunkRows-1, err)
		}
		if err := w.savepoint("RELEASE SAVEPOINT chunk"); err != nil {
			return err
		}
		for j := i; j < i+chunkRows; j++ {
			w.agg.add(&rows[j])
		}
	}
	for ; i < len(rows); i++ {
		if err := w.insertOne(&rows[i], first+i); err != nil {
			return err
		}
		w.agg.add(&rows[i])
	}
	return nil
}

// savepoint runs a savepoint statement, on PostgreSQL only.
func (w *logWriter) savepoint(stmt string) error {
	if !w.savepoints {
		return nil
	}
	_, err := w.tx.ExecContext(w.ctx, stmt)
	return err
}

// insertOne stores one row.
func (w *logWriter) insertOne(r *RequestLog, index int) error {
	w.args = logArgs(w.args[:0], r)
	if _, err := w.one.ExecContext(w.ctx, w.args...); err != nil {
		return fmt.Errorf("row %d (id %q): %w", index, r.ID, err)
	}
	return nil
}

// InsertLogs stores rows in one transaction: either every row is stored
// or, on error, none is. One transaction per batch is what makes logging
// cheap, since SQLite's cost is per commit, not per row. It is meant to be
// called by the single goroutine of the async request logger; an empty
// batch does nothing.
//
// The same transaction keeps usage_rollups in step: the batch is summed in
// memory per hour, key, model and provider, and each of those groups is
// added to its hour row with one upsert (and to its day
// row too, for a request in a day that CompactRollups has summed already).
// A batch of a few hundred requests touches a few dozen groups.
func (s *Store) InsertLogs(ctx context.Context, rows []RequestLog) (err error) {
	if len(rows) == 0 {
		return nil
	}
	if s.dialect == dialectPostgres {
		// COPY first. It cannot say which row it refused: if it refuses
		// one, the statements below try again and name it.
		err := s.insertLogsCopy(ctx, rows)
		if err == nil {
			return nil
		}
		if IsUnavailable(err) || ctx.Err() != nil {
			return fmt.Errorf("insert logs: %w", err)
		}
	}
	st, err := s.statements(ctx)
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
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
	w, err := newLogWriter(ctx, tx, st, s.dialect)
	if err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	if err := w.insert(rows, 0); err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	if err := w.agg.flush(ctx, w.upsert); err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("insert logs: commit: %w", err)
	}
	return nil
}

// LoadLogs stores every row of rows in one transaction, with their
// rollups, and returns how many it stored. It is for tests, benchmarks and
// tools that load many rows at once: the request logger uses InsertLogs,
// whose transactions stay short. rows may reuse the RequestLog it yields;
// LoadLogs copies it.
func (s *Store) LoadLogs(ctx context.Context, rows iter.Seq[*RequestLog]) (n int, err error) {
	st, err := s.statements(ctx)
	if err != nil {
		return 0, fmt.Errorf("load logs: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("load logs: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	w, err := newLogWriter(ctx, tx, st, s.dialect)
	if err != nil {
		return 0, fmt.Errorf("load logs: %w", err)
	}
	buf := make([]RequestLog, 0, chunkRows)
	write := func() error {
		if err := w.insert(buf, n); err != nil {
			return err
		}
		n += len(buf)
		buf = buf[:0]
		if w.agg.len() >= maxHeldRollups {
			return w.agg.flush(ctx, w.upsert)
		}
		return nil
	}
	for r := range rows {
		if buf = append(buf, *r); len(buf) == chunkRows {
			if err := write(); err != nil {
				return 0, fmt.Errorf("load logs: %w", err)
			}
		}
	}
	if err := write(); err != nil {
		return 0, fmt.Errorf("load logs: %w", err)
	}
	if err := w.agg.flush(ctx, w.upsert); err != nil {
		return 0, fmt.Errorf("load logs: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("load logs: commit: %w", err)
	}
	return n, nil
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

// KeySpent is the cost of the requests a client key made since a time,
// from the request log: where a budget period starts counting.
func (s *Store) KeySpent(ctx context.Context, keyID string, since time.Time) (float64, error) {
	var v float64
	err := s.Reader().GetContext(ctx, &v,
		`SELECT coalesce(sum(cost_usd), 0) FROM request_logs WHERE key_id = ? AND ts >= ?`, keyID, since.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("key spend: %w", err)
	}
	return v, nil
}
