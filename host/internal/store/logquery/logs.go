package logquery

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Page sizes of [Logs].
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// LogFilter selects the rows [Logs] returns. The zero value selects every
// row, 50 at a time. Every condition that is set must hold.
type LogFilter struct {
	// From and To bound the request time: From <= ts < To. A zero time
	// leaves that side open.
	From, To time.Time
	// KeyID, Model and Provider match their column exactly when non-empty.
	// KeyID "admin" ([AdminKey]) selects the admin key's requests, whose
	// key_id is NULL.
	KeyID, Model, Provider string
	// Status matches the HTTP status exactly; 0 matches any.
	Status int
	// StatusClass matches a class of statuses: "1xx" to "5xx" (letters in
	// either case); "" matches any. It is the alternative to Status; if
	// both are set, both must hold.
	StatusClass string
	// Limit is the page size: 0 (or less) means 50, more than 500 means
	// 500.
	Limit int
	// Cursor continues a walk: pass the NextCursor of the previous page,
	// with the same filter. Empty starts at the newest row.
	Cursor string
}

// LogRow is one request as the admin API shows it. Bodies are not
// included: a page of 500 rows with bodies could weigh megabytes; [Log]
// returns one row with them.
type LogRow struct {
	ID string `json:"id"`
	// TS is when the request arrived (UTC, RFC 3339 with the fraction).
	TS time.Time `json:"ts"`
	// KeyID is the client key's id, absent for the admin key.
	KeyID string `json:"key_id,omitempty"`
	// Model, Provider, Plugin and PluginVersion are empty when the
	// request failed before it was routed.
	Model         string `json:"model"`
	Provider      string `json:"provider"`
	Plugin        string `json:"plugin"`
	PluginVersion string `json:"plugin_version"`
	Status        int    `json:"status"`
	// ErrorType is the OpenAI error type, absent on success.
	ErrorType string `json:"error_type,omitempty"`
	// LatencyMS is the time to the last byte, TTFBMS to the first, both
	// in milliseconds.
	LatencyMS        float64 `json:"latency_ms"`
	TTFBMS           float64 `json:"ttfb_ms"`
	Stream           bool    `json:"stream"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CachedTokens     int64   `json:"cached_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	// Attempts counts the targets the request was tried on, retries and
	// fallbacks included.
	Attempts int `json:"attempts"`
	// API is the API the client spoke: "openai", "messages" or
	// "responses".
	API string `json:"api"`
}

