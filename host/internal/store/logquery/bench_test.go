package logquery

import (
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
)

// The benchmarks read storetest's shared database: a million requests over
// the 30 days before storetest.FixtureEnd, built on first use (tens of
// seconds) and kept in the temporary directory for later runs.
//
//	go test -run '^$' -bench 'Usage|LogsPage' ./host/internal/store/logquery

// now is the time the benchmarks pretend it is: a little after the
// fixture's last request, not on the hour.
var benchNow = storetest.FixtureEnd.Add(-17*time.Minute - 23*time.Second)

func BenchmarkUsage(b *testing.B) {
	db := storetest.OpenFixture(b).Reader()
	start, end := storetest.FixtureStart, storetest.FixtureEnd
	lastDay := func(q UsageQuery) UsageQuery {
		q.From, q.To = benchNow.Add(-24*time.Hour), benchNow
		return q
	}
	for _, bb := range []struct {
		name string
		q    UsageQuery
	}{
		{"30 days by day", UsageQuery{From: start, To: end, Bucket: BucketDay}},
		{"30 days by day by model", UsageQuery{From: start, To: end, Bucket: BucketDay, GroupBy: GroupModel}},
		{"30 days by day by key", UsageQuery{From: start, To: end, Bucket: BucketDay, GroupBy: GroupKey}},
		{"30 days by day by provider", UsageQuery{From: start, To: end, Bucket: BucketDay, GroupBy: GroupProvider}},
		{"30 days by day one model", UsageQuery{From: start, To: end, Bucket: BucketDay, Model: "claude-sonnet-4"}},
		{"30 days by day one key by model", UsageQuery{From: start, To: end, Bucket: BucketDay, KeyID: "key_03", GroupBy: GroupModel}},
		{"30 days to now by day by model", UsageQuery{From: benchNow.AddDate(0, 0, -30), To: benchNow, Bucket: BucketDay, GroupBy: GroupModel}},
		{"1 day by hour", UsageQuery{From: end.Add(-24 * time.Hour), To: end}},
		{"1 day by hour by model", UsageQuery{From: end.Add(-24 * time.Hour), To: end, GroupBy: GroupModel}},
		{"1 day by hour by key", UsageQuery{From: end.Add(-24 * time.Hour), To: end, GroupBy: GroupKey}},
		{"1 day by hour by provider", UsageQuery{From: end.Add(-24 * time.Hour), To: end, GroupBy: GroupProvider}},
		{"last 24h to now by hour by model", lastDay(UsageQuery{GroupBy: GroupModel})},
		{"7 days by hour", UsageQuery{From: end.AddDate(0, 0, -7), To: end}},
		{"30 days by hour", UsageQuery{From: start, To: end}},
		// The dashboard's overview: the last hour by the minute (raw
		// rows), the last day by the hour (rollups, above).
		{"overview last hour by minute", UsageQuery{From: benchNow.Add(-time.Hour), To: benchNow, Bucket: BucketMinute}},
		{"overview last hour by minute by model", UsageQuery{From: benchNow.Add(-time.Hour), To: benchNow, Bucket: BucketMinute, GroupBy: GroupModel}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			var n int
			cpu := storetest.CPUTime()
			for b.Loop() {
				rows, err := Usage(b.Context(), db, bb.q)
				if err != nil || len(rows) == 0 {
					b.Fatalf("Usage = %d rows, %v", len(rows), err)
				}
				n = len(rows)
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(n), "rows")
		})
	}
}

// BenchmarkUsageFromRawRows is how /api/usage was computed before the
// rollups, for comparison: 30 days by day straight from request_logs,
// exact percentiles from a sort of every latency.
func BenchmarkUsageFromRawRows(b *testing.B) {
	db := storetest.OpenFixture(b).Reader()
	q := UsageQuery{From: storetest.FixtureStart, To: storetest.FixtureEnd, Bucket: BucketDay}
	cpu := storetest.CPUTime()
	for b.Loop() {
		if rows := exactUsage(b, db, q); len(rows) != 30 {
			b.Fatalf("%d rows", len(rows))
		}
	}
	reportCPU(b, cpu)
}

