package providers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Errors of the route calls.
var (
	// ErrRouteNotFound: no route has that model name.
	ErrRouteNotFound = errors.New("no such route")
	// ErrRouteExists: a route for that model name exists.
	ErrRouteExists = errors.New("route exists")
	// ErrRouteReadOnly: the route is defined in the config file.
	ErrRouteReadOnly = errors.New("route defined in the config file")
)

// RouteTarget is a provider and the model name sent to it.
type RouteTarget struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// Weight is the target's share under the weighted strategy; 0 in a
	// request means 1.
	Weight int `json:"weight"`
}

// RouteInfo is a route as the admin API shows it.
type RouteInfo struct {
	Model    string        `json:"model"`
	Source   string        `json:"source"`
	Strategy string        `json:"strategy"`
	Targets  []RouteTarget `json:"targets"`
	// MaxAttempts is the route's own limit; 0 takes [routing] max_attempts.
	MaxAttempts           int          `json:"max_attempts"`
	ContextWindowFallback *RouteTarget `json:"context_window_fallback"`
	// CreatedAt and UpdatedAt are set for database routes.
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Error says why a database route is not served (a config route has
	// its model name); empty when it is.
	Error string `json:"error,omitempty"`
}

// RouteRequest defines a new database route. An empty strategy is
// "fallback".
type RouteRequest struct {
	Model                 string        `json:"model"`
	Strategy              string        `json:"strategy"`
	Targets               []RouteTarget `json:"targets"`
	MaxAttempts           int           `json:"max_attempts"`
	ContextWindowFallback *RouteTarget  `json:"context_window_fallback"`
}

// RoutePatch changes a database route: absent fields stay as they are.
// Model, when given, must be the route's own.
type RoutePatch struct {
	Model       *string        `json:"model"`
	Strategy    *string        `json:"strategy"`
	Targets     *[]RouteTarget `json:"targets"`
	MaxAttempts *int           `json:"max_attempts"`
	// ContextWindowFallback is set by a target and removed by null.
	ContextWindowFallback OptionalTarget `json:"context_window_fallback"`
}

// OptionalTarget is a JSON field that may be absent (Set false), null
// (Set, Target nil) or a target.
type OptionalTarget struct {
	Set    bool
	Target *RouteTarget
}

// UnmarshalJSON is called only when the field is present, null included.
func (o *OptionalTarget) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		o.Target = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	o.Target = new(RouteTarget)
	return dec.Decode(o.Target)
}

// ListRoutes returns every route: the config ones in file order, then the
// database ones, oldest first.
func (m *Manager) ListRoutes() []RouteInfo {
	st := m.state.Load()
	out := make([]RouteInfo, 0, len(m.o.Routes)+len(st.routes))
	for _, rc := range m.o.Routes {
		out = append(out, configRouteInfo(rc))
	}
	for _, r := range st.routes {
		out = append(out, m.dbRouteInfo(r))
	}
	return out
}

// GetRoute returns the route for model; a config route hides a database
// route of the same model.
func (m *Manager) GetRoute(model string) (RouteInfo, error) {
	for _, rc := range m.o.Routes {
		if rc.Model == model {
			return configRouteInfo(rc), nil
		}
	}
	for _, r := range m.state.Load().routes {
		if r.Model == model {
			return m.dbRouteInfo(r), nil
		}
	}
	return RouteInfo{}, ErrRouteNotFound
}

