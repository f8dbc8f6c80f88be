package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

func TestBadConfigListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte(`
[server]
lisen = "127.0.0.1:1"
[plugins.limits]
memory_pages = 5
[[providers]]
name = "x"
plugin = "openai"
base_url = "http://example.com"
models = ["a"]
`), 0o644)
	var out, errb bytes.Buffer
	code := run([]string{"--config", path}, nil, &out, &errb)
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	for _, key := range []string{"server.lisen", "plugins.limits.memory_pages", "providers[0].base_url"} {
		if !strings.Contains(errb.String(), key) {
			t.Errorf("stderr does not name %s:\n%s", key, errb.String())
		}
	}
}

func TestCheckAndKeygen(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--check", "--config", filepath.Join(testplugins.Root(), "config.toml")}, nil, &out, &errb); code != 0 {
		t.Fatalf("the shipped config.toml is invalid: %s", errb.String())
	}
	out.Reset()
	if code := run([]string{"keygen"}, nil, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sk-llmproxy-") || len(out.String()) < 50 {
		t.Fatalf("keygen: %d %q", code, out.String())
	}
}

func TestMissingAdminKey(t *testing.T) {
	var out, errb bytes.Buffer
	cfg := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(cfg, []byte("[plugins]\ndir = \""+t.TempDir()+"\"\n"), 0o644)
	if code := run([]string{"--config", cfg}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "LLMPROXY_ADMIN_KEY") || !strings.Contains(errb.String(), "keygen") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// A weak key is refused too, with the reason and the way to a strong one.
	for _, weak := range []string{"s3cret", "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababababababababababab"} {
		errb.Reset()
		if code := run([]string{"--config", cfg}, []string{"LLMPROXY_ADMIN_KEY=" + weak}, &out, &errb); code != 2 ||
			!strings.Contains(errb.String(), "too weak") || !strings.Contains(errb.String(), "llm-proxy keygen") {
			t.Fatalf("weak key %q: exit %d: %s", weak, code, errb.String())
		}
	}
}

// binAdminKey is the admin key of the proxies these tests start.
const binAdminKey = "sk-bin-test-6f0c2a9e84d1b357e2a4c81b"

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGTERMDrainsStreams runs the real binary, starts a stream, sends
// SIGTERM mid-stream: the stream completes, new connections are refused,
// and the process exits 0.
func TestSIGTERMDrainsStreams(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o755)
	testplugins.Install(t, testplugins.Build(t, "plugins/demo"), plugins, "demo.wasm")
	addr := freePort(t)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = %q
