// Package config defines, loads and validates the configuration of the LLM
// Proxy gateway.
//
// The configuration is a TOML file read with koanf. Loading starts from the
// built-in defaults (see Default), merges the file on top, applies
// LLMPROXY_* environment overrides and finally validates the result. Every
// problem found along the way is collected and reported at once, each one
// naming the TOML key path it concerns.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// SecurityConfig is the [security] section.
type SecurityConfig struct {
	// EncryptionKeyEnv names the variable that may hold the 32-byte master
	// key (64 hex characters or base64). Default: "LLMPROXY_ENCRYPTION_KEY".
	EncryptionKeyEnv string `koanf:"encryption_key_env"`
	// EncryptionKeyFile is read when that variable is empty; it must not be
	// readable by group or others. Default: "data/encryption.key".
	EncryptionKeyFile string `koanf:"encryption_key_file"`
}

// Database drivers ([database] driver).
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// DatabaseConfig is the [database] section.
type DatabaseConfig struct {
	// Driver is "sqlite" (one process, the default) or "postgres"
	// (several replicas on one database).
	Driver string `koanf:"driver"`
	// Path of the SQLite file, created on first start with its folder.
	// Default: "data/llm-proxy.db".
	Path string `koanf:"path"`
	// DSN is the PostgreSQL connection string, as a URL
	// ("postgres://user:pass@host:5432/db?sslmode=verify-full") or
	// key=value pairs. Better kept out of the file: see DSNEnv.
	DSN string `koanf:"dsn"`
	// DSNEnv names a variable holding the connection string; when it is
	// set and not empty, it wins over DSN. Default: "LLMPROXY_DATABASE_URL".
	DSNEnv string `koanf:"dsn_env"`
	// MaxConnections bounds the PostgreSQL connections of one process.
	// Default: 10.
	MaxConnections int `koanf:"max_connections"`
}

// PostgresDSN is the connection string the config names: DSNEnv's
// variable in env, or else DSN.
func (d DatabaseConfig) PostgresDSN(env map[string]string) string {
	if v := env[d.DSNEnv]; d.DSNEnv != "" && v != "" {
		return v
	}
	return d.DSN
}

// RequestLogsConfig is the [logs] section: the request log in the
// database, one row per finished /v1 request.
type RequestLogsConfig struct {
	// RetentionDays is how long rows are kept; older ones are pruned in
	// small batches every hour. 0 keeps them forever. Default: 30.
	RetentionDays int `koanf:"retention_days"`
	// QueueSize bounds the rows waiting for the database writer; when it
	// is full, new rows are dropped and counted. Default: 10000.
	QueueSize int `koanf:"queue_size"`
	// Bodies stores each request's body and the response as sent to the
	// client (for a stream, its server-sent events) with the row. Default:
	// false.
	Bodies bool `koanf:"bodies"`
	// MaxBodyBytes caps each stored body; a longer one keeps its first
	// MaxBodyBytes bytes followed by "…[truncated from N bytes]" (see
	// bodylog.TruncatedSuffix). Allowed range: 1 byte to MaxLogBodyBytes.
	// Default: 64KiB.
	MaxBodyBytes ByteSize `koanf:"max_body_bytes"`
	// RedactFields are JSON object keys whose values are replaced by
	// "[REDACTED]" in stored bodies, wherever they appear, at any depth;
	// names match without regard to case. Default: DefaultRedactFields.
	RedactFields []string `koanf:"redact_fields"`
}

// MaxLogBodyBytes is the largest logs.max_body_bytes: every queued row may
// hold two bodies, so the cap bounds the memory of a full queue.
const MaxLogBodyBytes = 16 * MiB

// DefaultRedactFields returns the default logs.redact_fields: the usual
// names of credentials a client might put in a request body.
func DefaultRedactFields() []string {
	return []string{"api_key", "apikey", "x-api-key", "authorization", "password", "secret",
		"client_secret", "access_token", "refresh_token"}
}

