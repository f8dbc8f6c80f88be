package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// PostgreSQL, for several replicas on one database ([database] driver =
// "postgres").
//
// The same SQL serves both databases. It is written with SQLite's "?"
// placeholders, and the driver registered here, a thin layer over pgx's
// database/sql driver, rewrites them to PostgreSQL's "$1", "$2" ... once
// per distinct statement. It also writes Go booleans as 0 and 1, since the
// schema keeps SQLite's INTEGER booleans (migrations/postgres).

// pgDriverName is the database/sql name of that driver.
const pgDriverName = "llmproxy-pgx"

func init() {
	sql.Register(pgDriverName, qmarkDriver{stdlib.GetDefaultDriver()})
}

// dialect says which database a Store is on.
type dialect uint8

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

// DefaultMaxConns is Options.MaxConns' default.
const DefaultMaxConns = 10

// OpenPostgres opens the PostgreSQL database of dsn (a pgx connection
// string or URL) and applies any pending migrations. Its one pool, of
// Options.MaxConns connections, serves reads and writes: PostgreSQL needs
// no single writer. [Store.ListenChanges] opens one more, and [Store.Ping]
// has one of its own.
func OpenPostgres(ctx context.Context, dsn string, o Options) (*Store, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	db, err := sqlx.Open(pgDriverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	// goose's own table has a real boolean: the migrations run on pgx's
	// driver as it is, not on the one that writes booleans as 0 and 1.
	mdb, err := sql.Open("pgx", dsn)
	if err == nil {
		err = MigratePostgres(ctx, mdb)
		mdb.Close()
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	// The readiness ping has a connection of its own: a pool busy with
	// the log writer and the dashboard's queries must not read as a
	// database that does not answer.
	probe, err := sql.Open("pgx", dsn)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	probe.SetMaxOpenConns(1)
	probe.SetMaxIdleConns(1)
	return &Store{w: db, r: db, dialect: dialectPostgres, dsn: dsn, probe: probe}, nil
}

// Postgres reports whether the store is on PostgreSQL.
func (s *Store) Postgres() bool { return s.dialect == dialectPostgres }

// changesChannel is the channel the triggers of migration 00013 notify.
const changesChannel = "llmproxy_changes"

// ListenChanges calls changed with the name of each table (api_keys,
// providers, routes, settings) that a committed transaction changed, on
// any process of the database, until ctx ends. It holds a connection of
// its own, opened again after any failure with a growing pause (up to
// 5 s); after every (re)connection it calls changed(""), for the notices
// it may have missed while not listening: "check everything". It returns
// nil when ctx ends, and an error at once on SQLite, which has no
// notices (poll instead).
func (s *Store) ListenChanges(ctx context.Context, changed func(table string), log *slog.Logger) error {
	if s.dialect != dialectPostgres {
		return errors.New("listen for changes: only on PostgreSQL")
	}
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx, changed)
		if ctx.Err() != nil {
			break
		}
		log.Warn("database change notices interrupted; reconnecting", "err", err, "in", pause.String())
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
	return nil
}

// listen is one connection of ListenChanges: it returns its error.
func (s *Store) listen(ctx context.Context, changed func(string)) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(c)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return err
	}
	changed("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		changed(n.Payload)
	}
}

// qmarkDriver opens pgx connections that take "?" placeholders.
type qmarkDriver struct{ d driver.Driver }

func (q qmarkDriver) Open(name string) (driver.Conn, error) {
	c, err := q.d.Open(name)
	if err != nil {
		return nil, err
	}
	return qmarkConn{c.(*stdlib.Conn)}, nil
}

// rebound caches each statement's "$n" form.
var rebound sync.Map

func rebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	r := sqlx.Rebind(sqlx.DOLLAR, query)
	rebound.Store(query, r)
	return r
}

// qmarkConn is a pgx connection whose statements are rebound.
type qmarkConn struct{ c *stdlib.Conn }