// LogPage is one page of [Logs]. Data is never null in JSON: an empty page
// is "data": [].
type LogPage struct {
	Data []LogRow `json:"data"`
	// NextCursor continues the walk; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// LogDetail is one request with its bodies, as GET /api/logs/{id} shows
// it. A body is null when it was not stored ([logs] bodies was off).
type LogDetail struct {
	LogRow
	RequestBody  *string `json:"request_body"`
	ResponseBody *string `json:"response_body"`
	// AttemptLog lists every attempt (provider, model, status, error,
	// ms, waited_ms) when there was more than one; null otherwise.
	AttemptLog json.RawMessage `json:"attempt_log"`
	// TraceID is the request's OpenTelemetry trace id; "" when it was not
	// traced.
	TraceID string `json:"trace_id"`
}

// ErrNotFound is returned by [Log] when no row has the id.
var ErrNotFound = errors.New("no request log row has that id")

// logByIDQuery reads one row, bodies included, by its primary key.
const logByIDQuery = "SELECT " + logColumns + ", request_body, response_body, attempt_log, trace_id FROM request_logs WHERE id = ?"

// Log returns the row with the given id, bodies included: one primary key
// lookup.
func Log(ctx context.Context, db *sqlx.DB, id string) (LogDetail, error) {
	if hasNUL(id) {
		return LogDetail{}, ErrNotFound
	}
	var r store.RequestLog
	err := db.GetContext(ctx, &r, logByIDQuery, id)
	if errors.Is(err, sql.ErrNoRows) {
		return LogDetail{}, ErrNotFound
	}
	if err != nil {
		return LogDetail{}, fmt.Errorf("log %q: %w", id, err)
	}
	d := LogDetail{LogRow: RowOf(&r), TraceID: r.TraceID}
	if r.RequestBody.Valid {
		d.RequestBody = &r.RequestBody.String
	}
	if r.ResponseBody.Valid {
		d.ResponseBody = &r.ResponseBody.String
	}
	if r.AttemptLog.Valid && json.Valid([]byte(r.AttemptLog.String)) {
		d.AttemptLog = json.RawMessage(r.AttemptLog.String)
	}
	return d, nil
}

// logColumns are the columns Logs reads: every column but the bodies.
const logColumns = `id, ts, key_id, model, provider, plugin, plugin_version,
	status, error_type, latency_ms, ttfb_ms, stream, prompt_tokens,
	completion_tokens, cached_tokens, cost_usd, attempts, api`

// Logs returns one page of the rows that match f, newest first.
//
// Pages are cut by keyset pagination on (ts, id), both descending: rows
// with the same ts come in descending id order, and the cursor holds the
// (ts, id) of the last row of a page, so the next page starts strictly
// after it. A walk therefore sees every row that existed when it started
// exactly once, however many rows share a timestamp, and rows logged
// during the walk (newer than its start) do not shift its pages. Every
// page costs about the same, however deep into the log it is.
//
// A cursor carries no filter: pass the same filter with it, or the walk
// continues from that point under the new filter. A cursor that Logs did
// not produce is an error wrapping [ErrBadCursor] and [ErrBadFilter], as
// is a bad StatusClass.
//
// # Status classes
//
// A range of statuses cannot be read from the (status, ts) index in ts
// order: SQLite would have to sort every matching row to find the newest
// ones, which is slow when the class is common (2xx, or 5xx during an
// outage). Reading the (ts) index instead and skipping rows of other
// classes is fast for a common class but reads the whole range when the
// class is rare. So Logs first finds which statuses of the class occur at
// all, with one index seek per status (a handful), then reads the newest
// rows of each status from the (status, ts) index, at most one page each,
// and merges them. The cost is a page per status present, whatever the
// share of the class: on 100,000 rows, a quarter of them 5xx, a 5xx page
// took about 1 ms this way against 45 ms with the range.
//
// # Several conditions
//
// A filter on two or more of key, model, provider and status is read in
// time windows that the usage rollups say hold the matching rows (see
// windows.go): one index still serves the read, but it never walks
// through hours or days without a match. Every statement of a page reads
// one snapshot of the database.
func Logs(ctx context.Context, db *sqlx.DB, f LogFilter) (LogPage, error) {
	// Check the filter before touching the database.
	if _, _, _, err := logsQuery(f, nil); err != nil {
		return LogPage{}, fmt.Errorf("logs: %w", err)
	}
	if hasNUL(f.KeyID, f.Model, f.Provider) {
		return LogPage{Data: []LogRow{}}, nil
	}
	// One snapshot for every statement: the rollups that guide a
	// windowed read must describe the rows it reads.
	tx, err := db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return LogPage{}, fmt.Errorf("logs: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var statuses []int
	if f.StatusClass != "" && f.Status == 0 {
		if statuses, err = classStatuses(ctx, tx, f.StatusClass); err != nil {
			return LogPage{}, fmt.Errorf("logs: %w", err)
		}
		if len(statuses) == 0 {
			return LogPage{Data: []LogRow{}}, nil
		}
	}
	var rows []store.RequestLog
	var limit int
	if f.conditions() < 2 {
		var query string
		var args []any
		query, args, limit, err = logsQuery(f, statuses)
		if err == nil {
			err = tx.SelectContext(ctx, &rows, query, args...)
		}
	} else {
		rows, limit, err = windowedLogs(ctx, tx, f, statuses)
	}
	if err != nil {
		return LogPage{}, fmt.Errorf("logs: %w", err)
	}
	page := LogPage{Data: make([]LogRow, 0, min(len(rows), limit))}
	for i := range rows {
		if i == limit {
			// The extra row only says that there is a next page.
			last := &rows[limit-1]
			page.NextCursor = encodeCursor(last.TS, last.ID)
			break
		}
		page.Data = append(page.Data, RowOf(&rows[i]))
	}
	return page, nil
}

// conditions counts the filters of f on key, model, provider and status
// (a status and a class count once).
func (f LogFilter) conditions() int {
	n := 0
	for _, set := range []bool{f.KeyID != "", f.Model != "", f.Provider != "", f.Status != 0 || f.StatusClass != ""} {
		if set {
			n++
		}
	}
	return n
}

// querier is what both *sqlx.DB and *sqlx.Tx offer.
type querier interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// classStatuses returns, in ascending order, the statuses of a class
// (such as "5xx") that occur in request_logs. Each step is one seek in the
// (status, ts) index to the next status present, so the cost grows with
// the number of distinct statuses, at most 100, not with the number of
// rows.
func classStatuses(ctx context.Context, db querier, class string) ([]int, error) {
	lo, _ := statusClass(class)
	hi := lo + 100
	var statuses []int
	for next := lo; next < hi; {
		var status int
		err := db.GetContext(ctx, &status,
			`SELECT status FROM request_logs WHERE status >= ? AND status < ? ORDER BY status LIMIT 1`,
			next, hi)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("statuses of class %s: %w", class, err)
		}
		statuses = append(statuses, status)
		next = status + 1
	}
	return statuses, nil
}

// logsQuery checks f and builds the statement of Logs; it returns it with
// its arguments and the page size. It asks for one row more than the page
// size to learn whether a next page exists.
//
// With statuses (the expansion of f.StatusClass by classStatuses), the
// statement is a UNION ALL of one branch per status, each the newest
// limit+1 rows of that status, merged in page order. Without statuses, a
// StatusClass is applied as a plain range condition: that is what the
// check uses, and what Logs runs when Status is set too.
func logsQuery(f LogFilter, statuses []int) (query string, args []any, limit int, err error) {
	return logsQueryIn(f, statuses, openStart, openEnd, 0)
}

// logsQueryIn is logsQuery restricted to the rows with lo <= ts < hi
// (openStart and openEnd leave a side open), asking for at most want
// rows instead of a page and one more when want > 0.
func logsQueryIn(f LogFilter, statuses []int, lo, hi int64, want int) (query string, args []any, limit int, err error) {
	limit = f.Limit
	switch {
	case limit <= 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}

	var w where
	w.dimensions(f.From, f.To, f.KeyID, f.Model, f.Provider)
	if f.Status != 0 {
		w.add("status = ?", f.Status)
	}
	if f.StatusClass != "" {
		lo, ok := statusClass(f.StatusClass)
		if !ok {
			return "", nil, 0, badValue("status", f.StatusClass, `must be a status code or one of "1xx" to "5xx"`)
		}
		if len(statuses) == 0 {
			w.add("status >= ? AND status < ?", lo, lo+100)
		}
	}
	if lo != openStart {
		w.add("ts >= ?", lo)
	}
	if hi != openEnd {
		w.add("ts < ?", hi)
	}
	if f.Cursor != "" {
		ts, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return "", nil, 0, err
		}
		// Rows strictly after (ts, id) in (ts DESC, id DESC) order. The
		// first condition alone is a range on ts that an index can seek
		// to; the second drops the rows of the cursor's own ts up to and
		// including the cursor's row.
		w.add("ts <= ? AND (ts < ? OR id < ?)", ts, ts, id)
	}

	const order = " ORDER BY ts DESC, id DESC LIMIT ?"
	n := limit + 1
	if want > 0 {
		n = want
	}
	if len(statuses) == 0 {
		query = "SELECT " + logColumns + " FROM request_logs" + w.String() + order
		return query, append(w.args, n), limit, nil
	}
	w.add("status = ?")
	branch := "SELECT * FROM (SELECT " + logColumns + " FROM request_logs" + w.String() + order + ") AS branch"
	var b strings.Builder
	for i, status := range statuses {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString(branch)
		args = append(args, w.args...)
		args = append(args, status, n)
	}
	b.WriteString(order)
	return b.String(), append(args, n), limit, nil
}

