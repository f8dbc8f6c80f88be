package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestRoutesCRUD(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, s *Store) {
		ctx := context.Background()

		_, mark0, err := s.ListRoutes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a := Route{ID: "route_a", Model: "smart", Strategy: "weighted", MaxAttempts: 2, CreatedAt: 1000,
			Targets:               []RouteTarget{{Provider: "p1", Model: "m1", Weight: 3}, {Provider: "p2", Model: "m2"}},
			ContextWindowFallback: &RouteTarget{Provider: "p3", Model: "long"}}
		b := Route{ID: "route_b", Model: "cheap", Strategy: "fallback", Targets: []RouteTarget{{Provider: "p1", Model: "mini"}}, CreatedAt: 900}
		for _, r := range []Route{a, b} {
			if err := s.CreateRoute(ctx, r); err != nil {
				t.Fatalf("create %s: %v", r.Model, err)
			}
		}
		if err := s.CreateRoute(ctx, Route{ID: "route_c", Model: "smart", Strategy: "fallback", CreatedAt: 5}); !errors.Is(err, ErrRouteExists) {
			t.Fatalf("duplicate model: %v", err)
		}
		got, mark1, err := s.ListRoutes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if mark1 == mark0 {
			t.Fatal("mark did not change after inserts")
		}
		wantA, wantB := a, b
		wantA.UpdatedAt, wantB.UpdatedAt = 1000, 900
		if !reflect.DeepEqual(got, []Route{wantB, wantA}) {
			t.Fatalf("list:\n got %+v\nwant %+v", got, []Route{wantB, wantA})
		}

		upd, err := s.UpdateRoute(ctx, "smart", 1000, func(r *Route) error {
			r.Strategy = "fallback"
			r.ContextWindowFallback = nil
			r.Targets = r.Targets[:1]
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if upd.UpdatedAt != 1001 || upd.ContextWindowFallback != nil || len(upd.Targets) != 1 {
			t.Fatalf("update: %+v", upd)
		}
		mark2, err := s.RoutesMark(ctx)
		if err != nil || mark2 == mark1 {
			t.Fatalf("mark after update: %q (before %q), %v", mark2, mark1, err)
		}
		refused := errors.New("refused")
		if _, err := s.UpdateRoute(ctx, "smart", 2000, func(*Route) error { return refused }); !errors.Is(err, refused) {
			t.Fatalf("refused update: %v", err)
		}
		if _, err := s.UpdateRoute(ctx, "nope", 2000, func(*Route) error { return nil }); !errors.Is(err, ErrRouteNotFound) {
			t.Fatalf("update of a missing route: %v", err)
		}

		del, err := s.DeleteRoute(ctx, "cheap")
		if err != nil || del.ID != "route_b" {
			t.Fatalf("delete: %+v, %v", del, err)
		}
		if _, err := s.DeleteRoute(ctx, "cheap"); !errors.Is(err, ErrRouteNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		got, mark3, err := s.ListRoutes(ctx)
		if err != nil || len(got) != 1 || got[0].Model != "smart" || got[0].Strategy != "fallback" || mark3 == mark2 {
			t.Fatalf("after delete: %+v, mark %q, %v", got, mark3, err)
		}
	})
}
