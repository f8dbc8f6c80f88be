package storetest

import (
	"path/filepath"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// EachDatabase runs test on a fresh SQLite store and on a fresh PostgreSQL
// one (host/internal/pgtest), as parallel subtests "sqlite" and
// "postgres". A package that calls it runs its tests through pgtest.Main.
func EachDatabase(t *testing.T, test func(t *testing.T, st *store.Store)) {
	EachShared(t, func(t *testing.T, connect func() *store.Store) { test(t, connect()) })
}

// EachShared is EachDatabase for a test that needs several stores on one
// database, as several processes (replicas, or the server and the
// llm-proxy command) have: each call of connect opens another Store on
// the subtest's database, closed when the test ends.
func EachShared(t *testing.T, test func(t *testing.T, connect func() *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "llm-proxy.db")
		test(t, func() *store.Store {
			t.Helper()
			st, err := store.Open(t.Context(), store.Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := pgtest.New(t)
		test(t, func() *store.Store {
			t.Helper()
			st, err := store.OpenPostgres(t.Context(), dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		})
	})
}
