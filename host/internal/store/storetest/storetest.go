// Package storetest makes request logs for tests and benchmarks: a
// generator of plausible rows, and a shared database of a million of them
// that is built once and kept between runs.
//
// # The rows
//
// [Gen] spreads rows evenly over a time span, in time order, with ids that
// start with their time as the proxy's do. 21 keys (the admin key, about a
// tenth of the requests, and 20 client keys of unequal weight) each use two
// or three of 8 models on 5 providers (the admin key uses all of them).
// About 92 % of requests succeed; the rest are 400, 401, 404 (an unknown
// model: no provider), 429, 500, 502, 503 and 504, mostly rate limits.
// Latencies are log-normal around a median per model (under a millisecond
// for refusals, a minute for timeouts), 60 % of requests are streams, and
// tokens and costs follow the models' prices. Keys are tied to a few
// models, as they tend to be in practice, which keeps the rollups smaller
// than independent random columns would (see the README's figures).
//
// # The shared database
//
// [Fixture] returns the path of a database of FixtureRows rows over the 30
// days before FixtureEnd, built on first use into the temporary directory
// ([os.TempDir]/llm-proxy-fixtures) and reused by later runs and other test
// binaries, since building it takes tens of seconds. The file name holds
// a hash of the migrations and the generator's version, so a schema change
// or a change here builds a new file; older files are removed then. Delete the
// directory to reclaim the space (about 400 MB).
package storetest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/migrations"
)

// Model is one model of the generated rows.
type Model struct {
	Name, Provider string
	// MedianMS is the median latency of a successful request.
	MedianMS float64
	// InputUSD and OutputUSD are prices per million tokens.
	InputUSD, OutputUSD float64
}

// Models are the models of the generated rows.
var Models = []Model{
	{"gpt-4o-mini", "openai", 700, 0.15, 0.60},
	{"gpt-4o", "openai", 1800, 2.50, 10},
	{"o3-mini", "openai", 5000, 1.10, 4.40},
	{"claude-3-5-haiku", "anthropic", 900, 0.80, 4},
	{"claude-sonnet-4", "anthropic", 2500, 3, 15},
	{"gemini-2.0-flash", "gemini", 600, 0.10, 0.40},
	{"llama-3.3-70b", "groq", 350, 0.59, 0.79},
	{"deepseek-chat", "deepseek", 2200, 0.27, 1.10},
}

// UnknownModel is the model of the 404 rows; they have no provider.
const UnknownModel = "no-such-model"

// Keys are the client key ids of the generated rows; the admin key's rows
// have a NULL key_id.
var Keys = func() []string {
	k := make([]string, 20)
	for i := range k {
		k[i] = fmt.Sprintf("key_%02d", i)
	}
	return k
}()

// KeyModels returns the indices in Models of the models key i of Keys
// uses: two or three, picked by the key's number.
func KeyModels(i int) []int {
	m := []int{i % len(Models), (i*3 + 1) % len(Models)}
	if m[1] == m[0] {
		m[1] = (m[0] + 1) % len(Models)
	}
	if i%3 == 0 {
		if third := (i*5 + 2) % len(Models); third != m[0] && third != m[1] {
			m = append(m, third)
		}
	}
	return m
}

// statusWeights are the statuses of the generated rows, per 1000.
var statusWeights = []struct {
	status, weight int
	errType        string
}{
	{200, 920, ""},
	{400, 10, "invalid_request_error"},
	{401, 3, "authentication_error"},
	{404, 7, "invalid_request_error"},
	{429, 30, "rate_limit_error"},
	{500, 10, "api_error"},
	{502, 10, "api_error"},
	{503, 5, "api_error"},
	{504, 5, "timeout_error"},
}

// Gen generates rows. It is not safe for concurrent use.
type Gen struct {
	rng        *rand.Rand
	from, step float64 // ms
	keyCum     []float64
}

// NewGen returns a generator of n rows spread evenly over [from, to),
// reproducible from seed.
func NewGen(seed uint64, from, to time.Time, n int) *Gen {
	g := &Gen{
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		from: float64(from.UnixMilli()),
		step: float64(to.Sub(from).Milliseconds()) / float64(max(n, 1)),
	}
	// The admin key (index 0) takes a tenth; client keys the rest, key i
	// with weight 1/(i+1).
	weights := []float64{0}
	var sum float64
	for i := range Keys {
		sum += 1 / float64(i+1)
	}
	for i := range Keys {
		weights = append(weights, 0.9/float64(i+1)/sum)
	}
	weights[0] = 0.1
	var c float64
	for _, w := range weights {
		c += w
		g.keyCum = append(g.keyCum, c)
	}
	return g
}