func (q qmarkConn) Prepare(query string) (driver.Stmt, error) { return q.c.Prepare(rebind(query)) }
func (q qmarkConn) Close() error                              { return q.c.Close() }
func (q qmarkConn) Begin() (driver.Tx, error) {
	return q.c.BeginTx(context.Background(), driver.TxOptions{})
}

func (q qmarkConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return q.c.BeginTx(ctx, opts)
}

func (q qmarkConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return q.c.PrepareContext(ctx, rebind(query))
}

func (q qmarkConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return q.c.ExecContext(ctx, rebind(query), args)
}

func (q qmarkConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return q.c.QueryContext(ctx, rebind(query), args)
}

func (q qmarkConn) Ping(ctx context.Context) error         { return q.c.Ping(ctx) }
func (q qmarkConn) ResetSession(ctx context.Context) error { return q.c.ResetSession(ctx) }
func (q qmarkConn) IsValid() bool                          { return !q.c.Conn().IsClosed() }

// CheckNamedValue writes a bool as 0 or 1 and leaves every other value to
// pgx.
func (q qmarkConn) CheckNamedValue(v *driver.NamedValue) error {
	if b, ok := v.Value.(bool); ok {
		v.Value = int64(0)
		if b {
			v.Value = int64(1)
		}
	}
	return q.c.CheckNamedValue(v)
}

// IsUnavailable reports whether err says the database is away rather than
// refusing a statement: it could not be reached, the connection broke, or
// the server is shutting down or starting up (SQLSTATE classes 08 and
// 57P); on SQLite, the file stayed locked by another process past the busy
// timeout. Work that failed so can wait and try again as it was.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return strings.HasPrefix(pe.Code, pgClassConnection) || strings.HasPrefix(pe.Code, pgOperatorIntervention)
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) ||
		pgconn.Timeout(err)
}

// SQLSTATE classes of a database that is away.
const (
	pgClassConnection      = "08"  // connection exception
	pgOperatorIntervention = "57P" // admin_shutdown, crash_shutdown, cannot_connect_now
)

// logColumnNames are request_logs' columns in the order of logArgs.
var logColumnNames = []string{
	"id", "ts", "key_id", "model", "provider", "plugin", "plugin_version", "status",
	"error_type", "latency_ms", "ttfb_ms", "stream", "prompt_tokens",
	"completion_tokens", "cached_tokens", "cost_usd", "request_body", "response_body",
	"attempts", "attempt_log", "trace_id", "api",
}

// insertLogsCopy is InsertLogs on PostgreSQL: the rows go in with one
// COPY, and the rollups through addRollups, in one transaction on one
// connection: a handful of round trips for a whole batch, where
// statements would take one per chunk of rows and one per rollup group.
func (s *Store) insertLogsCopy(ctx context.Context, rows []RequestLog) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc := dc.(qmarkConn).c.Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var until sql.NullInt64
		if err := tx.QueryRow(ctx, `SELECT days_until FROM usage_rollup_state WHERE id = 1`).Scan(&until); err != nil {
			return fmt.Errorf("read rollup state: %w", err)
		}
		agg := newRollupAgg(noDays)
		if until.Valid {
			agg.daysUntil = until.Int64
		}
		vals := make([]any, 0, len(logColumnNames))
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"request_logs"}, logColumnNames,
			pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
				vals = logArgs(vals[:0], &rows[i])
				if rows[i].Stream { // the schema's INTEGER boolean
					vals[11] = int64(1)
				} else {
					vals[11] = int64(0)
				}
				return vals, nil
			}))
		if err != nil {
			return err
		}
		for i := range rows {
			agg.add(&rows[i])
		}
		var groups [][]any
		_ = agg.flushTo(func(args ...any) error {
			groups = append(groups, args)
			return nil
		})
		if err := addRollups(ctx, tx, groups); err != nil {
			return fmt.Errorf("rollups: %w", err)
		}
		return tx.Commit(ctx)
	})
}

