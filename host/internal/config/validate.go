package config

import (
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/sdk/abi"
)

// Bounds of plugins.limits.memory_pages, in 64 KiB wasm pages.
const (
	MinMemoryPages = 32    // 2 MiB
	MaxMemoryPages = 65536 // 4 GiB, the most a 32-bit wasm memory can hold
)

// Allowed values of log.level and log.format.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
)

var (
	providerNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	envNameRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hostNameRe     = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$`)
)

// Validate checks the whole configuration and returns every problem found
// as a Problems error, or nil when there is none.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return ps
	}
	return nil
}

func (c *Config) problems() Problems {
	var ps Problems

	s := c.Server
	if msg := checkListen(s.Listen); msg != "" {
		ps.add("server.listen", "%s", msg)
	}
	if m := c.Metrics; m.Listen != "" {
		if msg := checkListen(m.Listen); msg != "" {
			ps.add("metrics.listen", "%s", msg)
		}
	}
	if tr := c.Tracing; tr.Endpoint != "" {
		if u, err := url.Parse(tr.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps.add("tracing.endpoint", "must be an http(s) URL such as \"http://127.0.0.1:4318/v1/traces\", got %q", tr.Endpoint)
		}
	}
	if r := c.Tracing.SampleRatio; r < 0 || r > 1 || r != r {
		ps.add("tracing.sample_ratio", "must be between 0 and 1, got %g", r)
	}
	if r := c.Responses; r.Store && r.TTL < Duration(time.Minute) {
		ps.add("responses.ttl", "must be at least 1m while store is on, got %s", r.TTL)
	}
	if c.Tracing.ServiceName == "" {
		ps.add("tracing.service_name", "must not be empty")
	}
	if e := c.Metrics.TokenEnv; e != "" && !envNameRe.MatchString(e) {
		ps.add("metrics.token_env", "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*), got %q", e)
	}
	positiveSize(&ps, "server.max_body_bytes", s.MaxBodyBytes)
	positiveDuration(&ps, "server.shutdown_timeout", s.ShutdownTimeout)
	positiveDuration(&ps, "server.read_timeout", s.ReadTimeout)
	if s.WriteTimeout < 0 {
		ps.add("server.write_timeout", "must be 0 (never drop a slow client) or more, got %s", s.WriteTimeout)
	}
	for i, p := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			ps.add("server.trusted_proxies["+strconv.Itoa(i)+"]", "must be an IP address or a CIDR range such as \"10.0.0.0/8\", got %q", p)
		}
	}

	switch {
	case c.Auth.AdminKeyEnv == "":
		ps.add("auth.admin_key_env", "must name the environment variable holding the admin key")
	case !envNameRe.MatchString(c.Auth.AdminKeyEnv):
		ps.add("auth.admin_key_env", "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*), got %q", c.Auth.AdminKeyEnv)
	}
	if ttl := c.Auth.SessionTTL.Std(); ttl < time.Minute || ttl > 30*24*time.Hour {
		ps.add("auth.session_ttl", "must be between 1m and 720h (30 days), got %s", ttl)
	}

	for model, p := range c.Prices {
		key := "prices." + strconv.Quote(model)
		if p.Input < 0 || p.Output < 0 || (p.CachedInput != nil && *p.CachedInput < 0) {
			ps.add(key, "prices must not be negative")
		}
	}
	if !envNameRe.MatchString(c.Security.EncryptionKeyEnv) {
		ps.add("security.encryption_key_env", "must be a valid environment variable name, got %q", c.Security.EncryptionKeyEnv)
	}
	switch db := c.Database; db.Driver {
	case DriverSQLite:
		if db.Path == "" {
			ps.add("database.path", "must name the SQLite file")
		}
	case DriverPostgres:
		if db.DSN == "" && db.DSNEnv == "" {
			ps.add("database.dsn", "must hold the PostgreSQL connection string (or set database.dsn_env to a variable that does)")
		}
		if db.MaxConnections < 1 || db.MaxConnections > 1000 {
			ps.add("database.max_connections", "must be between 1 and 1000, got %d", db.MaxConnections)
		}
	default:
		ps.add("database.driver", "must be %q or %q, got %q", DriverSQLite, DriverPostgres, db.Driver)
	}
	if db := c.Database; db.DSNEnv != "" && !envNameRe.MatchString(db.DSNEnv) {
		ps.add("database.dsn_env", "must be a valid environment variable name, got %q", db.DSNEnv)
	}
	if c.Logs.RetentionDays < 0 {
		ps.add("logs.retention_days", "must be 0 (keep forever) or more, got %d", c.Logs.RetentionDays)
	}
	if c.Logs.QueueSize <= 0 {
		ps.add("logs.queue_size", "must be greater than 0, got %d", c.Logs.QueueSize)
	}
	if b := c.Logs.MaxBodyBytes; b <= 0 || b > MaxLogBodyBytes {
		ps.add("logs.max_body_bytes", "must be between 1 and %d (16MiB), got %d", int64(MaxLogBodyBytes), int64(b))
	}
	firstField := make(map[string]int)
	for i, f := range c.Logs.RedactFields {
		key := indexKey("logs.redact_fields", i)
		if strings.TrimSpace(f) == "" {
			ps.add(key, "must not be empty")
			continue
		}
		if first, dup := firstField[strings.ToLower(f)]; dup {
			ps.add(key, "duplicate field %q (already listed as logs.redact_fields[%d]; names match without regard to case)", f, first)
			continue
		}
		firstField[strings.ToLower(f)] = i
	}

	if !slices.Contains(LogLevels, c.Log.Level) {
		ps.add("log.level", "must be one of %s, got %q", strings.Join(LogLevels, ", "), c.Log.Level)
	}
	if !slices.Contains(LogFormats, c.Log.Format) {
		ps.add("log.format", "must be one of %s, got %q", strings.Join(LogFormats, ", "), c.Log.Format)
	}

	if c.Plugins.Dir == "" {
		ps.add("plugins.dir", "must not be empty")
	}
	for _, is := range limitIssues(c.Plugins.Limits) {
		ps.add(joinKey("plugins.limits", is.key), "%s", is.msg)
	}
	overrides := make([]string, 0, len(c.Plugins.LimitsOverride))
	for name := range c.Plugins.LimitsOverride {
		overrides = append(overrides, name)
	}
	slices.Sort(overrides)
	for _, name := range overrides {
		patch := c.Plugins.LimitsOverride[name]
		set := patch.keys()
		prefix := joinKey("plugins.limits_override", name)
		for _, is := range limitIssues(patch.Apply(c.Plugins.Limits)) {
			// Problems that come only from [plugins.limits] are
			// reported there already.
			if slices.ContainsFunc(is.involves, func(k string) bool { return set[k] }) {
				ps.add(joinKey(prefix, is.key), "%s", is.msg)
			}
		}
	}

	seen := make(map[string]int)
	for i, p := range c.Providers {
		validateProvider(&ps, indexKey("providers", i), p)
		if p.Name == "" {
			continue
		}
		if first, dup := seen[p.Name]; dup {
			ps.add(indexKey("providers", i)+".name", "duplicate provider name %q (already used by providers[%d])", p.Name, first)
		} else {
			seen[p.Name] = i
		}
	}
	validateRouting(&ps, c.Routing)
	routeAt := make(map[string]int)
	for i, r := range c.Routes {
		key := indexKey("routes", i)
		validateRoute(&ps, key, r)
		if first, dup := routeAt[r.Model]; dup && r.Model != "" {
			ps.add(key+".model", "duplicate route %q (already used by routes[%d])", r.Model, first)
		} else {
			routeAt[r.Model] = i
		}
	}
	return ps
}

// MaxTargets is the most targets a route may have.
const MaxTargets = 64

// MaxKeyWeight is the largest weight of a provider's key.
const MaxKeyWeight = 1000

// MaxAttempts is the largest number of attempts a request may make.
const MaxAttempts = 10

func validateRouting(ps *Problems, r RoutingConfig) {
	if r.MaxAttempts < 1 || r.MaxAttempts > MaxAttempts {
		ps.add("routing.max_attempts", "must be between 1 and %d, got %d", MaxAttempts, r.MaxAttempts)
	}
	positiveDuration(ps, "routing.retry_deadline", r.RetryDeadline)
	if r.BackoffBase < 0 {
		ps.add("routing.backoff_base", "must not be negative, got %s", r.BackoffBase)
	}
	if r.BackoffMax < r.BackoffBase {
		ps.add("routing.backoff_max", "must be at least backoff_base (%s), got %s", r.BackoffBase, r.BackoffMax)
	}
	b := r.Breaker
	if b.Failures < 1 {
		ps.add("routing.breaker.failures", "must be at least 1, got %d", b.Failures)
	}
	if b.ErrorRate < 0 || b.ErrorRate > 1 {
		ps.add("routing.breaker.error_rate", "must be between 0 and 1 (0 turns the rule off), got %g", b.ErrorRate)
	}
	if b.Window < 1 || b.Window > 1000 {
		ps.add("routing.breaker.window", "must be between 1 and 1000, got %d", b.Window)
	}
	positiveDuration(ps, "routing.breaker.cooldown", b.Cooldown)
}

// ValidateRoute checks one route by the rules a [[routes]] block of the
// config file follows, with keys relative to the route ("model",
// "targets[0].provider"), or returns nil. Routes managed through the admin
// API are checked with it.
func ValidateRoute(r RouteConfig) Problems {
	var ps Problems
	validateRoute(&ps, "", r)
	return ps
}

func validateRoute(ps *Problems, key string, r RouteConfig) {
	switch {
	case r.Model == "":
		ps.add(joinKey(key, "model"), "required: the model name clients ask for")
	case !abi.ValidModel(r.Model):
		ps.add(joinKey(key, "model"), "%q is not a model name: use at most %d %s", r.Model, abi.MaxModelLen, abi.ModelNameRule)
	}
	if _, ok := router.ParseStrategy(r.Strategy); !ok {
		ps.add(joinKey(key, "strategy"), "must be one of %s, got %q", strings.Join(router.Strategies, ", "), r.Strategy)
	}
	switch {
	case len(r.Targets) == 0:
		ps.add(joinKey(key, "targets"), "must list at least one target, such as { provider = \"openai\", model = \"gpt-4o-mini\" }")
	case len(r.Targets) > MaxTargets:
		ps.add(joinKey(key, "targets"), "must list at most %d targets, got %d", MaxTargets, len(r.Targets))
	}
	for i, t := range r.Targets {
		validateTarget(ps, indexKey(joinKey(key, "targets"), i), t)
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > MaxAttempts {
		ps.add(joinKey(key, "max_attempts"), "must be between 1 and %d, or 0 for [routing] max_attempts, got %d", MaxAttempts, r.MaxAttempts)
	}
	if f := r.ContextWindowFallback; f != nil {
		validateTarget(ps, joinKey(key, "context_window_fallback"), *f)
	}
}

func validateTarget(ps *Problems, key string, t RouteTarget) {
	if t.Provider == "" {
		ps.add(joinKey(key, "provider"), "required: the name of a provider")
	} else if !providerNameRe.MatchString(t.Provider) {
		ps.add(joinKey(key, "provider"), "must match [a-z0-9][a-z0-9._-]*, got %q", t.Provider)
	}
	switch {
	case t.Model == "":
		ps.add(joinKey(key, "model"), "required: the model name sent to the provider")
	case !abi.ValidModel(t.Model):
		ps.add(joinKey(key, "model"), "%q is not a model name: use at most %d %s", t.Model, abi.MaxModelLen, abi.ModelNameRule)
	}
	if t.Weight < 0 || t.Weight > 1_000_000 {
		ps.add(joinKey(key, "weight"), "must be between 1 and 1000000 (0 or unset means 1), got %d", t.Weight)
	}
}

func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return `must be host:port, such as "127.0.0.1:8080" or ":8080", got ` + strconv.Quote(addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "port must be a number from 0 to 65535, got " + strconv.Quote(port)
	}
	return ""
}

func positiveSize(ps *Problems, key string, v ByteSize) {
	if v <= 0 {
		ps.add(key, "must be greater than 0, got %d", int64(v))
	}
}

func positiveDuration(ps *Problems, key string, v Duration) {
	if v <= 0 {
		ps.add(key, "must be greater than 0, got %s", v)
	}
}

// limitIssue is a problem with a Limits value.
type limitIssue struct {
	key      string   // key the problem is reported under
	involves []string // keys whose values cause it
	msg      string
}

func limitIssues(l Limits) []limitIssue {
	var out []limitIssue
	add := func(key, msg string, involves ...string) {
		out = append(out, limitIssue{key: key, involves: append(involves, key), msg: msg})
	}
	memoryOK := l.MemoryPages >= MinMemoryPages && l.MemoryPages <= MaxMemoryPages
	if !memoryOK {
		add("memory_pages", "must be between "+strconv.Itoa(MinMemoryPages)+" and "+strconv.Itoa(MaxMemoryPages)+
			" (64 KiB pages, 2 MiB to 4 GiB), got "+strconv.Itoa(l.MemoryPages))
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"request_timeout", l.RequestTimeout},
		{"upstream_timeout", l.UpstreamTimeout},
		{"callback_timeout", l.CallbackTimeout},
		{"idle_timeout", l.IdleTimeout},
	} {
		if d.v <= 0 {
			add(d.key, "must be greater than 0, got "+d.v.String())
		}
	}
	for _, s := range []struct {
		key string
		v   ByteSize
	}{
		{"max_upstream_body_bytes", l.MaxUpstreamBodyBytes},
		{"max_emit_bytes", l.MaxEmitBytes},
		{"stream_buffer_bytes", l.StreamBufferBytes},
	} {
		if s.v <= 0 {
			add(s.key, "must be greater than 0, got "+strconv.FormatInt(int64(s.v), 10))
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"max_http_handles", l.MaxHTTPHandles},
		{"max_instances", l.MaxInstances},
		{"max_streams_per_instance", l.MaxStreamsPerInstance},
		{"recycle_after_calls", l.RecycleAfterCalls},
		{"recycle_after_pages", l.RecycleAfterPages},
	} {
		if n.v <= 0 {
			add(n.key, "must be greater than 0, got "+strconv.Itoa(n.v))
		}
	}
	if l.MinInstances < 0 || l.MinInstances > l.MaxInstances {
		add("min_instances", "must be between 0 and max_instances ("+strconv.Itoa(l.MaxInstances)+"), got "+strconv.Itoa(l.MinInstances), "max_instances")
	}
	if memoryOK && l.RecycleAfterPages > l.MemoryPages {
		add("recycle_after_pages", "must not exceed memory_pages ("+strconv.Itoa(l.MemoryPages)+
			"), got "+strconv.Itoa(l.RecycleAfterPages), "memory_pages")
	}
	return out
}

// keys returns the TOML keys that p sets.
func (p LimitsPatch) keys() map[string]bool {
	out := make(map[string]bool)
	v := reflect.ValueOf(p)
	for i := range v.NumField() {
		if !v.Field(i).IsNil() {
			out[tagName(v.Type().Field(i))] = true
		}
	}
	return out
}

// ValidateProvider checks one provider by the rules a [[providers]] block
// of the config file must follow, and returns every problem found with a
// key relative to the provider ("name", "base_url", "models[1]"), or nil.
// Providers managed through the admin API are checked with it, so a
// provider is accepted or refused the same way wherever it is defined.
func ValidateProvider(p ProviderConfig) Problems {
	var ps Problems
	validateProvider(&ps, "", p)
	return ps
}

func validateProvider(ps *Problems, key string, p ProviderConfig) {
	switch {
	case p.Name == "":
		ps.add(joinKey(key, "name"), "required")
	case !providerNameRe.MatchString(p.Name):
		ps.add(joinKey(key, "name"), "must match [a-z0-9][a-z0-9._-]* (lowercase letters, digits, '.', '_' and '-'), got %q", p.Name)
	}

	if strings.TrimSpace(p.Plugin) == "" {
		ps.add(joinKey(key, "plugin"), "required: the name of the plugin serving this provider")
	}

	if msg := checkBaseURL(p.BaseURL, p.AllowPrivateNetwork); msg != "" {
		ps.add(joinKey(key, "base_url"), "%s", msg)
	}

	if p.APIKeyEnv != "" && !envNameRe.MatchString(p.APIKeyEnv) {
		ps.add(joinKey(key, "api_key_env"), "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*), got %q", p.APIKeyEnv)
	}

	for _, f := range []struct {
		name string
		v    int
	}{{"rpm", p.RPM}, {"tpm", p.TPM}, {"max_parallel", p.MaxParallel}} {
		if f.v < 0 || f.v > 1_000_000_000 {
			ps.add(joinKey(key, f.name), "must be between 0 (no limit) and 1000000000, got %d", f.v)
		}
	}

	for i, e := range p.APIKeyEnvs {
		if !envNameRe.MatchString(e) {
			ps.add(indexKey(joinKey(key, "api_key_envs"), i), "must be a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*), got %q", e)
		}
	}
	for i, w := range p.APIKeyWeights {
		if w < 1 || w > MaxKeyWeight {
			ps.add(indexKey(joinKey(key, "api_key_weights"), i), "must be between 1 and %d, got %d", MaxKeyWeight, w)
		}
	}
	envs := len(p.APIKeyEnvs)
	if p.APIKeyEnv != "" {
		envs++
	}
	if envs > 0 && len(p.APIKeyWeights) > 0 && len(p.APIKeyWeights) != envs {
		ps.add(joinKey(key, "api_key_weights"), "must give one weight per key (api_key_env, then api_key_envs): %d keys, %d weights", envs, len(p.APIKeyWeights))
	}

	if len(p.Models) == 0 {
		ps.add(joinKey(key, "models"), "must list at least one model")
	}
	firstModel := make(map[string]int)
	for i, m := range p.Models {
		mkey := indexKey(joinKey(key, "models"), i)
		if strings.TrimSpace(m) == "" {
			ps.add(mkey, "must not be empty")
			continue
		}
		if !abi.ValidModel(m) {
			// Clients could not ask for it: the server refuses such names.
			ps.add(mkey, "%q is not a model name: use at most %d %s", m, abi.MaxModelLen, abi.ModelNameRule)
			continue
		}
		if first, dup := firstModel[m]; dup {
			ps.add(mkey, "duplicate model %q (already listed as models[%d])", m, first)
			continue
		}
		firstModel[m] = i
	}

	for i, h := range p.ExtraHosts {
		hkey := indexKey(joinKey(key, "extra_hosts"), i)
		// "host:port" grants that port; a bare host, 443 and 80.
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = strings.Trim(h, "[]"), ""
		}
		switch {
		case h == "":
			ps.add(hkey, "must not be empty")
		case !isHost(host) || (err == nil && !validPort(port)):
			ps.add(hkey, "must be a host name or IP address, with :port for a port other than 443 and 80 (no scheme or path), got %q", h)
		case !p.AllowPrivateNetwork && isPrivateHost(host):
			ps.add(hkey, "%q is a loopback or private address; this needs allow_private_network = true", h)
		}
	}
}

func checkBaseURL(raw string, allowPrivate bool) string {
	if raw == "" {
		return "required: the absolute http(s) URL of the provider's API"
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "must be an absolute http(s) URL with a host, got " + strconv.Quote(raw)
	}
	if allowPrivate {
		return ""
	}
	if u.Scheme == "http" {
		return "plain http:// is only allowed with allow_private_network = true; use https:// or set allow_private_network = true"
	}
	if isPrivateHost(u.Hostname()) {
		return strconv.Quote(u.Hostname()) + " is a loopback or private address; this needs allow_private_network = true"
	}
	return ""
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

func isHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostNameRe.MatchString(h)
}

// isPrivateHost reports whether h is "localhost" or an IP address literal
// that is not publicly routable. Host names are not resolved here.
func isPrivateHost(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	return egress.IsPrivate(ip) // what the dialer will refuse
}