// Row fills r with row i of the sequence (0 ≤ i < n).
func (g *Gen) Row(i int, r *store.RequestLog) {
	rng := g.rng
	ts := int64(g.from + float64(i)*g.step)
	*r = store.RequestLog{
		ID:            "req_" + strconv.FormatInt(ts, 16) + fmt.Sprintf("%08x", uint32(i)),
		TS:            ts,
		PluginVersion: "1.0.0",
		Stream:        rng.IntN(10) < 6,
	}

	key := 0
	for u := rng.Float64(); key < len(g.keyCum)-1 && u >= g.keyCum[key]; key++ {
	}
	var m Model
	if key == 0 {
		m = Models[rng.IntN(len(Models))]
	} else {
		r.KeyID = sql.NullString{String: Keys[key-1], Valid: true}
		km := KeyModels(key - 1)
		m = Models[km[rng.IntN(len(km))]]
	}

	w := rng.IntN(1000)
	st := statusWeights[0]
	for _, s := range statusWeights {
		if w < s.weight {
			st = s
			break
		}
		w -= s.weight
	}
	r.Status = st.status
	if st.errType != "" {
		r.ErrorType = sql.NullString{String: st.errType, Valid: true}
	}
	r.Model, r.Provider, r.Plugin = m.Name, m.Provider, m.Provider
	logNormal := func(median, sigma float64) float64 {
		return median * math.Exp(rng.NormFloat64()*sigma)
	}
	switch {
	case st.status == 200:
		r.LatencyMS = logNormal(m.MedianMS, 0.6)
		r.PromptTokens = int64(logNormal(800, 1))
		r.CompletionTokens = int64(logNormal(m.MedianMS/4, 0.7))
		if rng.IntN(10) < 3 {
			r.CachedTokens = r.PromptTokens * int64(2+rng.IntN(7)) / 10
		}
		r.CostUSD = (float64(r.PromptTokens-r.CachedTokens)*m.InputUSD +
			float64(r.CachedTokens)*m.InputUSD/2 +
			float64(r.CompletionTokens)*m.OutputUSD) / 1e6
	case st.status == 404:
		r.Model, r.Provider, r.Plugin, r.PluginVersion = UnknownModel, "", "", ""
		r.LatencyMS = logNormal(0.3, 0.5)
	case st.status < 429:
		r.LatencyMS = logNormal(2, 0.5)
	case st.status == 429:
		r.LatencyMS = logNormal(80, 0.5)
	case st.status == 504:
		r.LatencyMS = logNormal(60000, 0.1)
	default:
		r.LatencyMS = logNormal(m.MedianMS/2, 1)
	}
	r.TTFBMS = r.LatencyMS
	if r.Stream && st.status == 200 {
		r.TTFBMS = r.LatencyMS * (0.05 + 0.25*rng.Float64())
	}
}

// Rows returns the n rows of a generator as a sequence; the RequestLog it
// yields is reused.
func Rows(seed uint64, from, to time.Time, n int) iter.Seq[*store.RequestLog] {
	return func(yield func(*store.RequestLog) bool) {
		g := NewGen(seed, from, to, n)
		var r store.RequestLog
		for i := range n {
			g.Row(i, &r)
			if !yield(&r) {
				return
			}
		}
	}
}

// The shared database: FixtureRows rows over FixtureDays days ending at
// FixtureEnd (a midnight UTC), made by Rows(FixtureSeed, ...).
const (
	FixtureRows = 1_000_000
	FixtureDays = 30
	FixtureSeed = 1
)

// FixtureEnd is the end (excluded) of the shared database's time span.
var FixtureEnd = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// FixtureStart is the start of the shared database's time span.
var FixtureStart = FixtureEnd.AddDate(0, 0, -FixtureDays)

// genVersion changes whenever Gen makes different rows, or the store
// writes them differently in a way the migration files do not show, so
// that an old fixture file is not reused.
const genVersion = 1

// schemaHash returns a short hash of the migration files and genVersion:
// the key of the fixture file.
func schemaHash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "gen %d\n", genVersion)
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		fmt.Fprintf(h, "%s %d\n", path, len(b))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// Fixture returns the path of the shared database, building it first if
// no usable one exists. Open it with store.Open; do not write to it.
func Fixture(tb testing.TB) string {
	tb.Helper()
	path, err := fixture(context.Background(), tb.Logf)
	if err != nil {
		tb.Fatalf("request log fixture: %v", err)
	}
	return path
}

