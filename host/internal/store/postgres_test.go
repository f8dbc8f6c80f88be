package store

import (
	"bytes"
	"database/sql"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// column is a table column as both schemas are compared.
type column struct {
	Name, Type string
	NotNull    bool
}

// TestPostgresSchema: the PostgreSQL migrations make the same tables,
// columns (names, order, types, nullability) and indexes as the SQLite
// ones, end at the same version, and go down and up again cleanly.
func TestPostgresSchema(t *testing.T) {
	t.Parallel()
	lite, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "schema.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	pg := migratedPostgres(t)
	if err := MigratePostgres(t.Context(), pg); err != nil {
		t.Fatalf("migrating an up-to-date database: %v", err)
	}

	sqliteTypes := map[string]string{"TEXT": "text", "BIGINT": "bigint", "INTEGER": "integer", "REAL": "double precision", "BLOB": "bytea"}
	want := map[string][]column{}
	rows, err := lite.Reader().Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('goose_db_version', 'sqlite_sequence')`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, table := range tables {
		rows, err := lite.Reader().Query(`SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c column
			var pk int
			rows.Scan(&c.Name, &c.Type, &c.NotNull, &pk)
			typ, ok := sqliteTypes[strings.ToUpper(c.Type)]
			if !ok {
				t.Fatalf("%s.%s: SQLite type %q has no PostgreSQL counterpart in this test", table, c.Name, c.Type)
			}
			c.Type = typ
			// SQLite's INTEGER is 64-bit: two migrations (routes, responses)
			// gave timestamps INTEGER, which PostgreSQL needs as BIGINT.
			if typ == "integer" && strings.HasSuffix(c.Name, "_at") {
				c.Type = "bigint"
			}
			// A primary key is NOT NULL in PostgreSQL whatever it says.
			c.NotNull = c.NotNull || pk > 0
			want[table] = append(want[table], c)
		}
		rows.Close()
	}

	got := map[string][]column{}
	rows, err = pg.QueryContext(t.Context(), `SELECT table_name, column_name, data_type, is_nullable = 'NO'
		FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'goose_db_version'
		ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table string
		var c column
		rows.Scan(&table, &c.Name, &c.Type, &c.NotNull)
		got[table] = append(got[table], c)
	}
	rows.Close()
	if !reflect.DeepEqual(got, want) {
		for table := range want {
			if !reflect.DeepEqual(got[table], want[table]) {
				t.Errorf("table %s:\n PostgreSQL %v\n SQLite     %v", table, got[table], want[table])
			}
		}
		for table := range got {
			if _, ok := want[table]; !ok {
				t.Errorf("table %s is only in PostgreSQL", table)
			}
		}
	}

	indexes := func(db *sql.DB, q string) []string {
		var out []string
		rows, err := db.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			rows.Scan(&n)
			out = append(out, n)
		}
		return out
	}
	liteIdx := indexes(lite.Reader().DB, `SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`)
	pgIdx := indexes(pg, `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key' ORDER BY indexname`)
	if !reflect.DeepEqual(liteIdx, pgIdx) {
		t.Errorf("indexes: PostgreSQL %v, SQLite %v", pgIdx, liteIdx)
	}

	lp, _ := newMigrator(lite.Writer().DB)
	pp, err := newPostgresMigrator(pg)
	if err != nil {
		t.Fatal(err)
	}
	if l, p := latestVersion(lp), latestVersion(pp); l != p {
		t.Errorf("latest version: SQLite %d, PostgreSQL %d: a schema change needs a file in both directories", l, p)
	}
	if _, err := pp.DownTo(t.Context(), 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	var left int
	pg.QueryRowContext(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&left)
	if left != 0 {
		t.Fatalf("%d tables left after migrating down", left)
	}
	if err := MigratePostgres(t.Context(), pg); err != nil {
		t.Fatalf("up again: %v", err)
	}
	var state int
	if err := pg.QueryRowContext(t.Context(), `SELECT count(*) FROM usage_rollup_state WHERE id = 1`).Scan(&state); err != nil || state != 1 {
		t.Fatalf("usage_rollup_state: %d rows, %v", state, err)
	}
}

// bothDatabases runs test on a fresh SQLite store and on a fresh
// PostgreSQL one, as parallel subtests.
func bothDatabases(t *testing.T, test func(t *testing.T, s *Store)) {
	eachDatabase(t, func(t *testing.T, open func(testing.TB) *Store) { test(t, open(t)) })
}

// eachDatabase runs test once per database, as parallel subtests; open
// makes a fresh store of that kind.
func eachDatabase(t *testing.T, test func(t *testing.T, open func(testing.TB) *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, openStore)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, openPostgresStore)
	})
}

