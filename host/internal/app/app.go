// Package app wires LLM Proxy together from a config: the plugin registry,
// the providers and their egress clients, the router and the HTTP server.
// The binary and the integration tests start the proxy the same way.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/llm-proxy/llm-proxy/dashboard"
	"github.com/llm-proxy/llm-proxy/host/internal/bodylog"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
	"github.com/llm-proxy/llm-proxy/host/internal/metrics"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/pricing"
	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/server"
	"github.com/llm-proxy/llm-proxy/host/internal/sessions"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/tracing"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// Errors that stop the proxy from starting until the operator acts.
var (
	// ErrNoAdminKey: the admin key variable is empty.
	ErrNoAdminKey = errors.New("no admin key")
	// ErrWeakAdminKey: the admin key is too short or too repetitive (see
	// secrets.CheckAdminKey).
	ErrWeakAdminKey = errors.New("weak admin key")
	// ErrNoEncryptionKey: neither the key variable nor the key file exists.
	ErrNoEncryptionKey = errors.New("no encryption key")
)

// How often the tables kept in memory are checked for changes made by
// another process (a replica, the llm-proxy command). On PostgreSQL a
// change is noticed at once (store.ListenChanges), and the poll is only a
// safety net.
const (
	pollSQLite   = time.Second
	pollPostgres = 15 * time.Second
)

// ErrNoDSN: the config asks for PostgreSQL but names no connection string.
var ErrNoDSN = errors.New("no PostgreSQL connection string")

// OpenStore opens the database the config names, applying any pending
// migrations: the SQLite file, or the PostgreSQL database whose
// connection string is in database.dsn_env's variable or database.dsn.
func OpenStore(ctx context.Context, cfg *config.Config, environ []string) (*store.Store, error) {
	return openStore(ctx, cfg, envMap(environ))
}

// MigrationStatus reports where the config's database stands against the
// migrations built into this binary (store.MigrationStatus), without
// changing it, and names the database: the SQLite file's path, or
// "postgres".
func MigrationStatus(ctx context.Context, cfg *config.Config, environ []string) (string, []store.MigrationState, error) {
	db := cfg.Database
	if db.Driver != config.DriverPostgres {
		states, err := store.MigrationStatus(ctx, db.Path)
		return db.Path, states, err
	}
	dsn := db.PostgresDSN(envMap(environ))
	if dsn == "" {
		return "", nil, fmt.Errorf("%w: database.driver is %q; set %s or database.dsn", ErrNoDSN, db.Driver, db.DSNEnv)
	}
	states, err := store.PostgresMigrationStatus(ctx, dsn)
	return "postgres", states, err
}

func openStore(ctx context.Context, cfg *config.Config, env map[string]string) (*store.Store, error) {
	db := cfg.Database
	if db.Driver != config.DriverPostgres {
		return store.Open(ctx, store.Options{Path: db.Path})
	}
	dsn := db.PostgresDSN(env)
	if dsn == "" {
		return nil, fmt.Errorf("%w: database.driver is %q; set %s or database.dsn", ErrNoDSN, db.Driver, db.DSNEnv)
	}
	return store.OpenPostgres(ctx, dsn, store.Options{MaxConns: db.MaxConnections})
}

// App is a running proxy.
type App struct {
	cfg       *config.Config
	log       *slog.Logger
	Registry  *plugin.Registry
	Server    *server.Server
	store     *store.Store
	requests  *requestlog.Logger
	keys      *keys.Registry
	providers *providers.Manager // config and database providers; rebuilds routes on change
	routes    *router.Live       // the providers the server routes to
	key       *secrets.Key       // signs sessions and seals stored secrets
	hub       *hub.Hub           // live events for dashboards
	metrics   *metrics.Metrics   // nil when off
	tracer    *tracing.Tracer    // nil when off
	// metricsSrv serves /metrics on [metrics] listen; nil without it.
	metricsSrv  *http.Server
	metricsAddr string
	settings    *settings // changed at run time through /api/settings
	stopHub     context.CancelFunc
	hubDone     chan struct{}
	cancel      context.CancelFunc
	served      chan error

	// KeyUsageFlushEvery is how often the client keys' last-used stamps
	// are written to the database (and once more at shutdown). New sets
	// it to DefaultKeyUsageFlushEvery; change it before Start.
	KeyUsageFlushEvery time.Duration
	flushed            chan struct{} // closed when the flush loop has returned
	// Version is the binary's version, as the replicas table shows it;
	// set it before Start.
	Version   string
	limits    *limits.Keeper
	replicaID string // this process in the replicas table
}

