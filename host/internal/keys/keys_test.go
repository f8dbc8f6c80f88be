package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

func open(t *testing.T, path string) *keys.Registry {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := keys.Open(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOtherProcessChangesApplyWithinASecond: two registries on one
// database stand for the server and the `llm-proxy keys` command.
func TestOtherProcessChangesApplyWithinASecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	cli, server := open(t, path), open(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go server.Watch(ctx, 100*time.Millisecond)

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
	r := open(t, filepath.Join(t.TempDir(), "db"))
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
