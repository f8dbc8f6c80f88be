package app_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/app"
	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

type createdKey struct {
	ID     string   `json:"id"`
	Key    string   `json:"key"`
	Prefix string   `json:"prefix"`
	Models []string `json:"models"`
}

func adminCall(t *testing.T, p *proxy, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, p.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

func createKey(t *testing.T, p *proxy, body string) createdKey {
	t.Helper()
	status, b := adminCall(t, p, "POST", "/api/keys", body)
	if status != 201 {
		t.Fatalf("create key: %d %s", status, b)
	}
	var k createdKey
	if err := json.Unmarshal(b, &k); err != nil || !strings.HasPrefix(k.Key, "sk-lp-") || !strings.HasPrefix(k.Key, k.Prefix) {
		t.Fatalf("create key: %s %v", b, err)
	}
	return k
}

// TestAuthMatrix drives every client-key case through the official SDK.
func TestAuthMatrix(t *testing.T) {
	p := startProxy(t, nil)
	ctx := context.Background()
	ok := createKey(t, p, `{"name":"ok"}`)
	limited := createKey(t, p, `{"name":"limited","models":["demo-echo"]}`)
	soon := createKey(t, p, `{"name":"soon","expires_at":"`+time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339Nano)+`"}`)
	revoked := createKey(t, p, `{"name":"revoked"}`)

	chat := func(key, model string) error {
		_, err := p.client(key).Chat.Completions.New(ctx, chatParams(model, "hi"))
		return err
	}
	for name, key := range map[string]string{"admin key": adminKey, "client key": ok.Key, "limited key, allowed model": limited.Key, "key before expiry": soon.Key} {
		model := "gpt-4o-mini"
		if key == limited.Key {
			model = "demo-echo"
		}
		if err := chat(key, model); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	expect := func(name string, err error, status int, code string) {
		t.Helper()
		e := apiError(t, err)
		if e.StatusCode != status || e.Code != code {
			t.Errorf("%s: got %d %q, want %d %q", name, e.StatusCode, e.Code, status, code)
		}
	}
	expect("no key", chat("", "gpt-4o-mini"), 401, "missing_api_key")
	// The key may also come as x-api-key.
	req, _ := http.NewRequest("GET", p.URL+"/v1/models", nil)
	req.Header.Set("x-api-key", ok.Key)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("x-api-key: %v %v", err, resp)
	}
	expect("wrong key", chat("sk-lp-not-a-real-key", "gpt-4o-mini"), 401, "invalid_api_key")
	expect("model outside the allow-list", chat(limited.Key, "gpt-4o-mini"), 403, "model_not_allowed")

	// Revocation through the API applies at once.
	if status, b := adminCall(t, p, "DELETE", "/api/keys/"+revoked.ID, ""); status != 200 {
		t.Fatalf("revoke: %d %s", status, b)
	}
	expect("revoked key", chat(revoked.Key, "gpt-4o-mini"), 401, "revoked_api_key")

	// Rotation: the old secret stops working, the new one works.
	status, b := adminCall(t, p, "POST", "/api/keys/"+ok.ID+"/rotate", "")
	var rotated createdKey
	if status != 200 || json.Unmarshal(b, &rotated) != nil || rotated.Key == ok.Key {
		t.Fatalf("rotate: %d %s", status, b)
	}
	expect("rotated-out key", chat(ok.Key, "gpt-4o-mini"), 401, "invalid_api_key")
	if err := chat(rotated.Key, "gpt-4o-mini"); err != nil {
		t.Fatalf("rotated key: %v", err)
	}

	// Expiry.
	time.Sleep(1600 * time.Millisecond)
	expect("expired key", chat(soon.Key, "gpt-4o-mini"), 401, "expired_api_key")

	// Client keys cannot use the admin API; the list never shows secrets.
	req, _ = http.NewRequest("GET", p.URL+"/api/keys", nil)
	req.Header.Set("Authorization", "Bearer "+rotated.Key)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("client key on the admin API: %v %v", err, resp)
	}
	_, list := adminCall(t, p, "GET", "/api/keys", "")
	if bytes.Contains(list, []byte(rotated.Key)) || !bytes.Contains(list, []byte(rotated.Prefix)) {
		t.Fatalf("key list: %s", list)
	}
	// The database holds hashes, never the secrets.
	var n int
	if err := p.App.Store().Reader().Get(&n, `SELECT count(*) FROM api_keys WHERE CAST(hash AS TEXT) LIKE '%sk-lp-%' OR name LIKE '%sk-lp-%'`); err != nil || n != 0 {
		t.Fatalf("secrets in the database: %d %v", n, err)
	}
	// Bad requests are refused with a reason.
	for _, body := range []string{`{"name":""}`, `{"name":"x","expires_at":"2001-01-01T00:00:00Z"}`, `not json`} {
		if status, b := adminCall(t, p, "POST", "/api/keys", body); status != 400 {
			t.Errorf("%s: %d %s", body, status, b)
		}
	}
	if status, _ := adminCall(t, p, "DELETE", "/api/keys/key_nope", ""); status != 404 {
		t.Errorf("revoke unknown: %d", status)
	}
}