// The statements of addRollups. A group's arguments are those of
// upsertRollupSQL: the five key columns, nine sums, two histograms.
const (
	lockRollupsSQL = `SELECT r.period, r.bucket, r.key_id, r.model, r.provider, r.latency_hist, r.ttfb_hist
		FROM usage_rollups r
		JOIN unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(period, bucket, key_id, model, provider)
		ON r.period = u.period AND r.bucket = u.bucket AND r.key_id = u.key_id AND r.model = u.model AND r.provider = u.provider
		ORDER BY r.period, r.bucket, r.key_id, r.model, r.provider
		FOR UPDATE OF r`
	updateRollupSQL = `UPDATE usage_rollups SET requests = requests + $6, errors = errors + $7,
		server_errors = server_errors + $8, prompt_tokens = prompt_tokens + $9,
		completion_tokens = completion_tokens + $10, cached_tokens = cached_tokens + $11,
		cost_usd = cost_usd + $12, latency_sum_ms = latency_sum_ms + $13, ttfb_sum_ms = ttfb_sum_ms + $14,
		latency_hist = $15, ttfb_hist = $16
		WHERE period = $1 AND bucket = $2 AND key_id = $3 AND model = $4 AND provider = $5`
	insertRollupSQL = `INSERT INTO usage_rollups (` + RollupColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT DO NOTHING`
)

// addRollups adds groups (in key order) to their rollup rows, in two
// steps. First every group is inserted as a new row, unless its row exists
// (ON CONFLICT DO NOTHING), in one pipelined batch. Then the rows that
// existed are locked and read in one query, their histograms merged here,
// in Go, as SQLite's writer does (PostgreSQL's own llmproxy_hist_merge, in
// PL/pgSQL, takes over a millisecond a row), and updated in a second batch.
// Both steps go in key order, so replicas writing at once wait for each
// other and never deadlock: a row one of them has just inserted makes the
// other's insert wait for its commit and then find the row.
func addRollups(ctx context.Context, tx pgx.Tx, groups [][]any) error {
	batch := &pgx.Batch{}
	for _, g := range groups {
		batch.Queue(insertRollupSQL, g...)
	}
	br := tx.SendBatch(ctx, batch)
	var existed [][]any
	for _, g := range groups {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return err
		}
		if tag.RowsAffected() == 0 {
			existed = append(existed, g)
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	if len(existed) == 0 {
		return nil
	}
	n := len(existed)
	periods, buckets := make([]int64, n), make([]int64, n)
	keys, models, provs := make([]string, n), make([]string, n), make([]string, n)
	for i, g := range existed {
		periods[i], buckets[i] = g[0].(int64), g[1].(int64)
		keys[i], models[i], provs[i] = g[2].(string), g[3].(string), g[4].(string)
	}
	rows, err := tx.Query(ctx, lockRollupsSQL, periods, buckets, keys, models, provs)
	if err != nil {
		return err
	}
	current := make(map[rollupKey][2][]byte, n)
	for rows.Next() {
		var k rollupKey
		var lat, ttfb []byte
		if err := rows.Scan(&k.period, &k.bucket, &k.key, &k.model, &k.provider, &lat, &ttfb); err != nil {
			rows.Close()
			return err
		}
		current[k] = [2][]byte{lat, ttfb}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	batch = &pgx.Batch{}
	for i, g := range existed {
		k := rollupKey{periods[i], buckets[i], keys[i], models[i], provs[i]}
		h, ok := current[k]
		if !ok { // deleted meanwhile (retention): not expected
			return fmt.Errorf("rollup of %d vanished", k.bucket)
		}
		lat, err := histogram.MergeEncoded(h[0], g[14].([]byte))
		if err != nil {
			return fmt.Errorf("rollup of %d: latency: %w", k.bucket, err)
		}
		ttfb, err := histogram.MergeEncoded(h[1], g[15].([]byte))
		if err != nil {
			return fmt.Errorf("rollup of %d: ttfb: %w", k.bucket, err)
		}
		batch.Queue(updateRollupSQL, append(append([]any{}, g[:14]...), lat, ttfb)...)
	}
	return tx.SendBatch(ctx, batch).Close()
}
