// Package store is the database layer of LLM Proxy: one SQLite file, or a
// PostgreSQL database shared by several replicas, that holds client API
// keys, dashboard users and their sessions, providers and routes managed at
// run time, settings, kept responses, the replicas and their limit counts,
// and request logs with their usage rollups (sums per hour and day, see
// [Store.InsertLogs] and [Store.CompactRollups]).
//
// # Opening
//
// [Open] creates the file (and its directory) when it is missing, applies
// the migrations of the top-level migrations package that the file has not
// seen yet, and returns a [Store]. Opening an up-to-date file changes
// nothing. A file whose schema is newer than this binary knows is refused
// rather than used by code that does not understand it.
//
// SQLite is pure Go here (modernc.org/sqlite): the binary needs no C
// compiler and cross-compiles like the rest of the proxy.
//
// [OpenPostgres] opens the same store on PostgreSQL, for several replicas
// on one database (postgres.go; [database] driver = "postgres"). All of
// the proxy's SQL lives in this package and its logquery subpackage (the
// request log's read side), and every statement runs on both databases;
// the tests run on both.
//
// # One writer, many readers
//
// SQLite allows one writing transaction at a time per file. A Store
// therefore keeps two pools:
//
//   - [Store.Writer] has exactly one connection. Writes from the whole
//     process queue for it inside database/sql instead of racing for the
//     file lock and spinning in SQLite's busy handler, so they never fail
//     with "database is locked" because of each other. Its transactions
//     begin IMMEDIATE: a transaction takes the write lock when it starts,
//     not halfway through, which keeps another process (llm-proxy migrate,
//     the sqlite3 shell) from turning a read into a failed upgrade.
//   - [Store.Reader] has Options.Readers connections that run queries in
//     parallel. The file is in WAL mode, so readers see the last committed
//     state and are never blocked by the writer, nor block it. Reader
//     connections are query-only: a write sent to them fails at once
//     instead of silently competing with the writer.
//
// Connection settings, all applied when a connection opens:
//
//	pragma          writer   readers
//	journal_mode    WAL      (a property of the file)
//	synchronous     NORMAL   -
//	foreign_keys    1        -
//	temp_store      MEMORY   -
//	busy_timeout    Options.BusyTimeout on both
//	query_only      -        1
//
// synchronous=NORMAL in WAL mode never corrupts the file; a power cut can
// lose the last transactions committed before it, which is an acceptable
// price for request logs and far cheaper than an fsync per commit.
// temp_store=MEMORY keeps the writer's temporary files (statement journals)
// in memory: the writer then needs no new file descriptor, so it keeps
// committing when a burst of connections has taken every one the process
// may open.
//
// # Times
//
// Every timestamp column holds Unix milliseconds (UTC) as a 64-bit integer.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/llm-proxy/llm-proxy/migrations"
)

// driverName is the database/sql name of the modernc.org/sqlite driver.
const driverName = "sqlite"

// Defaults of Options.
const (
	DefaultReaders     = 4
	DefaultBusyTimeout = 5 * time.Second
)

// Options configures [Open]. A zero or negative number or duration means the
// default.
type Options struct {
	// Path is the database file. Relative paths are resolved against the
	// working directory. Missing parent directories are created with mode
	// 0700 and a missing file with mode 0600: the file holds password
	// hashes and sealed provider secrets. Required.
	Path string
	// Readers is the number of read-only connections, that is how many
	// queries can run at the same time. Default: 4.
	Readers int
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection (another process, or a WAL checkpoint) before failing with
	// "database is locked". Default: 5s.
	BusyTimeout time.Duration
	// MaxConns is the size of the connection pool on PostgreSQL
	// ([OpenPostgres]). Default: DefaultMaxConns.
	MaxConns int
}

// Store is an open database: one writer connection and a pool of reader
// connections. It is safe for concurrent use.
type Store struct {
	path    string
	w       *sqlx.DB
	r       *sqlx.DB // the same pool as w on PostgreSQL
	stmts   writeStmts
	dialect dialect
	dsn     string  // PostgreSQL's connection string, for ListenChanges
	probe   *sql.DB // PostgreSQL: one connection for Ping
}

// Open opens the database at o.Path, creating it if needed, and applies any
// pending migrations. The context bounds the opening and the migrations,
// not the life of the Store; call [Store.Close] when done.
//
// An existing file that is not an SQLite database is reported as such,
// naming the path, and left untouched.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("open database: no path given")
	}
	if o.Readers <= 0 {
		o.Readers = DefaultReaders
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", o.Path, err)
	}
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}

	busy := strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10)
	w, err := sqlx.Open(driverName, fileDSN(path, url.Values{
		"_pragma": {
			"busy_timeout(" + busy + ")",
			"journal_mode(WAL)",
			"synchronous(NORMAL)",
			"foreign_keys(1)",
			"temp_store(MEMORY)",
		},
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, openError(path, err)
	}
	if err := migrate(ctx, w.DB); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}

	r, err := sqlx.Open(driverName, fileDSN(path, url.Values{
		"_pragma": {
			"busy_timeout(" + busy + ")",
			"query_only(1)",
		},
	}))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	r.SetMaxOpenConns(o.Readers)
	r.SetMaxIdleConns(o.Readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, openError(path, err)
	}
	return &Store{path: path, w: w, r: r}, nil
}

