package keys_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, st *store.Store) *keys.Registry {
	t.Helper()
	r, err := keys.Open(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOtherProcessChangesApplyWithinASecond: two registries on one
// database stand for the server and the `llm-proxy keys` command.
func TestOtherProcessChangesApplyWithinASecond(t *testing.T) {
	storetest.EachShared(t, testOtherProcessChanges)
}

func testOtherProcessChanges(t *testing.T, connect func() *store.Store) {
	cli, server := open(t, connect()), open(t, connect())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the app's poll (on PostgreSQL it also refreshes on notices)
		for ctx.Err() == nil {
			server.Refresh(ctx)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	secret, k, err := cli.Create(ctx, keys.CreateRequest{Name: "ci", Models: []string{"m"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	within := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen within 1s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	within("create", func() bool { _, err := server.Authenticate(secret, time.Now()); return err == nil })
	if _, err := cli.Revoke(ctx, k.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	within("revoke", func() bool {
		_, err := server.Authenticate(secret, time.Now())
		return errors.Is(err, keys.ErrRevoked)
	})
	if _, _, err := cli.Rotate(ctx, k.ID); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("rotating a revoked key: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	storetest.EachDatabase(t, testAuthenticate)
}

func testAuthenticate(t *testing.T, st *store.Store) {
	r := open(t, st)
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(time.Hour)
	secret, k, err := r.Create(ctx, keys.CreateRequest{Name: "a", ExpiresAt: &exp}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Authenticate(secret, now); err != nil || got.ID != k.ID || !got.Allows("anything") {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := r.Authenticate(secret, exp); !errors.Is(err, keys.ErrExpired) {
		t.Fatalf("at expiry: %v", err)
	}
	for _, bad := range []string{"", secret + "x", secret[:len(secret)-1], "sk-lp-0000"} {
		if _, err := r.Authenticate(bad, now); !errors.Is(err, keys.ErrUnknown) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// lastUsed reads api_keys.last_used_at (0 for NULL).
func lastUsed(t *testing.T, st *store.Store, id string) int64 {
	t.Helper()
	var v sql.NullInt64
	if err := st.Reader().Get(&v, `SELECT last_used_at FROM api_keys WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	return v.Int64
}

// TestLastUsed: a successful Authenticate stamps the key in memory; a
// flush writes the changed stamps; unused keys and refused attempts leave
// nothing; reloads and other processes see the stamps.
func TestLastUsed(t *testing.T) { storetest.EachShared(t, testLastUsed) }

func testLastUsed(t *testing.T, connect func() *store.Store) {
	ctx := context.Background()
	st := connect()
	r, err := keys.Open(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	secret, used, _ := r.Create(ctx, keys.CreateRequest{Name: "used"}, now)
	_, unused, _ := r.Create(ctx, keys.CreateRequest{Name: "unused"}, now)
	revokedSecret, revoked, _ := r.Create(ctx, keys.CreateRequest{Name: "revoked"}, now)
	if _, err := r.Revoke(ctx, revoked.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(revokedSecret, now); !errors.Is(err, keys.ErrRevoked) {
		t.Fatal(err)
	}
	use := now.Add(time.Minute)
	if _, err := r.Authenticate(secret, use); err != nil {
		t.Fatal(err)
	}
	stamp := func(id string) *time.Time {
		t.Helper()
		k, err := r.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return k.LastUsedAt
	}
	if got := stamp(used.ID); got == nil || !got.Equal(use.Truncate(time.Millisecond)) {
		t.Fatalf("in memory: %v, want %v", got, use)
	}
	if stamp(unused.ID) != nil || stamp(revoked.ID) != nil {
		t.Fatal("unused or refused keys have a stamp")
	}
	if lastUsed(t, st, used.ID) != 0 {
		t.Fatal("Authenticate wrote to the database")
	}

	if n, err := r.FlushUsage(ctx); err != nil || n != 1 {
		t.Fatalf("flush: %d %v", n, err)
	}
	if got := lastUsed(t, st, used.ID); got != use.UnixMilli() {
		t.Fatalf("database: %d, want %d", got, use.UnixMilli())
	}
	if lastUsed(t, st, unused.ID) != 0 || lastUsed(t, st, revoked.ID) != 0 {
		t.Fatal("unused or refused keys were stamped in the database")
	}
	if n, _ := r.FlushUsage(ctx); n != 0 {
		t.Fatalf("a flush with nothing new wrote %d stamps", n)
	}
	// Within the stamp's resolution a use changes nothing; later it does.
	r.Authenticate(secret, use.Add(500*time.Millisecond))
	if n, _ := r.FlushUsage(ctx); n != 0 {
		t.Fatalf("a use within a second wrote %d stamps", n)
	}
	later := use.Add(2 * time.Second)
	r.Authenticate(secret, later)
	// A reload (another key created) keeps the unflushed stamp, and so
	// does a rotation.
	r.Create(ctx, keys.CreateRequest{Name: "other"}, now)
	secret, _, err = r.Rotate(ctx, used.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := stamp(used.ID); got == nil || !got.Equal(later.Truncate(time.Millisecond)) {
		t.Fatalf("after reload and rotation: %v, want %v", got, later)
	}
	if n, _ := r.FlushUsage(ctx); n != 1 || lastUsed(t, st, used.ID) != later.UnixMilli() {
		t.Fatalf("second flush: %d, database %d", n, lastUsed(t, st, used.ID))
	}
	// Another process reads the stamps from the database; an older stamp
	// from it never moves the database back.
	cli := open(t, connect())
	if k, _ := cli.Get(used.ID); k.LastUsedAt == nil || !k.LastUsedAt.Equal(later.Truncate(time.Millisecond)) {
		t.Fatalf("other process: %+v", k)
	}
	if _, err := r.Authenticate(secret, later.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.FlushUsage(ctx)
	cliSecret, _, _ := cli.Rotate(ctx, unused.ID)
	cli.Authenticate(cliSecret, now)
	cli.FlushUsage(ctx)
	if got := lastUsed(t, st, used.ID); got != later.Add(time.Hour).UnixMilli() {
		t.Fatalf("database moved to %d", got)
	}
	if got := lastUsed(t, st, unused.ID); got != now.UnixMilli() {
		t.Fatalf("the other process's stamp: %d", got)
	}
}

// TestFlushUsageEvery: the loop writes stamps on its own.
func TestFlushUsageEvery(t *testing.T) { storetest.EachDatabase(t, testFlushUsageEvery) }

func testFlushUsageEvery(t *testing.T, st *store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := keys.Open(ctx, st, nil)
	secret, k, _ := r.Create(ctx, keys.CreateRequest{Name: "a"}, time.Now())
	done := make(chan struct{})
	go func() { r.FlushUsageEvery(ctx, 20*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	r.Authenticate(secret, time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for lastUsed(t, st, k.ID) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not flushed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"30d": now.AddDate(0, 0, 30), "12h": now.Add(12 * time.Hour), "2027-01-01T00:00:00Z": time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := keys.ParseExpiry(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"0d", "-1d", "d", "3x", "1.5d", "-2h"} {
		if _, err := keys.ParseExpiry(bad, now); !errors.Is(err, keys.ErrBadInput) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if got, err := keys.ParseExpiry("", now); got != nil || err != nil {
		t.Errorf("empty: %v %v", got, err)
	}
}

// BenchmarkAuthenticate is the per-request key check: one SHA-256, one map
// lookup under a read lock, and the last-used stamp.
func BenchmarkAuthenticate(b *testing.B) {
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(b.TempDir(), "db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	r, err := keys.Open(context.Background(), st, nil)
	if err != nil {
		b.Fatal(err)
	}
	secret, _, err := r.Create(context.Background(), keys.CreateRequest{Name: "bench"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Authenticate(secret, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Authenticate(secret, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
