package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/llm-proxy/llm-proxy/host/internal/app"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// Secrets of the upstreams that database providers point at. Both are long
// enough for the API to show their last four characters.
const (
	dbSecret1 = "sk-db-provider-one-7c1e"
	dbSecret2 = "sk-db-provider-two-91ab"
)

// providerInfo is GET /api/providers/{name} as a client reads it.
type providerInfo struct {
	Name                string   `json:"name"`
	Source              string   `json:"source"`
	Plugin              string   `json:"plugin"`
	BaseURL             string   `json:"base_url"`
	Models              []string `json:"models"`
	AllowPrivateNetwork bool     `json:"allow_private_network"`
	AllowImageFetch     bool     `json:"allow_image_fetch"`
	APIKey              struct {
		Set  bool   `json:"set"`
		Hint string `json:"hint"`
	} `json:"api_key"`
	APIKeyEnv string     `json:"api_key_env"`
	CreatedAt *time.Time `json:"created_at"`
	UpdatedAt *time.Time `json:"updated_at"`
}

type apiErr struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Param   string `json:"param"`
		Code    string `json:"code"`
	} `json:"error"`
}

type connTest struct {
	OK        bool     `json:"ok"`
	LatencyMS float64  `json:"latency_ms"`
	Models    []string `json:"models"`
	Error     *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// startProxyConfig starts a proxy like startProxy and also returns its
// config, to start a second proxy on the same database.
func startProxyConfig(t *testing.T) (*proxy, *config.Config) {
	var cfg *config.Config
	p := startProxy(t, func(c *config.Config) { cfg = c })
	return p, cfg
}

// startOn starts another proxy with cfg (its database, plugins and
// providers), in front of the same fake upstream as p; env adds
// variables ("NAME=value") to its environment.
func startOn(t *testing.T, cfg *config.Config, up *fakeupstream.Server, env ...string) *proxy {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	environ := append([]string{"LLMPROXY_ADMIN_KEY=" + adminKey, "FAKE_UPSTREAM_KEY=" + upstreamKey, "LLMPROXY_ENCRYPTION_KEY=" + testEncryptionKey}, env...)
	a, err := app.New(cfg, environ, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ln); err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, URL: "http://" + ln.Addr().String(), Dir: cfg.Plugins.Dir, Upstream: up, App: a, Logs: logs}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("second proxy log:\n%s", logs.String())
		}
	})
	return p
}

func startUpstream(t *testing.T, key string) *fakeupstream.Server {
	t.Helper()
	up, err := fakeupstream.Start(fakeupstream.Options{APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// expectAPIError checks an /api answer's status, code and param.
func expectAPIError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode, wantParam string) apiErr {
	t.Helper()
	e := decode[apiErr](t, body)
	if status != wantStatus || e.Error.Code != wantCode || e.Error.Param != wantParam {
		t.Errorf("%s: got %d %s, want %d code %q param %q", what, status, body, wantStatus, wantCode, wantParam)
	}
	return e
}

func chatText(t *testing.T, p *proxy, model, text string) (string, error) {
	t.Helper()
	resp, err := p.client(adminKey).Chat.Completions.New(context.Background(), chatParams(model, text))
	if err != nil {
		return "", err
	}
	return resp.Choices[0].Message.Content, nil
}

func streamText(t *testing.T, p *proxy, model, text string) (string, error) {
	t.Helper()
	s := p.client(adminKey).Chat.Completions.NewStreaming(context.Background(), chatParams(model, text))
	var b strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			b.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	return b.String(), s.Err()
}

// assertNoSecret fails if any of the secrets appears in b.
func assertNoSecret(t *testing.T, where string, b []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s contains the secret %q", where, s)
		}
	}
}

