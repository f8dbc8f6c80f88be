package store_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
)

// BenchmarkInsertLogs measures InsertLogs, rollups included, with the
// request logger's batches: full ones of 1024 rows (the writer under load,
// requestlog.DefaultBatchSize), 256, and small ones of 16 (a quiet proxy
// writes what came in 200 ms). The rows are storetest's mix of keys,
// models and statuses, arriving at 20,000 a second, so a batch touches a
// few dozen rollup groups; as in production, timestamps only grow and ids
// are in time order.
//
// rows/s is the writer's throughput on one connection; cpu-µs/row is the
// process's CPU time (user and system, all threads) per row stored, which
// is what logging costs a request on top of the queueing in requestlog.
//
// The db=postgres runs write to a PostgreSQL server with its default
// durability (pgtest.NewDurable: every commit flushed), in another
// process: cpu-µs/row is then the proxy's side only.
func BenchmarkInsertLogs(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, size := range []int{1024, 256, 16} {
			b.Run("db="+db+"/batch="+strconv.Itoa(size), func(b *testing.B) { benchInsertLogs(b, db, size) })
		}
	}
}

func benchInsertLogs(b *testing.B, db string, size int) {
	var s *store.Store
	var err error
	if db == "postgres" {
		s, err = store.OpenPostgres(b.Context(), pgtest.NewDurable(b), store.Options{MaxConns: 2})
	} else {
		s, err = store.Open(b.Context(), store.Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	}
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// A pool of generated rows, reused with fresh ids and times.
	const rate = 20000 // rows per second of simulated time
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pool := make([]store.RequestLog, 64*1024)
	gen := storetest.NewGen(7, start, start.Add(time.Duration(len(pool))*time.Second/rate), len(pool))
	for i := range pool {
		gen.Row(i, &pool[i])
	}
	batch := make([]store.RequestLog, size)
	var n int64
	cpu0 := storetest.CPUTime()
	for b.Loop() {
		for i := range batch {
			batch[i] = pool[n%int64(len(pool))]
			batch[i].TS = start.UnixMilli() + n*1000/rate
			batch[i].ID = "req_" + strconv.FormatInt(batch[i].TS, 16) + strconv.FormatInt(n, 36)
			n++
		}
		if err := s.InsertLogs(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	cpu := storetest.CPUTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/row")
	}
	b.ReportMetric(0, "ns/op")
}
