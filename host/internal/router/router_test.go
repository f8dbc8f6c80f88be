package router_test

import (
	"reflect"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

// testRouter has, in priority order:
//
//	openai:   gpt-4o-mini, gpt-4o, shared
//	together: meta-llama/Llama-3, shared, gpt-4o
//	meta-llama: llama-local
//	empty:    (no models)
func testRouter() (*router.Router, map[string]*router.Provider) {
	ps := []*router.Provider{
		{Name: "openai", Plugin: "openai", Models: []string{"gpt-4o-mini", "gpt-4o", "shared"}},
		{Name: "together", Plugin: "openai", Models: []string{"meta-llama/Llama-3", "shared", "gpt-4o"}},
		{Name: "meta-llama", Plugin: "demo", Models: []string{"llama-local"}},
		{Name: "empty", Plugin: "demo"},
	}
	byName := map[string]*router.Provider{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	return router.New(ps, nil), byName
}

func TestResolve(t *testing.T) {
	t.Parallel()
	r, p := testRouter()
	tests := []struct {
		name         string
		model        string
		wantProvider string // "" means no match
		wantModel    string
	}{
		{name: "exact in first provider", model: "gpt-4o-mini", wantProvider: "openai", wantModel: "gpt-4o-mini"},
		{name: "exact in second provider", model: "meta-llama/Llama-3", wantProvider: "together", wantModel: "meta-llama/Llama-3"},
		{name: "duplicate goes to first provider", model: "shared", wantProvider: "openai", wantModel: "shared"},
		{name: "duplicate listed in other order", model: "gpt-4o", wantProvider: "openai", wantModel: "gpt-4o"},
		{name: "exact model with slash beats provider prefix", model: "meta-llama/Llama-3", wantProvider: "together", wantModel: "meta-llama/Llama-3"},
		{name: "prefix of listed model", model: "openai/gpt-4o", wantProvider: "openai", wantModel: "gpt-4o"},
		{name: "prefix selects lower-priority provider", model: "together/shared", wantProvider: "together", wantModel: "shared"},
		{name: "prefix with unlisted model", model: "openai/gpt-5-preview", wantProvider: "openai", wantModel: "gpt-5-preview"},
		{name: "prefix on provider without models", model: "empty/anything", wantProvider: "empty", wantModel: "anything"},
		{name: "prefix keeps slashes in the rest", model: "together/meta-llama/Llama-3", wantProvider: "together", wantModel: "meta-llama/Llama-3"},
		{name: "provider named like a model prefix", model: "meta-llama/Llama-3-70b", wantProvider: "meta-llama", wantModel: "Llama-3-70b"},

		{name: "unknown model", model: "claude-3"},
		{name: "empty model", model: ""},
		{name: "unknown provider prefix", model: "anthropic/claude-3"},
		{name: "prefix without model", model: "openai/"},
		{name: "slash only", model: "/"},
		{name: "leading slash", model: "/gpt-4o"},
		{name: "case sensitive model", model: "GPT-4o"},
		{name: "case sensitive provider", model: "OpenAI/gpt-4o"},
		{name: "provider name alone", model: "openai"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, model, ok := resolve(r, tt.model)
			if tt.wantProvider == "" {
				if ok || got != nil || model != "" {
					t.Fatalf("Resolve(%q) = %v, %q, %v; want no match", tt.model, got, model, ok)
				}
				return
			}
			if !ok {
				t.Fatalf("Resolve(%q) found nothing, want %s", tt.model, tt.wantProvider)
			}
			if got != p[tt.wantProvider] || model != tt.wantModel {
				t.Fatalf("Resolve(%q) = %s, %q; want %s, %q", tt.model, got.Name, model, tt.wantProvider, tt.wantModel)
			}
		})
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	r, _ := testRouter()
	type entry struct{ ID, OwnedBy, Provider string }
	want := []entry{
		// Plain ids, only from the provider each one routes to.
		{"gpt-4o-mini", "openai", "openai"},
		{"gpt-4o", "openai", "openai"},
		{"shared", "openai", "openai"},
		{"meta-llama/Llama-3", "together", "together"},
		{"llama-local", "meta-llama", "meta-llama"},
		// Prefixed ids, for every listing.
		{"openai/gpt-4o-mini", "openai", "openai"},
		{"openai/gpt-4o", "openai", "openai"},
		{"openai/shared", "openai", "openai"},
		{"together/meta-llama/Llama-3", "together", "together"},
		{"together/shared", "together", "together"},
		{"together/gpt-4o", "together", "together"},
		{"meta-llama/llama-local", "meta-llama", "meta-llama"},
	}
	models := r.Models()
	var got []entry
	for _, m := range models {
		if m.Object != "model" {
			t.Errorf("model %s has object %q, want \"model\"", m.ID, m.Object)
		}
		got = append(got, entry{m.ID, m.OwnedBy, m.Provider})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Models()\n got %v\nwant %v", got, want)
	}

	// Every listed id routes to the provider that lists it.
	for _, m := range models {
		p, _, ok := resolve(r, m.ID)
		if !ok || p.Name != m.Provider {
			t.Errorf("Resolve(%q) = %v, %v; Models() says it belongs to %s", m.ID, p, ok, m.Provider)
		}
	}
}

func TestEmptyRouter(t *testing.T) {
	t.Parallel()
	for _, r := range []*router.Router{router.New(nil, nil), router.New([]*router.Provider{}, nil)} {
		if got := r.Models(); len(got) != 0 {
			t.Errorf("Models() = %v, want none", got)
		}
		if p, m, ok := resolve(r, "x/y"); ok || p != nil || m != "" {
			t.Errorf("Resolve on an empty router = %v, %q, %v", p, m, ok)
		}
		if n := len(r.Providers()); n != 0 {
			t.Errorf("Providers() has %d entries", n)
		}
	}
}

func TestProvidersKeepsOrder(t *testing.T) {
	t.Parallel()
	r, p := testRouter()
	got := r.Providers()
	want := []*router.Provider{p["openai"], p["together"], p["meta-llama"], p["empty"]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Providers() order differs")
	}
}

// resolve is Resolve for a route of one target: its provider and model.
func resolve(r *router.Router, model string) (*router.Provider, string, bool) {
	rt, ok := r.Resolve(model)
	if !ok {
		return nil, "", false
	}
	if len(rt.Targets) != 1 {
		panic("resolve: a route of several targets")
	}
	return rt.Targets[0].Provider, rt.Targets[0].Model, true
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	_, p := testRouter()
	ps := []*router.Provider{p["openai"], p["together"]}
	r := router.New(ps, []router.RouteSpec{
		{Model: "smart", Strategy: router.Weighted, MaxAttempts: 2, Targets: []router.TargetSpec{
			{Provider: "openai", Model: "gpt-4o", Weight: 3},
			{Provider: "gone", Model: "x"}, // not served: left out
			{Provider: "together", Model: "meta-llama/Llama-3"},
		}, ContextWindowFallback: &router.TargetSpec{Provider: "together", Model: "big"}},
		{Model: "gpt-4o-mini", Targets: []router.TargetSpec{{Provider: "together", Model: "gpt-4o"}}}, // a route shadows a provider's model
		{Model: "orphan", Targets: []router.TargetSpec{{Provider: "gone", Model: "x"}}},
		{Model: "smart", Targets: []router.TargetSpec{{Provider: "openai", Model: "dup"}}}, // the first of a name wins
	})
	rt, ok := r.Resolve("smart")
	if !ok || !rt.Configured || rt.Strategy != router.Weighted || rt.MaxAttempts != 2 || len(rt.Targets) != 2 {
		t.Fatalf("smart = %+v, %v", rt, ok)
	}
	if rt.Targets[0].Key != "openai/gpt-4o" || rt.Targets[0].Weight != 3 || rt.Targets[1].Key != "together/meta-llama/Llama-3" || rt.Targets[1].Weight != 1 {
		t.Errorf("smart targets %+v", rt.Targets)
	}
	if f := rt.ContextFallback; f == nil || f.Key != "together/big" {
		t.Errorf("context fallback %+v", f)
	}
	if rt, _ := r.Resolve("gpt-4o-mini"); rt.Targets[0].Provider != p["together"] {
		t.Errorf("the route should shadow openai's gpt-4o-mini")
	}
	if rt, ok := r.Resolve("orphan"); !ok || len(rt.Targets) != 0 {
		t.Errorf("orphan = %+v, %v; want a route with no targets", rt, ok)
	}
	if rt, _ := r.Resolve("openai/anything-at-all"); rt.Targets[0].Key != "openai/*" {
		t.Errorf("an unlisted model through the prefix keeps health per provider, got %q", rt.Targets[0].Key)
	}
	if rt, _ := r.Resolve("openai/gpt-4o"); rt.Targets[0].Key != "openai/gpt-4o" {
		t.Errorf("a listed model through the prefix: key %q", rt.Targets[0].Key)
	}
	var ids []string
	for _, m := range r.Models() {
		ids = append(ids, m.ID)
	}
	want := []string{"smart", "gpt-4o-mini", "orphan", "gpt-4o", "shared", "meta-llama/Llama-3",
		"openai/gpt-4o-mini", "openai/gpt-4o", "openai/shared", "together/meta-llama/Llama-3", "together/shared", "together/gpt-4o"}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("Models() = %v\nwant %v", ids, want)
	}
}
