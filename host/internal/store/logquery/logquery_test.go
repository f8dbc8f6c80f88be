package logquery

import (
	"cmp"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/histogram"
	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// t0 is the time of the first fixture row: a midnight UTC, so that hour
// and day buckets start on it.
var t0 = time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)

// TestMain stops the PostgreSQL server the tests used, if any: with
// LLMPROXY_TEST_DB=postgres every test's store is a PostgreSQL database
// (the test task runs this package that way too).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openStore opens a fresh database in a temporary directory, stores rows
// in it in batches of 1000, and closes it when the test ends.
func openStore(tb testing.TB, rows []store.RequestLog) *store.Store {
	tb.Helper()
	var s *store.Store
	var err error
	if os.Getenv("LLMPROXY_TEST_DB") == "postgres" {
		s, err = store.OpenPostgres(tb.Context(), pgtest.New(tb), store.Options{})
	} else {
		s, err = store.Open(tb.Context(), store.Options{Path: filepath.Join(tb.TempDir(), "logs.db")})
	}
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	for batch := range slices.Chunk(rows, 1000) {
		if err := s.InsertLogs(tb.Context(), batch); err != nil {
			tb.Fatalf("InsertLogs: %v", err)
		}
	}
	return s
}

// fixture returns n varied rows. Every three rows share a timestamp (37
// minutes after the previous three), and ids are a permutation unrelated
// to insertion order, so that ties are broken by id and not by accident.
// A quarter of the rows belong to the admin key. Latencies and costs are
// exact binary fractions, so sums do not depend on the order of addition.
func fixture(n int) []store.RequestLog {
	models := []string{"gpt-4o-mini", "gpt-4o", "llama-3", "it's-quoted", ""}
	providers := []string{"openai", "groq", "ollama"}
	keys := []string{"key_a", "key_b", "key_c"}
	statuses := []int{200, 200, 201, 204, 400, 401, 404, 429, 500, 502, 503, 200}
	rows := make([]store.RequestLog, n)
	for i := range rows {
		r := store.RequestLog{
			ID:               fmt.Sprintf("r%04d", (i*37)%n),
			TS:               t0.Add(time.Duration(i/3) * 37 * time.Minute).UnixMilli(),
			Model:            models[i%len(models)],
			Provider:         providers[i%len(providers)],
			Plugin:           providers[i%len(providers)],
			PluginVersion:    "1.0.0",
			Status:           statuses[i%len(statuses)],
			LatencyMS:        float64(i%50) + 0.25,
			TTFBMS:           float64(i%10) + 0.5,
			Stream:           i%2 == 0,
			PromptTokens:     int64(10 + i%13),
			CompletionTokens: int64(20 + i%17),
			CachedTokens:     int64(i % 5),
			CostUSD:          float64(i%9) / 1024,
		}
		if i%4 != 0 {
			r.KeyID = sql.NullString{String: keys[i%len(keys)], Valid: true}
		}
		if r.Status >= 400 {
			r.ErrorType = sql.NullString{String: "api_error", Valid: true}
		}
		rows[i] = r
	}
	return rows
}

