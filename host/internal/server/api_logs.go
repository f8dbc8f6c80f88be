package server

import (
	"context"
	"errors"
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/store/logquery"
)

func queryValues(c *fiber.Ctx) url.Values {
	v, _ := url.ParseQuery(string(c.Context().QueryArgs().QueryString()))
	return v
}

func filterError(err error) *apierror.Error {
	var fe *logquery.FilterError
	if errors.As(err, &fe) {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidFilter, err.Error()).WithParam(fe.Param)
	}
	return apierror.New(fiber.StatusInternalServerError, apierror.CodeInternalError, "The query failed.")
}

// logs serves GET /api/logs: newest first, filtered, cursor-paginated.
func (s *Server) logs(c *fiber.Ctx) error {
	f, err := logquery.ParseLogFilter(queryValues(c))
	if err != nil {
		return filterError(err)
	}
	page, err := logquery.Logs(context.Background(), s.opts.LogDB, f)
	if err != nil {
		if !errors.Is(err, logquery.ErrBadFilter) {
			s.log.Error("logs query", "err", err)
		}
		return filterError(err)
	}
	return c.JSON(page)
}

// logDetail serves GET /api/logs/{id}: one row with its bodies.
func (s *Server) logDetail(c *fiber.Ctx) error {
	d, err := logquery.Log(context.Background(), s.opts.LogDB, c.Params("id"))
	switch {
	case errors.Is(err, logquery.ErrNotFound):
		return apierror.New(fiber.StatusNotFound, apierror.CodeLogNotFound, "No request log row has that id.")
	case err != nil:
		s.log.Error("log query", "err", err)
		return apierror.New(fiber.StatusInternalServerError, apierror.CodeInternalError, "The query failed.")
	}
	return c.JSON(d)
}

// usage serves GET /api/usage: requests, tokens, cost and latency
// percentiles per hour or day, optionally grouped by key, model or provider.
func (s *Server) usage(c *fiber.Ctx) error {
	q, err := logquery.ParseUsageQuery(queryValues(c))
	if err != nil {
		return filterError(err)
	}
	rows, err := logquery.Usage(context.Background(), s.opts.LogDB, q)
	if err != nil {
		if !errors.Is(err, logquery.ErrBadFilter) {
			s.log.Error("usage query", "err", err)
		}
		return filterError(err)
	}
	if rows == nil {
		rows = []logquery.UsageRow{}
	}
	return c.JSON(fiber.Map{"object": "list", "data": rows})
}