// statusClass returns the lowest status of a class such as "4xx".
func statusClass(s string) (lo int, ok bool) {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' || !strings.EqualFold(s[1:], "xx") {
		return 0, false
	}
	return int(s[0]-'0') * 100, true
}

// RowOf is a stored request log row as the admin API shows it (without
// its bodies); the live view broadcasts rows in this shape too.
func RowOf(r *store.RequestLog) LogRow {
	return LogRow{
		ID:               r.ID,
		TS:               fromMilli(r.TS),
		KeyID:            r.KeyID.String,
		Model:            r.Model,
		Provider:         r.Provider,
		Plugin:           r.Plugin,
		PluginVersion:    r.PluginVersion,
		Status:           r.Status,
		ErrorType:        r.ErrorType.String,
		LatencyMS:        r.LatencyMS,
		TTFBMS:           r.TTFBMS,
		Stream:           r.Stream,
		PromptTokens:     r.PromptTokens,
		CompletionTokens: r.CompletionTokens,
		CachedTokens:     r.CachedTokens,
		CostUSD:          r.CostUSD,
		Attempts:         max(r.Attempts, 1),
		API:              r.API,
	}
}

// The cursor is the unpadded base64url encoding of
//
//	byte 0     format version, cursorVersion
//	bytes 1-8  ts of the last row, big-endian int64
//	bytes 9-   id of the last row, 1 to maxCursorID bytes of UTF-8
//
// It is opaque to clients; the version lets the format change without
// misreading cursors handed out by an older binary.
const (
	cursorVersion = 1
	cursorHead    = 9
	maxCursorID   = 256
)