// TestDatabaseProviders drives a provider's whole life through
// /api/providers and checks every request path it affects: the official
// SDK's chat and stream calls, the secret's handling, validation, a
// change of secret and a restart, both without and with a restart, and
// the connection test.
func TestDatabaseProviders(t *testing.T) {
	p, cfg := startProxyConfig(t)
	up1 := startUpstream(t, dbSecret1)
	up2 := startUpstream(t, dbSecret2)

	// Create.
	status, body := adminCall(t, p, "POST", "/api/providers", `{"name":"dbprov","plugin":"openai","base_url":"`+up1.URL+`",
		"models":["db-model"],"allow_private_network":true,"allow_image_fetch":true,"options":{"project":"proj-1"},"api_key":"`+dbSecret1+`"}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	assertNoSecret(t, "the create answer", body, dbSecret1)
	created := decode[providerInfo](t, body)
	if created.Source != "database" || !created.APIKey.Set || created.APIKey.Hint != "…7c1e" || created.CreatedAt == nil || !created.AllowImageFetch ||
		!slices.Equal(created.Models, []string{"db-model"}) {
		t.Fatalf("created: %s", body)
	}

	// Served at once, through the SDK, with its own key.
	if got, err := chatText(t, p, "db-model", "hello db"); err != nil || got != "echo: hello db" {
		t.Fatalf("chat: %q %v", got, err)
	}
	if got, err := streamText(t, p, "db-model", "stream db"); err != nil || got != "echo: stream db" {
		t.Fatalf("stream: %q %v", got, err)
	}
	reqs := up1.Requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream 1 saw %d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Bearer "+dbSecret1 || r.Header.Get("OpenAI-Project") != "proj-1" {
			t.Fatalf("upstream 1 got headers %v", r.Header)
		}
	}
	if got, err := chatText(t, p, "dbprov/any-model", "prefixed"); err != nil || got != "echo: prefixed" {
		t.Fatalf("provider-prefixed model: %q %v", got, err)
	}

	// Listed masked; config providers show their variable.
	status, body = adminCall(t, p, "GET", "/api/providers", "")
	if status != 200 {
		t.Fatalf("list: %d %s", status, body)
	}
	assertNoSecret(t, "the list", body, dbSecret1, upstreamKey)
	list := decode[struct{ Data []providerInfo }](t, body).Data
	var got []string
	for _, pi := range list {
		got = append(got, pi.Name+":"+pi.Source)
	}
	if !slices.Equal(got, []string{"fake:config", "demo:config", "hostile:config", "dbprov:database"}) {
		t.Fatalf("list order: %v", got)
	}
	if fake := list[0]; fake.APIKeyEnv != "FAKE_UPSTREAM_KEY" || !fake.APIKey.Set || fake.APIKey.Hint != "" || fake.CreatedAt != nil {
		t.Fatalf("config provider: %+v", fake)
	}
	if list[1].APIKey.Set {
		t.Fatalf("demo has no key: %+v", list[1])
	}
	status, body = adminCall(t, p, "GET", "/api/providers/dbprov", "")
	assertNoSecret(t, "the provider", body, dbSecret1)
	if one := decode[providerInfo](t, body); status != 200 || one.APIKey.Hint != "…7c1e" {
		t.Fatalf("get: %d %s", status, body)
	}
	status, body = adminCall(t, p, "GET", "/api/providers/nope", "")
	expectAPIError(t, "get unknown", status, body, 404, "provider_not_found", "")

	// The secret is nowhere a plugin or a file can see it.
	for _, rp := range p.App.Routes().Load().Providers() {
		assertNoSecret(t, "the guest config of "+rp.Name, rp.GuestConfig, dbSecret1, upstreamKey)
	}
	checkFiles := func(secrets ...string) {
		t.Helper()
		if cfg.Database.Driver == config.DriverPostgres {
			return // no file: the sealed column is checked through the API above
		}
		for _, f := range []string{cfg.Database.Path, cfg.Database.Path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			if len(b) == 0 {
				t.Logf("%s is empty", f)
			}
			assertNoSecret(t, f, b, secrets...)
		}
		assertNoSecret(t, "the log", []byte(p.Logs.String()), secrets...)
	}
	checkFiles(dbSecret1)

	// Connection tests: ok for the new and a config provider.
	for _, name := range []string{"dbprov", "fake"} {
		status, body = adminCall(t, p, "POST", "/api/providers/"+name+"/test", "")
		res := decode[connTest](t, body)
		if status != 200 || !res.OK || !slices.Contains(res.Models, "gpt-4o-mini") || res.LatencyMS <= 0 || res.Error != nil {
			t.Fatalf("test %s: %d %s", name, status, body)
		}
	}
	status, body = adminCall(t, p, "POST", "/api/providers/nope/test", "")
	expectAPIError(t, "test unknown", status, body, 404, "provider_not_found", "")

	// Moving the provider to upstream 2 with its stored key is refused:
	// the key must not follow it to a new host. Moving it with the key
	// removed is allowed; upstream 2 then refuses the keyless requests.
	calls2 := len(up2.Requests())
	status, body = adminCall(t, p, "PATCH", "/api/providers/dbprov", `{"base_url":"`+up2.URL+`"}`)
	expectAPIError(t, "move with the stored key", status, body, 400, "invalid_provider", "api_key")
	status, body = adminCall(t, p, "GET", "/api/providers/dbprov", "")
	if decode[providerInfo](t, body).BaseURL == up2.URL || len(up2.Requests()) != calls2 {
		t.Fatalf("the refused move applied: %s", body)
	}
	status, body = adminCall(t, p, "PATCH", "/api/providers/dbprov", `{"base_url":"`+up2.URL+`","api_key":""}`)
	if info := decode[providerInfo](t, body); status != 200 || info.BaseURL != up2.URL || info.APIKey.Set {
		t.Fatalf("patch base_url, key removed: %d %s", status, body)
	}
	_, err := chatText(t, p, "db-model", "no key")
	if e := apiError(t, err); e.StatusCode != 502 || e.Code != "upstream_auth_failed" {
		t.Fatalf("no key on upstream 2: %d %s", e.StatusCode, e.Code)
	}
	for _, r := range up2.Requests()[calls2:] {
		if r.Header.Get("Authorization") != "" {
			t.Fatalf("upstream 2 got a key: %q", r.Header.Get("Authorization"))
		}
	}
	status, body = adminCall(t, p, "POST", "/api/providers/dbprov/test", "")
	if res := decode[connTest](t, body); status != 200 || res.OK || res.Error == nil || res.Error.Code != "upstream_auth_failed" {
		t.Fatalf("test with the wrong key: %d %s", status, body)
	}

	// A new secret applies to the very next request.
	status, body = adminCall(t, p, "PATCH", "/api/providers/dbprov", `{"api_key":"`+dbSecret2+`"}`)
	if info := decode[providerInfo](t, body); status != 200 || info.APIKey.Hint != "…91ab" {
		t.Fatalf("patch api_key: %d %s", status, body)
	}
	assertNoSecret(t, "the patch answer", body, dbSecret2)
	if got, err := chatText(t, p, "db-model", "rotated"); err != nil || got != "echo: rotated" {
		t.Fatalf("chat after the new secret: %q %v", got, err)
	}
	if r := up2.Requests(); r[len(r)-1].Header.Get("Authorization") != "Bearer "+dbSecret2 {
		t.Fatalf("upstream 2 got %q", r[len(r)-1].Header.Get("Authorization"))
	}
	// null (like an absent field) keeps the secret.
	// Image fetching decides nothing about where the key goes (fetches
	// carry no credentials), so it changes without the key.
	status, body = adminCall(t, p, "PATCH", "/api/providers/dbprov", `{"api_key":null,"models":["db-model","db-model-2"],"allow_image_fetch":false}`)
	if info := decode[providerInfo](t, body); status != 200 || info.APIKey.Hint != "…91ab" || len(info.Models) != 2 || info.AllowImageFetch {
		t.Fatalf("patch keeping the secret: %d %s", status, body)
	}
	if got, err := chatText(t, p, "db-model-2", "kept"); err != nil || got != "echo: kept" {
		t.Fatalf("chat after a patch without api_key: %q %v", got, err)
	}

	// Refusals, each naming the field or the reason.
	for _, c := range []struct {
		what, method, path, body string
		status                   int
		code, param              string
	}{
		{"name of a config provider", "POST", "/api/providers", `{"name":"fake","plugin":"openai","base_url":"https://x.example","models":["m"]}`, 409, "provider_exists", "name"},
		{"duplicate name", "POST", "/api/providers", `{"name":"dbprov","plugin":"openai","base_url":"https://x.example","models":["m"]}`, 409, "provider_exists", "name"},
		{"private base_url", "POST", "/api/providers", `{"name":"lan","plugin":"openai","base_url":"http://127.0.0.1:9/v1","models":["m"]}`, 400, "invalid_provider", "base_url"},
		{"no models", "POST", "/api/providers", `{"name":"lan","plugin":"openai","base_url":"https://x.example","models":[]}`, 400, "invalid_provider", "models"},
		{"bad name", "POST", "/api/providers", `{"name":"Bad Name","plugin":"openai","base_url":"https://x.example","models":["m"]}`, 400, "invalid_provider", "name"},
		{"unknown field", "POST", "/api/providers", `{"name":"x","plugin":"openai","base_url":"https://x.example","models":["m"],"api_key_env":"X"}`, 400, "invalid_provider", "api_key_env"},
		{"wrong type", "POST", "/api/providers", `{"name":"x","plugin":"openai","base_url":"https://x.example","models":"m"}`, 400, "invalid_provider", "models"},
		{"not JSON", "POST", "/api/providers", `{"name":`, 400, "invalid_json", ""},
		{"rename", "PATCH", "/api/providers/dbprov", `{"name":"other"}`, 400, "invalid_provider", "name"},
		{"patch unknown field", "PATCH", "/api/providers/dbprov", `{"modles":["x"]}`, 400, "invalid_provider", "modles"},
		{"patch to an invalid provider", "PATCH", "/api/providers/dbprov", `{"allow_private_network":false}`, 400, "invalid_provider", "base_url"},
		{"patch a config provider", "PATCH", "/api/providers/fake", `{"models":["x"]}`, 409, "provider_read_only", ""},
		{"delete a config provider", "DELETE", "/api/providers/demo", ``, 409, "provider_read_only", ""},
		{"patch unknown", "PATCH", "/api/providers/nope", `{}`, 404, "provider_not_found", ""},
		{"delete unknown", "DELETE", "/api/providers/nope", ``, 404, "provider_not_found", ""},
	} {
		status, body := adminCall(t, p, c.method, c.path, c.body)
		e := expectAPIError(t, c.what, status, body, c.status, c.code, c.param)
		if c.code == "invalid_provider" && !strings.HasPrefix(e.Error.Message, c.param) {
			t.Errorf("%s: the message does not start with the field: %q", c.what, e.Error.Message)
		}
	}
	if got, err := chatText(t, p, "db-model", "unchanged"); err != nil || got != "echo: unchanged" {
		t.Fatalf("a refused patch changed the provider: %q %v", got, err)
	}
	checkFiles(dbSecret1, dbSecret2)

	// A restart on the same database serves the provider with its secret.
	p.Stop()
	p = startOn(t, cfg, p.Upstream)
	if got, err := chatText(t, p, "db-model", "after restart"); err != nil || got != "echo: after restart" {
		t.Fatalf("chat after a restart: %q %v", got, err)
	}

	// "" removes the secret.
	status, body = adminCall(t, p, "PATCH", "/api/providers/dbprov", `{"api_key":""}`)
	if info := decode[providerInfo](t, body); status != 200 || info.APIKey.Set {
		t.Fatalf("remove the secret: %d %s", status, body)
	}
	_, err = chatText(t, p, "db-model", "no key")
	if e := apiError(t, err); e.StatusCode != 502 || e.Code != "upstream_auth_failed" {
		t.Fatalf("without a key: %d %s", e.StatusCode, e.Code)
	}
	if r := up2.Requests(); r[len(r)-1].Header.Get("Authorization") != "" {
		t.Fatalf("a removed secret was still sent: %q", r[len(r)-1].Header.Get("Authorization"))
	}

	// Delete: the answer is the removed provider; its models are gone at once.
	status, body = adminCall(t, p, "DELETE", "/api/providers/dbprov", "")
	if info := decode[providerInfo](t, body); status != 200 || info.Name != "dbprov" || info.Source != "database" {
		t.Fatalf("delete: %d %s", status, body)
	}
	_, err = chatText(t, p, "db-model", "gone")
	if e := apiError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" {
		t.Fatalf("deleted provider's model: %d %s", e.StatusCode, e.Code)
	}
	status, body = adminCall(t, p, "GET", "/api/providers/dbprov", "")
	expectAPIError(t, "get deleted", status, body, 404, "provider_not_found", "")
}

// TestProvidersAcrossProxies: two proxies on one database; a change made
// through one is served by the other after its next poll, without a
// restart.
func TestProvidersAcrossProxies(t *testing.T) {
	a, cfg := startProxyConfig(t)
	b := startOn(t, cfg, a.Upstream)
	up := startUpstream(t, dbSecret1)

	status, body := adminCall(t, a, "POST", "/api/providers", `{"name":"shared","plugin":"openai","base_url":"`+up.URL+`",
		"models":["shared-model"],"allow_private_network":true,"api_key":"`+dbSecret1+`"}`)
	if status != 201 {
		t.Fatalf("create on a: %d %s", status, body)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("b serves the new provider", func() bool {
		got, err := chatText(t, b, "shared-model", "via b")
		return err == nil && got == "echo: via b"
	})
	if status, _ := adminCall(t, a, "DELETE", "/api/providers/shared", ""); status != 200 {
		t.Fatalf("delete on a: %d", status)
	}
	waitFor("b stops serving it", func() bool {
		_, err := chatText(t, b, "shared-model", "gone")
		var e *openai.Error
		return errors.As(err, &e) && e.StatusCode == 404
	})
}