// PriceConfig is one model's price in USD per million tokens.
type PriceConfig struct {
	// Input is the price of prompt tokens. Default: 0.
	Input float64 `koanf:"input"`
	// Output is the price of completion tokens. Default: 0.
	Output float64 `koanf:"output"`
	// CachedInput is the price of prompt tokens served from the provider's
	// cache; unset means the input price. Default: unset.
	CachedInput *float64 `koanf:"cached_input"`
}

// Config is the complete configuration of the proxy.
type Config struct {
	// Server holds the HTTP listener settings ([server]). Each field
	// documents its own default.
	Server ServerConfig `koanf:"server"`
	// Auth holds the admin authentication settings ([auth]). Each field
	// documents its own default.
	Auth AuthConfig `koanf:"auth"`
	// Log holds the logging settings ([log]). Each field documents its own
	// default.
	Log LogConfig `koanf:"log"`
	// Plugins holds the WebAssembly plugin settings ([plugins]). Each field
	// documents its own default.
	Plugins PluginsConfig `koanf:"plugins"`
	// Security holds the encryption key settings ([security]).
	Security SecurityConfig `koanf:"security"`
	// Database holds the SQLite settings ([database]).
	Database DatabaseConfig `koanf:"database"`
	// Logs holds the request log settings ([logs]).
	Logs RequestLogsConfig `koanf:"logs"`
	// Prices gives each model's price per million tokens
	// ([prices."<model>"]), from which every request's cost is computed.
	// Default: none (cost 0).
	Prices map[string]PriceConfig `koanf:"prices"`
	// Providers lists the upstream providers ([[providers]]). Default: none.
	Providers []ProviderConfig `koanf:"providers"`
	// Routing holds retry and circuit breaker settings ([routing]).
	Routing RoutingConfig `koanf:"routing"`
	// Routes maps public model names to one or more provider targets
	// ([[routes]]). A model a provider lists needs no route. Default: none.
	Routes []RouteConfig `koanf:"routes"`
	// Responses holds the settings of /v1/responses ([responses]).
	Responses ResponsesConfig `koanf:"responses"`
	// Metrics holds the Prometheus endpoint's settings ([metrics]).
	Metrics MetricsConfig `koanf:"metrics"`
	// Tracing holds the OpenTelemetry settings ([tracing]).
	Tracing TracingConfig `koanf:"tracing"`
}

// TracingConfig is the [tracing] section: OpenTelemetry traces of the /v1
// requests, sent over OTLP/HTTP.
type TracingConfig struct {
	// Endpoint is the collector's OTLP/HTTP traces URL, such as
	// "http://127.0.0.1:4318/v1/traces". Empty turns tracing off.
	// Default: "".
	Endpoint string `koanf:"endpoint"`
	// SampleRatio is the share of new traces kept, from 0 to 1; a request
	// whose traceparent says its trace is sampled is always kept.
	// Default: 1.
	SampleRatio float64 `koanf:"sample_ratio"`
	// ServiceName is the service.name of the spans. Default: "llm-proxy".
	ServiceName string `koanf:"service_name"`
	// PropagateUpstream sends traceparent to the providers, linking their
	// own traces to the proxy's; it tells them the trace id. Default:
	// false.
	PropagateUpstream bool `koanf:"propagate_upstream"`
}

// ResponsesConfig is the [responses] section: the responses the OpenAI
// Responses API keeps, so that a later request can continue one with
// previous_response_id.
type ResponsesConfig struct {
	// Store keeps each response whose request did not say "store": false,
	// in the database, for TTL. Off: nothing is kept, and
	// previous_response_id is refused. Default: true.
	Store bool `koanf:"store"`
	// TTL is how long a kept response can be continued or read; it is
	// deleted after. At least a minute. Default: 720h (30 days).
	TTL Duration `koanf:"ttl"`
}