// OpenFixture opens the shared database (see Fixture) and closes it when
// the test ends. With LLMPROXY_TEST_DB=postgres it is a PostgreSQL
// database of the test binary's server (pgtest) instead, loaded with the
// same rows on first use (about a minute) and shared by the binary's
// tests and benchmarks.
func OpenFixture(tb testing.TB) *store.Store {
	tb.Helper()
	if os.Getenv("LLMPROXY_TEST_DB") == "postgres" {
		return openPostgresFixture(tb)
	}
	s, err := store.Open(tb.Context(), store.Options{Path: Fixture(tb)})
	if err != nil {
		tb.Fatalf("open the request log fixture: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

var (
	pgFixtureOnce sync.Once
	pgFixtureDSN  string
	pgFixtureErr  error
)

func openPostgresFixture(tb testing.TB) *store.Store {
	tb.Helper()
	dsn := pgtest.New(tb) // skips or fails as pgtest says, before the Once
	pgFixtureOnce.Do(func() {
		start := time.Now()
		var s *store.Store
		s, pgFixtureErr = store.OpenPostgres(context.Background(), dsn, store.Options{})
		if pgFixtureErr != nil {
			return
		}
		defer s.Close()
		batch := make([]store.RequestLog, 0, 1024)
		for r := range Rows(FixtureSeed, FixtureStart, FixtureEnd, FixtureRows) {
			if batch = append(batch, *r); len(batch) == cap(batch) {
				if pgFixtureErr = s.InsertLogs(context.Background(), batch); pgFixtureErr != nil {
					return
				}
				batch = batch[:0]
			}
		}
		if pgFixtureErr = s.InsertLogs(context.Background(), batch); pgFixtureErr != nil {
			return
		}
		if _, pgFixtureErr = s.CompactRollups(context.Background(), FixtureEnd); pgFixtureErr != nil {
			return
		}
		// PostgreSQL plans from statistics, which autovacuum gathers some
		// time after a load; a database that has run for a while has them.
		if _, pgFixtureErr = s.Writer().Exec(`ANALYZE`); pgFixtureErr != nil {
			return
		}
		pgFixtureDSN = dsn
		tb.Logf("built the PostgreSQL request log fixture (%d rows) in %s", FixtureRows, time.Since(start).Round(time.Second))
	})
	if pgFixtureErr != nil {
		tb.Fatalf("build the PostgreSQL request log fixture: %v", pgFixtureErr)
	}
	s, err := store.OpenPostgres(tb.Context(), pgFixtureDSN, store.Options{})
	if err != nil {
		tb.Fatalf("open the request log fixture: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func fixture(ctx context.Context, logf func(string, ...any)) (string, error) {
	schema, err := schemaHash()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "llm-proxy-fixtures")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := fmt.Sprintf("logs-%d-%s.db", FixtureRows, schema)
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}

	// Another test binary may be building it: wait for its lock.
	unlock, err := lock(ctx, filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	removeStale(dir, name)

	start := time.Now()
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	s, err := store.Open(ctx, store.Options{Path: tmp})
	if err != nil {
		return "", err
	}
	// No ANALYZE: the proxy does not run it either, and the plans must
	// be good without statistics.
	n, err := s.LoadLogs(ctx, Rows(FixtureSeed, FixtureStart, FixtureEnd, FixtureRows))
	if err == nil {
		// Sum the days as the proxy would have by FixtureEnd.
		_, err = s.CompactRollups(ctx, FixtureEnd)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	logf("built %s: %d rows in %v", path, n, time.Since(start).Round(time.Second))
	return path, nil
}

// lockStale is how long a lock file may go untouched before it is taken
// to be left by a process that died; the holder touches it every
// lockStale/4.
const lockStale = 30 * time.Second

// lock takes an exclusive lock file, waiting while another process holds
// it, and keeps it fresh until unlock is called.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			done := make(chan struct{})
			go func() {
				t := time.NewTicker(lockStale / 4)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case now := <-t.C:
						os.Chtimes(path, now, now)
					}
				}
			}()
			return func() { close(done); os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > lockStale {
			os.Remove(path)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// removeStale deletes the fixture files of other versions in dir.
func removeStale(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "logs-") && !strings.HasPrefix(e.Name(), keep) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
