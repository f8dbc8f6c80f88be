package server

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
)

// metricsRoute serves GET /metrics to the admin key and to the metrics
// token: a scraper's credential that opens nothing else.
func (s *Server) metricsRoute() {
	h := adaptor.HTTPHandler(s.opts.Metrics.Handler())
	token := sha256.Sum256([]byte(s.opts.MetricsToken))
	s.app.Get("/metrics", func(c *fiber.Ctx) error {
		key := bearer(c.Get(fiber.HeaderAuthorization))
		if key == "" {
			return apierror.New(fiber.StatusUnauthorized, apierror.CodeMissingCredentials,
				"GET /metrics needs the admin key or the metrics token as 'Authorization: Bearer <token>'.")
		}
		sum := sha256.Sum256([]byte(key))
		if !s.isAdmin(key) && (s.opts.MetricsToken == "" || subtle.ConstantTimeCompare(sum[:], token[:]) != 1) {
			return apierror.New(fiber.StatusUnauthorized, apierror.CodeInvalidCredentials,
				"This token may not read the metrics: use the admin key or the metrics token ([metrics] token_env).")
		}
		return h(c)
	})
}
