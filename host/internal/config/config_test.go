package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// repoConfig is the configuration shipped at the repository root.
const repoConfig = "../../../config.toml"

// provider is a valid [[providers]] entry that tests build on.
const provider = `
[[providers]]
name = "openai"
plugin = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
models = ["gpt-4o-mini", "gpt-4o"]
`

func writeConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// problemsOf extracts the Problems from an error returned by Load.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	ps, ok := errors.AsType[Problems](err)
	if !ok {
		t.Fatalf("error is not a Problems list: %v", err)
	}
	return ps
}

func TestDefaults(t *testing.T) {
	t.Parallel()

	t.Run("validate", func(t *testing.T) {
		t.Parallel()
		if err := Default().Validate(); err != nil {
			t.Fatalf("Default().Validate() = %v", err)
		}
	})

	t.Run("load without file", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load("", nil)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("Load(\"\") = %+v, want the defaults %+v", cfg, Default())
		}
	})

	t.Run("values", func(t *testing.T) {
		t.Parallel()
		cfg := Default()
		checks := []struct {
			name      string
			got, want any
		}{
			{"server.listen", cfg.Server.Listen, "127.0.0.1:8080"},
			{"server.max_body_bytes", cfg.Server.MaxBodyBytes, 4 * MiB},
			{"server.shutdown_timeout", cfg.Server.ShutdownTimeout, Duration(30 * time.Second)},
			{"server.read_timeout", cfg.Server.ReadTimeout, Duration(60 * time.Second)},
			{"auth.admin_key_env", cfg.Auth.AdminKeyEnv, "LLMPROXY_ADMIN_KEY"},
			{"log.level", cfg.Log.Level, "info"},
			{"log.format", cfg.Log.Format, "text"},
			{"plugins.dir", cfg.Plugins.Dir, "bin/plugins"},
			{"plugins.watch", cfg.Plugins.Watch, true},
			{"plugins.cache_dir", cfg.Plugins.CacheDir, ""},
			{"plugins.limits.memory_pages", cfg.Plugins.Limits.MemoryPages, 1024},
			{"plugins.limits.request_timeout", cfg.Plugins.Limits.RequestTimeout, Duration(300 * time.Second)},
			{"plugins.limits.upstream_timeout", cfg.Plugins.Limits.UpstreamTimeout, Duration(120 * time.Second)},
			{"plugins.limits.max_upstream_body_bytes", cfg.Plugins.Limits.MaxUpstreamBodyBytes, 64 * MiB},
			{"plugins.limits.max_emit_bytes", cfg.Plugins.Limits.MaxEmitBytes, 64 * MiB},
			{"plugins.limits.max_http_handles", cfg.Plugins.Limits.MaxHTTPHandles, 8},
			{"plugins.limits.max_instances", cfg.Plugins.Limits.MaxInstances, 64},
			{"plugins.limits.callback_timeout", cfg.Plugins.Limits.CallbackTimeout, Duration(100 * time.Millisecond)},
			{"plugins.limits.stream_buffer_bytes", cfg.Plugins.Limits.StreamBufferBytes, 64 * KiB},
			{"plugins.limits.min_instances", cfg.Plugins.Limits.MinInstances, 0},
			{"plugins.limits.max_streams_per_instance", cfg.Plugins.Limits.MaxStreamsPerInstance, 1000},
			{"plugins.limits.idle_timeout", cfg.Plugins.Limits.IdleTimeout, Duration(30 * time.Second)},
			{"server.write_timeout", cfg.Server.WriteTimeout, Duration(30 * time.Second)},
			{"plugins.limits.recycle_after_calls", cfg.Plugins.Limits.RecycleAfterCalls, 1000000},
			{"plugins.limits.recycle_after_pages", cfg.Plugins.Limits.RecycleAfterPages, 512},
			{"logs.retention_days", cfg.Logs.RetentionDays, 30},
			{"logs.queue_size", cfg.Logs.QueueSize, 10000},
			{"logs.bodies", cfg.Logs.Bodies, false},
			{"logs.max_body_bytes", cfg.Logs.MaxBodyBytes, 64 * KiB},
			{"logs.redact_fields", strings.Join(cfg.Logs.RedactFields, ","),
				"api_key,apikey,x-api-key,authorization,password,secret,client_secret,access_token,refresh_token"},
			{"providers", len(cfg.Providers), 0},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
		}
	})

	t.Run("cache dir", func(t *testing.T) {
		t.Parallel()
		cfg := Default()
		dir, err := cfg.CacheDir()
		if err != nil {
			t.Skipf("no user cache dir here: %v", err)
		}
		if !strings.HasSuffix(dir, filepath.Join("llm-proxy", "wazero")) {
			t.Errorf("CacheDir() = %q, want it to end in llm-proxy/wazero", dir)
		}
		cfg.Plugins.CacheDir = "/var/cache/proxy"
		if dir, _ := cfg.CacheDir(); dir != "/var/cache/proxy" {
			t.Errorf("CacheDir() = %q, want the configured dir", dir)
		}
	})
}

func TestRepoConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Load(repoConfig, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", repoConfig, err)
	}

	// The file documents the defaults, so apart from the providers it must
	// load to exactly the built-in defaults.
	def := Default()
	if !reflect.DeepEqual(cfg.Server, def.Server) || !reflect.DeepEqual(cfg.Auth, def.Auth) ||
		!reflect.DeepEqual(cfg.Log, def.Log) || !reflect.DeepEqual(cfg.Plugins, def.Plugins) ||
		!reflect.DeepEqual(cfg.Logs, def.Logs) || !reflect.DeepEqual(cfg.Database, def.Database) ||
		!reflect.DeepEqual(cfg.Security, def.Security) || !reflect.DeepEqual(cfg.Routing, def.Routing) {
		t.Errorf("settings differ from the defaults:\n got %+v\nwant %+v", cfg, def)
	}

	want := map[string]struct {
		plugin, baseURL, keyEnv string
		models                  []string
		private                 bool
	}{
		"demo":   {"demo", "http://127.0.0.1", "", []string{"demo-echo", "demo-story"}, true},
		"openai": {"openai", "https://api.openai.com/v1", "OPENAI_API_KEY", []string{"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small"}, false},
	}
	if len(cfg.Providers) != len(want) {
		t.Fatalf("got %d providers, want %d", len(cfg.Providers), len(want))
	}
	for _, p := range cfg.Providers {
		t.Run(p.Name, func(t *testing.T) {
			w, ok := want[p.Name]
			if !ok {
				t.Fatalf("unexpected provider %q", p.Name)
			}
			if p.Plugin != w.plugin || p.BaseURL != w.baseURL || p.APIKeyEnv != w.keyEnv ||
				p.AllowPrivateNetwork != w.private || !reflect.DeepEqual(p.Models, w.models) {
				t.Errorf("got %+v, want %+v", p, w)
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		toml  string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "routes",
			toml: `
[routing]
max_attempts = 4
backoff_base = "10ms"
[routing.breaker]
failures = 2
cooldown = "5s"

[[routes]]
model = "smart"
strategy = "weighted"
targets = [
  { provider = "primary", model = "gpt-4o-mini", weight = 3 },
  { provider = "backup",  model = "gpt-4o-mini" },
]
context_window_fallback = { provider = "backup", model = "gpt-4.1-mini" }
`,
			check: func(t *testing.T, c *Config) {
				want := []RouteConfig{{Model: "smart", Strategy: "weighted", Targets: []RouteTarget{
					{Provider: "primary", Model: "gpt-4o-mini", Weight: 3}, {Provider: "backup", Model: "gpt-4o-mini"},
				}, ContextWindowFallback: &RouteTarget{Provider: "backup", Model: "gpt-4.1-mini"}}}
				if !reflect.DeepEqual(c.Routes, want) {
					t.Errorf("routes = %+v", c.Routes)
				}
				r := c.Routing
				if r.MaxAttempts != 4 || r.BackoffBase.Std() != 10*time.Millisecond || r.BackoffMax != Default().Routing.BackoffMax ||
					r.Breaker.Failures != 2 || r.Breaker.Cooldown.Std() != 5*time.Second || r.Breaker.ErrorRate != 0.5 {
					t.Errorf("routing = %+v", r)
				}
			},
		},
		{
			name: "partial file keeps other defaults",
			toml: "[server]\nlisten = \":9000\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != ":9000" {
					t.Errorf("listen = %q", c.Server.Listen)
				}
				if c.Server.MaxBodyBytes != 4*MiB || c.Plugins.Limits != DefaultLimits() {
					t.Errorf("defaults lost: %+v", c)
				}
			},
		},
		{
			name: "sizes and durations",
			toml: `
[server]
max_body_bytes = 1048576
shutdown_timeout = "1m30s"
[plugins.limits]
max_upstream_body_bytes = "100MB"
max_emit_bytes = "1.5GiB"
request_timeout = "10m"
`,
			check: func(t *testing.T, c *Config) {
				if c.Server.MaxBodyBytes != MiB {
					t.Errorf("max_body_bytes = %v", c.Server.MaxBodyBytes)
				}
				if c.Server.ShutdownTimeout.Std() != 90*time.Second {
					t.Errorf("shutdown_timeout = %v", c.Server.ShutdownTimeout)
				}
				l := c.Plugins.Limits
				if l.MaxUpstreamBodyBytes != 100_000_000 || l.MaxEmitBytes != 3*GiB/2 || l.RequestTimeout.Std() != 10*time.Minute {
					t.Errorf("limits = %+v", l)
				}
			},
		},
		{
			name: "provider with options and extra hosts",
			toml: provider + `
extra_hosts = ["files.openai.com"]
[providers.options]
organization = "org-1"
retries = 3
nested = { a = [1, 2], b = true }
`,
			check: func(t *testing.T, c *Config) {
				p := c.Providers[0]
				if p.APIKeyEnv != "OPENAI_API_KEY" || len(p.ExtraHosts) != 1 {
					t.Errorf("provider = %+v", p)
				}
				if p.Options["organization"] != "org-1" || p.Options["retries"] != int64(3) {
					t.Errorf("options = %#v", p.Options)
				}
				if _, ok := p.Options["nested"].(map[string]any); !ok {
					t.Errorf("nested option = %#v", p.Options["nested"])
				}
			},
		},
		{
			name: "limits override with a dotted plugin name",
			toml: `
[plugins.limits_override.openai]
max_instances = 2
[plugins.limits_override."acme.llm"]
request_timeout = "1s"
`,
			check: func(t *testing.T, c *Config) {
				if got := c.Plugins.LimitsFor("openai").MaxInstances; got != 2 {
					t.Errorf("openai max_instances = %d", got)
				}
				if got := c.Plugins.LimitsFor("acme.llm").RequestTimeout.Std(); got != time.Second {
					t.Errorf("acme.llm request_timeout = %v", got)
				}
			},
		},
		{
			name: "private https provider",
			toml: `
[[providers]]
name = "local.vllm"
plugin = "openai"
base_url = "https://10.1.2.3:8443/v1"
allow_private_network = true
models = ["qwen"]
`,
			check: func(t *testing.T, c *Config) {
				if c.Providers[0].Name != "local.vllm" {
					t.Errorf("providers = %+v", c.Providers)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(writeConfig(t, tt.toml), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestLoadProblems(t *testing.T) {
	t.Parallel()
	type want struct{ key, msg string } // msg is a substring
	tests := []struct {
		name  string
		toml  string
		env   []string
		want  []want
		exact bool // no other problems allowed
	}{
		{
			name: "bad routes",
			toml: `
[routing]
max_attempts = 0
backoff_base = "2s"
backoff_max = "1s"
[routing.breaker]
error_rate = 1.5
[[routes]]
model = "smart"
strategy = "random"
targets = [{ provider = "Bad Name", model = "" , weight = -1 }]
[[routes]]
model = "smart"
[[routes]]
targets = [{ provider = "p", model = "m", wieght = 2 }]
max_attempts = 11
`,
			want: []want{
				{"routing.max_attempts", "between 1 and 10"},
				{"routing.backoff_max", "at least backoff_base"},
				{"routing.breaker.error_rate", "between 0 and 1"},
				{"routes[0].strategy", `must be one of fallback, weighted, least_latency, got "random"`},
				{"routes[0].targets[0].provider", "must match"},
				{"routes[0].targets[0].model", "required"},
				{"routes[0].targets[0].weight", "between 1 and 1000000"},
				{"routes[1].targets", "at least one target"},
				{"routes[1].model", `duplicate route "smart" (already used by routes[0])`},
				{"routes[2].model", "required"},
				{"routes[2].targets[0].wieght", `did you mean "weight"`},
				{"routes[2].max_attempts", "between 1 and 10"},
			},
			exact: true,
		},
		{
			name:  "responses kept too briefly",
			toml:  "[responses]\nttl = \"30s\"\n",
			want:  []want{{"responses.ttl", "at least 1m while store is on, got 30s"}},
			exact: true,
		},
		{
			name:  "bad api_key_envs",
			toml:  provider + "api_key_envs = [\"OK_NAME\", \"not a name\"]\n",
			want:  []want{{"providers[0].api_key_envs[1]", "valid environment variable name"}},
			exact: true,
		},
		{
			name:  "api_key_weights not one per key",
			toml:  provider + "api_key_envs = [\"SECOND_KEY\"]\napi_key_weights = [2, 0, 1]\n",
			want:  []want{{"providers[0].api_key_weights[1]", "between 1 and 1000"}, {"providers[0].api_key_weights", "one weight per key (api_key_env, then api_key_envs): 2 keys, 3 weights"}},
			exact: true,
		},
		{
			name:  "typo key",
			toml:  "[server]\nlisen = \"127.0.0.1:1\"\n",
			want:  []want{{"server.lisen", `unknown key (did you mean "listen"?)`}},
			exact: true,
		},
		{
			name:  "unknown section",
			toml:  "[nosuch]\nenabled = true\n",
			want:  []want{{"nosuch", "unknown key"}},
			exact: true,
		},
		{
			name:  "bad metrics",
			toml:  "[metrics]\nlisten = \"nowhere\"\ntoken_env = \"not a name\"\n",
			want:  []want{{"metrics.listen", "host:port"}, {"metrics.token_env", "valid environment variable name"}},
			exact: true,
		},
		{
			name:  "unknown provider key",
			toml:  provider + "bse_url = \"https://x\"\n",
			want:  []want{{"providers[0].bse_url", `did you mean "base_url"`}},
			exact: true,
		},
		{
			name:  "unknown override key",
			toml:  "[plugins.limits_override.openai]\nmemry_pages = 64\n",
			want:  []want{{"plugins.limits_override.openai.memry_pages", "unknown key"}},
			exact: true,
		},
		{
			name:  "wrong type string",
			toml:  "[server]\nlisten = 5\n",
			want:  []want{{"server.listen", "expected a string, got integer 5"}},
			exact: true,
		},
		{
			name:  "wrong type integer",
			toml:  "[plugins.limits]\nmemory_pages = \"2048\"\n",
			want:  []want{{"plugins.limits.memory_pages", "expected an integer"}},
			exact: true,
		},
		{
			name:  "float for integer",
			toml:  "[plugins.limits]\nmax_instances = 1.5\n",
			want:  []want{{"plugins.limits.max_instances", "expected an integer, got float 1.5"}},
			exact: true,
		},
		{
			name: "request log bodies",
			toml: "[logs]\nbodies = \"yes\"\nmax_body_bytes = \"32MiB\"\nredact_fields = [\"a\", \"\", \"A\"]\n",
			want: []want{
				{"logs.bodies", "expected a boolean"},
				{"logs.max_body_bytes", "must be between 1 and 16777216"},
				{"logs.redact_fields[1]", "must not be empty"},
				{"logs.redact_fields[2]", `duplicate field "A" (already listed as logs.redact_fields[0]`},
			},
			exact: true,
		},
		{
			name:  "zero body cap",
			toml:  "[logs]\nmax_body_bytes = 0\n",
			want:  []want{{"logs.max_body_bytes", "got 0"}},
			exact: true,
		},
		{
			name:  "redact_fields not a list",
			toml:  "[logs]\nredact_fields = \"api_key\"\n",
			want:  []want{{"logs.redact_fields", "expected an array of strings"}},
			exact: true,
		},
		{
			name:  "wrong type boolean",
			toml:  "[plugins]\nwatch = \"yes\"\n",
			want:  []want{{"plugins.watch", "expected a boolean"}},
			exact: true,
		},
		{
			name:  "section given as a value",
			toml:  "server = 1\n",
			want:  []want{{"server", "expected a table"}},
			exact: true,
		},
		{
			name:  "providers not an array of tables",
			toml:  "providers = \"openai\"\n",
			want:  []want{{"providers", "expected an array of tables"}},
			exact: true,
		},
		{
			name:  "models not an array",
			toml:  strings.Replace(provider, `models = ["gpt-4o-mini", "gpt-4o"]`, `models = "gpt-4o"`, 1),
			want:  []want{{"providers[0].models", "expected an array of strings"}},
			exact: true,
		},
		{
			name:  "bad duration",
			toml:  "[server]\nshutdown_timeout = \"5 parsecs\"\n",
			want:  []want{{"server.shutdown_timeout", `invalid duration "5 parsecs"`}},
			exact: true,
		},
		{
			name:  "duration as a number",
			toml:  "[server]\nread_timeout = 30\n",
			want:  []want{{"server.read_timeout", "expected a duration string"}},
			exact: true,
		},
		{
			name:  "bad size unit",
			toml:  "[server]\nmax_body_bytes = \"4 lightyears\"\n",
			want:  []want{{"server.max_body_bytes", `unknown unit "lightyears"`}},
			exact: true,
		},
		{
			name:  "bad size number",
			toml:  "[plugins.limits]\nmax_emit_bytes = \"lots\"\n",
			want:  []want{{"plugins.limits.max_emit_bytes", `invalid size "lots"`}},
			exact: true,
		},
		{
			name:  "zero size",
			toml:  "[server]\nmax_body_bytes = 0\n",
			want:  []want{{"server.max_body_bytes", "must be greater than 0"}},
			exact: true,
		},
		{
			name:  "negative duration",
			toml:  "[plugins.limits]\nupstream_timeout = \"-1s\"\n",
			want:  []want{{"plugins.limits.upstream_timeout", "must be greater than 0"}},
			exact: true,
		},
		{
			name:  "toml syntax error",
			toml:  "[server\nlisten = 1\n",
			want:  []want{{"", "invalid TOML at line 1"}},
			exact: true,
		},
		{
			name:  "duplicate toml key",
			toml:  "[server]\nlisten = \":1\"\nlisten = \":2\"\n",
			want:  []want{{"", "invalid TOML: key listen is already defined"}},
			exact: true,
		},
		{
			name:  "listen without port",
			toml:  "[server]\nlisten = \"localhost\"\n",
			want:  []want{{"server.listen", "must be host:port"}},
			exact: true,
		},
		{
			name:  "listen with bad port",
			toml:  "[server]\nlisten = \"localhost:http\"\n",
			want:  []want{{"server.listen", "port must be a number"}},
			exact: true,
		},
		{
			name:  "log level and format",
			toml:  "[log]\nlevel = \"verbose\"\nformat = \"xml\"\n",
			want:  []want{{"log.level", "must be one of debug, info, warn, error"}, {"log.format", "must be one of text, json"}},
			exact: true,
		},
		{
			name:  "admin key env",
			toml:  "[auth]\nadmin_key_env = \"ADMIN KEY\"\n",
			want:  []want{{"auth.admin_key_env", "valid environment variable name"}},
			exact: true,
		},
		{
			name:  "memory pages too small",
			toml:  "[plugins.limits]\nmemory_pages = 16\n",
			want:  []want{{"plugins.limits.memory_pages", "must be between 32 and 65536"}},
			exact: true,
		},
		{
			name:  "memory pages too large",
			toml:  "[plugins.limits]\nmemory_pages = 70000\n",
			want:  []want{{"plugins.limits.memory_pages", "got 70000"}},
			exact: true,
		},
		{
			name:  "recycle pages above memory pages",
			toml:  "[plugins.limits]\nmemory_pages = 256\n",
			want:  []want{{"plugins.limits.recycle_after_pages", "must not exceed memory_pages (256)"}},
			exact: true,
		},
		{
			name: "bad override",
			toml: "[plugins.limits_override.openai]\nmemory_pages = 8\nmax_instances = 0\n",
			want: []want{
				{"plugins.limits_override.openai.memory_pages", "must be between 32 and 65536"},
				{"plugins.limits_override.openai.max_instances", "must be greater than 0"},
			},
			exact: true,
		},
		{
			name:  "override conflicting with shared limits",
			toml:  "[plugins.limits_override.tiny]\nmemory_pages = 64\n",
			want:  []want{{"plugins.limits_override.tiny.recycle_after_pages", "must not exceed memory_pages (64)"}},
			exact: true,
		},
		{
			name:  "duplicate provider",
			toml:  provider + provider,
			want:  []want{{"providers[1].name", `duplicate provider name "openai" (already used by providers[0])`}},
			exact: true,
		},
		{
			name:  "bad provider name",
			toml:  strings.Replace(provider, `name = "openai"`, `name = "Open AI"`, 1),
			want:  []want{{"providers[0].name", "must match"}},
			exact: true,
		},
		{
			name: "http base url without allow_private_network",
			toml: `
[[providers]]
name = "ollama"
plugin = "openai"
base_url = "http://127.0.0.1:11434/v1"
models = ["llama3.2"]
`,
			want:  []want{{"providers[0].base_url", "only allowed with allow_private_network = true"}},
			exact: true,
		},
		{
			name:  "https to a private address without allow_private_network",
			toml:  strings.Replace(provider, "https://api.openai.com/v1", "https://192.168.1.10/v1", 1),
			want:  []want{{"providers[0].base_url", "loopback or private address"}},
			exact: true,
		},
		{
			name:  "relative base url",
			toml:  strings.Replace(provider, "https://api.openai.com/v1", "api.openai.com/v1", 1),
			want:  []want{{"providers[0].base_url", "must be an absolute http(s) URL"}},
			exact: true,
		},
		{
			name:  "non-http base url",
			toml:  strings.Replace(provider, "https://api.openai.com/v1", "ftp://api.openai.com/v1", 1),
			want:  []want{{"providers[0].base_url", "must be an absolute http(s) URL"}},
			exact: true,
		},
		{
			name: "provider missing everything",
			toml: "[[providers]]\n",
			want: []want{
				{"providers[0].name", "required"},
				{"providers[0].plugin", "required"},
				{"providers[0].base_url", "required"},
				{"providers[0].models", "at least one model"},
			},
			exact: true,
		},
		{
			name:  "bad models",
			toml:  strings.Replace(provider, `models = ["gpt-4o-mini", "gpt-4o"]`, `models = ["a", "", "a"]`, 1),
			want:  []want{{"providers[0].models[1]", "must not be empty"}, {"providers[0].models[2]", `duplicate model "a"`}},
			exact: true,
		},
		{
			name: "wrong model type keeps later indexes",
			toml: strings.Replace(provider, `models = ["gpt-4o-mini", "gpt-4o"]`, `models = ["a", 3, "a"]`, 1),
			want: []want{
				{"providers[0].models[1]", "expected a string, got integer 3"},
				{"providers[0].models[2]", `duplicate model "a" (already listed as models[0])`},
			},
			exact: true,
		},
		{
			name:  "bad api key env",
			toml:  strings.Replace(provider, `"OPENAI_API_KEY"`, `"OPENAI-API-KEY"`, 1),
			want:  []want{{"providers[0].api_key_env", "valid environment variable name"}},
			exact: true,
		},
		{
			name:  "bad extra host",
			toml:  provider + "extra_hosts = [\"https://cdn.example.com/x\"]\n",
			want:  []want{{"providers[0].extra_hosts[0]", "must be a host name or IP address, with :port"}},
			exact: true,
		},
		{
			name:  "bad env value",
			env:   []string{"LLMPROXY_PLUGINS_LIMITS_MEMORY_PAGES=lots"},
			want:  []want{{"LLMPROXY_PLUGINS_LIMITS_MEMORY_PAGES (plugins.limits.memory_pages)", `expected an integer, got "lots"`}},
			exact: true,
		},
		{
			name:  "bad env duration",
			env:   []string{"LLMPROXY_SERVER_READ_TIMEOUT=soon"},
			want:  []want{{"LLMPROXY_SERVER_READ_TIMEOUT (server.read_timeout)", "invalid duration"}},
			exact: true,
		},
		{
			name:  "env value failing validation",
			env:   []string{"LLMPROXY_SERVER_LISTEN=nowhere"},
			want:  []want{{"server.listen", "(value from LLMPROXY_SERVER_LISTEN)"}},
			exact: true,
		},
		{
			name:  "env provider value failing validation",
			toml:  provider,
			env:   []string{"LLMPROXY_PROVIDERS_OPENAI_BASE_URL=http://example.com"},
			want:  []want{{"providers[0].base_url", "value from LLMPROXY_PROVIDERS_OPENAI_BASE_URL"}},
			exact: true,
		},
		{
			name: "ambiguous env name",
			toml: strings.Replace(provider, `"openai"`, `"a-b"`, 1) + strings.Replace(provider, `"openai"`, `"a.b"`, 1),
			env:  []string{"LLMPROXY_PROVIDERS_A_B_PLUGIN=x"},
			want: []want{{"LLMPROXY_PROVIDERS_A_B_PLUGIN (providers[0].plugin, providers[1].plugin)", "ambiguous"}},
		},
		{
			name: "several problems at once",
			toml: `
[server]
lisen = ":1"
max_body_bytes = "4 lightyears"
[log]
level = "loud"
[plugins.limits]
memory_pages = 10
` + provider + provider + `
[[providers]]
name = "local"
plugin = "openai"
base_url = "http://localhost:8000"
models = ["m"]
`,
			env: []string{"LLMPROXY_SERVER_SHUTDOWN_TIMEOUT=never"},
			want: []want{
				{"server.lisen", "unknown key"},
				{"server.max_body_bytes", "unknown unit"},
				{"LLMPROXY_SERVER_SHUTDOWN_TIMEOUT (server.shutdown_timeout)", "invalid duration"},
				{"log.level", "must be one of"},
				{"plugins.limits.memory_pages", "must be between"},
				{"providers[1].name", "duplicate provider name"},
				{"providers[2].base_url", "allow_private_network"},
			},
			exact: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tt.toml != "" {
				path = writeConfig(t, tt.toml)
			}
			cfg, err := Load(path, tt.env)
			if cfg != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			ps := problemsOf(t, err)
			for _, w := range tt.want {
				found := false
				for _, p := range ps {
					if p.Key == w.key && strings.Contains(p.Msg, w.msg) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("no problem %q containing %q; got:\n%v", w.key, w.msg, ps)
				}
			}
			if tt.exact && len(ps) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), len(tt.want), ps)
			}
			// Each problem is on its own line of the error message.
			for _, p := range ps {
				if !strings.Contains(err.Error(), "\n"+p.Error()) {
					t.Errorf("error message lacks line %q:\n%v", p.Error(), err)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want a not-exist error", err)
	}
	if _, ok := errors.AsType[Problems](err); ok {
		t.Errorf("a missing file should not be reported as config problems: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	file := provider + `
[[providers]]
name = "my-local.llm"
plugin = "openai"
base_url = "http://127.0.0.1:8000/v1"
allow_private_network = true
models = ["m"]

[plugins.limits_override.openai]
max_instances = 4
`
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "server.listen",
			env:  []string{"LLMPROXY_SERVER_LISTEN=127.0.0.1:9000"},
			check: func(t *testing.T, c *Config) {
				if c.Server.Listen != "127.0.0.1:9000" {
					t.Errorf("listen = %q", c.Server.Listen)
				}
			},
		},
		{
			name: "plugins.limits.memory_pages",
			env:  []string{"LLMPROXY_PLUGINS_LIMITS_MEMORY_PAGES=2048"},
			check: func(t *testing.T, c *Config) {
				if got := c.Plugins.Limits.MemoryPages; got != 2048 {
					t.Errorf("memory_pages = %d", got)
				}
				if got := c.Plugins.LimitsFor("openai").MemoryPages; got != 2048 {
					t.Errorf("openai memory_pages = %d", got)
				}
			},
		},
		{
			name: "sizes durations and booleans",
			env: []string{
				"LLMPROXY_SERVER_MAX_BODY_BYTES=8MiB",
				"LLMPROXY_SERVER_SHUTDOWN_TIMEOUT=5s",
				"LLMPROXY_PLUGINS_WATCH=false",
				"LLMPROXY_PLUGINS_DIR=/opt/plugins",
				"LLMPROXY_LOG_LEVEL=debug",
			},
			check: func(t *testing.T, c *Config) {
				if c.Server.MaxBodyBytes != 8*MiB || c.Server.ShutdownTimeout.Std() != 5*time.Second ||
					c.Plugins.Watch || c.Plugins.Dir != "/opt/plugins" || c.Log.Level != "debug" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "provider base_url and models",
			env: []string{
				"LLMPROXY_PROVIDERS_OPENAI_BASE_URL=https://gateway.example.com/openai/v1",
				"LLMPROXY_PROVIDERS_OPENAI_MODELS=gpt-4.1, o3 ,,",
			},
			check: func(t *testing.T, c *Config) {
				p := c.Providers[0]
				if p.BaseURL != "https://gateway.example.com/openai/v1" {
					t.Errorf("base_url = %q", p.BaseURL)
				}
				if !reflect.DeepEqual(p.Models, []string{"gpt-4.1", "o3"}) {
					t.Errorf("models = %q", p.Models)
				}
			},
		},
		{
			name: "provider name with dash and dot",
			env:  []string{"LLMPROXY_PROVIDERS_MY_LOCAL_LLM_EXTRA_HOSTS=a.internal,b.internal"},
			check: func(t *testing.T, c *Config) {
				if got := c.Providers[1].ExtraHosts; !reflect.DeepEqual(got, []string{"a.internal", "b.internal"}) {
					t.Errorf("extra_hosts = %q", got)
				}
			},
		},
		{
			name: "limits override entry",
			env:  []string{"LLMPROXY_PLUGINS_LIMITS_OVERRIDE_OPENAI_REQUEST_TIMEOUT=20s"},
			check: func(t *testing.T, c *Config) {
				l := c.Plugins.LimitsFor("openai")
				if l.RequestTimeout.Std() != 20*time.Second || l.MaxInstances != 4 {
					t.Errorf("openai limits = %+v", l)
				}
			},
		},
		{
			name: "request log bodies",
			env: []string{"LLMPROXY_LOGS_BODIES=true", "LLMPROXY_LOGS_MAX_BODY_BYTES=1MiB",
				"LLMPROXY_LOGS_REDACT_FIELDS=token, session_id"},
			check: func(t *testing.T, c *Config) {
				if !c.Logs.Bodies || c.Logs.MaxBodyBytes != MiB || !reflect.DeepEqual(c.Logs.RedactFields, []string{"token", "session_id"}) {
					t.Errorf("logs = %+v", c.Logs)
				}
			},
		},
		{
			name: "no redaction from the environment",
			env:  []string{"LLMPROXY_LOGS_REDACT_FIELDS="},
			check: func(t *testing.T, c *Config) {
				if len(c.Logs.RedactFields) != 0 {
					t.Errorf("redact_fields = %q", c.Logs.RedactFields)
				}
			},
		},
		{
			name: "last value wins",
			env:  []string{"LLMPROXY_LOG_FORMAT=text", "LLMPROXY_LOG_FORMAT=json"},
			check: func(t *testing.T, c *Config) {
				if c.Log.Format != "json" {
					t.Errorf("format = %q", c.Log.Format)
				}
			},
		},
		{
			name: "unrelated variables are ignored",
			env: []string{
				"LLMPROXY_ADMIN_KEY=s3cret",
				"LLMPROXY_NOT_A_KEY=1",
				"LLMPROXY_PROVIDERS_UNKNOWN_BASE_URL=ftp://x",
				"LLMPROXY_PROVIDERS_OPENAI_NAME=renamed",
				"HOME=/root",
				"malformed",
			},
			check: func(t *testing.T, c *Config) {
				want, err := Load(writeConfig(t, file), nil)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("config changed:\n got %+v\nwant %+v", c, want)
				}
				if c.Auth.AdminKeyEnv != "LLMPROXY_ADMIN_KEY" {
					t.Errorf("admin_key_env = %q", c.Auth.AdminKeyEnv)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(writeConfig(t, file), tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestLimitsFor(t *testing.T) {
	t.Parallel()
	pages, instances := 2048, 3
	timeout := Duration(time.Minute)
	emit := 2 * GiB
	p := PluginsConfig{
		Limits: DefaultLimits(),
		LimitsOverride: map[string]LimitsPatch{
			"big":  {MemoryPages: &pages, MaxEmitBytes: &emit},
			"slow": {RequestTimeout: &timeout, MaxInstances: &instances},
		},
	}
	big := DefaultLimits()
	big.MemoryPages, big.MaxEmitBytes = 2048, 2*GiB
	slow := DefaultLimits()
	slow.RequestTimeout, slow.MaxInstances = Duration(time.Minute), 3

	tests := []struct {
		plugin string
		want   Limits
	}{
		{"big", big},
		{"slow", slow},
		{"other", DefaultLimits()},
		{"", DefaultLimits()},
	}
	for _, tt := range tests {
		t.Run("plugin="+tt.plugin, func(t *testing.T) {
			t.Parallel()
			if got := p.LimitsFor(tt.plugin); got != tt.want {
				t.Errorf("LimitsFor(%q) = %+v, want %+v", tt.plugin, got, tt.want)
			}
		})
	}
	if p.Limits != DefaultLimits() {
		t.Errorf("LimitsFor modified the shared limits: %+v", p.Limits)
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: "4096", want: 4096},
		{in: "4MiB", want: 4 * MiB},
		{in: "512KiB", want: 512 * KiB},
		{in: "100MB", want: 100_000_000},
		{in: "1GiB", want: GiB},
		{in: "2 tib", want: 2 * TiB},
		{in: "10B", want: 10},
		{in: "1.5KiB", want: 1536},
		{in: "-1KiB", want: -KiB},
		{in: "", wantErr: "invalid size"},
		{in: "MiB", wantErr: "invalid size"},
		{in: "1.2.3MB", wantErr: "invalid size"},
		{in: "0.3B", wantErr: "whole number"},
		{in: "4 MiBs", wantErr: "unknown unit"},
		{in: "1e3", wantErr: "unknown unit"},
		{in: "9999999TiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseByteSize(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			// Formatting and parsing again gives the same size.
			text, _ := got.MarshalText()
			var back ByteSize
			if err := back.UnmarshalText(text); err != nil || back != got {
				t.Errorf("round trip via %q = %v, %v", text, back, err)
			}
		})
	}

	for size, want := range map[ByteSize]string{4 * MiB: "4MiB", 100_000_000: "100MB", 1234: "1234B", 0: "0B", 3 * GiB / 2: "1536MiB"} {
		if got := size.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(size), got, want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || d.Std() != 90*time.Minute {
		t.Fatalf("UnmarshalText(1h30m) = %v, %v", d, err)
	}
	text, err := d.MarshalText()
	if err != nil || string(text) != "1h30m0s" {
		t.Errorf("MarshalText = %q, %v", text, err)
	}
	if err := d.UnmarshalText([]byte("5 parsecs")); err == nil {
		t.Error("UnmarshalText(5 parsecs) succeeded")
	}
}

func TestProblemsError(t *testing.T) {
	t.Parallel()
	ps := Problems{
		{Key: "server.listen", Msg: "must be host:port"},
		{Msg: "invalid TOML at line 1, column 2: boom"},
	}
	want := "server.listen: must be host:port\ninvalid TOML at line 1, column 2: boom"
	if got := ps.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Validate returned a non-nil error for a valid config: %#v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.Server.ReadTimeout = 0
	cfg.Server.TrustedProxies = []string{"10.0.0.0/8", "::1", "proxy.internal"}
	cfg.Plugins.Dir = ""
	cfg.Providers = []ProviderConfig{{Name: "x", Plugin: "p", BaseURL: "https://example.com", Models: []string{"m"}}}
	ps, ok := errors.AsType[Problems](cfg.Validate())
	if !ok {
		t.Fatalf("Validate() did not return Problems")
	}
	want := Problems{
		{Key: "server.read_timeout", Msg: "must be greater than 0, got 0s"},
		{Key: "server.trusted_proxies[2]", Msg: `must be an IP address or a CIDR range such as "10.0.0.0/8", got "proxy.internal"`},
		{Key: "plugins.dir", Msg: "must not be empty"},
	}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("Validate() = %#v, want %#v", ps, want)
	}
}

func TestMapstructureKey(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"server.listen":                                   "server.listen",
		"providers[2].models[0]":                          "providers[2].models[0]",
		"plugins.limits_override[openai].memory_pages":    "plugins.limits_override.openai.memory_pages",
		"plugins.limits_override[acme.llm].max_instances": `plugins.limits_override."acme.llm".max_instances`,
		"providers[0].options[weird key]":                 `providers[0].options."weird key"`,
		"unterminated[":                                   "unterminated[",
	}
	for in, want := range tests {
		if got := mapstructureKey(in); got != want {
			t.Errorf("mapstructureKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile(repoConfig); err == nil {
		// Without its comments: smaller inputs are quicker to mutate and
		// to minimize.
		var lines []string
		for line := range strings.SplitSeq(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				lines = append(lines, line)
			}
		}
		f.Add([]byte(strings.Join(lines, "\n")), "")
	}
	f.Add([]byte(provider), "2048")
	f.Add([]byte("[server]\nlisten = 5\nmax_body_bytes = \"1.5GiB\"\n"), "4MiB")
	f.Add([]byte("[plugins.limits_override.\"a.b\"]\nmemory_pages = 64\n"), "30s")
	f.Add([]byte("[[providers]]\n[[providers]]\nname = 1\nmodels = [1, [2], {a = 3}]\n"), "a,b")
	f.Add([]byte("providers = [1, \"x\", {name = \"n\"}]\nserver = []\n"), "true")
	f.Add([]byte("x = 1979-05-27T07:32:00Z\n[log]\nlevel = 1979-05-27\n"), "")

	// Inputs run one after another within a fuzzing process, so they can
	// share one file.
	path := filepath.Join(f.TempDir(), "fuzz.toml")
	f.Fuzz(func(t *testing.T, data []byte, envValue string) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		environ := []string{
			"LLMPROXY_SERVER_LISTEN=" + envValue,
			"LLMPROXY_SERVER_MAX_BODY_BYTES=" + envValue,
			"LLMPROXY_SERVER_READ_TIMEOUT=" + envValue,
			"LLMPROXY_PLUGINS_WATCH=" + envValue,
			"LLMPROXY_PLUGINS_LIMITS_MEMORY_PAGES=" + envValue,
			"LLMPROXY_PROVIDERS_OPENAI_MODELS=" + envValue,
			"LLMPROXY_PLUGINS_LIMITS_OVERRIDE_A_B_MAX_EMIT_BYTES=" + envValue,
		}
		cfg, err := Load(path, environ)
		if err != nil {
			if cfg != nil {
				t.Fatal("Load returned both a config and an error")
			}
			if _, ok := errors.AsType[Problems](err); !ok {
				t.Fatalf("error is not a Problems list: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load succeeded but Validate fails: %v", err)
		}
	})
}

// TestRedactFieldsReplaceTheDefault: a list in the file replaces the
// default list, whatever their lengths; an empty list redacts nothing.
func TestRedactFieldsReplaceTheDefault(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		`["card_number"]`: {"card_number"},
		`[]`:              {},
	} {
		cfg, err := Load(writeConfig(t, "[logs]\nredact_fields = "+in+"\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Logs.RedactFields, want) {
			t.Errorf("%s: redact_fields = %q, want %q", in, cfg.Logs.RedactFields, want)
		}
	}
}

// TestValidateDatabase: the [database] section names its key and problem.
func TestValidateDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  func(*DatabaseConfig)
		want Problems
	}{
		{"unknown driver", func(d *DatabaseConfig) { d.Driver = "mysql" },
			Problems{{Key: "database.driver", Msg: `must be "sqlite" or "postgres", got "mysql"`}}},
		{"postgres without a dsn", func(d *DatabaseConfig) { d.Driver, d.DSNEnv = DriverPostgres, "" },
			Problems{{Key: "database.dsn", Msg: "must hold the PostgreSQL connection string (or set database.dsn_env to a variable that does)"}}},
		{"bad pool", func(d *DatabaseConfig) { d.Driver, d.MaxConnections = DriverPostgres, 0 },
			Problems{{Key: "database.max_connections", Msg: "must be between 1 and 1000, got 0"}}},
		{"bad variable", func(d *DatabaseConfig) { d.DSNEnv = "A-B" },
			Problems{{Key: "database.dsn_env", Msg: `must be a valid environment variable name, got "A-B"`}}},
		{"sqlite without a path", func(d *DatabaseConfig) { d.Path = "" },
			Problems{{Key: "database.path", Msg: "must name the SQLite file"}}},
	} {
		cfg := Default()
		tc.set(&cfg.Database)
		ps, _ := errors.AsType[Problems](cfg.Validate())
		if !reflect.DeepEqual(ps, tc.want) {
			t.Errorf("%s: %#v, want %#v", tc.name, ps, tc.want)
		}
	}
	d := Default().Database
	d.DSN = "postgres://file"
	if got := d.PostgresDSN(map[string]string{"LLMPROXY_DATABASE_URL": "postgres://env"}); got != "postgres://env" {
		t.Errorf("the variable does not win: %q", got)
	}
	if got := d.PostgresDSN(map[string]string{"LLMPROXY_DATABASE_URL": ""}); got != "postgres://file" {
		t.Errorf("an empty variable wins: %q", got)
	}
}
