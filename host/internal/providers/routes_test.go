package providers_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// openWithRoutes is open with [[routes]] in the config.
func openWithRoutes(t *testing.T, path string, routes []config.RouteConfig) *fixture {
	t.Helper()
	st, err := store.Open(t.Context(), store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := mustKey(t, masterHex)
	f := &fixture{st: st, live: router.NewLive(router.New(nil, nil)), builds: &builds{secrets: map[string]string{}, count: map[string]int{}}, key: key}
	f.m, err = providers.Open(t.Context(), providers.Options{Store: st, Key: key, Live: f.live, Config: configProviders, Routes: routes, Build: f.builds.build})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func targets(rt *router.Route) []string {
	var out []string
	for _, t := range rt.Targets {
		out = append(out, t.Key)
	}
	return out
}

func TestRoutesLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	cfgRoutes := []config.RouteConfig{{Model: "smart", Targets: []config.RouteTarget{{Provider: "openai", Model: "gpt-4o"}}}}
	a := openWithRoutes(t, path, cfgRoutes)
	b := openWithRoutes(t, path, cfgRoutes)
	ctx := context.Background()

	info, err := a.m.CreateRoute(ctx, providers.RouteRequest{Model: "fast", Targets: []providers.RouteTarget{
		{Provider: "local", Model: "llama", Weight: 3}, {Provider: "openai", Model: "gpt-4o-mini"}}})
	if err != nil {
		t.Fatal(err)
	}
	if info.Source != providers.SourceDatabase || info.Strategy != "fallback" || info.Targets[1].Weight != 1 || info.CreatedAt == nil {
		t.Fatalf("created: %+v", info)
	}
	rt, ok := a.live.Load().Resolve("fast")
	if !ok || !rt.Configured || len(rt.Targets) != 2 || rt.Targets[0].Weight != 3 {
		t.Fatalf("not served at once: %+v", rt)
	}

	// The other process sees it after a refresh.
	if _, ok := b.live.Load().Resolve("fast"); ok {
		t.Fatal("seen before a refresh")
	}
	if err := b.m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rt, ok := b.live.Load().Resolve("fast"); !ok || len(rt.Targets) != 2 {
		t.Fatal("not seen after a refresh")
	}

	// Refusals, each naming its field.
	for _, c := range []struct {
		req   providers.RouteRequest
		field string
	}{
		{providers.RouteRequest{Model: "x", Targets: []providers.RouteTarget{{Provider: "nobody", Model: "m"}}}, "targets[0].provider"},
		{providers.RouteRequest{Model: "x", Strategy: "random", Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}}}, "strategy"},
		{providers.RouteRequest{Model: "x"}, "targets"},
		{providers.RouteRequest{Model: "x", Targets: make([]providers.RouteTarget, 65)}, "targets"},
		{providers.RouteRequest{Model: "", Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}}}, "model"},
		{providers.RouteRequest{Model: "x", Targets: []providers.RouteTarget{{Provider: "local", Model: "m", Weight: -1}}}, "targets[0].weight"},
		{providers.RouteRequest{Model: "x", MaxAttempts: 11, Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}}}, "max_attempts"},
		{providers.RouteRequest{Model: "x", Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}},
			ContextWindowFallback: &providers.RouteTarget{Provider: "gone", Model: "m"}}, "context_window_fallback.provider"},
	} {
		var inv *providers.InvalidError
		if _, err := a.m.CreateRoute(ctx, c.req); !errors.As(err, &inv) || inv.Problems[0].Key != c.field {
			t.Errorf("%+v: %v, want a problem with %s", c.req, err, c.field)
		}
	}
	if _, err := a.m.CreateRoute(ctx, providers.RouteRequest{Model: "fast", Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}}}); !errors.Is(err, providers.ErrRouteExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := a.m.CreateRoute(ctx, providers.RouteRequest{Model: "smart", Targets: []providers.RouteTarget{{Provider: "local", Model: "m"}}}); !errors.Is(err, providers.ErrRouteExists) {
		t.Errorf("a config route's model: %v", err)
	}
	if _, err := a.m.UpdateRoute(ctx, "smart", providers.RoutePatch{}); !errors.Is(err, providers.ErrRouteReadOnly) {
		t.Errorf("update of a config route: %v", err)
	}
	if _, err := a.m.DeleteRoute(ctx, "smart"); !errors.Is(err, providers.ErrRouteReadOnly) {
		t.Errorf("delete of a config route: %v", err)
	}

	// A patch: absent fields stay, null removes the fallback.
	var patch providers.RoutePatch
	if err := json.Unmarshal([]byte(`{"strategy":"weighted","context_window_fallback":{"provider":"openai","model":"gpt-4o"}}`), &patch); err != nil {
		t.Fatal(err)
	}
	info, err = a.m.UpdateRoute(ctx, "fast", patch)
	if err != nil || info.Strategy != "weighted" || len(info.Targets) != 2 || info.ContextWindowFallback == nil {
		t.Fatalf("patch: %+v %v", info, err)
	}
	if rt, _ := a.live.Load().Resolve("fast"); rt.Strategy != router.Weighted || rt.ContextFallback == nil {
		t.Fatalf("patched route not served: %+v", rt)
	}
	patch = providers.RoutePatch{}
	if err := json.Unmarshal([]byte(`{"context_window_fallback":null,"targets":[{"provider":"openai","model":"gpt-4o-mini"}]}`), &patch); err != nil {
		t.Fatal(err)
	}
	if info, err = a.m.UpdateRoute(ctx, "fast", patch); err != nil || info.ContextWindowFallback != nil || info.Strategy != "weighted" || len(info.Targets) != 1 {
		t.Fatalf("patch with null: %+v %v", info, err)
	}
	bad := "other"
	var inv *providers.InvalidError
	if _, err := a.m.UpdateRoute(ctx, "fast", providers.RoutePatch{Model: &bad}); !errors.As(err, &inv) || inv.Problems[0].Key != "model" {
		t.Errorf("rename: %v", err)
	}
	if _, err := a.m.UpdateRoute(ctx, "fast", providers.RoutePatch{Targets: &[]providers.RouteTarget{}}); !errors.As(err, &inv) || inv.Problems[0].Key != "targets" {
		t.Errorf("no targets: %v", err)
	}

	// A target whose provider is deleted is left out of the route.
	if _, err := a.m.Create(ctx, providers.CreateRequest{Name: "extra", Plugin: "openai", BaseURL: "https://extra.example/v1", Models: []string{"e"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.UpdateRoute(ctx, "fast", providers.RoutePatch{Targets: &[]providers.RouteTarget{{Provider: "extra", Model: "e"}, {Provider: "local", Model: "llama"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.Delete(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if rt, _ := a.live.Load().Resolve("fast"); len(rt.Targets) != 1 || targets(rt)[0] != "local/llama" {
		t.Fatalf("after its provider went: %v", targets(rt))
	}

	// The list: config routes first.
	list := a.m.ListRoutes()
	if len(list) != 2 || list[0].Model != "smart" || list[0].Source != providers.SourceConfig || list[1].Model != "fast" {
		t.Fatalf("list: %+v", list)
	}

	if _, err := a.m.DeleteRoute(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.live.Load().Resolve("fast"); ok {
		t.Fatal("still served after delete")
	}
	if _, err := a.m.GetRoute("fast"); !errors.Is(err, providers.ErrRouteNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := b.m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.live.Load().Resolve("fast"); ok {
		t.Fatal("deletion not seen after a refresh")
	}
}

// TestRouteHiddenByConfig: a database route whose model a config route
// takes (added to the file later) is listed with the reason and not
// served.
func TestRouteHiddenByConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	a := openWithRoutes(t, path, nil)
	if _, err := a.m.CreateRoute(context.Background(), providers.RouteRequest{Model: "smart", Targets: []providers.RouteTarget{{Provider: "local", Model: "llama"}}}); err != nil {
		t.Fatal(err)
	}
	b := openWithRoutes(t, path, []config.RouteConfig{{Model: "smart", Targets: []config.RouteTarget{{Provider: "openai", Model: "gpt-4o"}}}})
	list := b.m.ListRoutes()
	if len(list) != 2 || list[1].Source != providers.SourceDatabase || list[1].Error == "" || list[0].Error != "" {
		t.Fatalf("list: %+v", list)
	}
	if rt, _ := b.live.Load().Resolve("smart"); targets(rt)[0] != "openai/gpt-4o" {
		t.Fatalf("served: %v", targets(rt))
	}
	if got, err := b.m.GetRoute("smart"); err != nil || got.Source != providers.SourceConfig {
		t.Fatalf("get: %+v %v", got, err)
	}
}