// DefaultKeyUsageFlushEvery is the default of App.KeyUsageFlushEvery.
const DefaultKeyUsageFlushEvery = 5 * time.Second

// Hub is the live event hub behind /api/ws.
func (a *App) Hub() *hub.Hub { return a.hub }

// Store is the proxy's database.
func (a *App) Store() *store.Store { return a.store }

// Routes is the holder of the current router (its providers).
func (a *App) Routes() *router.Live { return a.routes }

// New builds the proxy. environ supplies the admin key and provider
// secrets (os.Environ() in the binary).
func New(cfg *config.Config, environ []string, log *slog.Logger) (*App, error) {
	env := envMap(environ)
	adminKey := env[cfg.Auth.AdminKeyEnv]
	if adminKey == "" {
		return nil, fmt.Errorf("%w: set %s to the key clients and admins must send (make one with `llm-proxy keygen`)", ErrNoAdminKey, cfg.Auth.AdminKeyEnv)
	}
	if err := secrets.CheckAdminKey(adminKey); err != nil {
		return nil, fmt.Errorf("%w: the admin key in %s is too weak (%v); make a strong one with `llm-proxy keygen`", ErrWeakAdminKey, cfg.Auth.AdminKeyEnv, err)
	}
	key, err := loadEncryptionKey(cfg, env)
	if err != nil {
		return nil, err
	}
	cacheDir, err := cfg.CacheDir()
	if err != nil {
		return nil, err
	}
	events := hub.New(hub.Options{Logger: log})
	reg, err := plugin.NewRegistry(plugin.RegistryOptions{
		OnChange: func(in plugin.Info) { events.Publish(pluginEvent(in), in) },
		Dir:      cfg.Plugins.Dir,
		CacheDir: cacheDir,
		LimitsFor: func(name string) plugin.Limits {
			return cfg.Plugins.LimitsFor(name).Plugin()
		},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	st, err := openStore(context.Background(), cfg, env)
	if err != nil {
		return nil, err
	}
	ks, err := keys.Open(context.Background(), st, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	var tracer *tracing.Tracer
	if tc := cfg.Tracing; tc.Endpoint != "" {
		if tracer, err = tracing.New(tracing.Options{Endpoint: tc.Endpoint, SampleRatio: tc.SampleRatio,
			ServiceName: tc.ServiceName, PropagateUpstream: tc.PropagateUpstream}); err != nil {
			st.Close()
			return nil, err
		}
		log.Info("tracing on", "endpoint", tc.Endpoint, "sample_ratio", tc.SampleRatio, "propagate_upstream", tc.PropagateUpstream)
	}
	routes := router.NewLive(router.New(nil, nil))
	b := cfg.Routing.Breaker
	health := router.NewHealth(router.BreakerConfig{Failures: b.Failures, ErrorRate: b.ErrorRate, Window: b.Window,
		Cooldown: b.Cooldown.Std()}, nil)
	health.OnChange = func(th router.TargetHealth) { events.Publish(hub.BreakerChanged, th) }
	pm, err := providers.Open(context.Background(), providers.Options{
		Store:  st,
		Key:    key,
		Live:   routes,
		Routes: cfg.Routes,
		Config: cfg.Providers,
		ConfigSecret: func(pc config.ProviderConfig) string {
			var keys []string
			for _, name := range append([]string{pc.APIKeyEnv}, pc.APIKeyEnvs...) {
				if name == "" {
					continue
				}
				if v := env[name]; v != "" {
					keys = append(keys, v)
				} else {
					log.Warn("provider key not set; its upstream will refuse requests until it is", "provider", pc.Name, "env", name)
				}
			}
			return strings.Join(keys, providers.SecretSep)
		},
		Build: func(pc config.ProviderConfig, secret string) (*router.Provider, error) {
			return newProvider(pc, secret, reg, tracer)
		},
		Logger: log,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	// The body policy is always ready: body logging can be switched on at
	// run time (PATCH /api/settings).
	sink := &storeSink{st: st, bodies: bodylog.New(int(cfg.Logs.MaxBodyBytes), cfg.Logs.RedactFields)}
	sets := newSettings(st, cfg.Logs.RetentionDays, cfg.Logs.Bodies, int(cfg.Logs.MaxBodyBytes), cfg.Logs.RedactFields)
	if err := sets.load(context.Background()); err != nil {
		st.Close()
		return nil, err
	}
	requests := requestlog.New(sink, requestlog.Options{QueueSize: cfg.Logs.QueueSize, Logger: log,
		Unavailable: store.IsUnavailable,
		Broadcaster: finishedEvents{events}})
	accounts := users.New(st)
	var srv *server.Server
	var mets *metrics.Metrics
	if cfg.Metrics.Enabled || cfg.Metrics.Listen != "" {
		mets = metrics.New(metrics.Options{PerKey: cfg.Metrics.PerKey, Sources: metrics.Sources{
			InFlight:   func() int64 { return srv.InFlight() },
			Plugins:    reg.List,
			RequestLog: requests.Stats,
			Hub:        events.Stats,
			Breakers:   health.Snapshot,
		}})
	}
	var self *App // for the server's callbacks; set below
	keeper := limits.New(func(ctx context.Context, keyID string, since time.Time) (float64, error) {
		return st.KeySpent(ctx, keyID, since)
	}, nil)
	srv = server.New(server.Options{
		Metrics:      mets,
		Tracer:       tracer,
		ServeMetrics: cfg.Metrics.Enabled,
		MetricsToken: env[cfg.Metrics.TokenEnv],
		Sessions:     sessions.New(key, accounts, st, sessions.Options{TTL: cfg.Auth.SessionTTL.Std()}),
		Users:        accounts,
		Hub:          events,
		Router:       routes,
		Health:       health,
		Limits:       keeper,
		Routing: server.Routing{MaxAttempts: cfg.Routing.MaxAttempts, RetryDeadline: cfg.Routing.RetryDeadline.Std(),
			BackoffBase: cfg.Routing.BackoffBase.Std(), BackoffMax: cfg.Routing.BackoffMax.Std()},
		Plugins:        reg,
		DatabaseUp:     (&dbProbe{ping: st.Ping, log: log, up: true}).Up,
		Requests:       requests,
		Responses:      st,
		ResponsesTTL:   responsesTTL(cfg.Responses),
		Keys:           ks,
		Providers:      pm,
		Routes:         pm,
		LogDB:          st.Reader(),
		Prices:         prices(cfg.Prices),
		Dashboard:      dashboard.Files(),
		AdminKey:       adminKey,
		MaxBodyBytes:   int(cfg.Server.MaxBodyBytes),
		Settings:       sets,
		Replicas:       func(ctx context.Context) ([]server.Replica, error) { return self.replicas(ctx) },
		ReadTimeout:    cfg.Server.ReadTimeout.Std(),
		WriteTimeout:   cfg.Server.WriteTimeout.Std(),
		TrustedProxies: cfg.Server.TrustedProxies,
		Logger:         log,
	})
	sets.srv = srv
	sets.apply()
	self = &App{cfg: cfg, log: log, Registry: reg, Server: srv, store: st, requests: requests, keys: ks, providers: pm, routes: routes, key: key, hub: events, settings: sets, metrics: mets, tracer: tracer,
		KeyUsageFlushEvery: DefaultKeyUsageFlushEvery, limits: keeper, replicaID: newReplicaID(), Version: "dev"}
	return self, nil
}

// newProvider builds the request path's provider from its definition and
// secret. The secret goes to the egress client only: the plugin's config
// (GuestConfig) never holds it.
func newProvider(pc config.ProviderConfig, secret string, reg *plugin.Registry, tracer *tracing.Tracer) (*router.Provider, error) {
	opts := map[string]any{}
	for k, v := range pc.Options {
		opts[k] = v
	}
	guest, err := json.Marshal(map[string]any{
		"provider": pc.Name,
		"base_url": strings.TrimRight(pc.BaseURL, "/"),
		"options":  opts,
	})
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	d := newAuthDoer(pc.Plugin, reg, pc.AllowImageFetch, egress.Options{
		BaseURL: pc.BaseURL, ExtraHosts: pc.ExtraHosts, AllowPrivateNetwork: pc.AllowPrivateNetwork,
	}, secret, pc.APIKeyWeights)
	d.tracer = tracer
	return &router.Provider{Name: pc.Name, Plugin: pc.Plugin, Models: pc.Models, Egress: d, GuestConfig: guest,
		Quota: router.Quota{RPM: pc.RPM, TPM: pc.TPM, MaxParallel: pc.MaxParallel}}, nil
}

// LoadEncryptionKey reads the master key the config names, from environ
// or the key file; when there is none the error says how to make one.
func LoadEncryptionKey(cfg *config.Config, environ []string) (*secrets.Key, error) {
	return loadEncryptionKey(cfg, envMap(environ))
}

func loadEncryptionKey(cfg *config.Config, env map[string]string) (*secrets.Key, error) {
	sc := cfg.Security
	key, err := secrets.LoadKey(env[sc.EncryptionKeyEnv], sc.EncryptionKeyFile)
	switch {
	case err == nil:
		return key, nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, secrets.ErrNoKey):
		return nil, fmt.Errorf("%w: set %s to 32 random bytes (64 hex characters), or create the key file %s with `llm-proxy keygen --encryption-key --file %s`",
			ErrNoEncryptionKey, sc.EncryptionKeyEnv, sc.EncryptionKeyFile, sc.EncryptionKeyFile)
	}
	return nil, fmt.Errorf("encryption key: %w", err)
}

func prices(c map[string]config.PriceConfig) pricing.Table {
	t := make(pricing.Table, len(c))
	for model, p := range c {
		t[model] = pricing.Price{Input: p.Input, Output: p.Output, CachedInput: p.CachedInput}
	}
	return t
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Start loads the plugins, starts watching their folder and serves on ln.
func (a *App) Start(ln net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if err := a.Registry.LoadAll(ctx); err != nil {
		cancel()
		return err
	}
	if a.cfg.Plugins.Watch {
		if err := a.Registry.Watch(ctx); err != nil {
			a.log.Warn("plugin folder not watched; changes need a restart", "err", err)
		}
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	a.stopHub, a.hubDone = stopHub, make(chan struct{})
	go func() { a.hub.Run(hubCtx); close(a.hubDone) }()
	go a.pruneLoop(ctx)
	a.watchChanges(ctx)
	a.runFleet(ctx)
	a.flushed = make(chan struct{})
	go func() {
		defer close(a.flushed)
		a.keys.FlushUsageEvery(ctx, a.KeyUsageFlushEvery)
	}()
	if addr := a.cfg.Metrics.Listen; addr != "" {
		mln, err := net.Listen("tcp", addr)
		if err != nil {
			cancel()
			return fmt.Errorf("metrics.listen: %w", err)
		}
		a.metricsAddr = mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = a.metricsSrv.Serve(mln) }()
		a.log.Info("metrics served without authentication", "addr", a.metricsAddr)
	}
	a.served = make(chan error, 1)
	go func() { a.served <- a.Server.Serve(ln) }()
	return nil
}

// MetricsAddr is the address of the [metrics] listen server ("" without
// one).
func (a *App) MetricsAddr() string { return a.metricsAddr }

// Shutdown stops accepting requests, lets in-flight ones (streams too)
// finish within the configured shutdown timeout, writes the keys'
// last-used stamps and the request log queue to the database, then closes
// the plugins and the database.
func (a *App) Shutdown() error {
	// Dashboards are told first and disconnected, so their connections do
	// not hold the shutdown up.
	if a.stopHub != nil {
		a.stopHub()
		<-a.hubDone
	}
	err := a.Server.Shutdown(a.cfg.Server.ShutdownTimeout.Std())
	if a.metricsSrv != nil {
		_ = a.metricsSrv.Close()
	}
	if a.cancel != nil {
		a.cancel()
	}
	if a.served != nil {
		select {
		case <-a.served:
		case <-time.After(time.Second):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a.flushed != nil {
		<-a.flushed // the loop stopped with a.cancel: one flush at a time
	}
	if _, kerr := a.keys.FlushUsage(ctx); kerr != nil {
		a.log.Error("api keys: last_used_at not written", "err", kerr)
		err = errors.Join(err, kerr)
	}
	a.leaveFleet(ctx)
	if terr := a.tracer.Shutdown(ctx); terr != nil {
		a.log.Warn("spans not sent", "err", terr)
	}
	if lerr := a.requests.Close(ctx); lerr != nil {
		a.log.Error("request log not fully written", "err", lerr)
		err = errors.Join(err, lerr)
	}
	a.Registry.Close()
	if serr := a.store.Close(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