// maxCursorLen is the longest valid cursor string, checked before decoding.
var maxCursorLen = base64.RawURLEncoding.EncodedLen(cursorHead + maxCursorID)

// encodeCursor returns the cursor for the row (ts, id).
func encodeCursor(ts int64, id string) string {
	b := make([]byte, cursorHead, cursorHead+len(id))
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:cursorHead], uint64(ts))
	b = append(b, id...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor made by encodeCursor. Anything else is a
// *FilterError wrapping ErrBadCursor.
func decodeCursor(s string) (ts int64, id string, err error) {
	bad := func() error {
		return &FilterError{
			Param:  "cursor",
			Value:  s,
			Reason: "not a cursor returned by a previous page",
			cause:  ErrBadCursor,
		}
	}
	if len(s) > maxCursorLen {
		return 0, "", bad()
	}
	// Strict refuses stray bits in the last character, so that a cursor
	// has exactly one spelling.
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) <= cursorHead || b[0] != cursorVersion {
		return 0, "", bad()
	}
	ts = int64(binary.BigEndian.Uint64(b[1:cursorHead]))
	id = string(b[cursorHead:])
	if ts < 0 || len(id) > maxCursorID || !utf8.ValidString(id) {
		return 0, "", bad()
	}
	return ts, id, nil
}

// hasNUL reports a NUL byte in any of vs. No stored text holds one
// (PostgreSQL cannot store it, and the proxy never writes it), so a filter
// with one matches nothing; it is not sent to the database, where
// PostgreSQL would refuse the statement.
func hasNUL(vs ...string) bool {
	for _, v := range vs {
		if strings.IndexByte(v, 0) >= 0 {
			return true
		}
	}
	return false
}