// CreateRoute stores a new database route and serves it from the next
// request on. Every target must name a provider that exists.
func (m *Manager) CreateRoute(ctx context.Context, req RouteRequest) (RouteInfo, error) {
	row := store.Route{ID: newRouteID(), Model: req.Model, Strategy: req.Strategy, Targets: storeTargets(req.Targets),
		MaxAttempts: req.MaxAttempts, CreatedAt: m.o.Now().UnixMilli()}
	if req.ContextWindowFallback != nil {
		f := storeTarget(*req.ContextWindowFallback)
		row.ContextWindowFallback = &f
	}
	if row.Strategy == "" {
		row.Strategy = router.Strategies[router.Fallback]
	}
	if err := m.checkRoute(row); err != nil {
		return RouteInfo{}, err
	}
	if m.configRoute(req.Model) {
		return RouteInfo{}, fmt.Errorf("%w: the config file defines a route for %q", ErrRouteExists, req.Model)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch err := m.o.Store.CreateRoute(ctx, row); {
	case errors.Is(err, store.ErrRouteExists):
		return RouteInfo{}, fmt.Errorf("%w: a route for %q exists", ErrRouteExists, req.Model)
	case err != nil:
		return RouteInfo{}, err
	}
	return m.reloadAndGetRoute(ctx, row.Model)
}

// UpdateRoute changes a database route; the next request uses the change.
func (m *Manager) UpdateRoute(ctx context.Context, model string, p RoutePatch) (RouteInfo, error) {
	if m.configRoute(model) {
		return RouteInfo{}, ErrRouteReadOnly
	}
	if p.Model != nil && *p.Model != model {
		return RouteInfo{}, invalidRoute("model", "a route cannot be renamed; create one with the new model name and delete this one")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.o.Store.UpdateRoute(ctx, model, m.o.Now().UnixMilli(), func(row *store.Route) error {
		if p.Strategy != nil {
			row.Strategy = *p.Strategy
			if row.Strategy == "" {
				row.Strategy = router.Strategies[router.Fallback]
			}
		}
		if p.Targets != nil {
			row.Targets = storeTargets(*p.Targets)
		}
		if p.MaxAttempts != nil {
			row.MaxAttempts = *p.MaxAttempts
		}
		if p.ContextWindowFallback.Set {
			row.ContextWindowFallback = nil
			if t := p.ContextWindowFallback.Target; t != nil {
				f := storeTarget(*t)
				row.ContextWindowFallback = &f
			}
		}
		return m.checkRoute(*row)
	})
	if errors.Is(err, store.ErrRouteNotFound) {
		return RouteInfo{}, ErrRouteNotFound
	}
	if err != nil {
		return RouteInfo{}, err
	}
	return m.reloadAndGetRoute(ctx, model)
}

// DeleteRoute removes a database route and returns it as it was. Its
// model name stops being served at once, unless a provider lists it.
func (m *Manager) DeleteRoute(ctx context.Context, model string) (RouteInfo, error) {
	if m.configRoute(model) {
		return RouteInfo{}, ErrRouteReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	row, err := m.o.Store.DeleteRoute(ctx, model)
	if errors.Is(err, store.ErrRouteNotFound) {
		return RouteInfo{}, ErrRouteNotFound
	}
	if err != nil {
		return RouteInfo{}, err
	}
	info := m.dbRouteInfo(row)
	info.Error = ""
	if err := m.reload(ctx); err != nil {
		return RouteInfo{}, err
	}
	return info, nil
}

func invalidRoute(field, format string, args ...any) *InvalidError {
	e := invalid(field, format, args...)
	e.Route = true
	return e
}

func (m *Manager) configRoute(model string) bool {
	return slices.ContainsFunc(m.o.Routes, func(rc config.RouteConfig) bool { return rc.Model == model })
}

// checkRoute validates a route by the config file's rules, and checks
// that each target names a provider that exists now (one deleted later
// only leaves its targets out of the route).
func (m *Manager) checkRoute(row store.Route) error {
	if ps := config.ValidateRoute(routeConfigOf(row)); ps != nil {
		return &InvalidError{Problems: ps, Route: true}
	}
	known := map[string]bool{}
	for _, p := range m.List() {
		known[p.Name] = true
	}
	for i, t := range row.Targets {
		if !known[t.Provider] {
			return invalidRoute(fmt.Sprintf("targets[%d].provider", i), "no provider is called %q", t.Provider)
		}
	}
	if f := row.ContextWindowFallback; f != nil && !known[f.Provider] {
		return invalidRoute("context_window_fallback.provider", "no provider is called %q", f.Provider)
	}
	return nil
}

func (m *Manager) reloadAndGetRoute(ctx context.Context, model string) (RouteInfo, error) {
	if err := m.reload(ctx); err != nil {
		return RouteInfo{}, err
	}
	for _, r := range m.state.Load().routes {
		if r.Model == model {
			return m.dbRouteInfo(r), nil
		}
	}
	return RouteInfo{}, ErrRouteNotFound // deleted by another process in between
}

// routeSpecs lists the routes the router is built with: the config ones,
// then the database ones whose model no config route takes.
func (m *Manager) routeSpecs(db []store.Route) []router.RouteSpec {
	out := make([]router.RouteSpec, 0, len(m.o.Routes)+len(db))
	for _, rc := range m.o.Routes {
		out = append(out, specOf(rc))
	}
	for _, r := range db {
		if !m.configRoute(r.Model) {
			out = append(out, specOf(routeConfigOf(r)))
		}
	}
	return out
}

// specOf turns a validated route into the router's terms.
func specOf(rc config.RouteConfig) router.RouteSpec {
	strategy, _ := router.ParseStrategy(rc.Strategy)
	spec := router.RouteSpec{Model: rc.Model, Strategy: strategy, MaxAttempts: rc.MaxAttempts}
	for _, t := range rc.Targets {
		spec.Targets = append(spec.Targets, router.TargetSpec{Provider: t.Provider, Model: t.Model, Weight: t.Weight})
	}
	if f := rc.ContextWindowFallback; f != nil {
		spec.ContextWindowFallback = &router.TargetSpec{Provider: f.Provider, Model: f.Model}
	}
	return spec
}

func routeConfigOf(r store.Route) config.RouteConfig {
	rc := config.RouteConfig{Model: r.Model, Strategy: r.Strategy, MaxAttempts: r.MaxAttempts}
	for _, t := range r.Targets {
		rc.Targets = append(rc.Targets, config.RouteTarget{Provider: t.Provider, Model: t.Model, Weight: t.Weight})
	}
	if f := r.ContextWindowFallback; f != nil {
		rc.ContextWindowFallback = &config.RouteTarget{Provider: f.Provider, Model: f.Model}
	}
	return rc
}

func configRouteInfo(rc config.RouteConfig) RouteInfo {
	strategy, _ := router.ParseStrategy(rc.Strategy)
	info := RouteInfo{Model: rc.Model, Source: SourceConfig, Strategy: strategy.String(), MaxAttempts: rc.MaxAttempts,
		Targets: make([]RouteTarget, len(rc.Targets))}
	for i, t := range rc.Targets {
		info.Targets[i] = RouteTarget{Provider: t.Provider, Model: t.Model, Weight: max(t.Weight, 1)}
	}
	if f := rc.ContextWindowFallback; f != nil {
		info.ContextWindowFallback = &RouteTarget{Provider: f.Provider, Model: f.Model, Weight: 1}
	}
	return info
}

func (m *Manager) dbRouteInfo(r store.Route) RouteInfo {
	info := configRouteInfo(routeConfigOf(r))
	info.Source = SourceDatabase
	created, updated := time.UnixMilli(r.CreatedAt).UTC(), time.UnixMilli(r.UpdatedAt).UTC()
	info.CreatedAt, info.UpdatedAt = &created, &updated
	if m.configRoute(r.Model) {
		info.Error = "not served: the config file defines a route for this model, which takes precedence"
	}
	return info
}

func storeTarget(t RouteTarget) store.RouteTarget {
	return store.RouteTarget{Provider: t.Provider, Model: t.Model, Weight: t.Weight}
}

func storeTargets(ts []RouteTarget) []store.RouteTarget {
	out := make([]store.RouteTarget, len(ts))
	for i, t := range ts {
		out[i] = storeTarget(t)
	}
	return out
}

func newRouteID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "route_" + hex.EncodeToString(b[:])
}
