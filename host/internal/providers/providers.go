// Package providers keeps the list of providers LLM Proxy routes to, and
// the routes over them, and turns every change of either into a new router
// at once.
//
// Providers come from two places:
//
//   - the [[providers]] blocks of config.toml, fixed for the life of the
//     process and read-only here; their secrets come from the environment;
//   - the providers table of the database, which the admin API changes
//     while the proxy runs; their secrets are stored sealed with the master
//     key (AES-256-GCM, with the provider's id as additional data, so a
//     sealed value copied onto another row does not open).
//
// A secret is opened only here, in the host, to build the provider's
// egress client, which adds it to upstream requests. It is never part of
// the configuration a plugin reads, never logged, and never returned: a
// listing shows whether a provider has one and, for a long enough secret,
// its last four characters.
//
// The router is rebuilt after every change (config providers first, in
// file order, then database providers, oldest first) and swapped into the
// [router.Live] holder the server resolves through, so the next request
// sees it. Changes made by another process on the same database (a second
// proxy) are found by [Manager.Watch], which polls a one-line fingerprint
// of the table.
package providers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Errors of the management calls.
var (
	// ErrNotFound: no provider has that name.
	ErrNotFound = errors.New("no such provider")
	// ErrExists: the name is taken, by a config or a database provider.
	ErrExists = errors.New("provider exists")
	// ErrReadOnly: the provider is defined in the config file.
	ErrReadOnly = errors.New("provider defined in the config file")
)

// InvalidError is a provider definition that breaks the rules. Each
// problem's Key names the JSON field ("base_url", "models[1]").
type InvalidError struct {
	Problems config.Problems
	// Route is set when a route is invalid, not a provider.
	Route bool
}

func (e *InvalidError) Error() string {
	if e.Route {
		return "invalid route: " + e.Problems.Error()
	}
	return "invalid provider: " + e.Problems.Error()
}

func invalid(field, format string, args ...any) *InvalidError {
	return &InvalidError{Problems: config.Problems{{Key: field, Msg: fmt.Sprintf(format, args...)}}}
}

// Where a provider is defined.
const (
	SourceConfig   = "config"
	SourceDatabase = "database"
)

// Limits of a stored secret.
const (
	maxSecretLen = 8192
	// hintMinLen is the shortest secret whose last four characters are
	// shown: shorter ones would give away too large a part of it.
	hintMinLen = 12
)