// MetricsConfig is the [metrics] section: GET /metrics in the Prometheus
// text format.
type MetricsConfig struct {
	// Enabled serves GET /metrics on the main listener, to the admin key
	// and to the token below. Default: true.
	Enabled bool `koanf:"enabled"`
	// TokenEnv names the variable holding a token that may read /metrics
	// (as "Authorization: Bearer <token>") and nothing else, for the
	// scraper. Unset or empty: only the admin key. Default:
	// "LLMPROXY_METRICS_TOKEN".
	TokenEnv string `koanf:"token_env"`
	// Listen, when set, also serves /metrics without authentication on
	// this host:port, for a scraper on a private network. Default: ""
	// (none).
	Listen string `koanf:"listen"`
	// PerKey adds series per client key id (requests, tokens, cost).
	// Each key is a series in each of those families, so leave it off
	// with many keys. Default: false.
	PerKey bool `koanf:"per_key"`
}

// RoutingConfig is the [routing] section: how a request that fails on a
// target is tried again.
type RoutingConfig struct {
	// MaxAttempts bounds the attempts of one request over all its route's
	// targets, the first included; 1 never retries. A route may set its
	// own. Allowed: 1 to 10. Default: 3.
	MaxAttempts int `koanf:"max_attempts"`
	// RetryDeadline is the time after a request's start past which no new
	// attempt begins; a Retry-After that would end later is passed on to
	// the client instead of waited out. Default: 30s.
	RetryDeadline Duration `koanf:"retry_deadline"`
	// BackoffBase is the wait before the first retry of the same target,
	// doubled at each retry up to BackoffMax, with full jitter. Moving on
	// to another target does not wait. Default: 250ms.
	BackoffBase Duration `koanf:"backoff_base"`
	// BackoffMax caps the backoff. Default: 5s.
	BackoffMax Duration `koanf:"backoff_max"`
	// Breaker configures every target's circuit breaker
	// ([routing.breaker]).
	Breaker BreakerConfig `koanf:"breaker"`
}

// BreakerConfig is the [routing.breaker] section: a target (provider and
// model) whose requests keep failing rests for a cooldown, and is skipped
// without an attempt meanwhile; then one probe request decides whether it
// serves again.
type BreakerConfig struct {
	// Failures in a row (refused connections, timeouts, 429, 5xx) that
	// open the breaker. Default: 5.
	Failures int `koanf:"failures"`
	// ErrorRate opens the breaker when this share of the last Window
	// attempts failed; 0 turns the rule off. Allowed: 0 to 1.
	// Default: 0.5.
	ErrorRate float64 `koanf:"error_rate"`
	// Window is how many recent attempts ErrorRate is measured over.
	// Default: 20.
	Window int `koanf:"window"`
	// Cooldown is how long an open breaker rests its target. A 429's
	// Retry-After rests it for that long instead, if longer. Default: 30s.
	Cooldown Duration `koanf:"cooldown"`
}

// RouteConfig is one [[routes]] entry.
type RouteConfig struct {
	// Model is the name clients ask for. It takes precedence over a
	// provider's model of the same name. Required.
	Model string `koanf:"model"`
	// Strategy orders the targets for each request: "fallback" (in
	// order), "weighted" (drawn by weight) or "least_latency" (the better
	// of two drawn at random, by time to first byte and requests in
	// flight). Default: "fallback".
	Strategy string `koanf:"strategy"`
	// Targets are the providers and upstream models that serve the route.
	// At least one is required.
	Targets []RouteTarget `koanf:"targets"`
	// MaxAttempts overrides [routing] max_attempts for this route.
	// Default: 0 (the [routing] value).
	MaxAttempts int `koanf:"max_attempts"`
	// ContextWindowFallback serves a request that a target refuses because
	// its prompt does not fit the model's context window. Default: none.
	ContextWindowFallback *RouteTarget `koanf:"context_window_fallback"`
}

// RouteTarget is one target of a route.
type RouteTarget struct {
	// Provider names a provider of the config file or the database.
	// Required.
	Provider string `koanf:"provider"`
	// Model is the model name sent to that provider. Required.
	Model string `koanf:"model"`
	// Weight is the target's share under the weighted strategy. Default: 1.
	Weight int `koanf:"weight"`
}

