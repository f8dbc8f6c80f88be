package server

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/store/logquery"
)

// overview answers GET /api/overview?range=1h|24h: the dashboard's front
// page, with the requests in flight right now.
func (s *Server) overview(c *fiber.Ctx) error {
	var (
		o   logquery.Overview
		err error
	)
	switch r := c.Query("range", logquery.RangeHour); r {
	case logquery.RangeHour:
		o, err = logquery.OverviewHour(c.UserContext(), s.opts.LogDB, time.Now())
	case logquery.RangeDay:
		o, err = logquery.OverviewDay(c.UserContext(), s.opts.LogDB, time.Now())
	default:
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidFilter, `range must be "1h" or "24h", got "`+r+`".`).WithParam("range")
	}
	if err != nil {
		return err
	}
	return c.JSON(struct {
		logquery.Overview
		InFlight int64 `json:"in_flight"`
	}{o, s.inFlight.Load()})
}