// openPostgresStore opens a fresh store on its own PostgreSQL database and
// closes it when the test ends.
func openPostgresStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenPostgres(t.Context(), pgtest.New(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestPostgresHistMerge: PostgreSQL's llmproxy_hist_merge gives, byte for
// byte, what the Go merge gives, on random histograms.
func TestPostgresHistMerge(t *testing.T) {
	t.Parallel()
	pg := migratedPostgres(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() []byte {
		var h histogram.Hist
		for range rng.IntN(300) {
			switch rng.IntN(10) {
			case 0:
				h.Add(0)
			case 1:
				h.Add(1e9) // above the top bucket
			default:
				h.Add(math.Exp(rng.Float64() * 14)) // 1 ms to about 20 minutes
			}
		}
		return h.AppendBinary(nil)
	}
	for i := range 200 {
		a, b := random(), random()
		want, err := histogram.MergeEncoded(a, b)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := pg.QueryRowContext(t.Context(), `SELECT llmproxy_hist_merge($1, $2)`, a, b).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: merge of %x and %x:\n PostgreSQL %x\n Go         %x", i, a, b, got, want)
		}
	}
	if err := pg.QueryRowContext(t.Context(), `SELECT llmproxy_hist_merge($1, $2)`, []byte{2}, []byte{1}).Err(); err == nil {
		t.Fatal("a histogram of an unknown format was merged")
	}
}

// TestKeySpent: a key's spend since a time, on both databases.
func TestKeySpent(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		key := sql.NullString{String: "k1", Valid: true}
		rows := []RequestLog{
			{ID: "a", TS: 1000, KeyID: key, CostUSD: 0.25, Attempts: 1},
			{ID: "b", TS: 2000, KeyID: key, CostUSD: 0.5, Attempts: 1},
			{ID: "c", TS: 2000, KeyID: sql.NullString{String: "k2", Valid: true}, CostUSD: 4, Attempts: 1},
		}
		if err := s.InsertLogs(t.Context(), rows); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			key   string
			since int64
			want  float64
		}{{"k1", 0, 0.75}, {"k1", 1500, 0.5}, {"k2", 0, 4}, {"nobody", 0, 0}} {
			got, err := s.KeySpent(t.Context(), c.key, time.UnixMilli(c.since))
			if err != nil || got != c.want {
				t.Errorf("KeySpent(%s, %d) = %v, %v; want %v", c.key, c.since, got, err, c.want)
			}
		}
	})
}

// migratedPostgres opens a fresh PostgreSQL database on pgx's own driver,
// migrated up, and closes it when the test ends.
func migratedPostgres(t *testing.T) *sql.DB {
	t.Helper()
	pg, err := sql.Open("pgx", pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	if err := MigratePostgres(t.Context(), pg); err != nil {
		t.Fatal(err)
	}
	return pg
}

// TestPostgresConcurrentStart: replicas starting at once on a new database
// take turns at the migrations; all of them open it.
func TestPostgresConcurrentStart(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := OpenPostgres(t.Context(), dsn, Options{MaxConns: 2})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	states, err := PostgresMigrationStatus(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if !s.Applied {
			t.Fatalf("%s not applied", s.Name)
		}
	}
}
