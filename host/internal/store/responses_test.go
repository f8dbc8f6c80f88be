package store

import (
	"errors"
	"testing"
)

// TestResponses: a kept response is read back by its key only, until it
// expires; prune deletes the expired ones and nothing else; delete is
// per key too.
func TestResponses(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for _, r := range []StoredResponse{
			{ID: "resp_a", KeyID: "k1", Model: "m", CreatedAt: 100, ExpiresAt: 1000, Messages: `{"role":"user","content":"a"}`, Response: `{"id":"resp_a"}`},
			{ID: "resp_b", KeyID: "k2", Model: "m", CreatedAt: 100, ExpiresAt: 5000, Messages: `{"role":"user","content":"b"}`, Response: `{"id":"resp_b"}`},
		} {
			if err := s.SaveResponse(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SaveResponse(ctx, StoredResponse{ID: "resp_a", KeyID: "k1"}); err == nil {
			t.Fatal("an id was saved twice")
		}
		r, err := s.LoadResponse(ctx, "resp_a", "k1", 500)
		if err != nil || r.Messages != `{"role":"user","content":"a"}` || r.Response != `{"id":"resp_a"}` || r.ExpiresAt != 1000 {
			t.Fatalf("%+v %v", r, err)
		}
		for _, c := range []struct {
			id, key string
			now     int64
		}{{"resp_a", "k2", 500}, {"resp_a", "k1", 1000}, {"resp_nope", "k1", 0}} {
			if _, err := s.LoadResponse(ctx, c.id, c.key, c.now); !errors.Is(err, ErrNoResponse) {
				t.Fatalf("%+v: %v", c, err)
			}
		}
		if n, err := s.PruneResponses(ctx, 1000, 1); err != nil || n != 1 {
			t.Fatalf("pruned %d, %v", n, err)
		}
		if _, err := s.LoadResponse(ctx, "resp_b", "k2", 1000); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteResponse(ctx, "resp_b", "k1"); !errors.Is(err, ErrNoResponse) {
			t.Fatalf("another key deleted it: %v", err)
		}
		if err := s.DeleteResponse(ctx, "resp_b", "k2"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LoadResponse(ctx, "resp_b", "k2", 1000); !errors.Is(err, ErrNoResponse) {
			t.Fatal(err)
		}
	})
}