// ServerConfig configures the OpenAI-compatible HTTP server.
type ServerConfig struct {
	// Listen is the host:port address to listen on. Default: "127.0.0.1:8080".
	Listen string `koanf:"listen"`
	// MaxBodyBytes caps the size of a request body; larger bodies are
	// rejected with 413. Default: 4MiB.
	MaxBodyBytes ByteSize `koanf:"max_body_bytes"`
	// ShutdownTimeout is how long in-flight requests and streams may keep
	// running after SIGTERM before they are cut off. Default: 30s.
	ShutdownTimeout Duration `koanf:"shutdown_timeout"`
	// ReadTimeout limits how long reading a client request may take.
	// Default: 60s.
	ReadTimeout Duration `koanf:"read_timeout"`
	// WriteTimeout drops a streaming client that reads nothing for this
	// long while output is waiting for it, and cancels its upstream; 0
	// never drops one. Default: 30s.
	WriteTimeout Duration `koanf:"write_timeout"`
	// TrustedProxies are the addresses (IPs or CIDR ranges) of reverse
	// proxies in front of the server. Only a connection from one of them
	// may set the client's address (X-Forwarded-For) and scheme
	// (X-Forwarded-Proto), which decide login throttling and whether the
	// session cookie is Secure. Default: none (such headers are ignored).
	TrustedProxies []string `koanf:"trusted_proxies"`
}