func BenchmarkLogsPage(b *testing.B) {
	db := storetest.OpenFixture(b).Reader()
	mid := storetest.FixtureStart.Add(15 * 24 * time.Hour)
	deep := encodeCursor(mid.UnixMilli(), "req_~")
	day := func(f LogFilter) LogFilter {
		f.From, f.To = mid.Add(-24*time.Hour), mid
		return f
	}
	filters := []struct {
		name string
		f    LogFilter
	}{
		{"none", LogFilter{}},
		{"day", day(LogFilter{})},
		{"key", LogFilter{KeyID: "key_07"}},
		{"admin key", LogFilter{KeyID: AdminKey}},
		{"model", LogFilter{Model: "claude-sonnet-4"}},
		{"provider", LogFilter{Provider: "groq"}},
		{"status 200", LogFilter{Status: 200}},
		{"status 503", LogFilter{Status: 503}},
		{"2xx", LogFilter{StatusClass: "2xx"}},
		{"4xx", LogFilter{StatusClass: "4xx"}},
		{"5xx", LogFilter{StatusClass: "5xx"}},
		{"key day", day(LogFilter{KeyID: "key_07"})},
		{"key 5xx", LogFilter{KeyID: "key_07", StatusClass: "5xx"}},
		{"key status 401", LogFilter{KeyID: "key_07", Status: 401}},
		{"key and its model", LogFilter{KeyID: "key_03", Model: storetest.Models[storetest.KeyModels(3)[0]].Name}},
		{"key and a model it never uses", LogFilter{KeyID: "key_00", Model: "claude-sonnet-4"}},
		{"model and provider", LogFilter{Model: "gpt-4o", Provider: "openai"}},
		{"model and another provider", LogFilter{Model: "gpt-4o", Provider: "groq"}},
		{"model 429", LogFilter{Model: "gemini-2.0-flash", Status: 429}},
		{"provider key day 5xx", day(LogFilter{Provider: "anthropic", KeyID: "key_01", StatusClass: "5xx"})},
		{"500 rows", LogFilter{Limit: MaxLimit}},
	}
	for _, ff := range filters {
		for _, page := range []string{"first", "deep"} {
			f := ff.f
			if page == "deep" {
				f.Cursor = deep
			}
			b.Run(ff.name+"/"+page, func(b *testing.B) {
				var n int
				cpu := storetest.CPUTime()
				defer reportCPU(b, cpu)
				for b.Loop() {
					p, err := Logs(b.Context(), db, f)
					if err != nil {
						b.Fatalf("Logs: %v", err)
					}
					n = len(p.Data)
				}
				b.ReportMetric(float64(n), "rows")
			})
		}
	}
}

// reportCPU reports the process's CPU time per operation since cpu, in
// milliseconds: on a machine shared with other work, it varies less than
// the elapsed time.
func reportCPU(b *testing.B, cpu time.Duration) {
	if now := storetest.CPUTime(); now > 0 {
		b.ReportMetric(float64((now-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
}

// BenchmarkOverview is GET /api/overview over the million-row fixture.
func BenchmarkOverview(b *testing.B) {
	db := storetest.OpenFixture(b).Reader()
	for _, bb := range []struct {
		name string
		f    func() (Overview, error)
	}{
		{"last hour by minute", func() (Overview, error) { return OverviewHour(b.Context(), db, benchNow) }},
		{"last day by hour", func() (Overview, error) { return OverviewDay(b.Context(), db, benchNow) }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			cpu := storetest.CPUTime()
			for b.Loop() {
				o, err := bb.f()
				if err != nil || o.Totals.Requests == 0 {
					b.Fatalf("overview: %+v %v", o.Totals, err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}
