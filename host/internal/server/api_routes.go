package server

import (
	"context"
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
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

// Routes is what the server needs of the route manager.
type Routes interface {
	ListRoutes() []providers.RouteInfo
	GetRoute(model string) (providers.RouteInfo, error)
	CreateRoute(ctx context.Context, req providers.RouteRequest) (providers.RouteInfo, error)
	UpdateRoute(ctx context.Context, model string, p providers.RoutePatch) (providers.RouteInfo, error)
	DeleteRoute(ctx context.Context, model string) (providers.RouteInfo, error)
}

func (s *Server) routeRoutes(api fiber.Router) {
	api.Get("/routes", s.listRoutes)
	api.Post("/routes", s.createRoute)
	// A model name may hold slashes: the rest of the path is the name.
	api.Get("/routes/+", s.getRoute)
	api.Patch("/routes/+", s.updateRoute)
	api.Delete("/routes/+", s.deleteRoute)
}

// routeView is a route as /api/routes shows it: its definition, and each
// target's health and whether its provider is served.
type routeView struct {
	providers.RouteInfo
	// EffectiveMaxAttempts is MaxAttempts, or [routing] max_attempts for 0.
	EffectiveMaxAttempts  int          `json:"effective_max_attempts"`
	Targets               []targetView `json:"targets"`
	ContextWindowFallback *targetView  `json:"context_window_fallback"`
}

type targetView struct {
	providers.RouteTarget
	// Served is false while no provider of that name is served: the
	// route leaves the target out.
	Served bool                `json:"served"`
	Health router.TargetHealth `json:"health"`
}

func (s *Server) routeView(info providers.RouteInfo, health map[string]router.TargetHealth, served map[string]bool) routeView {
	view := func(t providers.RouteTarget) targetView {
		key := t.Provider + "/" + t.Model
		h, ok := health[key]
		if !ok {
			h = router.TargetHealth{Target: key, State: router.Closed.String()}
		}
		return targetView{RouteTarget: t, Served: served[t.Provider], Health: h}
	}
	v := routeView{RouteInfo: info, EffectiveMaxAttempts: info.MaxAttempts, Targets: make([]targetView, len(info.Targets))}
	if v.EffectiveMaxAttempts == 0 {
		v.EffectiveMaxAttempts = max(s.opts.Routing.MaxAttempts, 1)
	}
	for i, t := range info.Targets {
		v.Targets[i] = view(t)
	}
	if f := info.ContextWindowFallback; f != nil {
		fv := view(*f)
		v.ContextWindowFallback = &fv
	}
	return v
}

// routeState is what a route view needs besides the route.
func (s *Server) routeState() (map[string]router.TargetHealth, map[string]bool) {
	health := map[string]router.TargetHealth{}
	for _, h := range s.opts.Health.Snapshot() {
		health[h.Target] = h
	}
	served := map[string]bool{}
	for _, p := range s.opts.Router.Load().Providers() {
		served[p.Name] = true
	}
	return health, served
}

func (s *Server) listRoutes(c *fiber.Ctx) error {
	health, served := s.routeState()
	out := []routeView{}
	for _, info := range s.opts.Routes.ListRoutes() {
		out = append(out, s.routeView(info, health, served))
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}

func (s *Server) answerRoute(c *fiber.Ctx, status int, info providers.RouteInfo, err error) error {
	if err != nil {
		return routeError(err)
	}
	health, served := s.routeState()
	return c.Status(status).JSON(s.routeView(info, health, served))
}

func (s *Server) getRoute(c *fiber.Ctx) error {
	info, err := s.opts.Routes.GetRoute(c.Params("+"))
	return s.answerRoute(c, fiber.StatusOK, info, err)
}

func (s *Server) createRoute(c *fiber.Ctx) error {
	var req providers.RouteRequest
	if err := decodeStrictAs(c.Body(), &req, apierror.CodeInvalidRoute); err != nil {
		return err
	}
	info, err := s.opts.Routes.CreateRoute(context.Background(), req)
	return s.answerRoute(c, fiber.StatusCreated, info, err)
}

func (s *Server) updateRoute(c *fiber.Ctx) error {
	var patch providers.RoutePatch
	if err := decodeStrictAs(c.Body(), &patch, apierror.CodeInvalidRoute); err != nil {
		return err
	}
	info, err := s.opts.Routes.UpdateRoute(context.Background(), c.Params("+"), patch)
	return s.answerRoute(c, fiber.StatusOK, info, err)
}

func (s *Server) deleteRoute(c *fiber.Ctx) error {
	info, err := s.opts.Routes.DeleteRoute(context.Background(), c.Params("+"))
	return s.answerRoute(c, fiber.StatusOK, info, err)
}

func routeError(err error) error {
	var inv *providers.InvalidError
	switch {
	case errors.As(err, &inv):
		return invalidError(apierror.CodeInvalidRoute, inv)
	case errors.Is(err, providers.ErrRouteNotFound):
		return apierror.New(fiber.StatusNotFound, apierror.CodeRouteNotFound, "No route has that model name.")
	case errors.Is(err, providers.ErrRouteExists):
		return apierror.New(fiber.StatusConflict, apierror.CodeRouteExists, "A route for that model name already exists.").WithParam("model")
	case errors.Is(err, providers.ErrRouteReadOnly):
		return apierror.New(fiber.StatusConflict, apierror.CodeRouteReadOnly,
			"This route is defined in the config file; change it there and restart the proxy.")
	}
	return err
}
