package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// openStore opens a fresh database in a temporary directory and closes it
// when the test ends.
func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "llm-proxy.db")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// logRows returns n request logs with ids prefix-0, prefix-1, ... stamped
// ts, ts+1, ... milliseconds.
func logRows(prefix string, n int, ts int64) []RequestLog {
	rows := make([]RequestLog, n)
	for i := range rows {
		rows[i] = RequestLog{
			ID:               fmt.Sprintf("%s-%d", prefix, i),
			TS:               ts + int64(i),
			Model:            "gpt-4o-mini",
			Provider:         "openai",
			Plugin:           "openai",
			PluginVersion:    "1.0.0",
			Status:           200,
			LatencyMS:        123.5,
			TTFBMS:           45.25,
			PromptTokens:     12,
			CompletionTokens: 34,
			CostUSD:          0.0001,
		}
	}
	return rows
}

func countLogs(t testing.TB, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM request_logs`).Scan(&n); err != nil {
		t.Fatalf("count request_logs: %v", err)
	}
	return n
}

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("creates directories, the file and the schema", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "a", "b")
		path := filepath.Join(dir, "llm-proxy.db")
		s, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()

		if fi, err := os.Stat(dir); err != nil {
			t.Fatal(err)
		} else if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("directory mode = %v, want 0700", perm)
		}
		if fi, err := os.Stat(path); err != nil {
			t.Fatal(err)
		} else if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("file mode = %v, want 0600", perm)
		}
		if s.Path() != path {
			t.Errorf("Path() = %q, want %q", s.Path(), path)
		}

		var tables []string
		err = s.Reader().SelectContext(t.Context(), &tables,
			`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		want := "api_keys goose_db_version limit_shares providers replicas request_logs responses routes sessions settings usage_rollup_state usage_rollups users"
		if got := strings.Join(tables, " "); got != want {
			t.Errorf("tables = %s, want %s", got, want)
		}
	})

	t.Run("reopening applies nothing", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "llm-proxy.db")
		versionRows := func() int {
			s, err := Open(t.Context(), Options{Path: path})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			var n int
			if err := s.Reader().GetContext(t.Context(), &n, `SELECT count(*) FROM goose_db_version`); err != nil {
				t.Fatal(err)
			}
			return n
		}
		first := versionRows()
		if second := versionRows(); second != first {
			t.Errorf("goose_db_version has %d rows after reopening, %d before", second, first)
		}
	})

	t.Run("keeps data across reopening", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "llm-proxy.db")
		s, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.InsertLogs(t.Context(), logRows("r", 3, 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if n := countLogs(t, s.Reader()); n != 3 {
			t.Errorf("%d rows after reopening, want 3", n)
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "a ?b#c%d&e.db")
		s, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the database is not at the given path: %v", err)
		}
	})

	t.Run("no path", func(t *testing.T) {
		t.Parallel()
		if _, err := Open(t.Context(), Options{}); err == nil {
			t.Error("Open with no path succeeded")
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()

	t.Run("a file that is not SQLite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "garbage.db")
		garbage := bytes.Repeat([]byte("this is not a database\n"), 200)
		if err := os.WriteFile(path, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), Options{Path: path})
		if err == nil {
			t.Fatal("Open succeeded on a garbage file")
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "not an SQLite database") {
			t.Errorf("error = %q, want it to name %s and say it is not an SQLite database", msg, path)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, garbage) {
			t.Error("Open modified the garbage file")
		}
		_, err = MigrationStatus(t.Context(), path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not an SQLite database") {
			t.Errorf("MigrationStatus error = %v, want it to name %s and say it is not an SQLite database", err, path)
		}
	})

	t.Run("a schema newer than the binary", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "llm-proxy.db")
		s, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Writer().ExecContext(t.Context(),
			`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, 1)`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err = Open(t.Context(), Options{Path: path})
		if err == nil || !strings.Contains(err.Error(), "schema version 99999 is newer") {
			t.Errorf("Open = %v, want a schema version error", err)
		}
	})

	t.Run("a directory", func(t *testing.T) {
		t.Parallel()
		_, err := Open(t.Context(), Options{Path: t.TempDir()})
		if err == nil {
			t.Error("Open succeeded on a directory")
		}
	})
}