// TestKeyLastUsed: a key used through the SDK gets last_used_at in the
// database and in GET /api/keys after the flush interval; an unused key
// stays null; the stamps still in memory at shutdown are written then.
func TestKeyLastUsed(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "keys.db")
	p := startProxyFull(t, func(cfg *config.Config) { cfg.Database.Path = dbPath }, fakeupstream.Options{},
		func(a *app.App) { a.KeyUsageFlushEvery = 100 * time.Millisecond })
	used := createKey(t, p, `{"name":"used"}`)
	unused := createKey(t, p, `{"name":"unused"}`)
	before := time.Now().Add(-time.Second)
	if _, err := p.client(used.Key).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "hi")); err != nil {
		t.Fatal(err)
	}
	column := func(id string) sql.NullInt64 {
		var v sql.NullInt64
		if err := p.App.Store().Reader().Get(&v, `SELECT last_used_at FROM api_keys WHERE id = ?`, id); err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitFor(t, func() bool { return column(used.ID).Valid })
	if v := column(used.ID).Int64; v < before.UnixMilli() || v > time.Now().UnixMilli() {
		t.Fatalf("last_used_at %d, want about now", v)
	}
	if column(unused.ID).Valid {
		t.Fatal("the unused key has a last_used_at")
	}
	status, b := adminCall(t, p, "GET", "/api/keys", "")
	var list struct {
		Data []struct {
			ID         string     `json:"id"`
			LastUsedAt *time.Time `json:"last_used_at"`
		} `json:"data"`
	}
	if status != 200 || json.Unmarshal(b, &list) != nil || len(list.Data) != 2 || !bytes.Contains(b, []byte(`"last_used_at":null`)) {
		t.Fatalf("GET /api/keys: %d %s", status, b)
	}
	for _, k := range list.Data {
		if (k.ID == used.ID) != (k.LastUsedAt != nil) {
			t.Fatalf("GET /api/keys: %s", b)
		}
	}

	// With a flush interval longer than the test, the stamp is written at
	// shutdown.
	dbPath = filepath.Join(t.TempDir(), "keys.db")
	p = startProxyFull(t, func(cfg *config.Config) { cfg.Database.Path = dbPath }, fakeupstream.Options{},
		func(a *app.App) { a.KeyUsageFlushEvery = time.Hour })
	late := createKey(t, p, `{"name":"late"}`)
	if _, err := p.client(late.Key).Chat.Completions.New(context.Background(), chatParams("gpt-4o-mini", "hi")); err != nil {
		t.Fatal(err)
	}
	if column(late.ID).Valid {
		t.Fatal("written before the flush interval")
	}
	p.Stop()
	st := openDB(t, dbPath)
	var n int
	if err := st.Reader().Get(&n, `SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL`); err != nil || n != 1 {
		t.Fatalf("after shutdown %d keys have last_used_at (%v), want 1", n, err)
	}
}
