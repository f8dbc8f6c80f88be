package server

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/store/logquery"
)

// MaxExportRows is the most rows one export holds.
const MaxExportRows = 100_000

// exportColumns is the CSV header: the fields of a /api/logs row.
var exportColumns = []string{"id", "ts", "key_id", "model", "provider", "plugin", "plugin_version",
	"status", "error_type", "latency_ms", "ttfb_ms", "stream", "prompt_tokens", "completion_tokens",
	"cached_tokens", "cost_usd"}

// exportLogs answers GET /api/logs/export?format=csv|json with the filters
// of GET /api/logs: the matching rows, newest first, as a download. limit
// caps the rows (default and most: MaxExportRows). The rows are read page
// by page with the same keyset cursor as /api/logs and written as they
// come, so memory stays flat however many there are.
func (s *Server) exportLogs(c *fiber.Ctx) error {
	q := queryValues(c)
	format := q.Get("format")
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "json" {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidFilter, `format must be "csv" or "json".`).WithParam("format")
	}
	max := MaxExportRows
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxExportRows {
			return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidFilter,
				"limit must be a whole number from 1 to "+strconv.Itoa(MaxExportRows)+".").WithParam("limit")
		}
		max = n
	}
	q.Del("format")
	q.Del("limit")
	q.Del("cursor")
	f, err := logquery.ParseLogFilter(q)
	if err != nil {
		return filterError(err)
	}
	f.Limit = logquery.MaxLimit
	// The first page is read before answering, so a failing query still
	// gets a proper error status.
	page, err := logquery.Logs(c.UserContext(), s.opts.LogDB, f)
	if err != nil {
		return filterError(err)
	}
	name := "llm-proxy-logs-" + time.Now().UTC().Format("20060102-150405") + "." + format
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+name+`"`)
	if format == "csv" {
		c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	} else {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	}
	db := s.opts.LogDB
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var cw *csv.Writer
		if format == "csv" {
			cw = csv.NewWriter(w)
			cw.Write(exportColumns)
		} else {
			w.WriteString("[")
		}
		n := 0
		for {
			for i := range page.Data {
				if n == max {
					break
				}
				if format == "csv" {
					cw.Write(csvRow(&page.Data[i]))
				} else {
					if n > 0 {
						w.WriteString(",\n")
					}
					b, _ := json.Marshal(&page.Data[i])
					w.Write(b)
				}
				n++
			}
			if n == max || page.NextCursor == "" {
				break
			}
			if cw != nil {
				cw.Flush()
			}
			if w.Flush() != nil {
				return // the client left
			}
			f.Cursor = page.NextCursor
			if page, err = logquery.Logs(ctx, db, f); err != nil {
				s.log.Error("log export cut short", "rows", n, "err", err)
				break
			}
		}
		if cw != nil {
			cw.Flush()
		} else {
			w.WriteString("]\n")
		}
		w.Flush()
	})
	return nil
}

func csvRow(r *logquery.LogRow) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{r.ID, r.TS.Format(time.RFC3339Nano), cell(r.KeyID), cell(r.Model), cell(r.Provider), cell(r.Plugin), cell(r.PluginVersion),
		strconv.Itoa(r.Status), cell(r.ErrorType), f(r.LatencyMS), f(r.TTFBMS), strconv.FormatBool(r.Stream),
		i(r.PromptTokens), i(r.CompletionTokens), i(r.CachedTokens), f(r.CostUSD)}
}

// cell defuses a text cell a spreadsheet would run as a formula: the model
// name, for one, is whatever the client sent. Such cells get a leading
// apostrophe, which spreadsheets show as text and do not evaluate.
func cell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
