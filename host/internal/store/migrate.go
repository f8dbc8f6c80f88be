package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pressly/goose/v3"
)

// MigrationState is one migration as reported by [MigrationStatus].
type MigrationState struct {
	// Version is the number the file name starts with (1 for 00001_init.sql).
	Version int64 `json:"version"`
	// Name is the migration's file name, e.g. "00001_init.sql".
	Name string `json:"name"`
	// Applied reports whether the database has run this migration.
	Applied bool `json:"applied"`
	// AppliedAt is when it ran, in UTC to the second; zero when Applied is
	// false.
	AppliedAt time.Time `json:"applied_at,omitzero"`
}

// MigrationStatus reports, for every migration this binary knows, whether
// the database at path has applied it, in version order. It is the
// read-only counterpart of [Open], behind `llm-proxy migrate status`: it
// never creates, migrates or converts the file, and it is safe to run while
// the proxy has the database open. A missing file is reported as every
// migration pending.
//
// The connection is opened read-write but query-only, rather than with
// mode=ro: a read-only connection cannot remove the -wal and -shm files
// when it closes, and would leave them next to a database that nothing
// else has open.
func MigrationStatus(ctx context.Context, path string) ([]MigrationState, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("migration status %s: %w", path, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		return pendingStates()
	} else if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}

	busy := strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10)
	db, err := sql.Open(driverName, fileDSN(abs, url.Values{
		"mode":    {"rw"}, // never create
		"_pragma": {"busy_timeout(" + busy + ")", "query_only(1)"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	defer db.Close()

	// goose creates its version table when it is missing, which a
	// query-only connection cannot do; a database without it has simply
	// applied nothing. Reading sqlite_master also proves the file is a
	// database.
	var tables int
	err = db.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		goose.DefaultTablename,
	).Scan(&tables)
	if err != nil {
		return nil, openError(abs, err)
	}
	if tables == 0 {
		return pendingStates()
	}

	p, err := newMigrator(db)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	out, err := states(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("migration status %s: %w", abs, err)
	}
	return out, nil
}

// PostgresMigrationStatus is [MigrationStatus] for the PostgreSQL database
// of dsn. It never changes the database.
func PostgresMigrationStatus(ctx context.Context, dsn string) ([]MigrationState, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	var table sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1)::text`, goose.DefaultTablename).Scan(&table); err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	p, err := newPostgresMigrator(db)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	if !table.Valid {
		var out []MigrationState
		for _, s := range p.ListSources() {
			out = append(out, MigrationState{Version: s.Version, Name: migrationName(s)})
		}
		return out, nil
	}
	out, err := states(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	return out, nil
}

// states lists p's migrations with whether each is applied.
func states(ctx context.Context, p *goose.Provider) ([]MigrationState, error) {
	st, err := p.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationState, 0, len(st))
	for _, m := range st {
		s := MigrationState{
			Version: m.Source.Version,
			Name:    migrationName(m.Source),
			Applied: m.State == goose.StateApplied,
		}
		if s.Applied {
			s.AppliedAt = m.AppliedAt.UTC()
		}
		out = append(out, s)
	}
	return out, nil
}

// pendingStates lists every embedded migration as not applied, without
// touching a database.
func pendingStates() ([]MigrationState, error) {
	// goose needs a *sql.DB to list its sources but does not use it for
	// that; this one is never connected.
	db, err := sql.Open(driverName, ":memory:")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	p, err := newMigrator(db)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	var out []MigrationState
	for _, s := range p.ListSources() {
		out = append(out, MigrationState{Version: s.Version, Name: migrationName(s)})
	}
	return out, nil
}

// migrationName is the file name of a SQL migration, or a name for a Go
// migration, which has no file.
func migrationName(s *goose.Source) string {
	if s.Path == "" && s.Version == backfillVersion {
		return backfillName
	}
	return filepath.Base(s.Path)
}
