package server

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

// providerView is a provider as GET /api/providers shows it: its
// definition and the health of each of its targets that has served.
type providerView struct {
	providers.Info
	Health []router.TargetHealth `json:"health"`
	// KeyStates follows APIKeys, for a served provider.
	KeyStates []router.KeyState `json:"key_states"`
}

func (s *Server) listProviders(c *fiber.Ctx) error {
	list := s.opts.Providers.List()
	health := s.opts.Health.Snapshot()
	served := map[string]*router.Provider{}
	for _, p := range s.opts.Router.Load().Providers() {
		served[p.Name] = p
	}
	out := make([]providerView, len(list))
	for i, p := range list {
		out[i] = providerView{Info: p, Health: []router.TargetHealth{}, KeyStates: []router.KeyState{}}
		if rp := served[p.Name]; rp != nil {
			if ks, ok := rp.Egress.(router.KeyStater); ok {
				out[i].KeyStates = ks.KeyStates()
			}
		}
		for _, h := range health {
			if strings.HasPrefix(h.Target, p.Name+"/") {
				out[i].Health = append(out[i].Health, h)
			}
		}
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}

// routeView is a configured route as GET /api/routes shows it.
type routeView struct {
	Model                 string       `json:"model"`
	Strategy              string       `json:"strategy"`
	MaxAttempts           int          `json:"max_attempts"`
	Targets               []targetView `json:"targets"`
	ContextWindowFallback *targetView  `json:"context_window_fallback"`
}

type targetView struct {
	Provider string              `json:"provider"`
	Model    string              `json:"model"`
	Weight   int                 `json:"weight"`
	Health   router.TargetHealth `json:"health"`
}

func (s *Server) listRoutes(c *fiber.Ctx) error {
	health := map[string]router.TargetHealth{}
	for _, h := range s.opts.Health.Snapshot() {
		health[h.Target] = h
	}
	view := func(t *router.Target) targetView {
		h, ok := health[t.Key]
		if !ok {
			h = router.TargetHealth{Target: t.Key, State: router.Closed.String()}
		}
		return targetView{Provider: t.Provider.Name, Model: t.Model, Weight: t.Weight, Health: h}
	}
	out := []routeView{}
	for _, rt := range s.opts.Router.Load().Routes() {
		v := routeView{Model: rt.Model, Strategy: rt.Strategy.String(), MaxAttempts: rt.MaxAttempts, Targets: []targetView{}}
		if v.MaxAttempts == 0 {
			v.MaxAttempts = max(s.opts.Routing.MaxAttempts, 1)
		}
		for i := range rt.Targets {
			v.Targets = append(v.Targets, view(&rt.Targets[i]))
		}
		if rt.ContextFallback != nil {
			f := view(rt.ContextFallback)
			v.ContextWindowFallback = &f
		}
		out = append(out, v)
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}
