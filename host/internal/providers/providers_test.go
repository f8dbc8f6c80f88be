package providers_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/providers"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

const masterHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// builds records the secret each provider was last built with.
type builds struct {
	mu      sync.Mutex
	secrets map[string]string
	count   map[string]int
}

func (b *builds) build(pc config.ProviderConfig, secret string) (*router.Provider, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.secrets[pc.Name] = secret
	b.count[pc.Name]++
	return &router.Provider{Name: pc.Name, Plugin: pc.Plugin, Models: pc.Models}, nil
}

func (b *builds) secret(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.secrets[name]
}

type fixture struct {
	m      *providers.Manager
	st     *store.Store
	live   *router.Live
	builds *builds
	key    *secrets.Key
}

var configProviders = []config.ProviderConfig{
	{Name: "openai", Plugin: "openai", BaseURL: "https://api.openai.com/v1", APIKeyEnv: "OPENAI_API_KEY", Models: []string{"gpt-4o-mini"}},
	{Name: "local", Plugin: "openai", BaseURL: "http://127.0.0.1:11434/v1", Models: []string{"llama"}, AllowPrivateNetwork: true},
}

func open(t *testing.T, path string, key *secrets.Key) *fixture {
	t.Helper()
	st, err := store.Open(t.Context(), store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, live: router.NewLive(router.New(nil, nil)), builds: &builds{secrets: map[string]string{}, count: map[string]int{}}, key: key}
	f.m, err = providers.Open(t.Context(), providers.Options{
		Store: st, Key: key, Live: f.live, Config: configProviders,
		ConfigSecret: func(pc config.ProviderConfig) string {
			if pc.APIKeyEnv == "OPENAI_API_KEY" {
				return "sk-config-secret-000"
			}
			return ""
		},
		Build: f.builds.build,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustKey(t *testing.T, s string) *secrets.Key {
	t.Helper()
	k, err := secrets.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func names(r *router.Router) []string {
	var out []string
	for _, p := range r.Providers() {
		out = append(out, p.Name)
	}
	return out
}

func TestManagerLifecycle(t *testing.T) {
	key := mustKey(t, masterHex)
	f := open(t, filepath.Join(t.TempDir(), "db"), key)
	ctx := context.Background()
	const secret = "sk-groq-0123456789abcd"

	if got := names(f.live.Load()); !slices.Equal(got, []string{"openai", "local"}) {
		t.Fatalf("router at start: %v", got)
	}
	info, err := f.m.Create(ctx, providers.CreateRequest{
		Name: "groq", Plugin: "openai", BaseURL: "https://api.groq.com/openai/v1",
		Models: []string{"llama-3.1-8b"}, APIKey: secret, Options: map[string]any{"project": "p1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.Source != providers.SourceDatabase || !info.APIKey.Set || info.APIKey.Hint != "…abcd" || info.CreatedAt == nil {
		t.Fatalf("created: %+v", info)
	}
	if f.builds.secret("groq") != secret {
		t.Fatal("the provider was not built with its secret")
	}
	if got := names(f.live.Load()); !slices.Equal(got, []string{"openai", "local", "groq"}) {
		t.Fatalf("router after create: %v", got)
	}

	// The row holds the sealed secret, which opens only with the row's id.
	var id string
	var sealed []byte
	if err := f.st.Reader().QueryRow(`SELECT id, secret_ciphertext FROM providers WHERE name = 'groq'`).Scan(&id, &sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret)) {
		t.Fatal("secret stored in clear")
	}
	if plain, err := key.Open(sealed, []byte(id)); err != nil || string(plain) != secret {
		t.Fatalf("open with the id: %q %v", plain, err)
	}
	if _, err := key.Open(sealed, []byte("prov_other")); err == nil {
		t.Fatal("sealed secret opens with another id")
	}

	// A second provider comes after the first; config providers stay first.
	if _, err := f.m.Create(ctx, providers.CreateRequest{Name: "aaa", Plugin: "demo", BaseURL: "https://demo.example", Models: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if got := names(f.live.Load()); !slices.Equal(got, []string{"openai", "local", "groq", "aaa"}) {
		t.Fatalf("router order: %v", got)
	}

	// Update: absent secret kept, the router rebuilt with the new models,
	// the unchanged provider not rebuilt.
	buildsOfAAA := f.builds.count["aaa"]
	models := []string{"llama-3.3-70b"}
	info, err = f.m.Update(ctx, "groq", providers.Patch{Models: &models})
	if err != nil || !slices.Equal(info.Models, models) || info.APIKey.Hint != "…abcd" {
		t.Fatalf("update: %+v %v", info, err)
	}
	if rt, ok := f.live.Load().Resolve("llama-3.3-70b"); !ok || rt.Targets[0].Provider.Name != "groq" {
		t.Fatal("updated model not routed")
	}
	if _, ok := f.live.Load().Resolve("llama-3.1-8b"); ok {
		t.Fatal("old model still routed")
	}
	if f.builds.count["aaa"] != buildsOfAAA {
		t.Fatal("an unchanged provider was rebuilt")
	}
	newSecret := "short"
	if info, err = f.m.Update(ctx, "groq", providers.Patch{APIKey: &newSecret}); err != nil || !info.APIKey.Set || info.APIKey.Hint != "" {
		t.Fatalf("short secret: %+v %v", info, err)
	}
	if f.builds.secret("groq") != newSecret {
		t.Fatal("new secret not used")
	}
	empty := ""
	if info, err = f.m.Update(ctx, "groq", providers.Patch{APIKey: &empty}); err != nil || info.APIKey.Set {
		t.Fatalf("remove secret: %+v %v", info, err)
	}
	if f.builds.secret("groq") != "" {
		t.Fatal("removed secret still used")
	}

	// A change of where the key goes needs the key again: with the key
	// kept, whoever may edit providers could send it to a host of theirs.
	kept := "sk-kept-0123456789abcd"
	if _, err = f.m.Update(ctx, "groq", providers.Patch{APIKey: &kept}); err != nil {
		t.Fatal(err)
	}
	evil, yes, plugin, hosts := "https://attacker.example/v1", true, "demo", []string{"attacker.example"}
	for what, patch := range map[string]providers.Patch{
		"base_url":              {BaseURL: &evil},
		"allow_private_network": {AllowPrivateNetwork: &yes},
		"plugin":                {Plugin: &plugin},
		"extra_hosts":           {ExtraHosts: &hosts},
	} {
		var inv *providers.InvalidError
		if _, err := f.m.Update(ctx, "groq", patch); !errors.As(err, &inv) || inv.Problems[0].Key != "api_key" {
			t.Errorf("%s changed with the stored key kept: %v", what, err)
		}
	}
	if info, _ := f.m.Get("groq"); info.BaseURL == evil || f.builds.secret("groq") != kept {
		t.Fatalf("refused changes applied: %+v", info)
	}
	same := info.BaseURL
	if _, err := f.m.Update(ctx, "groq", providers.Patch{BaseURL: &same, Models: &models}); err != nil || f.builds.secret("groq") != kept {
		t.Fatalf("unchanged destination: %v", err)
	}
	newKey := "sk-new-for-the-new-host-wxyz"
	if info, err := f.m.Update(ctx, "groq", providers.Patch{BaseURL: &evil, APIKey: &newKey}); err != nil || info.BaseURL != evil || f.builds.secret("groq") != newKey {
		t.Fatalf("new destination with a new key: %+v %v", info, err)
	}
	back := same
	if info, err := f.m.Update(ctx, "groq", providers.Patch{BaseURL: &back, APIKey: &empty}); err != nil || info.APIKey.Set {
		t.Fatalf("new destination, key removed: %+v %v", info, err)
	}

	// Refusals.
	expectErr := func(name string, err error, target error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%s: got %v, want %v", name, err, target)
		}
	}
	_, err = f.m.Create(ctx, providers.CreateRequest{Name: "openai", Plugin: "openai", BaseURL: "https://x.example", Models: []string{"m"}})
	expectErr("config name", err, providers.ErrExists)
	_, err = f.m.Create(ctx, providers.CreateRequest{Name: "groq", Plugin: "openai", BaseURL: "https://x.example", Models: []string{"m"}})
	expectErr("duplicate", err, providers.ErrExists)
	_, err = f.m.Update(ctx, "openai", providers.Patch{Models: &models})
	expectErr("update config provider", err, providers.ErrReadOnly)
	_, err = f.m.Delete(ctx, "local")
	expectErr("delete config provider", err, providers.ErrReadOnly)
	_, err = f.m.Update(ctx, "nope", providers.Patch{})
	expectErr("update unknown", err, providers.ErrNotFound)
	_, err = f.m.Delete(ctx, "nope")
	expectErr("delete unknown", err, providers.ErrNotFound)

	field := func(name string, err error) string {
		t.Helper()
		var inv *providers.InvalidError
		if !errors.As(err, &inv) {
			t.Fatalf("%s: got %v, want an InvalidError", name, err)
		}
		return inv.Problems[0].Key
	}
	_, err = f.m.Create(ctx, providers.CreateRequest{Name: "lan", Plugin: "openai", BaseURL: "http://192.168.1.5/v1", Models: []string{"m"}})
	if got := field("private base_url", err); got != "base_url" {
		t.Errorf("private base_url: field %q", got)
	}
	_, err = f.m.Create(ctx, providers.CreateRequest{Name: "bad", Plugin: "openai", BaseURL: "https://x.example", Models: []string{"m"}, APIKey: "a\nb"})
	if got := field("secret with a newline", err); got != "api_key" {
		t.Errorf("secret with a newline: field %q", got)
	}
	other := "other"
	_, err = f.m.Update(ctx, "groq", providers.Patch{Name: &other})
	if got := field("rename", err); got != "name" {
		t.Errorf("rename: field %q", got)
	}
	noModels := []string{}
	_, err = f.m.Update(ctx, "groq", providers.Patch{Models: &noModels})
	if got := field("no models", err); got != "models" {
		t.Errorf("no models: field %q", got)
	}
	if info, _ := f.m.Get("groq"); !slices.Equal(info.Models, models) {
		t.Fatalf("a refused update changed the provider: %+v", info)
	}

	// Delete: gone from the router at once.
	if info, err = f.m.Delete(ctx, "groq"); err != nil || info.Name != "groq" {
		t.Fatalf("delete: %+v %v", info, err)
	}
	if _, ok := f.live.Load().Resolve("llama-3.3-70b"); ok {
		t.Fatal("deleted provider still routed")
	}
	if _, err := f.m.Get("groq"); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}

	// The listing: config providers first, their secret only as set or not.
	list := f.m.List()
	if len(list) != 3 || list[0].Source != providers.SourceConfig || list[0].APIKeyEnv != "OPENAI_API_KEY" ||
		!list[0].APIKey.Set || list[0].APIKey.Hint != "" || list[1].APIKey.Set || list[2].Name != "aaa" {
		t.Fatalf("list: %+v", list)
	}
}

// TestManagerSharedDatabase: a second manager on the same file (another
// proxy process) sees changes on Refresh, and rows sealed under another
// master key are listed but not served.
func TestManagerSharedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	key := mustKey(t, masterHex)
	a := open(t, path, key)
	b := open(t, path, key)
	ctx := context.Background()

	if _, err := a.m.Create(ctx, providers.CreateRequest{Name: "groq", Plugin: "openai", BaseURL: "https://api.groq.com/openai/v1", Models: []string{"m"}, APIKey: "sk-shared-secret-value"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.live.Load().Resolve("m"); ok {
		t.Fatal("seen before a refresh")
	}
	if err := b.m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if rt, ok := b.live.Load().Resolve("m"); !ok || rt.Targets[0].Provider.Name != "groq" || b.builds.secret("groq") != "sk-shared-secret-value" {
		t.Fatal("not seen after a refresh")
	}
	// Nothing changed: no rebuild.
	n := b.builds.count["groq"]
	if err := b.m.Refresh(ctx); err != nil || b.builds.count["groq"] != n {
		t.Fatalf("refresh without change rebuilt: %v", err)
	}
	if _, err := a.m.Delete(ctx, "groq"); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.live.Load().Resolve("m"); ok {
		t.Fatal("deletion not seen after a refresh")
	}

	// A manager with another master key cannot open the secret: the row is
	// listed with the reason and not routed.
	if _, err := a.m.Create(ctx, providers.CreateRequest{Name: "w", Plugin: "openai", BaseURL: "https://w.example", Models: []string{"wm"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.Create(ctx, providers.CreateRequest{Name: "sealed", Plugin: "openai", BaseURL: "https://s.example", Models: []string{"sm"}, APIKey: "sk-only-for-key-one"}); err != nil {
		t.Fatal(err)
	}
	c := open(t, path, mustKey(t, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"))
	info, err := c.m.Get("sealed")
	if err != nil || info.Error == "" || !info.APIKey.Set {
		t.Fatalf("undecryptable provider: %+v %v", info, err)
	}
	if _, ok := c.live.Load().Resolve("sm"); ok {
		t.Fatal("undecryptable provider routed")
	}
	if _, ok := c.live.Load().Resolve("wm"); !ok {
		t.Fatal("a provider without a secret is not affected by the key")
	}
}