// newestFirst returns the ids of the rows that pass keep, in the order
// Logs returns them: ts descending, then id descending.
func newestFirst(rows []store.RequestLog, keep func(r store.RequestLog) bool) []string {
	var sel []store.RequestLog
	for _, r := range rows {
		if keep(r) {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, func(a, b store.RequestLog) int {
		if a.TS != b.TS {
			return -cmp.Compare(a.TS, b.TS)
		}
		return -strings.Compare(a.ID, b.ID)
	})
	ids := []string{}
	for _, r := range sel {
		ids = append(ids, r.ID)
	}
	return ids
}

func ids(rows []LogRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

// walk follows the cursors of Logs from the first page to the last and
// returns every id seen, in order, and the number of pages.
func walk(t *testing.T, db *sqlx.DB, f LogFilter) (all []string, pages int) {
	t.Helper()
	all = []string{}
	for {
		page, err := Logs(t.Context(), db, f)
		if err != nil {
			t.Fatalf("Logs (page %d): %v", pages+1, err)
		}
		pages++
		if len(page.Data) > f.Limit {
			t.Fatalf("page %d has %d rows, limit %d", pages, len(page.Data), f.Limit)
		}
		all = append(all, ids(page.Data)...)
		if page.NextCursor == "" {
			return all, pages
		}
		if len(page.Data) != f.Limit {
			t.Fatalf("page %d has %d rows and a next cursor, want a full page of %d", pages, len(page.Data), f.Limit)
		}
		if pages > 10000 {
			t.Fatal("the walk does not end")
		}
		f.Cursor = page.NextCursor
	}
}

func TestLogsPagination(t *testing.T) {
	t.Parallel()
	rows := fixture(200)
	db := openStore(t, rows).Reader()
	want := newestFirst(rows, func(store.RequestLog) bool { return true })

	for _, limit := range []int{1, 2, 3, 7, 50, 199, 200, 201, 500} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			t.Parallel()
			got, pages := walk(t, db, LogFilter{Limit: limit})
			if !slices.Equal(got, want) {
				t.Fatalf("walk returned\n%v\nwant\n%v", got, want)
			}
			if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
				t.Errorf("walk took %d pages, want %d", pages, wantPages)
			}
		})
	}

	t.Run("with a filter", func(t *testing.T) {
		t.Parallel()
		got, _ := walk(t, db, LogFilter{Model: "gpt-4o", Limit: 4})
		want := newestFirst(rows, func(r store.RequestLog) bool { return r.Model == "gpt-4o" })
		if !slices.Equal(got, want) {
			t.Fatalf("walk returned\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("with a status class", func(t *testing.T) {
		t.Parallel()
		got, _ := walk(t, db, LogFilter{StatusClass: "4xx", Limit: 5})
		want := newestFirst(rows, func(r store.RequestLog) bool { return r.Status >= 400 && r.Status < 500 })
		if !slices.Equal(got, want) {
			t.Fatalf("walk returned\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("every row shares one timestamp", func(t *testing.T) {
		t.Parallel()
		rows := fixture(25)
		for i := range rows {
			rows[i].TS = t0.UnixMilli()
		}
		db := openStore(t, rows).Reader()
		got, pages := walk(t, db, LogFilter{Limit: 4})
		want := newestFirst(rows, func(store.RequestLog) bool { return true })
		if !slices.Equal(got, want) || pages != 7 {
			t.Fatalf("walk returned %v in %d pages, want %v in 7", got, pages, want)
		}
	})

	t.Run("rows logged during a walk do not shift it", func(t *testing.T) {
		t.Parallel()
		rows := fixture(30)
		s := openStore(t, rows)
		f := LogFilter{Limit: 10}
		first, err := Logs(t.Context(), s.Reader(), f)
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		newer := fixture(1)
		newer[0].ID, newer[0].TS = "new", t0.Add(240*time.Hour).UnixMilli()
		if err := s.InsertLogs(t.Context(), newer); err != nil {
			t.Fatalf("InsertLogs: %v", err)
		}
		f.Cursor = first.NextCursor
		rest, _ := walk(t, s.Reader(), f)
		got := append(ids(first.Data), rest...)
		if want := newestFirst(rows, func(store.RequestLog) bool { return true }); !slices.Equal(got, want) {
			t.Fatalf("walk returned\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("a cursor past the oldest row gives an empty last page", func(t *testing.T) {
		t.Parallel()
		page, err := Logs(t.Context(), db, LogFilter{Cursor: encodeCursor(0, "r0000")})
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if page.Data == nil || len(page.Data) != 0 || page.NextCursor != "" {
			t.Fatalf("Logs = %+v, want an empty page without cursor", page)
		}
		b, _ := json.Marshal(page)
		if string(b) != `{"data":[]}` {
			t.Errorf("JSON = %s, want {\"data\":[]}", b)
		}
	})
}

func TestLogsFilters(t *testing.T) {
	t.Parallel()
	rows := fixture(200)
	db := openStore(t, rows).Reader()
	at := func(step int) time.Time { return t0.Add(time.Duration(step) * 37 * time.Minute) }

	tests := []struct {
		name string
		f    LogFilter
		keep func(r store.RequestLog) bool
	}{
		{"none", LogFilter{}, func(store.RequestLog) bool { return true }},
		{"from is included", LogFilter{From: at(10)},
			func(r store.RequestLog) bool { return r.TS >= at(10).UnixMilli() }},
		{"to is excluded", LogFilter{To: at(10)},
			func(r store.RequestLog) bool { return r.TS < at(10).UnixMilli() }},
		{"from and to", LogFilter{From: at(5), To: at(9)},
			func(r store.RequestLog) bool { return r.TS >= at(5).UnixMilli() && r.TS < at(9).UnixMilli() }},
		{"from a nanosecond after a row", LogFilter{From: at(5).Add(time.Nanosecond)},
			func(r store.RequestLog) bool { return r.TS > at(5).UnixMilli() }},
		{"to a nanosecond after a row", LogFilter{To: at(5).Add(time.Nanosecond)},
			func(r store.RequestLog) bool { return r.TS <= at(5).UnixMilli() }},
		{"from in another time zone", LogFilter{From: at(10).In(time.FixedZone("UTC+5", 5*3600))},
			func(r store.RequestLog) bool { return r.TS >= at(10).UnixMilli() }},
		{"key", LogFilter{KeyID: "key_b"},
			func(r store.RequestLog) bool { return r.KeyID.String == "key_b" }},
		{"admin key", LogFilter{KeyID: AdminKey},
			func(r store.RequestLog) bool { return !r.KeyID.Valid }},
		{"model", LogFilter{Model: "llama-3"},
			func(r store.RequestLog) bool { return r.Model == "llama-3" }},
		{"model with a quote", LogFilter{Model: "it's-quoted"},
			func(r store.RequestLog) bool { return r.Model == "it's-quoted" }},
		{"provider", LogFilter{Provider: "groq"},
			func(r store.RequestLog) bool { return r.Provider == "groq" }},
		{"status", LogFilter{Status: 404},
			func(r store.RequestLog) bool { return r.Status == 404 }},
		{"status class 2xx", LogFilter{StatusClass: "2xx"},
			func(r store.RequestLog) bool { return r.Status >= 200 && r.Status < 300 }},
		{"status class 4xx", LogFilter{StatusClass: "4xx"},
			func(r store.RequestLog) bool { return r.Status >= 400 && r.Status < 500 }},
		{"status class 5XX", LogFilter{StatusClass: "5XX"},
			func(r store.RequestLog) bool { return r.Status >= 500 && r.Status < 600 }},
		{"status class 3xx matches nothing here", LogFilter{StatusClass: "3xx"},
			func(store.RequestLog) bool { return false }},
		{"status and its class", LogFilter{Status: 404, StatusClass: "4xx"},
			func(r store.RequestLog) bool { return r.Status == 404 }},
		{"status outside its class", LogFilter{Status: 404, StatusClass: "5xx"},
			func(store.RequestLog) bool { return false }},
		{"status class and model", LogFilter{StatusClass: "4xx", Model: "gpt-4o-mini"},
			func(r store.RequestLog) bool { return r.Status >= 400 && r.Status < 500 && r.Model == "gpt-4o-mini" }},
		{"every filter at once",
			LogFilter{From: at(2), To: at(60), KeyID: "key_a", Model: "gpt-4o", Provider: "openai", StatusClass: "5xx"},
			func(r store.RequestLog) bool {
				return r.TS >= at(2).UnixMilli() && r.TS < at(60).UnixMilli() && r.KeyID.String == "key_a" &&
					r.Model == "gpt-4o" && r.Provider == "openai" && r.Status >= 500
			}},
		{"unknown model", LogFilter{Model: "nope"}, func(store.RequestLog) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f.Limit = MaxLimit
			page, err := Logs(t.Context(), db, tt.f)
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			want := newestFirst(rows, tt.keep)
			if got := ids(page.Data); !slices.Equal(got, want) {
				t.Fatalf("Logs returned\n%v\nwant\n%v", got, want)
			}
			if page.NextCursor != "" {
				t.Errorf("NextCursor = %q, want none", page.NextCursor)
			}
		})
	}
}

func TestClassStatuses(t *testing.T) {
	t.Parallel()
	rows := fixture(60)
	rows[0].Status, rows[1].Status, rows[2].Status = 599, 100, 0
	db := openStore(t, rows).Reader()
	tests := []struct {
		class string
		want  []int
	}{
		{"1xx", []int{100}},
		{"2xx", []int{200, 201, 204}},
		{"3xx", nil},
		{"4xx", []int{400, 401, 404, 429}},
		{"5xx", []int{500, 502, 503, 599}},
	}
	for _, tt := range tests {
		t.Run(tt.class, func(t *testing.T) {
			t.Parallel()
			got, err := classStatuses(t.Context(), db, tt.class)
			if err != nil {
				t.Fatalf("classStatuses: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("classStatuses(%s) = %v, want %v", tt.class, got, tt.want)
			}
		})
	}
}

func TestLogsRow(t *testing.T) {
	t.Parallel()
	ts := t0.Add(1234 * time.Millisecond)
	rows := []store.RequestLog{
		{
			ID: "req_full", TS: ts.UnixMilli(), KeyID: sql.NullString{String: "key_1", Valid: true},
			Model: "gpt-4o", Provider: "openai", Plugin: "openai", PluginVersion: "1.2.3",
			Status: 502, ErrorType: sql.NullString{String: "api_error", Valid: true},
			LatencyMS: 412.5, TTFBMS: 95.25, Stream: true,
			PromptTokens: 12, CompletionTokens: 40, CachedTokens: 3, CostUSD: 0.5,
			RequestBody: sql.NullString{String: "{}", Valid: true},
			Attempts:    2, AttemptLog: sql.NullString{String: `[{},{}]`, Valid: true}, API: "messages",
		},
		{ID: "req_admin", TS: ts.UnixMilli() - 1, Status: 200},
	}
	db := openStore(t, rows).Reader()
	page, err := Logs(t.Context(), db, LogFilter{})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	want := LogRow{
		ID: "req_full", TS: ts, KeyID: "key_1",
		Model: "gpt-4o", Provider: "openai", Plugin: "openai", PluginVersion: "1.2.3",
		Status: 502, ErrorType: "api_error",
		LatencyMS: 412.5, TTFBMS: 95.25, Stream: true,
		PromptTokens: 12, CompletionTokens: 40, CachedTokens: 3, CostUSD: 0.5, Attempts: 2, API: "messages",
	}
	if len(page.Data) != 2 || !reflect.DeepEqual(page.Data[0], want) {
		t.Fatalf("Logs = %+v, want first row %+v", page.Data, want)
	}
	if page.Data[0].TS.Location() != time.UTC {
		t.Errorf("TS is in %v, want UTC", page.Data[0].TS.Location())
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		b, err := json.Marshal(page)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		const want = `{"data":[` +
			`{"id":"req_full","ts":"2025-03-10T00:00:01.234Z","key_id":"key_1","model":"gpt-4o",` +
			`"provider":"openai","plugin":"openai","plugin_version":"1.2.3","status":502,` +
			`"error_type":"api_error","latency_ms":412.5,"ttfb_ms":95.25,"stream":true,` +
			`"prompt_tokens":12,"completion_tokens":40,"cached_tokens":3,"cost_usd":0.5,"attempts":2,"api":"messages"},` +
			`{"id":"req_admin","ts":"2025-03-10T00:00:01.233Z","model":"","provider":"","plugin":"",` +
			`"plugin_version":"","status":200,"latency_ms":0,"ttfb_ms":0,"stream":false,` +
			`"prompt_tokens":0,"completion_tokens":0,"cached_tokens":0,"cost_usd":0,"attempts":1,"api":""}]}`
		if string(b) != want {
			t.Errorf("JSON =\n%s\nwant\n%s", b, want)
		}
	})
}

// TestLog: one row by id, with its bodies; a body not stored is null.
func TestLog(t *testing.T) {
	t.Parallel()
	ts := t0.Add(1234 * time.Millisecond)
	rows := []store.RequestLog{
		{
			ID: "req_full", TS: ts.UnixMilli(), KeyID: sql.NullString{String: "key_1", Valid: true},
			Model: "gpt-4o", Status: 200, Stream: true, PromptTokens: 12,
			RequestBody:  sql.NullString{String: `{"model":"gpt-4o"}`, Valid: true},
			ResponseBody: sql.NullString{String: "data: [DONE]\n\n", Valid: true},
			Attempts:     2,
			AttemptLog:   sql.NullString{String: `[{"provider":"a","status":502},{"provider":"b","status":200}]`, Valid: true},
			TraceID:      "4bf92f3577b34da6a3ce929d0e0e4736",
			API:          "responses",
		},
		{ID: "req_bare", TS: ts.UnixMilli(), Status: 404},
	}
	db := openStore(t, rows).Reader()
	d, err := Log(t.Context(), db, "req_full")
	if err != nil {
		t.Fatalf("Log: %v", err)
	}
	b, _ := json.Marshal(d)
	const want = `{"id":"req_full","ts":"2025-03-10T00:00:01.234Z","key_id":"key_1","model":"gpt-4o",` +
		`"provider":"","plugin":"","plugin_version":"","status":200,"latency_ms":0,"ttfb_ms":0,"stream":true,` +
		`"prompt_tokens":12,"completion_tokens":0,"cached_tokens":0,"cost_usd":0,"attempts":2,"api":"responses",` +
		`"request_body":"{\"model\":\"gpt-4o\"}","response_body":"data: [DONE]\n\n",` +
		`"attempt_log":[{"provider":"a","status":502},{"provider":"b","status":200}],"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
	d, err = Log(t.Context(), db, "req_bare")
	if err != nil || d.Status != 404 || d.RequestBody != nil || d.ResponseBody != nil {
		t.Errorf("bare row: %+v %v", d, err)
	}
	b, _ = json.Marshal(d)
	if !strings.HasSuffix(string(b), `"attempts":1,"api":"","request_body":null,"response_body":null,"attempt_log":null,"trace_id":""}`) {
		t.Errorf("bare row JSON: %s", b)
	}
	for _, id := range []string{"req_nope", "", "req_full' OR '1'='1"} {
		if _, err := Log(t.Context(), db, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Log(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestLogsLimit(t *testing.T) {
	t.Parallel()
	db := openStore(t, fixture(520)).Reader()
	tests := []struct {
		name  string
		limit int
		want  int
	}{
		{"zero means the default", 0, DefaultLimit},
		{"negative means the default", -3, DefaultLimit},
		{"one", 1, 1},
		{"the maximum", MaxLimit, MaxLimit},
		{"above the maximum is cut", 10000, MaxLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			page, err := Logs(t.Context(), db, LogFilter{Limit: tt.limit})
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if len(page.Data) != tt.want || page.NextCursor == "" {
				t.Errorf("Logs returned %d rows, next cursor %q; want %d and a cursor", len(page.Data), page.NextCursor, tt.want)
			}
		})
	}
}

// rawCursor encodes b as a cursor would be, without checking it.
func rawCursor(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestLogsBadCursor(t *testing.T) {
	t.Parallel()
	db := openStore(t, fixture(10)).Reader()
	good := encodeCursor(t0.UnixMilli(), "r0003")
	head := func(version byte, ts int64) []byte {
		b := make([]byte, cursorHead)
		b[0] = version
		binary.BigEndian.PutUint64(b[1:], uint64(ts))
		return b
	}
	tests := []struct {
		name   string
		cursor string
	}{
		{"not base64", "!!!!"},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(encodeCursor(t0.UnixMilli(), "r>>>?"))},
		{"padded", good + "="},
		{"stray bits in the last character", good[:len(good)-1] + "x"},
		{"too short", rawCursor([]byte{cursorVersion, 1, 2})},
		{"no id", rawCursor(head(cursorVersion, 5))},
		{"unknown version", rawCursor(append(head(2, 5), "r0003"...))},
		{"negative time", rawCursor(append(head(cursorVersion, -1), "r0003"...))},
		{"id not UTF-8", rawCursor(append(head(cursorVersion, 5), 0xff, 0xfe))},
		{"id too long", encodeCursor(5, strings.Repeat("x", maxCursorID+1))},
		{"far too long", strings.Repeat("A", 100000)},
		{"sql", "x' OR 1=1 --"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Logs(t.Context(), db, LogFilter{Cursor: tt.cursor})
			if !errors.Is(err, ErrBadCursor) || !errors.Is(err, ErrBadFilter) {
				t.Fatalf("Logs = %v, want an error wrapping ErrBadCursor and ErrBadFilter", err)
			}
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Param != "cursor" {
				t.Errorf("error %v does not name the parameter cursor", err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
		})
	}

	t.Run("a well-formed cursor of a missing row", func(t *testing.T) {
		t.Parallel()
		if _, err := Logs(t.Context(), db, LogFilter{Cursor: good}); err != nil {
			t.Fatalf("Logs: %v", err)
		}
	})
}

func TestLogsBadStatusClass(t *testing.T) {
	t.Parallel()
	db := openStore(t, nil).Reader()
	for _, class := range []string{"6xx", "0xx", "2x", "2xxx", "xx2", "200", "abc"} {
		t.Run(class, func(t *testing.T) {
			t.Parallel()
			_, err := Logs(t.Context(), db, LogFilter{StatusClass: class})
			var fe *FilterError
			if !errors.Is(err, ErrBadFilter) || !errors.As(err, &fe) || fe.Param != "status" {
				t.Fatalf("Logs = %v, want a bad filter naming status", err)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ts   int64
		id   string
	}{
		{"plain", t0.UnixMilli(), "req_01HZ"},
		{"zero time", 0, "a"},
		{"unicode id", 1, "réq-✓"},
		{"longest id", 1 << 50, strings.Repeat("z", maxCursorID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := encodeCursor(tt.ts, tt.id)
			if strings.ContainsAny(c, "+/=") {
				t.Errorf("cursor %q is not unpadded base64url", c)
			}
			ts, id, err := decodeCursor(c)
			if err != nil || ts != tt.ts || id != tt.id {
				t.Fatalf("decodeCursor(%q) = %d, %q, %v; want %d, %q", c, ts, id, err, tt.ts, tt.id)
			}
		})
	}
}

// mustQuery parses a raw query string.
func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", raw, err)
	}
	return q
}

// checkBadParam fails the test unless err is a *FilterError for param.
func checkBadParam(t *testing.T, err error, param string) {
	t.Helper()
	var fe *FilterError
	if !errors.Is(err, ErrBadFilter) || !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a *FilterError wrapping ErrBadFilter", err)
	}
	if fe.Param != param || !strings.Contains(err.Error(), param) {
		t.Errorf("error %q names %q, want %q", err, fe.Param, param)
	}
}

func TestParseLogFilter(t *testing.T) {
	t.Parallel()
	cursor := encodeCursor(t0.UnixMilli(), "r0001")
	tests := []struct {
		name      string
		query     string
		want      LogFilter
		wantParam string // the parameter named by the error; "" for success
	}{
		{name: "empty", query: "", want: LogFilter{Limit: DefaultLimit}},
		{name: "empty values set nothing", query: "from=&to=&key=&model=&provider=&status=&limit=&cursor=",
			want: LogFilter{Limit: DefaultLimit}},
		{name: "unknown parameters are ignored", query: "bucket=week&foo=1", want: LogFilter{Limit: DefaultLimit}},
		{name: "everything", query: "from=2025-03-10T00:00:00Z&to=1741651200000&key=key_a&model=gpt-4o&provider=openai&status=404&limit=20&cursor=" + cursor,
			want: LogFilter{
				From: t0, To: t0.Add(24 * time.Hour),
				KeyID: "key_a", Model: "gpt-4o", Provider: "openai",
				Status: 404, Limit: 20, Cursor: cursor,
			}},
		{name: "rfc3339 with fraction and offset", query: "from=2025-03-10T02:00:00.5%2B02:00",
			want: LogFilter{From: t0.Add(500 * time.Millisecond), Limit: DefaultLimit}},
		{name: "an unescaped plus in the offset", query: "from=2025-03-10T02:00:00+02:00",
			want: LogFilter{From: t0, Limit: DefaultLimit}},
		{name: "unix milliseconds zero", query: "from=0", want: LogFilter{From: time.UnixMilli(0).UTC(), Limit: DefaultLimit}},
		{name: "admin key", query: "key=admin", want: LogFilter{KeyID: AdminKey, Limit: DefaultLimit}},
		{name: "status class", query: "status=5xx", want: LogFilter{StatusClass: "5xx", Limit: DefaultLimit}},
		{name: "status class in capitals", query: "status=2XX", want: LogFilter{StatusClass: "2xx", Limit: DefaultLimit}},
		{name: "lowest status", query: "status=100", want: LogFilter{Status: 100, Limit: DefaultLimit}},
		{name: "highest status", query: "status=599", want: LogFilter{Status: 599, Limit: DefaultLimit}},
		{name: "smallest limit", query: "limit=1", want: LogFilter{Limit: 1}},
		{name: "largest limit", query: "limit=500", want: LogFilter{Limit: 500}},
		{name: "values are kept verbatim", query: "model=" + url.QueryEscape(" a b "),
			want: LogFilter{Model: " a b ", Limit: DefaultLimit}},

		{name: "from not a time", query: "from=yesterday", wantParam: "from"},
		{name: "from a date only", query: "from=2025-03-10", wantParam: "from"},
		{name: "from negative", query: "from=-5", wantParam: "from"},
		{name: "from beyond year 9999", query: "from=253402300800000", wantParam: "from"},
		{name: "from overflowing", query: "from=99999999999999999999", wantParam: "from"},
		{name: "from twice", query: "from=1&from=2", wantParam: "from"},
		{name: "to not a time", query: "to=2025-13-01T00:00:00Z", wantParam: "to"},
		{name: "to without zone", query: "to=2025-03-10T00:00:00", wantParam: "to"},
		{name: "to equal to from", query: "from=1000&to=1000", wantParam: "to"},
		{name: "to before from", query: "from=2000&to=1000", wantParam: "to"},
		{name: "key twice", query: "key=a&key=b", wantParam: "key"},
		{name: "model twice", query: "model=a&model=b", wantParam: "model"},
		{name: "provider twice", query: "provider=a&provider=", wantParam: "provider"},
		{name: "status word", query: "status=ok", wantParam: "status"},
		{name: "status too low", query: "status=99", wantParam: "status"},
		{name: "status too high", query: "status=600", wantParam: "status"},
		{name: "status class unknown", query: "status=6xx", wantParam: "status"},
		{name: "status class partial", query: "status=4x", wantParam: "status"},
		{name: "status with spaces", query: "status=+200", wantParam: "status"},
		{name: "status twice", query: "status=200&status=500", wantParam: "status"},
		{name: "limit zero", query: "limit=0", wantParam: "limit"},
		{name: "limit negative", query: "limit=-1", wantParam: "limit"},
		{name: "limit too large", query: "limit=501", wantParam: "limit"},
		{name: "limit not a number", query: "limit=ten", wantParam: "limit"},
		{name: "limit fractional", query: "limit=2.5", wantParam: "limit"},
		{name: "limit twice", query: "limit=1&limit=2", wantParam: "limit"},
		{name: "cursor garbage", query: "cursor=abc", wantParam: "cursor"},
		{name: "cursor twice", query: "cursor=" + cursor + "&cursor=" + cursor, wantParam: "cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLogFilter(mustQuery(t, tt.query))
			if tt.wantParam != "" {
				checkBadParam(t, err, tt.wantParam)
				return
			}
			if err != nil {
				t.Fatalf("ParseLogFilter: %v", err)
			}
			if !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) {
				t.Errorf("range = %v..%v, want %v..%v", got.From, got.To, tt.want.From, tt.want.To)
			}
			if !got.From.IsZero() && got.From.Location() != time.UTC {
				t.Errorf("From is in %v, want UTC", got.From.Location())
			}
			got.From, got.To, tt.want.From, tt.want.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("ParseLogFilter = %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("a bad cursor also wraps ErrBadCursor", func(t *testing.T) {
		t.Parallel()
		_, err := ParseLogFilter(url.Values{"cursor": {"abc"}})
		if !errors.Is(err, ErrBadCursor) {
			t.Errorf("error = %v, want one wrapping ErrBadCursor", err)
		}
	})
}

func TestParseUsageQuery(t *testing.T) {
	t.Parallel()
	now := t0.Add(36*time.Hour + 123*time.Millisecond)
	tests := []struct {
		name      string
		query     string
		want      UsageQuery
		wantParam string
	}{
		{name: "defaults", query: "",
			want: UsageQuery{From: now.Add(-24 * time.Hour), To: now, Bucket: BucketHour}},
		{name: "empty values are defaults", query: "from=&to=&bucket=&group_by=&key=&model=&provider=",
			want: UsageQuery{From: now.Add(-24 * time.Hour), To: now, Bucket: BucketHour}},
		{name: "everything", query: "from=2025-03-10T00:00:00Z&to=2025-03-17T00:00:00Z&bucket=day&group_by=model&key=admin&model=gpt-4o&provider=openai",
			want: UsageQuery{From: t0, To: t0.Add(7 * 24 * time.Hour), Bucket: BucketDay, GroupBy: GroupModel,
				KeyID: AdminKey, Model: "gpt-4o", Provider: "openai"}},
		{name: "only from: everything since", query: "from=1741564800000",
			want: UsageQuery{From: t0, Bucket: BucketHour}},
		{name: "only to: the day before", query: "to=2025-03-11T00:00:00Z",
			want: UsageQuery{From: t0, To: t0.Add(24 * time.Hour), Bucket: BucketHour}},
		{name: "group by key", query: "group_by=key",
			want: UsageQuery{From: now.Add(-24 * time.Hour), To: now, Bucket: BucketHour, GroupBy: GroupKey}},
		{name: "group by provider", query: "group_by=provider&bucket=hour",
			want: UsageQuery{From: now.Add(-24 * time.Hour), To: now, Bucket: BucketHour, GroupBy: GroupProvider}},
		{name: "by the minute: the last hour", query: "bucket=minute",
			want: UsageQuery{From: now.Add(-time.Hour), To: now, Bucket: BucketMinute}},
		{name: "by the minute, only from: the hour after", query: "bucket=minute&from=2025-03-10T00:00:00Z",
			want: UsageQuery{From: t0, To: t0.Add(time.Hour), Bucket: BucketMinute}},
		{name: "by the minute, only to: the hour before", query: "bucket=minute&to=2025-03-10T01:00:00Z",
			want: UsageQuery{From: t0, To: t0.Add(time.Hour), Bucket: BucketMinute}},
		{name: "by the minute, six hours", query: "bucket=minute&from=2025-03-10T00:00:00Z&to=2025-03-10T06:00:00Z",
			want: UsageQuery{From: t0, To: t0.Add(6 * time.Hour), Bucket: BucketMinute}},

		{name: "from bad", query: "from=now", wantParam: "from"},
		{name: "to bad", query: "to=1e12", wantParam: "to"},
		{name: "to before from", query: "from=2025-03-11T00:00:00Z&to=2025-03-10T00:00:00Z", wantParam: "to"},
		{name: "bucket unknown", query: "bucket=week", wantParam: "bucket"},
		{name: "bucket in capitals", query: "bucket=Hour", wantParam: "bucket"},
		{name: "by the minute, too long", query: "bucket=minute&from=2025-03-10T00:00:00Z&to=2025-03-10T06:00:00.001Z", wantParam: "to"},
		{name: "bucket twice", query: "bucket=hour&bucket=day", wantParam: "bucket"},
		{name: "group_by unknown", query: "group_by=status", wantParam: "group_by"},
		{name: "group_by a column expression", query: "group_by=" + url.QueryEscape("model, (SELECT 1)"), wantParam: "group_by"},
		{name: "group_by twice", query: "group_by=key&group_by=model", wantParam: "group_by"},
		{name: "key twice", query: "key=a&key=a", wantParam: "key"},
		{name: "model twice", query: "model=a&model=b", wantParam: "model"},
		{name: "provider twice", query: "provider=a&provider=b", wantParam: "provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseUsageQuery(mustQuery(t, tt.query), now)
			if tt.wantParam != "" {
				checkBadParam(t, err, tt.wantParam)
				return
			}
			if err != nil {
				t.Fatalf("ParseUsageQuery: %v", err)
			}
			if !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) {
				t.Errorf("range = %v..%v, want %v..%v", got.From, got.To, tt.want.From, tt.want.To)
			}
			got.From, got.To, tt.want.From, tt.want.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("ParseUsageQuery = %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("the default range ends now", func(t *testing.T) {
		t.Parallel()
		before := time.Now()
		q, err := ParseUsageQuery(url.Values{})
		if err != nil {
			t.Fatalf("ParseUsageQuery: %v", err)
		}
		if q.To.Before(before) || q.To.After(time.Now()) || q.To.Sub(q.From) != DefaultUsageRange {
			t.Errorf("range = %v..%v, want the 24 hours up to now", q.From, q.To)
		}
	})
}

// injections are hostile values for every free-text filter.
var injections = []string{
	"x' OR 1=1 --",
	"'; DROP TABLE request_logs; --",
	`" OR ""="`,
	"gpt-4o' UNION SELECT * FROM request_logs --",
	"1); DELETE FROM request_logs; --",
	"admin' OR key_id IS NULL --",
	"%",
	"_",
	"*",
	"gpt-4o\x00",
}

func TestSQLInjection(t *testing.T) {
	t.Parallel()
	rows := fixture(100)
	s := openStore(t, rows)
	// The writer pool accepts writes, so a statement that let a value
	// through would act on it; the reader pool is checked as well.
	pools := map[string]*sqlx.DB{"reader": s.Reader(), "writer": s.Writer()}

	for pool, db := range pools {
		for _, v := range injections {
			for _, field := range []string{"key", "model", "provider"} {
				t.Run(fmt.Sprintf("%s/%s=%q", pool, field, v), func(t *testing.T) {
					f := LogFilter{Limit: MaxLimit}
					u := UsageQuery{Bucket: BucketDay, GroupBy: GroupModel}
					switch field {
					case "key":
						f.KeyID, u.KeyID = v, v
					case "model":
						f.Model, u.Model = v, v
					case "provider":
						f.Provider, u.Provider = v, v
					}
					page, err := Logs(t.Context(), db, f)
					if err != nil {
						t.Fatalf("Logs: %v", err)
					}
					if len(page.Data) != 0 {
						t.Errorf("Logs returned %d rows, want none", len(page.Data))
					}
					usage, err := Usage(t.Context(), db, u)
					if err != nil {
						t.Fatalf("Usage: %v", err)
					}
					if len(usage) != 0 {
						t.Errorf("Usage returned %d rows, want none", len(usage))
					}
				})
			}
			t.Run(fmt.Sprintf("%s/whitelisted=%q", pool, v), func(t *testing.T) {
				if _, err := Logs(t.Context(), db, LogFilter{StatusClass: v}); !errors.Is(err, ErrBadFilter) {
					t.Errorf("Logs with status class: %v, want ErrBadFilter", err)
				}
				if _, err := Logs(t.Context(), db, LogFilter{Cursor: v}); !errors.Is(err, ErrBadCursor) {
					t.Errorf("Logs with cursor: %v, want ErrBadCursor", err)
				}
				if _, err := Usage(t.Context(), db, UsageQuery{Bucket: v}); !errors.Is(err, ErrBadFilter) {
					t.Errorf("Usage with bucket: %v, want ErrBadFilter", err)
				}
				if _, err := Usage(t.Context(), db, UsageQuery{GroupBy: v}); !errors.Is(err, ErrBadFilter) {
					t.Errorf("Usage with group_by: %v, want ErrBadFilter", err)
				}
			})
		}
	}

	t.Run("through the query parameters", func(t *testing.T) {
		for _, v := range injections {
			for _, p := range []string{"from", "to", "status", "limit", "cursor"} {
				if _, err := ParseLogFilter(url.Values{p: {v}}); !errors.Is(err, ErrBadFilter) {
					t.Errorf("ParseLogFilter(%s=%q) = %v, want ErrBadFilter", p, v, err)
				}
			}
			for _, p := range []string{"from", "to", "bucket", "group_by"} {
				if _, err := ParseUsageQuery(url.Values{p: {v}}); !errors.Is(err, ErrBadFilter) {
					t.Errorf("ParseUsageQuery(%s=%q) = %v, want ErrBadFilter", p, v, err)
				}
			}
			f, err := ParseLogFilter(url.Values{"key": {v}, "model": {v}, "provider": {v}})
			if err != nil {
				t.Fatalf("ParseLogFilter: %v", err)
			}
			if page, err := Logs(t.Context(), s.Writer(), f); err != nil || len(page.Data) != 0 {
				t.Errorf("Logs(%+v) = %d rows, %v; want none", f, len(page.Data), err)
			}
		}
	})

	t.Cleanup(func() {
		var n int
		if err := s.Writer().Get(&n, `SELECT count(*) FROM request_logs`); err != nil {
			t.Fatalf("request_logs is gone: %v", err)
		}
		if n != len(rows) {
			t.Errorf("request_logs has %d rows, want %d", n, len(rows))
		}
	})
}

// refUsage adds up rows the slow and obvious way, for comparison with
// Usage.
func refUsage(rows []store.RequestLog, q UsageQuery) []UsageRow {
	size := int64(3600000)
	if q.Bucket == BucketDay {
		size = 86400000
	}
	type key struct {
		bucket int64
		group  string
	}
	sums := map[key]*UsageRow{}
	lats := map[key][]float64{}
	for _, r := range rows {
		if !q.From.IsZero() && r.TS < q.From.UnixMilli() ||
			!q.To.IsZero() && r.TS >= q.To.UnixMilli() ||
			q.KeyID == AdminKey && r.KeyID.Valid ||
			q.KeyID != "" && q.KeyID != AdminKey && r.KeyID.String != q.KeyID ||
			q.Model != "" && r.Model != q.Model ||
			q.Provider != "" && r.Provider != q.Provider {
			continue
		}
		k := key{bucket: r.TS - r.TS%size}
		switch q.GroupBy {
		case GroupKey:
			k.group = AdminKey
			if r.KeyID.Valid {
				k.group = r.KeyID.String
			}
		case GroupModel:
			k.group = r.Model
		case GroupProvider:
			k.group = r.Provider
		}
		s := sums[k]
		if s == nil {
			s = &UsageRow{Bucket: fromMilli(k.bucket), Group: k.group}
			sums[k] = s
		}
		s.Requests++
		if r.Status >= 400 {
			s.Errors++
		}
		s.PromptTokens += r.PromptTokens
		s.CompletionTokens += r.CompletionTokens
		s.CachedTokens += r.CachedTokens
		s.CostUSD += r.CostUSD
		lats[k] = append(lats[k], r.LatencyMS)
	}
	out := []UsageRow{}
	for k, s := range sums {
		l := lats[k]
		slices.Sort(l)
		rank := func(p int) float64 { return l[(len(l)*p+99)/100-1] }
		s.LatencyP50MS, s.LatencyP95MS, s.LatencyP99MS = rank(50), rank(95), rank(99)
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		if c := a.Bucket.Compare(b.Bucket); c != 0 {
			return c
		}
		return strings.Compare(a.Group, b.Group)
	})
	return out
}

// withinBound reports whether an approximate percentile is within the
// histogram's relative error of the exact one.
func withinBound(got, exact float64) bool {
	return math.Abs(got-exact) <= histogram.RelativeError*(1+1e-9)*math.Abs(exact)
}

// checkUsage fails the test unless got equals want, except that
// percentiles need only be within the documented bound of want's (exact)
// ones.
func checkUsage(t *testing.T, got, want []UsageRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Usage returned %d rows, want %d:\n%+v\nwant\n%+v", len(got), len(want), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !withinBound(g.LatencyP50MS, w.LatencyP50MS) || !withinBound(g.LatencyP95MS, w.LatencyP95MS) ||
			!withinBound(g.LatencyP99MS, w.LatencyP99MS) {
			t.Errorf("row %d: percentiles %v/%v/%v, exact %v/%v/%v: beyond %v", i,
				g.LatencyP50MS, g.LatencyP95MS, g.LatencyP99MS, w.LatencyP50MS, w.LatencyP95MS, w.LatencyP99MS,
				histogram.RelativeError)
		}
		g.LatencyP50MS, g.LatencyP95MS, g.LatencyP99MS = w.LatencyP50MS, w.LatencyP95MS, w.LatencyP99MS
		if !reflect.DeepEqual(g, w) {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	rows := fixture(300)
	db := openStore(t, rows).Reader()
	end := t0.Add(300 / 3 * 37 * time.Minute)

	var tests []UsageQuery
	for _, bucket := range []string{BucketHour, BucketDay} {
		for _, group := range []string{GroupNone, GroupKey, GroupModel, GroupProvider} {
			tests = append(tests,
				UsageQuery{Bucket: bucket, GroupBy: group},
				UsageQuery{From: t0.Add(90 * time.Minute), To: end.Add(-5 * time.Hour), Bucket: bucket, GroupBy: group},
				UsageQuery{Bucket: bucket, GroupBy: group, KeyID: AdminKey},
				UsageQuery{Bucket: bucket, GroupBy: group, KeyID: "key_c", Model: "gpt-4o"},
				UsageQuery{Bucket: bucket, GroupBy: group, Provider: "ollama", From: t0.Add(24 * time.Hour)},
			)
		}
	}
	for _, q := range tests {
		name := fmt.Sprintf("%s by %q key=%q model=%q provider=%q from=%v", q.Bucket, q.GroupBy, q.KeyID, q.Model, q.Provider, !q.From.IsZero())
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Usage(t.Context(), db, q)
			if err != nil {
				t.Fatalf("Usage: %v", err)
			}
			want := refUsage(rows, q)
			if len(want) < 2 {
				t.Fatalf("the test selects only %d rows; make it select more", len(want))
			}
			checkUsage(t, got, want)
		})
	}

	t.Run("an empty bucket is the default hour", func(t *testing.T) {
		t.Parallel()
		got, err := Usage(t.Context(), db, UsageQuery{})
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		checkUsage(t, got, refUsage(rows, UsageQuery{Bucket: BucketHour}))
	})

	t.Run("nothing selected", func(t *testing.T) {
		t.Parallel()
		got, err := Usage(t.Context(), db, UsageQuery{Model: "nope"})
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if b, _ := json.Marshal(got); string(b) != "[]" {
			t.Errorf("Usage = %s, want []", b)
		}
	})

	t.Run("bad bucket and grouping", func(t *testing.T) {
		t.Parallel()
		_, err := Usage(t.Context(), db, UsageQuery{Bucket: "week"})
		checkBadParam(t, err, "bucket")
		_, err = Usage(t.Context(), db, UsageQuery{GroupBy: "status"})
		checkBadParam(t, err, "group_by")
	})
}

func TestUsageKnownValues(t *testing.T) {
	t.Parallel()
	var rows []store.RequestLog
	add := func(ts time.Time, model string, status int, latency float64) {
		rows = append(rows, store.RequestLog{
			ID: fmt.Sprintf("u%04d", len(rows)), TS: ts.UnixMilli(),
			Model: model, Status: status, LatencyMS: latency,
			PromptTokens: 10, CompletionTokens: 20, CachedTokens: 1, CostUSD: 0.25,
		})
	}
	// Model "a": latencies 1 to 100, in a shuffled order, within the
	// first hour. Model "b": 1 to 10 in the same hour. Model "c": one
	// request at 42 ms in the second hour.
	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range rng.Perm(100) {
		add(t0.Add(time.Duration(i)*30*time.Second), "a", 200, float64(i+1))
	}
	for i := range 10 {
		add(t0.Add(59*time.Minute), "b", 200, float64(10-i))
	}
	add(t0.Add(time.Hour), "c", 200, 42)
	// Statuses in the second hour of model "d": three of them are errors.
	for i, status := range []int{0, 200, 399, 400, 499, 500} {
		add(t0.Add(time.Hour+time.Duration(i)*time.Minute), "d", status, 7)
	}
	db := openStore(t, rows).Reader()

	hour := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	row := func(h int, group string, n, errs int64, p50, p95, p99 float64) UsageRow {
		return UsageRow{
			Bucket: hour(h), Group: group, Requests: n, Errors: errs,
			PromptTokens: 10 * n, CompletionTokens: 20 * n, CachedTokens: n, CostUSD: 0.25 * float64(n),
			LatencyP50MS: p50, LatencyP95MS: p95, LatencyP99MS: p99,
		}
	}
	tests := []struct {
		name string
		q    UsageQuery
		want []UsageRow
	}{
		{"per hour and model", UsageQuery{Bucket: BucketHour, GroupBy: GroupModel}, []UsageRow{
			row(0, "a", 100, 0, 50, 95, 99),
			row(0, "b", 10, 0, 5, 10, 10),
			row(1, "c", 1, 0, 42, 42, 42),
			row(1, "d", 6, 3, 7, 7, 7),
		}},
		{"per hour", UsageQuery{Bucket: BucketHour}, []UsageRow{
			// 110 latencies: 1..10 twice and 11..100 once. Ranks 55,
			// 105 and 109 fall on 45, 95 and 99.
			row(0, "", 110, 0, 45, 95, 99),
			// 7 six times, then 42: ranks 4, 7 and 7.
			row(1, "", 7, 3, 7, 42, 42),
		}},
		{"per day", UsageQuery{Bucket: BucketDay}, []UsageRow{
			// 117 latencies: 1..10 twice, 7 six times more, 42 twice,
			// the rest of 11..100 once. Ranks 59, 112 and 116 fall on
			// 42, 95 and 99.
			row(0, "", 117, 3, 42, 95, 99),
		}},
		{"one hour only", UsageQuery{From: hour(1), To: hour(2), GroupBy: GroupModel}, []UsageRow{
			row(1, "c", 1, 0, 42, 42, 42),
			row(1, "d", 6, 3, 7, 7, 7),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Usage(t.Context(), db, tt.q)
			if err != nil {
				t.Fatalf("Usage: %v", err)
			}
			// The percentiles come from histograms: within 1 % of the
			// exact values below.
			checkUsage(t, got, tt.want)
		})
	}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		b, err := json.Marshal([]UsageRow{row(1, "c", 1, 0, 42, 42, 42), row(2, "", 2, 1, 1.5, 2, 2)})
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		const want = `[{"bucket":"2025-03-10T01:00:00Z","group":"c","requests":1,"errors":0,` +
			`"prompt_tokens":10,"completion_tokens":20,"cached_tokens":1,"cost_usd":0.25,` +
			`"latency_p50_ms":42,"latency_p95_ms":42,"latency_p99_ms":42},` +
			`{"bucket":"2025-03-10T02:00:00Z","requests":2,"errors":1,` +
			`"prompt_tokens":20,"completion_tokens":40,"cached_tokens":2,"cost_usd":0.5,` +
			`"latency_p50_ms":1.5,"latency_p95_ms":2,"latency_p99_ms":2}]`
		if string(b) != want {
			t.Errorf("JSON =\n%s\nwant\n%s", b, want)
		}
	})
}

// queryPlan returns the lines of EXPLAIN QUERY PLAN for query.
func queryPlan(t *testing.T, db *sqlx.DB, query string, args []any) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var (
			id, parent, notUsed int
			detail              string
		)
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatalf("scan plan: %v", err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("plan: %v", err)
	}
	return strings.Join(lines, "\n")
}

func TestQueryPlans(t *testing.T) {
	t.Parallel()
	if os.Getenv("LLMPROXY_TEST_DB") == "postgres" {
		t.Skip("these are SQLite's query plans")
	}
	db := openStore(t, fixture(1000)).Reader()
	from, to := t0.Add(time.Hour), t0.Add(48*time.Hour)
	cursor := encodeCursor(t0.Add(10*time.Hour).UnixMilli(), "r0500")

	type query struct {
		name  string
		build func() (string, []any, error)
		index string
	}
	logs := func(f LogFilter, statuses ...int) func() (string, []any, error) {
		return func() (string, []any, error) {
			q, args, _, err := logsQuery(f, statuses)
			return q, args, err
		}
	}
	raw := func(lo, hi time.Time, u UsageQuery) func() (string, []any, error) {
		return func() (string, []any, error) {
			q, args := rawUsageSQL(usagePart{0, lo.UnixMilli(), hi.UnixMilli()}, u)
			return q, args, nil
		}
	}
	rollups := func(period int64, u UsageQuery) func() (string, []any, error) {
		return func() (string, []any, error) {
			q, args := rollupUsageSQL(usagePart{period, from.UnixMilli(), to.UnixMilli()}, u)
			return q, args, nil
		}
	}
	const rollupIndex = "PRIMARY KEY"
	tests := []query{
		{"logs, no filter", logs(LogFilter{}), "request_logs_ts"},
		{"logs, time range", logs(LogFilter{From: from, To: to}), "request_logs_ts"},
		{"logs, cursor", logs(LogFilter{Cursor: cursor}), "request_logs_ts"},
		{"logs, model and time range", logs(LogFilter{Model: "gpt-4o", From: from, To: to}), "request_logs_model_ts"},
		{"logs, model and cursor", logs(LogFilter{Model: "gpt-4o", Cursor: cursor}), "request_logs_model_ts"},
		{"logs, key", logs(LogFilter{KeyID: "key_a", From: from}), "request_logs_key_ts"},
		{"logs, admin key", logs(LogFilter{KeyID: AdminKey, To: to}), "request_logs_key_ts"},
		{"logs, provider", logs(LogFilter{Provider: "groq", From: from, To: to}), "request_logs_provider_ts"},
		{"logs, status", logs(LogFilter{Status: 500, From: from}), "request_logs_status_ts"},
		{"logs, status class", logs(LogFilter{StatusClass: "5xx"}, 500, 503), "request_logs_status_ts"},
		{"logs, status class and cursor", logs(LogFilter{StatusClass: "4xx", Cursor: cursor}, 400, 404), "request_logs_status_ts"},
		{"logs window, key and model", func() (string, []any, error) {
			q, args, _, err := logsQueryIn(LogFilter{KeyID: "key_a", Model: "gpt-4o"}, nil, from.UnixMilli(), to.UnixMilli(), 20)
			return q, args, err
		}, "request_logs_"},
		{"logs window, model and status class", func() (string, []any, error) {
			q, args, _, err := logsQueryIn(LogFilter{Model: "gpt-4o", StatusClass: "5xx", Cursor: cursor}, []int{500, 502}, from.UnixMilli(), to.UnixMilli(), 20)
			return q, args, err
		}, "request_logs_"},
		{"logs window walk", func() (string, []any, error) {
			var w walker
			w.count = "server_errors"
			w.dims.add("key_id = ?", "key_a")
			w.dims.add("model = ?", "gpt-4o")
			q, args := w.bucketsSQL(store.PeriodDay, from.UnixMilli(), to.UnixMilli())
			return q, args, nil
		}, rollupIndex},
		{"usage, raw edge", raw(from, from.Add(30*time.Minute), UsageQuery{}), "request_logs_ts"},
		{"usage, raw edge, model", raw(from, from.Add(30*time.Minute), UsageQuery{Model: "gpt-4o"}), "request_logs_model_ts"},
		{"usage, raw edge, admin key", raw(from, from.Add(30*time.Minute), UsageQuery{KeyID: AdminKey}), "request_logs_key_ts"},
		{"usage, hour rollups", rollups(store.PeriodHour, UsageQuery{}), rollupIndex},
		{"usage, day rollups, model", rollups(store.PeriodDay, UsageQuery{Model: "gpt-4o"}), rollupIndex},
		{"usage, hour rollups, key and provider", rollups(store.PeriodHour, UsageQuery{KeyID: "key_b", Provider: "groq"}), rollupIndex},
		{"one row by id", func() (string, []any, error) { return logByIDQuery, []any{"r0500"}, nil }, "sqlite_autoindex_request_logs_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, args, err := tt.build()
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			plan := queryPlan(t, db, q, args)
			t.Logf("plan:\n%s", plan)
			if !strings.Contains(plan, "USING INDEX "+tt.index) && !strings.Contains(plan, "USING COVERING INDEX "+tt.index) &&
				!strings.Contains(plan, "USING "+tt.index) {
				t.Errorf("the plan does not use %s:\n%s", tt.index, plan)
			}
			for line := range strings.Lines(plan) {
				if (strings.HasPrefix(line, "SCAN request_logs") || strings.HasPrefix(line, "SCAN usage_rollups")) &&
					!strings.Contains(line, " INDEX ") {
					t.Errorf("the plan scans the whole table:\n%s", plan)
				}
			}
		})
	}
}
