// Package router maps the model a client asks for to a route: the
// targets (provider and upstream model) that may serve it and the strategy
// that orders them for each request.
//
// A model is matched, in order: against the configured routes by name;
// exactly against every provider's model list (the first provider listing
// it wins), as a route of one target; then as "<provider>/<model>", which
// sends any model name to that provider. Nothing else matches: the server
// answers 404 model_not_found.
//
// Plan, which orders a route's targets, is a pure function of the route,
// the targets' health and a random seed; Health keeps the health (circuit
// breakers and latency) across requests and router rebuilds.
package router

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// Provider is a configured provider as the request path needs it.
type Provider struct {
	Name   string
	Plugin string
	Models []string
	// Egress sends the provider's upstream requests with its credentials.
	Egress plugin.Doer
	// GuestConfig is the JSON the plugin reads with config_read:
	// {"provider":..., "base_url":..., "options":{...}}. No secret.
	GuestConfig []byte
	// Quota limits the provider's use upstream, over all clients.
	Quota Quota
}

// Quota is a provider's limits: requests and tokens per minute, requests
// at once; 0 is none.
type Quota struct {
	RPM, TPM, MaxParallel int
}

// KeyState is one of a provider's upstream keys as the admin API shows
// it: its weight, requests sent with it, answers that refused it (429, 401, 403), and
// until when it rests after the last of those.
type KeyState struct {
	Weight       int        `json:"weight"`
	Requests     int64      `json:"requests"`
	Refused      int64      `json:"refused"`
	RestingUntil *time.Time `json:"resting_until,omitempty"`
}

// KeyStater is an Egress that spreads requests over several keys.
type KeyStater interface {
	KeyStates() []KeyState
}

// Target is one way to serve a route: a provider and the model name it is
// sent.
type Target struct {
	Provider *Provider
	Model    string
	Weight   int
	// Key names the target in Health: "provider/model".
	Key string
}

func newTarget(p *Provider, model string, weight int) Target {
	return Target{Provider: p, Model: model, Weight: max(weight, 1), Key: p.Name + "/" + model}
}

// Route is what a public model name resolves to.
type Route struct {
	Model    string
	Strategy Strategy
	// Targets are the route's served targets; a target whose provider is
	// not served (deleted, or failing to build) is left out, so this may
	// be empty.
	Targets []Target
	// MaxAttempts bounds the attempts of one request over all targets;
	// 0 means the server's default.
	MaxAttempts int
	// ContextFallback, when set, serves a request that a target refused
	// because its prompt exceeds the model's context window.
	ContextFallback *Target
	// Configured is true for a route of the [[routes]] table, false for
	// a provider's own model.
	Configured bool
}

// TargetSpec names a target in a RouteSpec.
type TargetSpec struct {
	Provider string
	Model    string
	Weight   int
}

// RouteSpec is a route as configured.
type RouteSpec struct {
	Model                 string
	Strategy              Strategy
	Targets               []TargetSpec
	MaxAttempts           int
	ContextWindowFallback *TargetSpec
}

// Router resolves models. It is immutable; build a new one to change it.
type Router struct {
	providers []*Provider
	byName    map[string]*Provider
	routes    map[string]*Route
	// configured lists the configured routes in their order.
	configured []*Route
}

// New builds a router over providers, in priority order, and routes.
func New(providers []*Provider, routes []RouteSpec) *Router {
	r := &Router{providers: providers, byName: map[string]*Provider{}, routes: map[string]*Route{}}
	for _, p := range providers {
		if _, dup := r.byName[p.Name]; !dup {
			r.byName[p.Name] = p
		}
	}
	for _, spec := range routes {
		if _, dup := r.routes[spec.Model]; dup {
			continue
		}
		rt := &Route{Model: spec.Model, Strategy: spec.Strategy, MaxAttempts: spec.MaxAttempts, Configured: true}
		for _, ts := range spec.Targets {
			if p := r.byName[ts.Provider]; p != nil {
				rt.Targets = append(rt.Targets, newTarget(p, ts.Model, ts.Weight))
			}
		}
		if f := spec.ContextWindowFallback; f != nil {
			if p := r.byName[f.Provider]; p != nil {
				t := newTarget(p, f.Model, 1)
				rt.ContextFallback = &t
			}
		}
		r.routes[spec.Model] = rt
		r.configured = append(r.configured, rt)
	}
	for _, p := range providers {
		for _, m := range p.Models {
			if _, taken := r.routes[m]; !taken {
				r.routes[m] = &Route{Model: m, Targets: []Target{newTarget(p, m, 1)}}
			}
		}
	}
	return r
}

// Resolve returns the route for model.
func (r *Router) Resolve(model string) (*Route, bool) {
	if rt, ok := r.routes[model]; ok {
		return rt, true
	}
	if name, rest, ok := strings.Cut(model, "/"); ok && rest != "" {
		if p, ok := r.byName[name]; ok {
			t := newTarget(p, rest, 1)
			if !slices.Contains(p.Models, rest) {
				// Any name goes: health is kept per provider, so that
				// clients cannot grow Health without bound.
				t.Key = p.Name + "/*"
			}
			return &Route{Model: model, Targets: []Target{t}}, true
		}
	}
	return nil, false
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Created  int64  `json:"created"`
	OwnedBy  string `json:"owned_by"`
	Provider string `json:"-"`
}

// Models lists every model a client may ask for: the configured routes,
// each provider's plain model names (when that provider is the one they
// route to), then the provider-prefixed names.
func (r *Router) Models() []Model {
	var out []Model
	for _, rt := range r.configured {
		out = append(out, Model{ID: rt.Model, Object: "model", OwnedBy: "llm-proxy"})
	}
	for _, p := range r.providers {
		for _, m := range p.Models {
			if rt := r.routes[m]; !rt.Configured && rt.Targets[0].Provider == p {
				out = append(out, Model{ID: m, Object: "model", OwnedBy: p.Name, Provider: p.Name})
			}
		}
	}
	for _, p := range r.providers {
		if r.byName[p.Name] != p {
			continue
		}
		for _, m := range p.Models {
			out = append(out, Model{ID: p.Name + "/" + m, Object: "model", OwnedBy: p.Name, Provider: p.Name})
		}
	}
	return out
}

// Providers returns the providers in priority order.
func (r *Router) Providers() []*Provider { return r.providers }

// Routes returns the configured routes in their order.
func (r *Router) Routes() []*Route { return r.configured }

// Live holds the current Router and lets it be replaced while requests
// are being served: a request resolves against whichever Router was
// current when it asked, and a swap never blocks a request.
type Live struct{ cur atomic.Pointer[Router] }

// NewLive starts a Live holder with r.
func NewLive(r *Router) *Live {
	l := &Live{}
	l.cur.Store(r)
	return l
}

// Load returns the current Router.
func (l *Live) Load() *Router { return l.cur.Load() }

// Store makes r the current Router.
func (l *Live) Store(r *Router) { l.cur.Store(r) }