// AuthConfig configures access to the admin API.
type AuthConfig struct {
	// AdminKeyEnv names the environment variable that holds the admin key.
	// The key itself never appears in the file. Default: "LLMPROXY_ADMIN_KEY".
	AdminKeyEnv string `koanf:"admin_key_env"`
	// SessionTTL is how long a dashboard login lasts; between one minute
	// and 30 days. Default: 12h.
	SessionTTL Duration `koanf:"session_ttl"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is the minimum level logged: debug, info, warn or error.
	// Default: "info".
	Level string `koanf:"level"`
	// Format is the log line format: text or json. Default: "text".
	Format string `koanf:"format"`
}

// PluginsConfig configures how provider plugins are found and run.
type PluginsConfig struct {
	// Dir is the directory scanned for *.wasm plugins; relative paths are
	// resolved against the working directory. Default: "bin/plugins".
	Dir string `koanf:"dir"`
	// Watch makes the proxy reload plugins when files in Dir change.
	// Default: true.
	Watch bool `koanf:"watch"`
	// CacheDir is where compiled plugins are cached. Empty means
	// <user cache dir>/llm-proxy/wazero (see Config.CacheDir). Default: "".
	CacheDir string `koanf:"cache_dir"`
	// Limits are the resource limits every plugin gets unless overridden.
	// Default: see DefaultLimits.
	Limits Limits `koanf:"limits"`
	// LimitsOverride adjusts Limits for single plugins, keyed by plugin
	// name. Only the keys present in an entry replace the defaults.
	// Default: empty.
	LimitsOverride map[string]LimitsPatch `koanf:"limits_override"`
}

// Limits bounds the resources one plugin may use. The defaults are the
// plugin runtime's own (plugin.DefaultLimits); DefaultLimits converts them.
type Limits struct {
	// MemoryPages caps the linear memory of one instance, in 64 KiB wasm
	// pages (1024 pages = 64 MiB). Allowed range: 32 to 65536. Default: 1024.
	MemoryPages int `koanf:"memory_pages"`
	// RequestTimeout is the deadline of one request: a whole answer or a
	// whole stream. Default: 300s.
	RequestTimeout Duration `koanf:"request_timeout"`
	// UpstreamTimeout is how long to wait for an upstream's response
	// headers. Default: 120s.
	UpstreamTimeout Duration `koanf:"upstream_timeout"`
	// CallbackTimeout is the deadline of one call into the plugin (a
	// stream's start, one upstream event, ...). A callback that runs longer
	// is a bug: its instance is closed and the streams it held fail. A
	// callback handed a large input (the request, an upstream body) gets
	// 100ms more per MiB of it. It counts CPU time on Linux, wall time
	// elsewhere, with wall time capped at 50 times it. Default: 100ms.
	CallbackTimeout Duration `koanf:"callback_timeout"`
	// MaxUpstreamBodyBytes caps the upstream response bytes one request may
	// read, over all its upstream requests. Default: 64MiB.
	MaxUpstreamBodyBytes ByteSize `koanf:"max_upstream_body_bytes"`
	// MaxEmitBytes caps the bytes one request may send to the client.
	// Default: 64MiB.
	MaxEmitBytes ByteSize `koanf:"max_emit_bytes"`
	// StreamBufferBytes is how much output may wait for a slow client
	// before the proxy stops reading that stream's upstream; a stream that
	// leaves 128 times this waiting fails. Default: 64KiB.
	StreamBufferBytes ByteSize `koanf:"stream_buffer_bytes"`
	// MaxHTTPHandles caps the upstream requests (and image fetches) one
	// request may have open at the same time. Default: 8.
	MaxHTTPHandles int `koanf:"max_http_handles"`
	// MaxInstances caps the instances per plugin version. Instances start
	// while callbacks wait (up to about the number of cores) and when every
	// instance holds max_streams_per_instance streams. Default: 64.
	MaxInstances int `koanf:"max_instances"`
	// MinInstances is how many instances stay warm with no traffic; with 0
	// an unused plugin keeps no instance and its next request pays a cold
	// start of a few milliseconds. Default: 0.
	MinInstances int `koanf:"min_instances"`
	// MaxStreamsPerInstance caps the streams one instance holds: what one
	// crash of an instance can take down. Default: 1000.
	MaxStreamsPerInstance int `koanf:"max_streams_per_instance"`
	// IdleTimeout closes an instance that held no stream for this long,
	// returning its memory (about 4 MiB for a Go plugin). Default: 30s.
	IdleTimeout Duration `koanf:"idle_timeout"`
	// RecycleAfterCalls replaces an instance after this many callbacks: it
	// takes no new stream and closes when its last one ends.
	// Default: 1000000.
	RecycleAfterCalls int `koanf:"recycle_after_calls"`
	// RecycleAfterPages replaces an instance once its memory grew beyond
	// this many pages (wasm memory never shrinks); it may not exceed
	// MemoryPages. Default: 512.
	RecycleAfterPages int `koanf:"recycle_after_pages"`
}

// LimitsPatch is a partial Limits used in [plugins.limits_override.<name>].
// A nil field keeps the value from [plugins.limits]. Every field has the
// same meaning as the Limits field of the same name. Default: all nil.
type LimitsPatch struct {
	MemoryPages           *int      `koanf:"memory_pages"`
	RequestTimeout        *Duration `koanf:"request_timeout"`
	UpstreamTimeout       *Duration `koanf:"upstream_timeout"`
	CallbackTimeout       *Duration `koanf:"callback_timeout"`
	MaxUpstreamBodyBytes  *ByteSize `koanf:"max_upstream_body_bytes"`
	MaxEmitBytes          *ByteSize `koanf:"max_emit_bytes"`
	StreamBufferBytes     *ByteSize `koanf:"stream_buffer_bytes"`
	MaxHTTPHandles        *int      `koanf:"max_http_handles"`
	MaxInstances          *int      `koanf:"max_instances"`
	MinInstances          *int      `koanf:"min_instances"`
	MaxStreamsPerInstance *int      `koanf:"max_streams_per_instance"`
	IdleTimeout           *Duration `koanf:"idle_timeout"`
	RecycleAfterCalls     *int      `koanf:"recycle_after_calls"`
	RecycleAfterPages     *int      `koanf:"recycle_after_pages"`
}

// ProviderConfig describes one upstream provider served through a plugin.
type ProviderConfig struct {
	// Name identifies the provider; it must be unique and match
	// [a-z0-9][a-z0-9._-]*. Clients can pick it explicitly by asking for
	// the model "<name>/<model>". Required, no default.
	Name string `koanf:"name"`
	// Plugin is the name (from its manifest) of the plugin that talks to
	// this provider. Required, no default.
	Plugin string `koanf:"plugin"`
	// BaseURL is the absolute http(s) URL of the provider's API. Plain
	// http needs AllowPrivateNetwork. Required, no default.
	BaseURL string `koanf:"base_url"`
	// APIKeyEnv names the environment variable holding the provider's API
	// key. Empty means requests are sent without credentials. Default: "".
	APIKeyEnv string `koanf:"api_key_env"`
	// APIKeyEnvs names more variables holding keys of the same provider
	// (after api_key_env's, if set): requests go to the keys in turn, and
	// a key the upstream answers 429 (or 401/403) rests while the others
	// serve. Default: none.
	APIKeyEnvs []string `koanf:"api_key_envs"`
	// APIKeyWeights gives each key (api_key_env's first, then
	// api_key_envs') a share of the requests, from 1 to 1000: [3, 1] sends
	// three requests with the first key for one with the second. Default:
	// none (equal turns).
	APIKeyWeights []int `koanf:"api_key_weights"`
	// Models lists the model names this provider serves; at least one is
	// required. No default.
	Models []string `koanf:"models"`
	// AllowPrivateNetwork lets the plugin reach loopback and private
	// addresses and use plain http. Default: false.
	AllowPrivateNetwork bool `koanf:"allow_private_network"`
	// AllowImageFetch lets the plugin have the host download images that a
	// client's request names by http(s) URL, if its manifest asks for the
	// fetch_image capability. Downloads reach public addresses only, carry
	// no credentials, and are limited to the URLs in the request.
	// Default: false.
	AllowImageFetch bool `koanf:"allow_image_fetch"`
	// ExtraHosts lists hosts the plugin may reach in addition to the host
	// of BaseURL: "host" on ports 443 and 80, "host:port" on that port.
	// (BaseURL's host is reached on BaseURL's port only.) Default: none.
	ExtraHosts []string `koanf:"extra_hosts"`
	// Options is a free-form table handed to the plugin as its own
	// configuration. Default: empty.
	Options map[string]any `koanf:"options"`
	// RPM, TPM and MaxParallel protect the provider's own quotas: requests
	// per minute, tokens per minute (estimated, then as reported) and
	// requests at once, over all clients. A request that would exceed one
	// moves on to its route's next target, or gets 429. 0 is no limit.
	// Default: 0.
	RPM         int `koanf:"rpm"`
	TPM         int `koanf:"tpm"`
	MaxParallel int `koanf:"max_parallel"`
}

// DefaultLimits returns the limits applied to plugins when the file does
// not change them: the plugin runtime's defaults, in config units.
func DefaultLimits() Limits {
	d := plugin.DefaultLimits
	return Limits{
		MemoryPages:           int(d.MemoryPages),
		RequestTimeout:        Duration(d.RequestTimeout),
		UpstreamTimeout:       Duration(d.UpstreamTimeout),
		CallbackTimeout:       Duration(d.CallbackTimeout),
		MaxUpstreamBodyBytes:  ByteSize(d.MaxUpstreamBodyBytes),
		MaxEmitBytes:          ByteSize(d.MaxEmitBytes),
		StreamBufferBytes:     ByteSize(d.StreamBufferBytes),
		MaxHTTPHandles:        d.MaxHTTPHandles,
		MaxInstances:          d.MaxInstances,
		MinInstances:          d.MinInstances,
		MaxStreamsPerInstance: d.MaxStreamsPerInstance,
		IdleTimeout:           Duration(d.IdleTimeout),
		RecycleAfterCalls:     d.RecycleAfterCalls,
		RecycleAfterPages:     int(d.RecycleAfterPages),
	}
}

// Plugin converts the limits into the plugin runtime's.
func (l Limits) Plugin() plugin.Limits {
	return plugin.Limits{
		MemoryPages:           uint32(l.MemoryPages),
		RequestTimeout:        l.RequestTimeout.Std(),
		UpstreamTimeout:       l.UpstreamTimeout.Std(),
		CallbackTimeout:       l.CallbackTimeout.Std(),
		MaxUpstreamBodyBytes:  int64(l.MaxUpstreamBodyBytes),
		MaxEmitBytes:          int64(l.MaxEmitBytes),
		StreamBufferBytes:     int64(l.StreamBufferBytes),
		MaxHTTPHandles:        l.MaxHTTPHandles,
		MaxInstances:          l.MaxInstances,
		MinInstances:          l.MinInstances,
		MaxStreamsPerInstance: l.MaxStreamsPerInstance,
		IdleTimeout:           l.IdleTimeout.Std(),
		RecycleAfterCalls:     l.RecycleAfterCalls,
		RecycleAfterPages:     uint32(l.RecycleAfterPages),
	}
}

// Default returns a configuration with every default filled in. It has no
// providers.
func Default() *Config {
	return &Config{
		Server: ServerConfig{
			Listen:          "127.0.0.1:8080",
			MaxBodyBytes:    4 * MiB,
			ShutdownTimeout: Duration(30 * time.Second),
			ReadTimeout:     Duration(60 * time.Second),
			WriteTimeout:    Duration(30 * time.Second),
			TrustedProxies:  []string{},
		},
		Auth: AuthConfig{
			AdminKeyEnv: "LLMPROXY_ADMIN_KEY",
			SessionTTL:  Duration(12 * time.Hour),
		},
		Log: LogConfig{
			Level:  "info",
			Format: "text",
		},
		Plugins: PluginsConfig{
			Dir:    "bin/plugins",
			Watch:  true,
			Limits: DefaultLimits(),
		},
		Security: SecurityConfig{EncryptionKeyEnv: "LLMPROXY_ENCRYPTION_KEY", EncryptionKeyFile: "data/encryption.key"},
		Database: DatabaseConfig{Driver: DriverSQLite, Path: "data/llm-proxy.db", DSNEnv: "LLMPROXY_DATABASE_URL",
			MaxConnections: 10},
		Logs: RequestLogsConfig{RetentionDays: 30, QueueSize: 10000,
			MaxBodyBytes: 64 * KiB, RedactFields: DefaultRedactFields()},
		Routing: RoutingConfig{MaxAttempts: 3, RetryDeadline: Duration(30 * time.Second),
			BackoffBase: Duration(250 * time.Millisecond), BackoffMax: Duration(5 * time.Second),
			Breaker: BreakerConfig{Failures: 5, ErrorRate: 0.5, Window: 20, Cooldown: Duration(30 * time.Second)}},
		Metrics:   MetricsConfig{Enabled: true, TokenEnv: "LLMPROXY_METRICS_TOKEN"},
		Responses: ResponsesConfig{Store: true, TTL: Duration(720 * time.Hour)},
		Tracing:   TracingConfig{SampleRatio: 1, ServiceName: "llm-proxy"},
	}
}

// Apply returns l with every field set in p replaced by p's value: the
// fields of the two structs pair up by their TOML key.
func (p LimitsPatch) Apply(l Limits) Limits {
	pv, lv := reflect.ValueOf(p), reflect.ValueOf(&l).Elem()
	for i := range pv.NumField() {
		if f := pv.Field(i); !f.IsNil() {
			lv.FieldByName(pv.Type().Field(i).Name).Set(f.Elem())
		}
	}
	return l
}

// LimitsFor returns the effective limits of the named plugin: the shared
// Limits with that plugin's override, if any, applied on top.
func (p PluginsConfig) LimitsFor(plugin string) Limits {
	patch, ok := p.LimitsOverride[plugin]
	if !ok {
		return p.Limits
	}
	return patch.Apply(p.Limits)
}

// CacheDir returns the directory for the wazero compilation cache: the
// configured plugins.cache_dir, or <user cache dir>/llm-proxy/wazero when
// that is empty.
func (c *Config) CacheDir() (string, error) {
	if c.Plugins.CacheDir != "" {
		return c.Plugins.CacheDir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("resolve default plugin cache dir: %w", err)
	}
	return filepath.Join(base, "llm-proxy", "wazero"), nil
}