// Ping checks that the database answers: on a connection of its own on
// PostgreSQL, on a reader on SQLite (whose one writer may be busy with a
// long batch).
func (s *Store) Ping(ctx context.Context) error {
	if s.probe != nil {
		return s.probe.PingContext(ctx)
	}
	return s.r.PingContext(ctx)
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Writer returns the pool that holds the single writer connection. Use it
// for every statement that changes the database, and for reads that must
// see the writer's own uncommitted changes (inside a transaction). Keep
// transactions short: every other write in the process waits for them.
func (s *Store) Writer() *sqlx.DB { return s.w }

// Reader returns the pool of read-only connections. Use it for queries;
// statements that write fail with SQLITE_READONLY.
func (s *Store) Reader() *sqlx.DB { return s.r }

// Close closes the readers, then the writer. When no other process has the
// file open, closing the writer last checkpoints the WAL into the main file
// and removes the -wal and -shm files.
func (s *Store) Close() error {
	if s.r == s.w {
		var perr error
		if s.probe != nil {
			perr = s.probe.Close()
		}
		return errors.Join(s.stmts.close(), s.w.Close(), perr)
	}
	return errors.Join(s.stmts.close(), s.r.Close(), s.w.Close())
}

// insertionOrder is the ORDER BY tail that lists rows made in the same
// millisecond in the order they were inserted (ids are random).
func (s *Store) insertionOrder() string {
	if s.dialect == dialectPostgres {
		return "id" // PostgreSQL has no rowid: ties are rare, and ordered by id
	}
	return "rowid"
}

// createFile makes sure path exists as a regular file, creating missing
// parent directories (0700) and the file itself (0600). SQLite would create
// the file too, but with the umask's mode, usually world-readable.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// fileDSN returns the modernc.org/sqlite data source name for the absolute
// path with the given query parameters. The path is written as a file: URI
// so that any character in it (even '?', '#' or '%') reaches SQLite
// unchanged; SQLite decodes the URI and ignores the driver's own "_"
// parameters.
func fileDSN(path string, params url.Values) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter: file:///C:/...
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: params.Encode()}
	return u.String()
}

// openError wraps an error met while opening the database at path. A file
// that SQLite does not recognise gets a message that says so in plain
// words.
func openError(path string, err error) error {
	if se, ok := errors.AsType[*sqlite.Error](err); ok && se.Code()&0xff == sqlite3.SQLITE_NOTADB {
		return fmt.Errorf("open database %s: the file exists but is not an SQLite database: %w", path, err)
	}
	return fmt.Errorf("open database %s: %w", path, err)
}

// newMigrator returns a goose provider for the embedded migrations on db.
// It must not be closed: closing a goose provider closes db.
func newMigrator(db *sql.DB) (*goose.Provider, error) {
	return goose.NewProvider(goose.DialectSQLite3, db, migrations.FS,
		goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(backfillMigration),
	)
}

// newPostgresMigrator is newMigrator for a PostgreSQL database. Its
// history starts at version 12, so it has no backfill: there was never a
// request log on PostgreSQL without rollups. Replicas starting together
// take turns: the migrations run under an advisory lock, and whoever
// comes second finds them applied.
func newPostgresMigrator(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300)) // retried every second, up to 5 min
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(locker),
	)
}

// MigratePostgres applies the pending PostgreSQL migrations on db, after
// checking that the database is not ahead of this binary.
func MigratePostgres(ctx context.Context, db *sql.DB) error {
	p, err := newPostgresMigrator(db)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	return upTo(ctx, p)
}

// migrate applies the pending migrations on db, after checking that the
// database is not ahead of this binary.
func migrate(ctx context.Context, db *sql.DB) error {
	p, err := newMigrator(db)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	return upTo(ctx, p)
}

// upTo applies p's pending migrations, refusing a database that is ahead.
func upTo(ctx context.Context, p *goose.Provider) error {
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if latest := latestVersion(p); current > latest {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): run a newer llm-proxy", current, latest)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// latestVersion returns the highest migration version known to p.
func latestVersion(p *goose.Provider) int64 {
	var v int64
	for _, s := range p.ListSources() {
		v = max(v, s.Version)
	}
	return v
}
