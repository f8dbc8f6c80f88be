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
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		st, err := store.Open(t.Context(), store.Options{Path: filepath.Join(t.TempDir(), "llm-proxy.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st, err := store.OpenPostgres(t.Context(), pgtest.New(t), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, st)
	})
}
