package logquery

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// TestLogsWindowsMatchScan walks every page of filters with two
// conditions or more, which Logs reads in windows found from the rollups,
// over random rows of ten days (some days summed into day rows, some rows
// late), and checks each walk against a plain filter of the rows.
func TestLogsWindowsMatchScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(31, 32))
	s := openStore(t, nil)
	rows := randomLogs(rng, 3000, 10)
	// Ties: some rows share a timestamp.
	for i := 1; i < len(rows); i += 7 {
		rows[i].TS = rows[i-1].TS
	}
	insert := func(rows []store.RequestLog) {
		for len(rows) > 0 {
			n := min(len(rows), 1+rng.IntN(300))
			if err := s.InsertLogs(t.Context(), rows[:n]); err != nil {
				t.Fatal(err)
			}
			rows = rows[n:]
		}
	}
	insert(rows[:2000])
	if _, err := s.CompactRollups(t.Context(), t0.Add(7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	insert(rows[2000:])
	db := s.Reader()

	day := func(d float64) time.Time { return t0.Add(time.Duration(d * float64(24*time.Hour))) }
	tests := []struct {
		f    LogFilter
		keep func(r store.RequestLog) bool
	}{
		{LogFilter{KeyID: "key_a", Model: "gpt-4o"},
			func(r store.RequestLog) bool { return r.KeyID.String == "key_a" && r.Model == "gpt-4o" }},
		{LogFilter{KeyID: AdminKey, Model: "claude"},
			func(r store.RequestLog) bool { return !r.KeyID.Valid && r.Model == "claude" }},
		{LogFilter{Model: "gpt-4o", Provider: "anthropic"}, // never together
			func(store.RequestLog) bool { return false }},
		{LogFilter{Model: "llama", Provider: "openai"},
			func(r store.RequestLog) bool { return r.Model == "llama" && r.Provider == "openai" }},
		{LogFilter{KeyID: "key_b", StatusClass: "5xx"},
			func(r store.RequestLog) bool { return r.KeyID.String == "key_b" && r.Status >= 500 }},
		{LogFilter{KeyID: "key_c", StatusClass: "2xx"},
			func(r store.RequestLog) bool { return r.KeyID.String == "key_c" && r.Status >= 200 && r.Status < 300 }},
		{LogFilter{Model: "gpt-4o-mini", Status: 401},
			func(r store.RequestLog) bool { return r.Model == "gpt-4o-mini" && r.Status == 401 }},
		{LogFilter{Provider: "groq", StatusClass: "4xx", From: day(2.5), To: day(8.25)},
			func(r store.RequestLog) bool {
				return r.Provider == "groq" && r.Status >= 400 && r.Status < 500 &&
					r.TS >= day(2.5).UnixMilli() && r.TS < day(8.25).UnixMilli()
			}},
		{LogFilter{KeyID: "key_d", Model: "", Provider: "openai", Status: 200, From: day(6.9)},
			func(r store.RequestLog) bool {
				return r.KeyID.String == "key_d" && r.Provider == "openai" && r.Status == 200 && r.TS >= day(6.9).UnixMilli()
			}},
		{LogFilter{KeyID: "key_a", Model: "claude", Provider: "anthropic", StatusClass: "4xx", To: day(9)},
			func(r store.RequestLog) bool {
				return r.KeyID.String == "key_a" && r.Model == "claude" && r.Provider == "anthropic" &&
					r.Status >= 400 && r.Status < 500 && r.TS < day(9).UnixMilli()
			}},
		{LogFilter{KeyID: "key_nobody", Model: "gpt-4o"}, func(store.RequestLog) bool { return false }},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 7, 50} {
			f := tt.f
			f.Limit = limit
			t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
				t.Parallel()
				want := newestFirst(rows, tt.keep)
				if limit == 1 && len(want) > 40 {
					t.Skip("too many pages of one row")
				}
				got, _ := walk(t, db, f)
				if !slices.Equal(got, want) {
					t.Fatalf("walk returned %d rows\n%v\nwant %d\n%v", len(got), got, len(want), want)
				}
			})
		}
	}
}