shutdown_timeout = "20s"
[plugins]
dir = %q
cache_dir = %q
[database]
path = %q
[[providers]]
name = "demo"
plugin = "demo"
base_url = "http://127.0.0.1"
allow_private_network = true
models = ["demo-story"]
`, addr, plugins, testplugins.CacheDir(), filepath.Join(dir, "llm-proxy.db"))), 0o644)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = append(os.Environ(), "LLMPROXY_ADMIN_KEY="+binAdminKey, "LLMPROXY_ENCRYPTION_KEY="+secrets.NewKeyString())
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions",
		strings.NewReader(`{"model":"demo-story","stream":true,"messages":[{"role":"user","content":"tell me"}]}`))
	req.Header.Set("Authorization", "Bearer "+binAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused while the stream drains.
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting connections after SIGTERM")
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("stream broken by shutdown: %v", err)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || !strings.Contains(string(rest), `"end."`) {
		t.Fatalf("stream did not finish:\n%s", rest)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit: %v", waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not exit after the stream ended")
	}
	// The request log was written before the process exited.
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(dir, "llm-proxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n int
	if err := st.Reader().Get(&n, `SELECT count(*) FROM request_logs WHERE model = 'demo-story' AND status = 200 AND stream = 1 AND completion_tokens > 0`); err != nil || n != 1 {
		t.Fatalf("request log rows after SIGTERM: %d %v", n, err)
	}
	// And migrate status reports the schema.
	var out, errb bytes.Buffer
	if code := run([]string{"migrate", "status", "--config", cfg}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "00001") || !strings.Contains(out.String(), "applied") {
		t.Fatalf("migrate status: %d %s %s", code, out.String(), errb.String())
	}
}

func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[plugins]\ndir = %q\n[database]\npath = %q\n", dir, filepath.Join(dir, "db"))), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"keys", "create", "--config", cfg, "--name", "ci", "--models", "a, b", "--expires", "30d"}, nil, &out, &errb); code != 0 {
		t.Fatalf("create: %d %s", code, errb.String())
	}
	secret := strings.TrimSpace(out.String())
	if !strings.HasPrefix(secret, "sk-lp-") || !strings.Contains(errb.String(), "shown only once") {
		t.Fatalf("create printed %q / %q", secret, errb.String())
	}
	out.Reset()
	run([]string{"keys", "list", "--config", cfg}, nil, &out, &errb)
	fields := strings.Fields(strings.Split(out.String(), "\n")[1])
	if len(fields) != 8 || fields[1] != "ci" || fields[3] != "a,b" || fields[5] != "active" || fields[6] != "never" || fields[7] != "none" || strings.Contains(out.String(), secret) {
		t.Fatalf("list:\n%s", out.String())
	}
	id := fields[0]
	// Limits, at creation and later.
	out.Reset()
	if code := run([]string{"keys", "create", "--config", cfg, "--name", "lim", "--rpm", "60", "--budget_usd", "2.5"}, nil, &out, &errb); code != 0 {
		t.Fatalf("create with limits: %d %s", code, errb.String())
	}
	out.Reset()
	run([]string{"keys", "list", "--config", cfg}, nil, &out, &errb)
	if !strings.Contains(out.String(), "rpm=60 budget=$2.5/month") {
		t.Fatalf("list with limits:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"keys", "update", "--config", cfg, "--tpm", "9000", "--max_parallel", "4", id}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "tpm=9000 max_parallel=4") {
		t.Fatalf("update: %d %q %s", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := run([]string{"keys", "update", "--config", cfg, "--budget_period", "year", id}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "budget_period") {
		t.Fatalf("bad period: %d %s", code, errb.String())
	}
	if code := run([]string{"keys", "update", "--config", cfg, id}, nil, &out, &errb); code != 2 {
		t.Fatalf("update without a limit: %d", code)
	}
	out.Reset()
	if code := run([]string{"keys", "revoke", "--config", cfg, id}, nil, &out, &errb); code != 0 {
		t.Fatalf("revoke: %d %s", code, errb.String())
	}
	out.Reset()
	run([]string{"keys", "list", "--config", cfg}, nil, &out, &errb)
	if !strings.Contains(out.String(), "revoked") {
		t.Fatalf("list after revoke:\n%s", out.String())
	}
	errb.Reset()
	if code := run([]string{"keys", "create", "--config", cfg, "--expires", "soon", "--name", "x"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "30d") {
		t.Fatalf("bad expiry: %d %s", code, errb.String())
	}
}

// TestGlobalFlagsBeforeACommand: --config before a command applies to it;
// a word the proxy does not know is refused with the usage instead of being
// ignored while the server starts.
func TestGlobalFlagsBeforeACommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[plugins]\ndir = %q\n[database]\npath = %q\n", dir, filepath.Join(dir, "db"))), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"--config", cfg, "keys", "create", "--name", "early"}, nil, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sk-lp-") {
		t.Fatalf("--config before keys create: %d %q %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"keys", "list", "--config", cfg}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "early") {
		t.Fatalf("the key went elsewhere: %d %s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--config", cfg, "migrate", "status"}, nil, &out, &errb); code != 0 {
		t.Fatalf("--config before migrate status: %d %s", code, errb.String())
	}
	for _, args := range [][]string{
		{"--config", cfg, "serve"},
		{"--config", cfg, "usres", "create"},
		{"--check", "--config", cfg, "keys", "list"},
		{"--config", cfg, "keygen"},
	} {
		errb.Reset()
		if code := run(args, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "llm-proxy: ") {
			t.Errorf("%q: %d %s", args, code, errb.String())
		}
	}
	errb.Reset()
	run([]string{"--config", cfg, "serve"}, nil, &out, &errb)
	if !strings.Contains(errb.String(), `unknown command or argument "serve"`) || !strings.Contains(errb.String(), "usage:") {
		t.Fatalf("usage: %s", errb.String())
	}
}

func TestEncryptionKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "enc.key")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[plugins]\ndir = %q\n[database]\npath = %q\n[security]\nencryption_key_file = %q\n",
		dir, filepath.Join(dir, "db"), keyFile)), 0o644)
	env := []string{"LLMPROXY_ADMIN_KEY=" + binAdminKey}

	// Without a key the server refuses to start and says how to make one.
	var out, errb bytes.Buffer
	if code := run([]string{"--config", cfg}, env, &out, &errb); code != 2 || !strings.Contains(errb.String(), "keygen --encryption-key --file "+keyFile) {
		t.Fatalf("no key: %d %s", code, errb.String())
	}
	// A wrong length is refused too.
	errb.Reset()
	if code := run([]string{"--config", cfg}, append(env, "LLMPROXY_ENCRYPTION_KEY=abcd"), &out, &errb); code != 1 || !strings.Contains(errb.String(), "32") {
		t.Fatalf("short key: %d %s", code, errb.String())
	}
	// keygen writes a 0600 file and never overwrites it.
	if code := run([]string{"keygen", "--encryption-key", "--file", keyFile}, nil, &out, &errb); code != 0 {
		t.Fatalf("keygen: %s", errb.String())
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	before, _ := os.ReadFile(keyFile)
	if code := run([]string{"keygen", "--encryption-key", "--file", keyFile}, nil, &out, &errb); code == 0 {
		t.Fatal("keygen overwrote a key file")
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("key file changed")
	}

	// rotate-encryption-key reseals every stored secret under the new key.
	oldKey, err := secrets.LoadKey("", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(dir, "db")})
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := oldKey.Seal([]byte("sk-provider-secret"), []byte("prov_1"))
	if _, err := st.Writer().Exec(`INSERT INTO providers (id, name, plugin, base_url, secret_ciphertext, created_at, updated_at) VALUES ('prov_1', 'p', 'openai', 'https://x', ?, 0, 0)`, sealed); err != nil {
		t.Fatal(err)
	}
	st.Close()
	newFile := filepath.Join(dir, "new.key")
	run([]string{"keygen", "--encryption-key", "--file", newFile}, nil, &out, &errb)
	out.Reset()
	if code := run([]string{"rotate-encryption-key", "--config", cfg, "--new-key-file", newFile}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "re-encrypted 1") {
		t.Fatalf("rotate: %d %s %s", code, out.String(), errb.String())
	}
	newKey, _ := secrets.LoadKey("", newFile)
	st, err = store.Open(context.Background(), store.Options{Path: filepath.Join(dir, "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var now []byte
	st.Reader().Get(&now, `SELECT secret_ciphertext FROM providers WHERE id = 'prov_1'`)
	if got, err := newKey.Open(now, []byte("prov_1")); err != nil || string(got) != "sk-provider-secret" {
		t.Fatalf("after rotation: %q %v", got, err)
	}
	if _, err := oldKey.Open(now, []byte("prov_1")); err == nil {
		t.Fatal("the old key still opens the secret")
	}
	// The database file holds no secret in clear.
	raw, _ := os.ReadFile(filepath.Join(dir, "db"))
	if bytes.Contains(raw, []byte("sk-provider-secret")) {
		t.Fatal("provider secret in clear in the database file")
	}
}

func TestUsersCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[plugins]\ndir = %q\n[database]\npath = %q\n", dir, filepath.Join(dir, "db"))), 0o644)
	defer func(old io.Reader) { stdin = old }(stdin)
	var out, errb bytes.Buffer
	stdin = strings.NewReader("a fine password\n")
	if code := run([]string{"users", "create", "--config", cfg, "--name", "root", "--admin"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "created admin root") {
		t.Fatalf("create: %d %s %s", code, out.String(), errb.String())
	}
	stdin = strings.NewReader("")
	errb.Reset()
	if code := run([]string{"users", "create", "--config", cfg, "--name", "v"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "standard input") {
		t.Fatalf("no password: %d %s", code, errb.String())
	}
	out.Reset()
	run([]string{"users", "list", "--config", cfg}, nil, &out, &errb)
	if !strings.Contains(out.String(), "root") || !strings.Contains(out.String(), "admin") || strings.Contains(out.String(), "fine password") {
		t.Fatalf("list:\n%s", out.String())
	}
	// root is the only admin: disabling it would lock everyone out.
	errb.Reset()
	if code := run([]string{"users", "disable", "--config", cfg, "--name", "root"}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "only enabled admin") {
		t.Fatalf("disable last admin: %d %s", code, errb.String())
	}
	stdin = strings.NewReader("another password\n")
	if code := run([]string{"users", "create", "--config", cfg, "--name", "ops", "--admin"}, nil, &out, &errb); code != 0 {
		t.Fatalf("create: %s", errb.String())
	}
	if code := run([]string{"users", "disable", "--config", cfg, "--name", "root"}, nil, &out, &errb); code != 0 {
		t.Fatalf("disable: %s", errb.String())
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "db"))
	if bytes.Contains(raw, []byte("a fine password")) {
		t.Fatal("password in clear in the database")
	}
}
