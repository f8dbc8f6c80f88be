package app_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/host/internal/app"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

const (
	// testEncryptionKey is the master key of test proxies (64 hex digits).
	testEncryptionKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	adminKey          = "sk-test-admin-4b1f9e07c2d8a635c91e7d20"
	upstreamKey       = "sk-upstream-secret-4f9a"
)

// proxy is a running LLM Proxy with the real plugins, on loopback, in front
// of a fake OpenAI upstream.
type proxy struct {
	t         testing.TB
	URL       string
	Dir       string
	Upstream  *fakeupstream.Server
	App       *app.App
	Config    *config.Config
	Logs      *syncBuffer
	stopped   bool
	stopMutex sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// upstreamModels are served by the "fake" provider.
var upstreamModels = []string{
	"gpt-4o-mini", "text-embedding-3-small",
	fakeupstream.ModelFail429, fakeupstream.ModelFail500, fakeupstream.ModelFail400,
	fakeupstream.ModelSlowHeaders, fakeupstream.ModelStreamErrorMidway, fakeupstream.ModelSlowStream,
	fakeupstream.ModelBigOutput, fakeupstream.ModelEndlessStream,
}

var hostileModels = []string{"panic", "loop", "sleep", "membomb", "badhost", "badptr", "flood", "bigout", "exit", "silent", "slow", "ok"}

// TestMain stops the PostgreSQL server of LLMPROXY_TEST_DB=postgres runs.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func startProxy(t *testing.T, tweak func(*config.Config)) *proxy {
	t.Helper()
	return startProxyWith(t, tweak, fakeupstream.Options{})
}

// startProxyWith also sets the fake upstream's options (its key is fixed).
func startProxyWith(t testing.TB, tweak func(*config.Config), upOpts fakeupstream.Options) *proxy {
	t.Helper()
	return startProxyFull(t, tweak, upOpts, nil)
}

// startProxyFull also lets prepare change the App before it starts.
func startProxyFull(t testing.TB, tweak func(*config.Config), upOpts fakeupstream.Options, prepare func(*app.App)) *proxy {
	t.Helper()
	upOpts.APIKey = upstreamKey
	up, err := fakeupstream.Start(upOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)

	dir := t.TempDir()
	testplugins.Install(t, testplugins.Build(t, "plugins/openai"), dir, "openai.wasm")
	testplugins.Install(t, testplugins.Build(t, "plugins/demo"), dir, "demo.wasm")
	testplugins.Install(t, testplugins.Build(t, "host/internal/testplugins/hostile"), dir, "hostile.wasm")

	cfg := config.Default()
	cfg.Plugins.Dir = dir
	cfg.Plugins.CacheDir = testplugins.CacheDir()
	cfg.Database.Path = filepath.Join(t.TempDir(), "llm-proxy.db")
	cfg.Server.ShutdownTimeout = config.Duration(5 * time.Second)
	cfg.Providers = []config.ProviderConfig{
		{Name: "fake", Plugin: "openai", BaseURL: up.URL, APIKeyEnv: "FAKE_UPSTREAM_KEY", Models: upstreamModels, AllowPrivateNetwork: true},
		{Name: "demo", Plugin: "demo", BaseURL: "http://127.0.0.1", Models: []string{"demo-echo", "demo-story"}, AllowPrivateNetwork: true},
		{Name: "hostile", Plugin: "hostile", BaseURL: up.URL, APIKeyEnv: "FAKE_UPSTREAM_KEY", Models: hostileModels, AllowPrivateNetwork: true},
	}
	timeout := config.Duration(2 * time.Second)
	pages, emit := 256, config.ByteSize(8<<20)
	cfg.Plugins.LimitsOverride = map[string]config.LimitsPatch{
		"hostile": {RequestTimeout: &timeout, MemoryPages: &pages, RecycleAfterPages: &pages, MaxEmitBytes: &emit},
	}
	if tweak != nil {
		tweak(cfg)
	}
	onTestDatabase(t, cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	level := slog.LevelDebug
	if cfg.Log.Level != "info" {
		_ = level.UnmarshalText([]byte(cfg.Log.Level))
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	environ := []string{"LLMPROXY_ADMIN_KEY=" + adminKey, "FAKE_UPSTREAM_KEY=" + upstreamKey, "LLMPROXY_ENCRYPTION_KEY=" + testEncryptionKey}
	a, err := app.New(cfg, environ, log)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(a)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ln); err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, URL: "http://" + ln.Addr().String(), Dir: dir, Upstream: up, App: a, Config: cfg, Logs: logs}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return p
}

// testDatabases maps each SQLite path a test gave to the PostgreSQL
// database that stands for it when the suite runs on PostgreSQL
// (LLMPROXY_TEST_DB=postgres): a proxy restarted on the same path finds
// the same database.
var testDatabases sync.Map

// onTestDatabase points cfg at PostgreSQL when the suite runs there.
func onTestDatabase(t testing.TB, cfg *config.Config) {
	t.Helper()
	if os.Getenv("LLMPROXY_TEST_DB") != "postgres" || cfg.Database.Driver == config.DriverPostgres {
		return
	}
	dsn, ok := testDatabases.Load(cfg.Database.Path)
	if !ok {
		dsn, _ = testDatabases.LoadOrStore(cfg.Database.Path, pgtest.New(t))
	}
	cfg.Database.Driver, cfg.Database.DSN, cfg.Database.DSNEnv = config.DriverPostgres, dsn.(string), ""
}

// openDB opens the database at path as another process would: the SQLite
// file, or the PostgreSQL database standing for it.
func openDB(t testing.TB, path string) *store.Store {
	t.Helper()
	c := config.Default()
	c.Database.Path = path
	onTestDatabase(t, c)
	st, err := app.OpenStore(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Stop shuts the proxy down (once).
func (p *proxy) Stop() {
	p.stopMutex.Lock()
	defer p.stopMutex.Unlock()
	if !p.stopped {
		p.stopped = true
		p.App.Shutdown()
	}
}

func (p *proxy) client(key string) *openai.Client {
	c := openai.NewClient(
		option.WithBaseURL(p.URL+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(20*time.Second),
	)
	return &c
}

// writeFile is a small helper for tests that drop files into the folder.
func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
