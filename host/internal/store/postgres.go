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
// no single writer. [Store.ListenChanges] opens one more.
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
	return &Store{w: db, r: db, dialect: dialectPostgres, dsn: dsn}, nil
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