// Info is a provider as the admin API shows it. It never holds a secret.
type Info struct {
	Name                string         `json:"name"`
	Source              string         `json:"source"`
	Plugin              string         `json:"plugin"`
	BaseURL             string         `json:"base_url"`
	Models              []string       `json:"models"`
	AllowPrivateNetwork bool           `json:"allow_private_network"`
	AllowImageFetch     bool           `json:"allow_image_fetch"`
	ExtraHosts          []string       `json:"extra_hosts"`
	Options             map[string]any `json:"options"`
	APIKey              SecretInfo     `json:"api_key"`
	// RPM, TPM and MaxParallel protect the provider's upstream quotas;
	// 0 is none.
	RPM         int `json:"rpm"`
	TPM         int `json:"tpm"`
	MaxParallel int `json:"max_parallel"`
	// APIKeys describes each of the provider's keys, in order; a provider
	// with several spreads its requests over them (see SecretSep).
	APIKeys []SecretInfo `json:"api_keys"`
	// APIKeyWeights gives each key its share of the requests; empty is
	// equal turns.
	APIKeyWeights []int `json:"api_key_weights"`
	// APIKeyEnv is the variable a config provider's secret comes from.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// CreatedAt and UpdatedAt are set for database providers.
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Error says why a database provider is not served (its secret does
	// not open with the current master key, or a config provider has its
	// name); empty when it is.
	Error string `json:"error,omitempty"`
}

// SecretInfo is what may be known of a secret.
type SecretInfo struct {
	Set bool `json:"set"`
	// Hint is "…" and the last four characters, for secrets of 12
	// characters or more.
	Hint string `json:"hint,omitempty"`
}

// SecretSep separates the keys of a provider that has several, inside
// the one secret the host keeps for it: a key cannot hold it (checkSecret
// refuses control characters).
const SecretSep = "\n"

// keyInfos describes a secret of one or more keys: all of them together
// (the hint only for a single key), and each one.
func keyInfos(secret string) (SecretInfo, []SecretInfo) {
	if secret == "" {
		return SecretInfo{}, []SecretInfo{}
	}
	parts := strings.Split(secret, SecretSep)
	each := make([]SecretInfo, len(parts))
	for i, k := range parts {
		each[i] = secretInfo(k)
	}
	if len(parts) == 1 {
		return each[0], each
	}
	return SecretInfo{Set: true}, each
}

// joinKeys checks a list of keys and joins them into one secret; field
// names the request field for errors.
func joinKeys(field string, ks []string) (string, error) {
	if len(ks) > maxKeys {
		return "", invalid(field, "at most %d keys", maxKeys)
	}
	for i, k := range ks {
		if k == "" {
			return "", invalid(field, "key %d is empty", i)
		}
		if err := checkSecretAs(field, k); err != nil {
			return "", err
		}
	}
	return strings.Join(ks, SecretSep), nil
}

// maxKeys bounds the keys of one provider.
const maxKeys = 64

func secretInfo(secret string) SecretInfo {
	if secret == "" {
		return SecretInfo{}
	}
	s := SecretInfo{Set: true}
	if n := utf8.RuneCountInString(secret); n >= hintMinLen {
		r := []rune(secret)
		s.Hint = "…" + string(r[n-4:])
	}
	return s
}

// CreateRequest defines a new database provider. APIKey is the secret
// (empty: none); it is sealed before it is stored.
type CreateRequest struct {
	Name                string         `json:"name"`
	Plugin              string         `json:"plugin"`
	BaseURL             string         `json:"base_url"`
	Models              []string       `json:"models"`
	AllowPrivateNetwork bool           `json:"allow_private_network"`
	AllowImageFetch     bool           `json:"allow_image_fetch"`
	ExtraHosts          []string       `json:"extra_hosts"`
	Options             map[string]any `json:"options"`
	APIKey              string         `json:"api_key"`
	RPM                 int            `json:"rpm"`
	TPM                 int            `json:"tpm"`
	MaxParallel         int            `json:"max_parallel"`
	// APIKeys gives several keys instead of APIKey: requests go to them in
	// turn, and one that the upstream rate-limits rests while the others
	// serve.
	APIKeys []string `json:"api_keys"`
	// APIKeyWeights gives each key (in order) a share of the requests,
	// from 1 to 1000; empty is equal turns.
	APIKeyWeights []int `json:"api_key_weights"`
}

// Patch changes a database provider: nil fields stay as they are. Name,
// when given, must be the provider's own (providers are not renamed).
// APIKey nil keeps the secret, "" removes it, anything else replaces it.
type Patch struct {
	Name                *string         `json:"name"`
	Plugin              *string         `json:"plugin"`
	BaseURL             *string         `json:"base_url"`
	Models              *[]string       `json:"models"`
	AllowPrivateNetwork *bool           `json:"allow_private_network"`
	AllowImageFetch     *bool           `json:"allow_image_fetch"`
	ExtraHosts          *[]string       `json:"extra_hosts"`
	Options             *map[string]any `json:"options"`
	APIKey              *string         `json:"api_key"`
	RPM                 *int            `json:"rpm"`
	TPM                 *int            `json:"tpm"`
	MaxParallel         *int            `json:"max_parallel"`
	// APIKeys replaces the keys with several ([] removes them); not with
	// APIKey.
	APIKeys *[]string `json:"api_keys"`
	// APIKeyWeights replaces the keys' weights ([] for equal turns). New
	// keys without it take equal turns.
	APIKeyWeights *[]int `json:"api_key_weights"`
}

// Options configure a Manager.
type Options struct {
	Store *store.Store
	// Key seals and opens stored secrets.
	Key *secrets.Key
	// Live receives every new router.
	Live *router.Live
	// Routes are the [[routes]] of the config file (validated), fixed
	// for the life of the process; routes stored in the database follow
	// them.
	Routes []config.RouteConfig
	// Config lists the providers of the config file, in order.
	Config []config.ProviderConfig
	// ConfigSecret returns a config provider's secret (from the variable
	// its api_key_env names); "" when it has none.
	ConfigSecret func(config.ProviderConfig) string
	// Build makes the request path's provider from a definition and its
	// secret. Config and database providers are built by it alike.
	Build func(pc config.ProviderConfig, secret string) (*router.Provider, error)
	// Logger gets warnings; never a secret. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Manager is the set of providers. It is safe for concurrent use.
type Manager struct {
	o       Options
	log     *slog.Logger
	configs []configEntry
	inCfg   map[string]int // config provider name -> index in configs

	mu    sync.Mutex // serialises changes and reloads
	state atomic.Pointer[state]
}

type configEntry struct {
	info  Info
	built *router.Provider
}

// dbEntry is a database provider as last loaded.
type dbEntry struct {
	row   store.Provider
	info  Info
	built *router.Provider // nil when not served (info.Error says why)
}

type state struct {
	db     []*dbEntry
	routes []store.Route // the database routes
	mark   string        // the two tables' fingerprints at load
}

// Open builds the config providers, loads the database ones and stores
// the first router in o.Live.
func Open(ctx context.Context, o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ConfigSecret == nil {
		o.ConfigSecret = func(config.ProviderConfig) string { return "" }
	}
	m := &Manager{o: o, log: o.Logger, inCfg: make(map[string]int, len(o.Config))}
	for i, pc := range o.Config {
		secret := o.ConfigSecret(pc)
		built, err := o.Build(pc, secret)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		info := infoOf(pc)
		info.Source = SourceConfig
		info.APIKeyEnv = pc.APIKeyEnv
		info.APIKey, info.APIKeys = keyInfos(secret)
		for i := range info.APIKeys {
			info.APIKeys[i].Hint = "" // from the environment: not shown
		}
		info.APIKey.Hint = ""
		m.configs = append(m.configs, configEntry{info: info, built: built})
		m.inCfg[pc.Name] = i
	}
	m.state.Store(&state{})
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reload(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// List returns every provider: the config ones in file order, then the
// database ones, oldest first.
func (m *Manager) List() []Info {
	st := m.state.Load()
	out := make([]Info, 0, len(m.configs)+len(st.db))
	for _, c := range m.configs {
		out = append(out, c.info)
	}
	for _, e := range st.db {
		out = append(out, e.info)
	}
	return out
}

// Get returns one provider by name; a config provider hides a database
// provider of the same name.
func (m *Manager) Get(name string) (Info, error) {
	if i, ok := m.inCfg[name]; ok {
		return m.configs[i].info, nil
	}
	for _, e := range m.state.Load().db {
		if e.row.Name == name {
			return e.info, nil
		}
	}
	return Info{}, ErrNotFound
}

// Create stores a new database provider and serves it from the next
// request on.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (Info, error) {
	pc := config.ProviderConfig{
		Name: req.Name, Plugin: req.Plugin, BaseURL: req.BaseURL, Models: req.Models,
		AllowPrivateNetwork: req.AllowPrivateNetwork, AllowImageFetch: req.AllowImageFetch, ExtraHosts: req.ExtraHosts, Options: req.Options,
		RPM: req.RPM, TPM: req.TPM, MaxParallel: req.MaxParallel, APIKeyWeights: req.APIKeyWeights,
	}
	if ps := config.ValidateProvider(pc); ps != nil {
		return Info{}, &InvalidError{Problems: ps}
	}
	if err := checkSecret(req.APIKey); err != nil {
		return Info{}, err
	}
	if req.APIKeys != nil {
		if req.APIKey != "" {
			return Info{}, invalid("api_keys", "give api_key or api_keys, not both")
		}
		joined, err := joinKeys("api_keys", req.APIKeys)
		if err != nil {
			return Info{}, err
		}
		req.APIKey = joined
	}
	if err := checkWeights(req.APIKeyWeights, req.APIKey); err != nil {
		return Info{}, err
	}
	if _, ok := m.inCfg[req.Name]; ok {
		return Info{}, fmt.Errorf("%w: the config file defines a provider called %q", ErrExists, req.Name)
	}
	row := store.Provider{
		ID: newID(), Name: pc.Name, Plugin: pc.Plugin, BaseURL: pc.BaseURL, Models: pc.Models,
		AllowPrivateNetwork: pc.AllowPrivateNetwork, AllowImageFetch: pc.AllowImageFetch, ExtraHosts: pc.ExtraHosts, Options: pc.Options,
		RPM: pc.RPM, TPM: pc.TPM, MaxParallel: pc.MaxParallel, KeyWeights: pc.APIKeyWeights,
		CreatedAt: m.o.Now().UnixMilli(),
	}
	if req.APIKey != "" {
		sealed, err := m.o.Key.Seal([]byte(req.APIKey), []byte(row.ID))
		if err != nil {
			return Info{}, fmt.Errorf("seal secret: %w", err)
		}
		row.SecretSealed = sealed
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch err := m.o.Store.CreateProvider(ctx, row); {
	case errors.Is(err, store.ErrProviderExists):
		return Info{}, fmt.Errorf("%w: a provider called %q exists", ErrExists, req.Name)
	case err != nil:
		return Info{}, err
	}
	return m.reloadAndGet(ctx, row.Name)
}

// Update changes a database provider; the next request uses the change.
func (m *Manager) Update(ctx context.Context, name string, p Patch) (Info, error) {
	if _, ok := m.inCfg[name]; ok {
		return Info{}, ErrReadOnly
	}
	if p.Name != nil && *p.Name != name {
		return Info{}, invalid("name", "a provider cannot be renamed; create one with the new name and delete this one")
	}
	if p.APIKey != nil {
		if err := checkSecret(*p.APIKey); err != nil {
			return Info{}, err
		}
	}
	if p.APIKeys != nil {
		if p.APIKey != nil {
			return Info{}, invalid("api_keys", "give api_key or api_keys, not both")
		}
		joined, err := joinKeys("api_keys", *p.APIKeys)
		if err != nil {
			return Info{}, err
		}
		p.APIKey = &joined
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.o.Store.UpdateProvider(ctx, name, m.o.Now().UnixMilli(), func(row *store.Provider) error {
		before := destination(row)
		p.apply(row)
		if ps := config.ValidateProvider(configOf(*row)); ps != nil {
			return &InvalidError{Problems: ps}
		}
		if row.SecretSealed != nil && p.APIKey == nil && destination(row) != before {
			// The stored key would go wherever the new settings send it:
			// whoever may edit a provider could read it back that way.
			return invalid("api_key", "changing plugin, base_url, allow_private_network or extra_hosts would send the stored API key somewhere else: send api_key again (or \"\" to remove it)")
		}
		if p.APIKey != nil {
			row.SecretSealed = nil
			row.KeyWeights = nil // new keys take equal turns unless weighed below
			if *p.APIKey != "" {
				sealed, err := m.o.Key.Seal([]byte(*p.APIKey), []byte(row.ID))
				if err != nil {
					return fmt.Errorf("seal secret: %w", err)
				}
				row.SecretSealed = sealed
			}
		}
		if p.APIKeyWeights != nil {
			row.KeyWeights = *p.APIKeyWeights
			if len(row.KeyWeights) == 0 {
				row.KeyWeights = nil
			}
			secret := ""
			if p.APIKey != nil {
				secret = *p.APIKey
			} else if row.SecretSealed != nil {
				plain, err := m.o.Key.Open(row.SecretSealed, []byte(row.ID))
				if err != nil {
					return invalid("api_key_weights", "the stored keys do not open with the current master key: send api_keys with the weights")
				}
				secret = string(plain)
				clear(plain)
			}
			if ps := config.ValidateProvider(configOf(*row)); ps != nil {
				return &InvalidError{Problems: ps}
			}
			return checkWeights(row.KeyWeights, secret)
		}
		return nil
	})
	if errors.Is(err, store.ErrProviderNotFound) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, err
	}
	return m.reloadAndGet(ctx, name)
}

// destination is what decides where a provider's key goes: the plugin
// that builds the requests and the hosts, ports, paths and networks they
// may reach.
func destination(row *store.Provider) string {
	return fmt.Sprintf("%q %q %v %q", row.Plugin, row.BaseURL, row.AllowPrivateNetwork, row.ExtraHosts)
}

func (p *Patch) apply(row *store.Provider) {
	if p.Plugin != nil {
		row.Plugin = *p.Plugin
	}
	if p.BaseURL != nil {
		row.BaseURL = *p.BaseURL
	}
	if p.Models != nil {
		row.Models = *p.Models
	}
	if p.AllowPrivateNetwork != nil {
		row.AllowPrivateNetwork = *p.AllowPrivateNetwork
	}
	if p.AllowImageFetch != nil {
		row.AllowImageFetch = *p.AllowImageFetch
	}
	if p.ExtraHosts != nil {
		row.ExtraHosts = *p.ExtraHosts
	}
	if p.Options != nil {
		row.Options = *p.Options
	}
	for _, f := range []struct {
		dst *int
		v   *int
	}{{&row.RPM, p.RPM}, {&row.TPM, p.TPM}, {&row.MaxParallel, p.MaxParallel}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
}

// Delete removes a database provider and returns it as it was; its models
// stop being served at once.
func (m *Manager) Delete(ctx context.Context, name string) (Info, error) {
	if _, ok := m.inCfg[name]; ok {
		return Info{}, ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	row, err := m.o.Store.DeleteProvider(ctx, name)
	if errors.Is(err, store.ErrProviderNotFound) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, err
	}
	info := dbInfo(row)
	info.APIKey = SecretInfo{Set: row.SecretSealed != nil}
	for _, e := range m.state.Load().db {
		if e.row.ID == row.ID {
			info.APIKey, info.APIKeys = e.info.APIKey, e.info.APIKeys
		}
	}
	if err := m.reload(ctx); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Refresh reloads the database providers if the table changed since the
// last load.
func (m *Manager) Refresh(ctx context.Context) error {
	mark, err := m.o.Store.ProvidersMark(ctx)
	if err != nil {
		return err
	}
	routesMark, err := m.o.Store.RoutesMark(ctx)
	if err != nil {
		return err
	}
	mark += " " + routesMark
	m.mu.Lock()
	defer m.mu.Unlock()
	if mark == m.state.Load().mark {
		return nil
	}
	return m.reload(ctx)
}

func (m *Manager) reloadAndGet(ctx context.Context, name string) (Info, error) {
	if err := m.reload(ctx); err != nil {
		return Info{}, err
	}
	for _, e := range m.state.Load().db {
		if e.row.Name == name {
			return e.info, nil
		}
	}
	return Info{}, ErrNotFound // deleted by another process in between
}

// reload reads the database providers, builds the ones that changed and
// publishes a new router. m.mu must be held.
func (m *Manager) reload(ctx context.Context) error {
	rows, mark, err := m.o.Store.ListProviders(ctx)
	if err != nil {
		return err
	}
	routes, routesMark, err := m.o.Store.ListRoutes(ctx)
	if err != nil {
		return err
	}
	old := make(map[string]*dbEntry)
	for _, e := range m.state.Load().db {
		old[e.row.ID] = e
	}
	next := &state{db: make([]*dbEntry, 0, len(rows)), routes: routes, mark: mark + " " + routesMark}
	for _, row := range rows {
		if e := old[row.ID]; e != nil && e.row.UpdatedAt == row.UpdatedAt && e.row.Name == row.Name &&
			bytes.Equal(e.row.SecretSealed, row.SecretSealed) {
			next.db = append(next.db, e) // unchanged: keep its client and pools
			continue
		}
		next.db = append(next.db, m.build(row))
	}
	served := make([]*router.Provider, 0, len(m.configs)+len(next.db))
	for _, c := range m.configs {
		served = append(served, c.built)
	}
	for _, e := range next.db {
		if e.built != nil {
			served = append(served, e.built)
		}
	}
	m.o.Live.Store(router.New(served, m.routeSpecs(routes)))
	m.state.Store(next)
	return nil
}

// build opens a row's secret and builds its provider. A row that cannot
// be served is kept, with the reason in its Info.
func (m *Manager) build(row store.Provider) *dbEntry {
	e := &dbEntry{row: row, info: dbInfo(row)}
	e.info.APIKey = SecretInfo{Set: row.SecretSealed != nil}
	if _, ok := m.inCfg[row.Name]; ok {
		e.info.Error = "not served: the config file defines a provider with this name, which takes precedence"
		m.log.Warn("database provider hidden by a config provider of the same name", "provider", row.Name)
		return e
	}
	secret := ""
	if row.SecretSealed != nil {
		plain, err := m.o.Key.Open(row.SecretSealed, []byte(row.ID))
		if err != nil {
			e.info.Error = "not served: its api_key does not open with the current master key; set it again"
			m.log.Error("provider secret does not open with the current master key", "provider", row.Name)
			return e
		}
		secret = string(plain)
		clear(plain)
	}
	e.info.APIKey, e.info.APIKeys = keyInfos(secret)
	built, err := m.o.Build(configOf(row), secret)
	if err != nil {
		e.info.Error = "not served: " + err.Error()
		m.log.Error("provider not served", "provider", row.Name, "err", err)
		return e
	}
	e.built = built
	return e
}

func configOf(row store.Provider) config.ProviderConfig {
	return config.ProviderConfig{
		Name: row.Name, Plugin: row.Plugin, BaseURL: row.BaseURL, Models: row.Models,
		AllowPrivateNetwork: row.AllowPrivateNetwork, AllowImageFetch: row.AllowImageFetch, ExtraHosts: row.ExtraHosts, Options: row.Options,
		RPM: row.RPM, TPM: row.TPM, MaxParallel: row.MaxParallel, APIKeyWeights: row.KeyWeights,
	}
}

func infoOf(pc config.ProviderConfig) Info {
	info := Info{
		Name: pc.Name, Plugin: pc.Plugin, BaseURL: pc.BaseURL,
		Models: slices.Clone(pc.Models), AllowPrivateNetwork: pc.AllowPrivateNetwork, AllowImageFetch: pc.AllowImageFetch,
		ExtraHosts: slices.Clone(pc.ExtraHosts), Options: maps.Clone(pc.Options),
		RPM: pc.RPM, TPM: pc.TPM, MaxParallel: pc.MaxParallel, APIKeyWeights: slices.Clone(pc.APIKeyWeights),
	}
	if info.APIKeyWeights == nil {
		info.APIKeyWeights = []int{}
	}
	if info.Models == nil {
		info.Models = []string{}
	}
	if info.ExtraHosts == nil {
		info.ExtraHosts = []string{}
	}
	info.APIKeys = []SecretInfo{}
	if info.Options == nil {
		info.Options = map[string]any{}
	}
	return info
}

func dbInfo(row store.Provider) Info {
	info := infoOf(configOf(row))
	info.Source = SourceDatabase
	created, updated := time.UnixMilli(row.CreatedAt).UTC(), time.UnixMilli(row.UpdatedAt).UTC()
	info.CreatedAt, info.UpdatedAt = &created, &updated
	return info
}

// checkWeights refuses weights that are not one per key of secret.
func checkWeights(weights []int, secret string) error {
	if len(weights) == 0 {
		return nil
	}
	n := 0
	if secret != "" {
		n = strings.Count(secret, SecretSep) + 1
	}
	if len(weights) != n {
		return invalid("api_key_weights", "must give one weight per key: %d keys, %d weights", n, len(weights))
	}
	return nil
}

// checkSecret refuses secrets that could not travel in an HTTP header.
func checkSecret(s string) error { return checkSecretAs("api_key", s) }

func checkSecretAs(field, s string) error {
	if len(s) > maxSecretLen {
		return invalid(field, "must be at most %d bytes", maxSecretLen)
	}
	if strings.TrimSpace(s) != s {
		return invalid(field, "must not start or end with white space")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
		return invalid(field, "must not contain control characters or invalid UTF-8")
	}
	return nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "prov_" + hex.EncodeToString(b[:])
}
