package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/testplugins"
)

// The binary the process tests run, built once per test process.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the llm-proxy binary the first time it is called.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "llm-proxy-bin-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "llm-proxy")
		if out, err := exec.Command("go", "build", "-o", buildBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// proc is the real binary running with the demo plugin on loopback.
type proc struct {
	cmd     *exec.Cmd
	base    string // http://host:port
	cfg, db string // paths
	exited  chan struct{}
	waitErr error
	logs    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const procAdminKey = "sk-bin-load-test-9d3e71c0a5b2f864"

// startProc starts the binary with extra appended to its config, waits
// until it is ready, and kills it at the end of the test if it still runs.
func startProc(t *testing.T, extra string) *proc {
	t.Helper()
	return startProcWith(t, "", extra)
}

// startProcWith is startProc with server added to the [server] table.
func startProcWith(t *testing.T, server, extra string) *proc {
	t.Helper()
	return startProcSpec(t, procSpec{server: server, extra: extra})
}

// procSpec says how to start the binary.
type procSpec struct {
	server, extra string
	// database replaces the [database] table's body (default: the path
	// of a new SQLite file); encKey is the master key (default: a new
	// one); env is added to the environment.
	database, encKey string
	env              []string
}

func startProcSpec(t *testing.T, spec procSpec) *proc {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	os.Mkdir(plugins, 0o755)
	testplugins.Install(t, testplugins.Build(t, "plugins/demo"), plugins, "demo.wasm")
	addr := freePort(t)
	p := &proc{base: "http://" + addr, cfg: filepath.Join(dir, "config.toml"), db: filepath.Join(dir, "llm-proxy.db"),
		exited: make(chan struct{}), logs: &lockedBuffer{}}
	if spec.database == "" {
		spec.database = fmt.Sprintf("path = %q", p.db)
	}
	if spec.encKey == "" {
		spec.encKey = secrets.NewKeyString()
	}
	os.WriteFile(p.cfg, []byte(fmt.Sprintf(`
[server]
listen = %q
shutdown_timeout = "20s"
%s
[plugins]
dir = %q
cache_dir = %q
[database]
%s
[[providers]]
name = "demo"
plugin = "demo"
base_url = "http://127.0.0.1"
allow_private_network = true
models = ["demo-echo", "demo-story"]
%s`, addr, spec.server, plugins, testplugins.CacheDir(), spec.database, spec.extra)), 0o644)
	p.cmd = exec.Command(bin, "--config", p.cfg)
	p.cmd.Env = append(os.Environ(), "LLMPROXY_ADMIN_KEY="+procAdminKey, "LLMPROXY_ENCRYPTION_KEY="+spec.encKey)
	p.cmd.Env = append(p.cmd.Env, spec.env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("proxy log:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the process to exit.
func (p *proc) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(within):
		t.Fatalf("still running after %v", within)
		return nil
	}
}

// loadResult is what the clients of runLoad saw.
type loadResult struct {
	mu        sync.Mutex
	completed map[string]time.Time // request id → when its complete 200 answer ended
	failed    int
}

// runLoad starts clients that loop until the process exits: a quarter of
// them over one-second streams, so that some are always in flight, the
// others over plain chats and short streams in turn. A
// request counts as completed when its answer was a 200 and arrived whole:
// a JSON body with choices, or a stream ending in data: [DONE] without an
// error event. Wait on the returned WaitGroup once the process is gone.
func runLoad(p *proc, clients int, res *loadResult) *sync.WaitGroup {
	res.completed = map[string]time.Time{}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	short := []string{
		`{"model":"demo-echo","messages":[{"role":"user","content":"plain"}]}`,
		`{"model":"demo-echo","stream":true,"messages":[{"role":"user","content":"short stream"}]}`,
	}
	const long = `{"model":"demo-story","stream":true,"messages":[{"role":"user","content":"long stream"}]}`
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; ; i++ {
				select {
				case <-p.exited:
					return
				default:
				}
				body := short[i%len(short)]
				if c%4 == 0 {
					body = long
				}
				id, ok := oneRequest(hc, p.base, body)
				res.mu.Lock()
				if ok {
					res.completed[id] = time.Now()
				} else {
					res.failed++
				}
				res.mu.Unlock()
				if !ok {
					time.Sleep(10 * time.Millisecond) // refused while shutting down
				}
			}
		})
	}
	go func() { wg.Wait(); tr.CloseIdleConnections() }()
	return &wg
}

