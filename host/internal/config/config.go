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
	"time"
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

// DatabaseConfig is the [database] section.
type DatabaseConfig struct {
	// Path of the SQLite file, created on first start with its folder.
	// Default: "data/llm-proxy.db".
	Path string `koanf:"path"`
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

// Limits bounds the resources one plugin may use.
type Limits struct {
	// MemoryPages caps the linear memory of one instance, in 64 KiB wasm
	// pages (1024 pages = 64 MiB). Allowed range: 32 to 65536. Default: 1024.
	MemoryPages int `koanf:"memory_pages"`
	// RequestTimeout is the deadline for a whole call, covering one request
	// or one complete stream. Default: 300s.
	RequestTimeout Duration `koanf:"request_timeout"`
	// UpstreamTimeout is how long to wait for an upstream's response
	// headers. Default: 120s.
	UpstreamTimeout Duration `koanf:"upstream_timeout"`
	// MaxUpstreamBodyBytes caps the upstream response bytes one call may
	// read, over all its upstream requests.
	// Default: 64MiB.
	MaxUpstreamBodyBytes ByteSize `koanf:"max_upstream_body_bytes"`
	// MaxEmitBytes caps the bytes one request may send to the client.
	// Default: 64MiB.
	MaxEmitBytes ByteSize `koanf:"max_emit_bytes"`
	// MaxHTTPHandles caps the upstream requests a single call may have open
	// at the same time. Default: 8.
	MaxHTTPHandles int `koanf:"max_http_handles"`
	// MaxInstances caps the instances per plugin version, idle and busy,
	// which is also the number of calls that may run concurrently (a stream
	// holds its instance until it ends). Default: 64.
	MaxInstances int `koanf:"max_instances"`
	// MaxIdleInstances is how many warm instances survive a quiet period.
	// Idle instances that no call needed for 30 seconds are closed, down to
	// this number, returning their memory (about 4 MiB each for a Go
	// plugin); a steady load keeps what it uses. A value above MaxInstances
	// acts as MaxInstances. Default: 8.
	MaxIdleInstances int `koanf:"max_idle_instances"`
	// RecycleAfterCalls discards an instance after it served this many
	// calls. Default: 10000.
	RecycleAfterCalls int `koanf:"recycle_after_calls"`
	// RecycleAfterPages discards an instance once its memory grew beyond
	// this many pages; it may not exceed MemoryPages. Default: 512.
	RecycleAfterPages int `koanf:"recycle_after_pages"`
}

// LimitsPatch is a partial Limits used in [plugins.limits_override.<name>].
// A nil field keeps the value from [plugins.limits]. Every field has the
// same meaning as the Limits field of the same name. Default: all nil.
type LimitsPatch struct {
	// MemoryPages overrides Limits.MemoryPages when set. Default: nil.
	MemoryPages *int `koanf:"memory_pages"`
	// RequestTimeout overrides Limits.RequestTimeout when set. Default: nil.
	RequestTimeout *Duration `koanf:"request_timeout"`
	// UpstreamTimeout overrides Limits.UpstreamTimeout when set. Default: nil.
	UpstreamTimeout *Duration `koanf:"upstream_timeout"`
	// MaxUpstreamBodyBytes overrides Limits.MaxUpstreamBodyBytes when set.
	// Default: nil.
	MaxUpstreamBodyBytes *ByteSize `koanf:"max_upstream_body_bytes"`
	// MaxEmitBytes overrides Limits.MaxEmitBytes when set. Default: nil.
	MaxEmitBytes *ByteSize `koanf:"max_emit_bytes"`
	// MaxHTTPHandles overrides Limits.MaxHTTPHandles when set. Default: nil.
	MaxHTTPHandles *int `koanf:"max_http_handles"`
	// MaxInstances overrides Limits.MaxInstances when set. Default: nil.
	MaxInstances *int `koanf:"max_instances"`
	// MaxIdleInstances overrides Limits.MaxIdleInstances when set. Default: nil.
	MaxIdleInstances *int `koanf:"max_idle_instances"`
	// RecycleAfterCalls overrides Limits.RecycleAfterCalls when set.
	// Default: nil.
	RecycleAfterCalls *int `koanf:"recycle_after_calls"`
	// RecycleAfterPages overrides Limits.RecycleAfterPages when set.
	// Default: nil.
	RecycleAfterPages *int `koanf:"recycle_after_pages"`
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
	// Models lists the model names this provider serves; at least one is
	// required. No default.
	Models []string `koanf:"models"`
	// AllowPrivateNetwork lets the plugin reach loopback and private
	// addresses and use plain http. Default: false.
	AllowPrivateNetwork bool `koanf:"allow_private_network"`
	// ExtraHosts lists host names the plugin may reach in addition to the
	// host of BaseURL. Default: none.
	ExtraHosts []string `koanf:"extra_hosts"`
	// Options is a free-form table handed to the plugin as its own
	// configuration. Default: empty.
	Options map[string]any `koanf:"options"`
}

// DefaultLimits returns the limits applied to plugins when the file does
// not change them.
func DefaultLimits() Limits {
	return Limits{
		MemoryPages:          1024,
		RequestTimeout:       Duration(300 * time.Second),
		UpstreamTimeout:      Duration(120 * time.Second),
		MaxUpstreamBodyBytes: 64 * MiB,
		MaxEmitBytes:         64 * MiB,
		MaxHTTPHandles:       8,
		MaxInstances:         64,
		MaxIdleInstances:     8,
		RecycleAfterCalls:    10000,
		RecycleAfterPages:    512,
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
		Database: DatabaseConfig{Path: "data/llm-proxy.db"},
		Logs: RequestLogsConfig{RetentionDays: 30, QueueSize: 10000,
			MaxBodyBytes: 64 * KiB, RedactFields: DefaultRedactFields()},
	}
}

// Apply returns l with every field set in p replaced by p's value.
func (p LimitsPatch) Apply(l Limits) Limits {
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&l.MemoryPages, p.MemoryPages)
	set(&l.MaxHTTPHandles, p.MaxHTTPHandles)
	set(&l.MaxInstances, p.MaxInstances)
	set(&l.MaxIdleInstances, p.MaxIdleInstances)
	set(&l.RecycleAfterCalls, p.RecycleAfterCalls)
	set(&l.RecycleAfterPages, p.RecycleAfterPages)
	if p.RequestTimeout != nil {
		l.RequestTimeout = *p.RequestTimeout
	}
	if p.UpstreamTimeout != nil {
		l.UpstreamTimeout = *p.UpstreamTimeout
	}
	if p.MaxUpstreamBodyBytes != nil {
		l.MaxUpstreamBodyBytes = *p.MaxUpstreamBodyBytes
	}
	if p.MaxEmitBytes != nil {
		l.MaxEmitBytes = *p.MaxEmitBytes
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