func TestMigrationStatus(t *testing.T) {
	t.Parallel()

	t.Run("after Open", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "llm-proxy.db")
		before := time.Now().Add(-2 * time.Second)
		s, err := Open(t.Context(), Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		// Once while the server would be running, once after it stopped
		// (no -wal and -shm files left).
		check := func(t *testing.T) {
			st, err := MigrationStatus(t.Context(), path)
			if err != nil {
				t.Fatalf("MigrationStatus: %v", err)
			}
			if len(st) == 0 {
				t.Fatal("no migrations listed")
			}
			first := st[0]
			if first.Version != 1 || first.Name != "00001_init.sql" || !first.Applied {
				t.Errorf("first migration = %+v, want version 1, 00001_init.sql, applied", first)
			}
			if first.AppliedAt.Before(before) || first.AppliedAt.After(time.Now().Add(2*time.Second)) {
				t.Errorf("AppliedAt = %v, want about now", first.AppliedAt)
			}
			for _, m := range st {
				if !m.Applied {
					t.Errorf("migration %s is not applied", m.Name)
				}
			}
		}
		t.Run("open", check)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Run("closed", check)
		for _, suffix := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(path + suffix); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("MigrationStatus left %s behind (stat: %v)", path+suffix, err)
			}
		}
	})

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "missing.db")
		st, err := MigrationStatus(t.Context(), path)
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		if len(st) == 0 || st[0].Name != "00001_init.sql" {
			t.Fatalf("status = %+v, want 00001_init.sql first", st)
		}
		for _, m := range st {
			if m.Applied || !m.AppliedAt.IsZero() {
				t.Errorf("migration %+v reported applied in a missing file", m)
			}
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("MigrationStatus created the file (stat: %v)", err)
		}
	})

	t.Run("empty file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := MigrationStatus(t.Context(), path)
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		for _, m := range st {
			if m.Applied {
				t.Errorf("migration %+v reported applied in an empty file", m)
			}
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
			t.Errorf("MigrationStatus changed the empty file (%v)", err)
		}
	})
}