// waitFor waits until n requests have completed, or fails the test.
func (r *loadResult) waitFor(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		done := len(r.completed)
		r.mu.Unlock()
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests completed in %v", done, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func oneRequest(hc *http.Client, base, body string) (id string, complete bool) {
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+procAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	id = resp.Header.Get("X-Request-Id")
	if err != nil || resp.StatusCode != 200 || id == "" {
		return id, false
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return id, strings.HasSuffix(string(b), "data: [DONE]\n\n") && !strings.Contains(string(b), `"error"`)
	}
	var v struct {
		Choices []json.RawMessage `json:"choices"`
	}
	return id, json.Unmarshal(b, &v) == nil && len(v.Choices) == 1
}

// TestSIGTERMUnderLoadLosesNoRequest: 16 clients keep the real binary
// busy; SIGTERM in the middle. Every request whose client got a complete
// 200 answer, including those that finished during the drain, has its row
// once the process has exited.
func TestSIGTERMUnderLoadLosesNoRequest(t *testing.T) {
	p := startProc(t, "")
	var res loadResult
	clients := runLoad(p, 16, &res)
	res.waitFor(t, 300, 30*time.Second)
	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	clients.Wait()

	st, err := store.Open(context.Background(), store.Options{Path: p.db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logged := loggedOK(t, st)
	var missing []string
	drained := 0
	for id, at := range res.completed {
		if !logged[id] {
			missing = append(missing, id)
		}
		if at.After(signalled) {
			drained++
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d completed requests have no row, e.g. %s", len(missing), len(res.completed), missing[0])
	}
	if drained == 0 {
		t.Fatalf("too little load to tell: %d completed, %d of them after SIGTERM", len(res.completed), drained)
	}
	t.Logf("%d requests completed (%d during the drain), %d refused or cut; %d rows", len(res.completed), drained, res.failed, len(logged))
}

// loggedOK is the set of request ids with a 200 row in the request log.
func loggedOK(t *testing.T, st *store.Store) map[string]bool {
	t.Helper()
	var ids []string
	if err := st.Reader().Select(&ids, `SELECT id FROM request_logs WHERE status = 200`); err != nil {
		t.Fatal(err)
	}
	logged := make(map[string]bool, len(ids))
	for _, id := range ids {
		logged[id] = true
	}
	return logged
}

// written is the request log's committed row count, from /api/stats.
func written(t *testing.T, p *proc) int64 {
	t.Helper()
	req, _ := http.NewRequest("GET", p.base+"/api/stats", nil)
	req.Header.Set("Authorization", "Bearer "+procAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		RequestLog struct {
			Written int64 `json:"written"`
		} `json:"request_log"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.RequestLog.Written
}

// TestSIGKILLUnderLoadLeavesAUsableDatabase: the real binary, busy with 16
// clients and storing bodies, is killed outright. The database then opens
// with the store, passes PRAGMA integrity_check, and migrate status works.
func TestSIGKILLUnderLoadLeavesAUsableDatabase(t *testing.T) {
	p := startProc(t, "[logs]\nbodies = true\n")
	var res loadResult
	clients := runLoad(p, 16, &res)
	res.waitFor(t, 300, 30*time.Second)
	// Kill it once the log writer has committed some rows, while the load
	// goes on: requests finish faster than its batches.
	deadline := time.Now().Add(30 * time.Second)
	for written(t, p) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request log row written within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 10*time.Second); err == nil {
		t.Fatal("a killed process exited cleanly")
	}
	clients.Wait()

	st, err := store.Open(context.Background(), store.Options{Path: p.db})
	if err != nil {
		t.Fatalf("the database does not open after SIGKILL: %v", err)
	}
	defer st.Close()
	var check []string
	if err := st.Writer().Select(&check, `PRAGMA integrity_check`); err != nil || len(check) != 1 || check[0] != "ok" {
		t.Fatalf("integrity_check: %q %v", check, err)
	}
	var rows int
	if err := st.Reader().Get(&rows, `SELECT count(*) FROM request_logs WHERE response_body IS NOT NULL`); err != nil || rows == 0 {
		t.Fatalf("rows written before the kill: %d %v", rows, err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"migrate", "status", "--config", p.cfg}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "applied") {
		t.Fatalf("migrate status: %d %s %s", code, out.String(), errb.String())
	}
	t.Logf("%d requests completed before the kill, %d rows survived", len(res.completed), rows)
}
