package server

import (
	"strings"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// apiFace registers the admin API: the admin key or a dashboard session
// on every call but sign-in (requireAPI), and JSON bodies no deeper than
// the limit. A part whose dependency is not in the Options is left out:
// sign-in and users need Sessions and Users, the request log needs
// LogDB, and so on.
func (s *Server) apiFace() {
	o := s.opts
	if o.Sessions != nil {
		s.app.Post("/api/login", refuseDeepJSON, s.login)
		s.app.Post("/api/logout", s.logout)
	}
	api := s.app.Group("/api", s.requireAPI, refuseDeepJSON)
	api.Get("/session", s.session)
	if o.Settings != nil {
		api.Get("/settings", s.getSettings)
		api.Patch("/settings", s.patchSettings)
	}
	if o.Hub != nil {
		api.Get("/ws", s.wsCheck, websocket.New(s.wsServe))
	}
	if o.Sessions != nil {
		api.Post("/session/password", s.changeOwnPassword)
		api.Get("/users", s.listUsers)
		api.Post("/users", s.createUser)
		api.Get("/users/:username", s.getUser)
		api.Patch("/users/:username", s.updateUser)
		api.Delete("/users/:username", s.deleteUser)
	}
	api.Get("/plugins", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"object": "list", "data": s.opts.Plugins.List()})
	})
	api.Put("/plugins/:file", s.uploadPlugin)
	if o.Replicas != nil {
		api.Get("/replicas", func(c *fiber.Ctx) error {
			rs, err := o.Replicas(c.UserContext())
			if err != nil {
				return err
			}
			return c.JSON(fiber.Map{"object": "list", "data": rs})
		})
	}
	// Plugin files are bigger than API bodies: only their upload may be,
	// and only for a caller who shows the admin key or a live session, so
	// nobody else can make the server read 64 MiB before refusing them.
	s.app.Server().HeaderReceived = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		if string(h.Method()) == fiber.MethodPut && strings.HasPrefix(string(h.RequestURI()), "/api/plugins/") && s.mayUpload(h) {
			return fasthttp.RequestConfig{MaxRequestBodySize: max(MaxPluginUpload, o.MaxBodyBytes)}
		}
		return fasthttp.RequestConfig{}
	}
	api.Get("/stats", func(c *fiber.Ctx) error {
		out := fiber.Map{"in_flight": s.inFlight.Load()}
		if o.Hub != nil {
			out["hub"] = o.Hub.Stats()
		}
		if s.opts.Requests != nil {
			st := s.opts.Requests.Stats()
			out["request_log"] = fiber.Map{"queued": st.Queued, "written": st.Written, "dropped": st.Dropped,
				"failed": st.Failed, "batches": st.Batches, "queue_len": st.QueueLen}
		}
		return c.JSON(out)
	})
	if o.LogDB != nil {
		api.Get("/logs", s.logs)
		api.Get("/logs/export", s.exportLogs)
		api.Get("/logs/:id", s.logDetail)
		api.Get("/usage", s.usage)
		api.Get("/overview", s.overview)
	}
	if o.Keys != nil {
		api.Get("/keys", s.listKeys)
		api.Post("/keys", s.createKey)
		api.Delete("/keys/:id", s.revokeKey)
		api.Patch("/keys/:id", s.updateKey)
		api.Post("/keys/:id/rotate", s.rotateKey)
	}
	if o.Providers != nil {
		s.providerRoutes(api)
	}
	if o.Routes != nil {
		s.routeRoutes(api)
	}
}
