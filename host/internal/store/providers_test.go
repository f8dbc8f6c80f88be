package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestProvidersCRUD(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		ctx := context.Background()

		_, mark0, err := s.ListProviders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a := Provider{
			ID: "prov_a", Name: "alpha", Plugin: "openai", BaseURL: "https://api.example.com/v1",
			Models: []string{"m1", "m2"}, ExtraHosts: []string{"cdn.example.com"},
			Options:      map[string]any{"organization": "org-1", "n": 2.5},
			SecretSealed: []byte{1, 2, 3}, KeyWeights: []int{3, 1}, CreatedAt: 1000,
		}
		b := Provider{ID: "prov_b", Name: "beta", Plugin: "demo", BaseURL: "http://127.0.0.1", AllowPrivateNetwork: true, CreatedAt: 900}
		for _, p := range []Provider{a, b} {
			if err := s.CreateProvider(ctx, p); err != nil {
				t.Fatalf("create %s: %v", p.Name, err)
			}
		}
		if err := s.CreateProvider(ctx, Provider{ID: "prov_c", Name: "alpha", Plugin: "x", BaseURL: "https://x", CreatedAt: 5}); !errors.Is(err, ErrProviderExists) {
			t.Fatalf("duplicate name: %v", err)
		}

		got, mark1, err := s.ListProviders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if mark1 == mark0 {
			t.Fatal("mark did not change after inserts")
		}
		// Oldest first; empty lists and options come back empty, not nil.
		wantB := b
		wantB.Models, wantB.ExtraHosts, wantB.Options, wantB.UpdatedAt = []string{}, []string{}, map[string]any{}, 900
		wantA := a
		wantA.UpdatedAt = 1000
		if !reflect.DeepEqual(got, []Provider{wantB, wantA}) {
			t.Fatalf("list:\n got %+v\nwant %+v", got, []Provider{wantB, wantA})
		}

		// An update within the same millisecond as the last still moves
		// updated_at, so pollers see it.
		upd, err := s.UpdateProvider(ctx, "alpha", 1000, func(p *Provider) error {
			p.Models = []string{"m3"}
			p.SecretSealed = nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if upd.UpdatedAt != 1001 || upd.CreatedAt != 1000 || upd.SecretSealed != nil {
			t.Fatalf("updated row: %+v", upd)
		}
		mark2, err := s.ProvidersMark(ctx)
		if err != nil || mark2 == mark1 {
			t.Fatalf("mark after update: %q (before %q) %v", mark2, mark1, err)
		}
		var sealed []byte
		if err := s.Reader().Get(&sealed, `SELECT secret_ciphertext FROM providers WHERE id = 'prov_a'`); err != nil || sealed != nil {
			t.Fatalf("removed secret stored as %v (%v), want NULL", sealed, err)
		}

		// change's error cancels the update.
		boom := errors.New("boom")
		if _, err := s.UpdateProvider(ctx, "alpha", 2000, func(p *Provider) error { p.Plugin = "zzz"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("update with failing change: %v", err)
		}
		if _, err := s.UpdateProvider(ctx, "nope", 2000, func(*Provider) error { return nil }); !errors.Is(err, ErrProviderNotFound) {
			t.Fatalf("update unknown: %v", err)
		}

		del, err := s.DeleteProvider(ctx, "beta")
		if err != nil || del.ID != "prov_b" {
			t.Fatalf("delete: %+v %v", del, err)
		}
		if _, err := s.DeleteProvider(ctx, "beta"); !errors.Is(err, ErrProviderNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		got, mark3, err := s.ListProviders(ctx)
		if err != nil || len(got) != 1 || got[0].Plugin != "openai" || !reflect.DeepEqual(got[0].Models, []string{"m3"}) {
			t.Fatalf("after delete: %+v %v", got, err)
		}
		if mark3 == mark2 {
			t.Fatal("mark did not change after delete")
		}
	})
}