// TestMigrationsDownUp runs every Down section, then every Up section
// again, so a broken Down is found before someone needs it.
func TestMigrationsDownUp(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	p, err := newMigrator(s.Writer().DB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	var left []string
	if err := s.Reader().SelectContext(t.Context(), &left,
		`SELECT name FROM sqlite_master WHERE name NOT LIKE 'goose%' AND name NOT LIKE 'sqlite_%'`); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("objects left after migrating down: %v", left)
	}
	if _, err := p.Up(t.Context()); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	s := openStore(t)

	w, r := s.Writer(), s.Reader()
	tests := []struct {
		name   string
		pool   *sqlx.DB
		pragma string
		want   string
	}{
		{"writer journal_mode", w, "journal_mode", "wal"},
		{"writer foreign_keys", w, "foreign_keys", "1"},
		{"writer synchronous", w, "synchronous", "1"}, // NORMAL
		{"writer busy_timeout", w, "busy_timeout", "5000"},
		{"writer query_only", w, "query_only", "0"},
		{"writer temp_store", w, "temp_store", "2"}, // MEMORY
		{"reader journal_mode", r, "journal_mode", "wal"},
		{"reader busy_timeout", r, "busy_timeout", "5000"},
		{"reader query_only", r, "query_only", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := tt.pool.GetContext(t.Context(), &got, "PRAGMA "+tt.pragma); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}

	t.Run("pool sizes", func(t *testing.T) {
		if n := s.Writer().Stats().MaxOpenConnections; n != 1 {
			t.Errorf("writer MaxOpenConnections = %d, want 1", n)
		}
		if n := s.Reader().Stats().MaxOpenConnections; n != DefaultReaders {
			t.Errorf("reader MaxOpenConnections = %d, want %d", n, DefaultReaders)
		}
	})
}

func TestReaderRefusesWrites(t *testing.T) {
	t.Parallel()
	s := openStore(t)

	tests := []struct {
		name string
		sql  string
	}{
		{"insert", `INSERT INTO settings (key, value) VALUES ('a', 'b')`},
		{"create table", `CREATE TABLE t (x INTEGER)`},
		{"delete", `DELETE FROM request_logs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Reader().ExecContext(t.Context(), tt.sql)
			se, ok := errors.AsType[*sqlite.Error](err)
			if !ok || se.Code()&0xff != sqlite3.SQLITE_READONLY {
				t.Errorf("reader ran %q: err = %v, want SQLITE_READONLY", tt.sql, err)
			}
		})
	}

	var n int
	if err := s.Reader().GetContext(t.Context(), &n, `SELECT count(*) FROM settings`); err != nil || n != 0 {
		t.Errorf("settings has %d rows (err %v), want 0", n, err)
	}
}

func TestInsertLogs(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, open func(testing.TB) *Store) {

		t.Run("a thousand rows in one call", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if err := s.InsertLogs(t.Context(), logRows("r", 1000, 1_700_000_000_000)); err != nil {
				t.Fatalf("InsertLogs: %v", err)
			}
			if n := countLogs(t, s.Reader()); n != 1000 {
				t.Errorf("%d rows, want 1000", n)
			}
		})

		t.Run("round trip", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			want := []RequestLog{
				{
					ID: "full", TS: 1_700_000_000_123,
					KeyID: sql.NullString{String: "key-1", Valid: true},
					Model: "gpt-4o", Provider: "openai", Plugin: "openai", PluginVersion: "1.2.3",
					Status:    502,
					ErrorType: sql.NullString{String: "upstream_error", Valid: true},
					LatencyMS: 1234.5, TTFBMS: 67.25, Stream: true,
					PromptTokens: 100, CompletionTokens: 200, CachedTokens: 50, CostUSD: 0.0042,
					RequestBody:  sql.NullString{String: `{"model":"gpt-4o"}`, Valid: true},
					ResponseBody: sql.NullString{String: `{"error":{}}`, Valid: true},
					Attempts:     2,
					AttemptLog:   sql.NullString{String: `[{"provider":"a"},{"provider":"openai"}]`, Valid: true},
				},
				{ID: "bare", TS: 1_700_000_000_124, Status: 200, Attempts: 1},
			}
			if err := s.InsertLogs(t.Context(), want); err != nil {
				t.Fatalf("InsertLogs: %v", err)
			}
			var got []RequestLog
			if err := s.Reader().SelectContext(t.Context(), &got, `SELECT * FROM request_logs ORDER BY ts`); err != nil {
				t.Fatalf("select: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d rows back, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})

		t.Run("a failing row stores nothing", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			rows := logRows("r", 10, 1)
			rows[7].ID = rows[2].ID
			err := s.InsertLogs(t.Context(), rows)
			if err == nil || !strings.Contains(err.Error(), "row 7") {
				t.Fatalf("InsertLogs = %v, want an error naming row 7", err)
			}
			if n := countLogs(t, s.Reader()); n != 0 {
				t.Errorf("%d rows stored, want 0", n)
			}
			// The writer is usable again.
			if err := s.InsertLogs(t.Context(), logRows("ok", 2, 1)); err != nil {
				t.Fatalf("InsertLogs after a failure: %v", err)
			}
		})

		t.Run("empty batch", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if err := s.InsertLogs(t.Context(), nil); err != nil {
				t.Errorf("InsertLogs(nil) = %v", err)
			}
		})
	})
}

func TestPruneLogs(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, open func(testing.TB) *Store) {
		cutoff := time.UnixMilli(1_700_000_000_000)

		tests := []struct {
			name     string
			old, new int
			batch    int
		}{
			{"several batches and a remainder", 250, 40, 100},
			{"a whole number of batches", 200, 10, 100},
			{"fewer than one batch", 7, 3, 100},
			{"nothing old", 0, 20, 100},
			{"default batch", 1500, 5, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				s := open(t)
				// Old rows end one millisecond before the cutoff; new rows start
				// exactly at it, and are kept.
				rows := append(
					logRows("old", tt.old, cutoff.UnixMilli()-int64(tt.old)),
					logRows("new", tt.new, cutoff.UnixMilli())...,
				)
				if err := s.InsertLogs(t.Context(), rows); err != nil {
					t.Fatal(err)
				}
				n, err := s.PruneLogs(t.Context(), cutoff, tt.batch)
				if err != nil {
					t.Fatalf("PruneLogs: %v", err)
				}
				if n != int64(tt.old) {
					t.Errorf("PruneLogs deleted %d rows, want %d", n, tt.old)
				}
				var left []string
				if err := s.Reader().SelectContext(t.Context(), &left,
					`SELECT id FROM request_logs WHERE ts < ? OR id NOT LIKE 'new-%'`, cutoff.UnixMilli()); err != nil {
					t.Fatal(err)
				}
				if len(left) != 0 {
					t.Errorf("rows left that should be gone: %v", left)
				}
				if got := countLogs(t, s.Reader()); got != int64(tt.new) {
					t.Errorf("%d rows left, want %d", got, tt.new)
				}
			})
		}

		t.Run("cancelled", func(t *testing.T) {
			t.Parallel()
			s := open(t)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := s.PruneLogs(ctx, cutoff, 10); !errors.Is(err, context.Canceled) {
				t.Errorf("PruneLogs = %v, want context.Canceled", err)
			}
		})
	})
}

// TestConcurrentReaders checks that readers keep working, without
// "database is locked", while the writer inserts, and that each sees a
// growing number of rows.
func TestConcurrentReaders(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	const batches, batchSize, readers = 20, 25, 3

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for b := range batches {
			if err := s.InsertLogs(t.Context(), logRows(fmt.Sprintf("b%d", b), batchSize, int64(b*batchSize))); err != nil {
				t.Errorf("InsertLogs: %v", err)
				return
			}
		}
	})
	for range readers {
		wg.Go(func() {
			var last, reads int64
			for {
				select {
				case <-done:
					if reads == 0 {
						t.Error("a reader never ran")
					}
					return
				default:
				}
				var n int64
				err := s.Reader().GetContext(t.Context(), &n, `SELECT count(*) FROM request_logs WHERE model = ?`, "gpt-4o-mini")
				if err != nil {
					t.Errorf("reader: %v", err)
					return
				}
				if n < last || n%batchSize != 0 {
					t.Errorf("reader saw %d rows after %d: not a whole number of committed batches", n, last)
					return
				}
				last = n
				reads++
				// Leave the CPU to the writer now and then: on a small
				// machine under -race, busy readers can starve it.
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if n := countLogs(t, s.Reader()); n != batches*batchSize {
		t.Errorf("%d rows, want %d", n, batches*batchSize)
	}
}
