package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// startReplicas starts n copies of the binary on the PostgreSQL database
// of dsn, sharing one master key, as a fleet behind a load balancer.
func startReplicas(t *testing.T, dsn string, n int, extra string) []*proc {
	t.Helper()
	key := secrets.NewKeyString()
	reps := make([]*proc, n)
	for i := range reps {
		reps[i] = startProcSpec(t, procSpec{
			database: `driver = "postgres"`,
			encKey:   key,
			env:      []string{"LLMPROXY_DATABASE_URL=" + dsn},
			extra:    extra,
		})
	}
	return reps
}

// call sends one request to p and returns the status and body; auth is a
// bearer token, or a session cookie when it starts with "cookie:".
func call(t *testing.T, p *proc, method, path, auth, body string, hdr ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, p.base+path, r)
	req.Header.Set("Content-Type", "application/json")
	if c, ok := strings.CutPrefix(auth, "cookie:"); ok {
		req.Header.Set("Cookie", c)
	} else if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const chatBody = `{"model":"demo-echo","messages":[{"role":"user","content":"hello fleet"}]}`

// eventually waits until cond holds on every replica of ps and returns how
// long that took; it fails past a generous limit (the target is 1 s).
func eventually(t *testing.T, what string, ps []*proc, cond func(*proc) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for _, p := range ps {
		for !cond(p) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: not seen on %s within 10 s", what, p.base)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// fleetKey creates a client key on the first replica and waits until
// every replica takes it.
func fleetKey(t *testing.T, reps []*proc, body string) (k struct{ ID, Key string }) {
	t.Helper()
	code, b := call(t, reps[0], "POST", "/api/keys", procAdminKey, body)
	if json.Unmarshal(b, &k); code != 201 || k.Key == "" {
		t.Fatalf("create key: %d %s", code, b)
	}
	eventually(t, "the key", reps, func(p *proc) bool {
		c, _ := call(t, p, "GET", "/v1/models", k.Key, "")
		return c == 200
	})
	return k
}

// TestReplicas: three proxies on one PostgreSQL database act as one
// gateway. A key made on one works on the others at once, and its
// revocation too; a dashboard session is valid on all three and a logout
// on one ends it everywhere; 3,000 requests spread over the three become
// exactly 3,000 log rows with matching rollups.
func TestReplicas(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t)
	reps := startReplicas(t, dsn, 3, "")

	t.Run("keys", func(t *testing.T) {
		code, b := call(t, reps[0], "POST", "/api/keys", procAdminKey, `{"name":"fleet"}`)
		var k struct{ ID, Key string }
		if json.Unmarshal(b, &k); code != 201 || k.Key == "" {
			t.Fatalf("create key: %d %s", code, b)
		}
		works := func(p *proc) bool {
			c, _ := call(t, p, "POST", "/v1/chat/completions", k.Key, chatBody)
			return c == 200
		}
		took := eventually(t, "a new key", reps[1:], works)
		t.Logf("a key made on one replica worked on the other two after %v", took)
		if code, b := call(t, reps[1], "DELETE", "/api/keys/"+k.ID, procAdminKey, ""); code != 200 {
			t.Fatalf("revoke: %d %s", code, b)
		}
		took = eventually(t, "a revocation", []*proc{reps[0], reps[2]}, func(p *proc) bool {
			c, _ := call(t, p, "POST", "/v1/chat/completions", k.Key, chatBody)
			return c == 401
		})
		t.Logf("a revocation on one replica was enforced on the other two after %v", took)
	})

	t.Run("dashboard session", func(t *testing.T) {
		if code, b := call(t, reps[0], "POST", "/api/users", procAdminKey,
			`{"username":"ops","password":"a fleet of three","role":"admin"}`); code != 200 && code != 201 {
			t.Fatalf("create user: %d %s", code, b)
		}
		req, _ := http.NewRequest("POST", reps[1].base+"/api/login", strings.NewReader(`{"username":"ops","password":"a fleet of three"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var login struct {
			CSRF string `json:"csrf_token"`
		}
		json.NewDecoder(resp.Body).Decode(&login)
		resp.Body.Close()
		var cookie string
		for _, c := range resp.Cookies() {
			if c.Name == "llmproxy_session" {
				cookie = "cookie:" + c.Name + "=" + c.Value
			}
		}
		if resp.StatusCode != 200 || cookie == "" {
			t.Fatalf("login on replica 1: %d", resp.StatusCode)
		}
		for i, p := range reps {
			if code, b := call(t, p, "GET", "/api/session", cookie, ""); code != 200 || !strings.Contains(string(b), `"ops"`) {
				t.Fatalf("the session on replica %d: %d %s", i, code, b)
			}
			if code, b := call(t, p, "GET", "/api/keys", cookie, ""); code != 200 {
				t.Fatalf("an admin call with the session on replica %d: %d %s", i, code, b)
			}
		}
		if code, b := call(t, reps[2], "POST", "/api/logout", cookie, "", "X-CSRF-Token", login.CSRF); code != 200 {
			t.Fatalf("logout on replica 2: %d %s", code, b)
		}
		for i, p := range reps {
			if code, _ := call(t, p, "GET", "/api/session", cookie, ""); code != 401 {
				t.Fatalf("after the logout, replica %d answers %d", i, code)
			}
		}
	})

	t.Run("fleet", func(t *testing.T) {
		code, b := call(t, reps[2], "GET", "/api/replicas", procAdminKey, "")
		var list struct {
			Data []struct {
				ID      string
				Self    bool
				Plugins []struct{ Name, SHA256 string }
			}
		}
		if json.Unmarshal(b, &list); code != 200 || len(list.Data) != 3 {
			t.Fatalf("replicas: %d %s", code, b)
		}
		selves, sha := 0, ""
		for _, r := range list.Data {
			if r.Self {
				selves++
			}
			if len(r.Plugins) != 1 || r.Plugins[0].Name != "demo" || (sha != "" && r.Plugins[0].SHA256 != sha) {
				t.Fatalf("replica %s runs %+v", r.ID, r.Plugins)
			}
			sha = r.Plugins[0].SHA256
		}
		if selves != 1 {
			t.Fatalf("%d replicas are the one asked", selves)
		}
	})

	t.Run("rate limit across replicas", func(t *testing.T) {
		// 60 requests a minute for the fleet; each replica gets one
		// request every 50 ms (60 a second in all) for 4 s. Alone, each
		// would admit 60 (180 in all); sharing counts every 250 ms, the
		// fleet admits 60 plus what the others admit before a count
		// arrives.
		const rpm = 60
		k := fleetKey(t, reps, fmt.Sprintf(`{"name":"limited","rpm":%d}`, rpm))
		var admitted, refused atomic.Int64
		var wg sync.WaitGroup
		for _, p := range reps {
			wg.Go(func() {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for range 80 {
					<-tick.C
					switch c, _ := call(t, p, "POST", "/v1/chat/completions", k.Key, chatBody); c {
					case 200:
						admitted.Add(1)
					case 429:
						refused.Add(1)
					default:
						t.Errorf("status %d", c)
					}
				}
			})
		}
		wg.Wait()
		over := admitted.Load() - rpm
		t.Logf("rpm %d over 3 replicas: %d admitted (overshoot %d), %d refused", rpm, admitted.Load(), over, refused.Load())
		if admitted.Load() < rpm || over > 40 {
			t.Fatalf("%d admitted for a limit of %d a minute (3 replicas not sharing would admit %d)", admitted.Load(), rpm, 3*rpm)
		}
	})

	t.Run("3000 requests, 3000 rows", func(t *testing.T) {
		k := fleetKey(t, reps, `{"name":"count"}`)
		const total, clients = 3000, 24
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
		for range clients {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= total {
						return
					}
					req, _ := http.NewRequest("POST", reps[i%3].base+"/v1/chat/completions", strings.NewReader(chatBody))
					req.Header.Set("Authorization", "Bearer "+k.Key)
					req.Header.Set("Content-Type", "application/json")
					resp, err := hc.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := failed.Load(); n != 0 {
			t.Fatalf("%d of %d requests failed", n, total)
		}
		st, err := store.OpenPostgres(t.Context(), dsn, store.Options{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rows := func() (n int) {
			if err := st.Reader().Get(&n, `SELECT count(*) FROM request_logs WHERE key_id = ?`, k.ID); err != nil {
				t.Fatal(err)
			}
			return n
		}
		deadline := time.Now().Add(30 * time.Second)
		for rows() < total && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // a duplicate would land by now
		if n := rows(); n != total {
			t.Fatalf("%d log rows for %d requests", n, total)
		}
		var logs struct {
			Prompt     int64 `db:"p"`
			Completion int64 `db:"c"`
		}
		if err := st.Reader().Get(&logs, `SELECT sum(prompt_tokens) AS p, sum(completion_tokens) AS c FROM request_logs WHERE key_id = ?`, k.ID); err != nil {
			t.Fatal(err)
		}
		var sums []struct {
			Period     int64 `db:"period"`
			Requests   int64 `db:"requests"`
			Prompt     int64 `db:"p"`
			Completion int64 `db:"c"`
		}
		if err := st.Reader().Select(&sums, `SELECT period, sum(requests) AS requests, sum(prompt_tokens) AS p, sum(completion_tokens) AS c
			FROM usage_rollups WHERE key_id = ? GROUP BY period ORDER BY period`, k.ID); err != nil {
			t.Fatal(err)
		}
		if len(sums) == 0 {
			t.Fatal("no rollups")
		}
		for _, s := range sums {
			if s.Requests != total || s.Prompt != logs.Prompt || s.Completion != logs.Completion {
				t.Errorf("rollups of period %d: %d requests, %d+%d tokens; the rows: %d, %d+%d",
					s.Period, s.Requests, s.Prompt, s.Completion, total, logs.Prompt, logs.Completion)
			}
		}
	})
}

// TestReplicaKilledAndDatabaseRestarted: three replicas under load on
// their own PostgreSQL server. One is killed outright: the other two keep
// serving. Then the database stops for a few seconds and starts again: the
// two go on answering, /readyz reports them not ready meanwhile, and the
// rows of that time are written once it is back. In the end every request
// a surviving replica answered with a complete 200 has its row.
func TestReplicaKilledAndDatabaseRestarted(t *testing.T) {
	t.Parallel()
	pg := pgtest.Private(t)
	dsn, err := pg.CreateDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The demo plugin answers thousands of requests a second: the queue
	// must hold a few seconds of them (the bound is the operator's to set;
	// past it rows are dropped and counted).
	reps := startReplicas(t, dsn, 3, "[logs]\nqueue_size = 500000\n")
	results := make([]*loadResult, 3)
	var loads []*sync.WaitGroup
	for i, p := range reps {
		results[i] = &loadResult{}
		loads = append(loads, runLoad(p, 6, results[i]))
	}
	for _, r := range results {
		r.waitFor(t, 50, 60*time.Second)
	}

	if err := reps[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	reps[0].wait(t, 10*time.Second)
	survivors := reps[1:]
	done := func() (n int) {
		for _, r := range results[1:] {
			r.mu.Lock()
			n += len(r.completed)
			r.mu.Unlock()
		}
		return n
	}
	atKill := done()
	deadline := time.Now().Add(time.Minute)
	for done() < atKill+100 {
		if time.Now().After(deadline) {
			t.Fatal("the survivors stopped serving")
		}
		time.Sleep(10 * time.Millisecond)
	}

	pg.Halt()
	halted := time.Now()
	atHalt := done()
	for _, p := range survivors {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get(p.base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz on %s still ready with the database down", p.base)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for time.Since(halted) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	servedWhileDown := done() - atHalt
	if servedWhileDown < 10 {
		t.Fatalf("only %d requests served while the database was down", servedWhileDown)
	}
	if err := pg.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, p := range survivors {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(p.base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz on %s not ready again after the database came back", p.base)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, p := range survivors {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range survivors {
		if err := p.wait(t, 60*time.Second); err != nil {
			t.Fatalf("survivor %d exit: %v", i+1, err)
		}
	}
	for _, l := range loads {
		l.Wait()
	}

	st, err := store.OpenPostgres(context.Background(), dsn, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logged := loggedOK(t, st)
	var missing []string
	total := 0
	for _, r := range results[1:] {
		for id := range r.completed {
			total++
			if !logged[id] {
				missing = append(missing, id)
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d requests the survivors completed have no row, e.g. %s", len(missing), total, missing[0])
	}
	var logs bytes.Buffer
	for _, p := range survivors {
		logs.WriteString(p.logs.String())
	}
	if !strings.Contains(logs.String(), "does not answer") {
		t.Errorf("no survivor logged the database going away:\n%s", logs.String())
	}
	t.Logf("killed replica: %d completed before the kill; survivors: %d completed, %d while the database was down; %d rows in all",
		len(results[0].completed), total, servedWhileDown, len(logged))
}

// TestMigrateOnPostgres: `llm-proxy migrate status` and `migrate up` on a
// PostgreSQL database named by the environment.
func TestMigrateOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("[database]\ndriver = \"postgres\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"LLMPROXY_DATABASE_URL=" + dsn}
	var out, errb bytes.Buffer
	if code := run([]string{"migrate", "status", "--config", cfg}, env, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "database postgres") || !strings.Contains(out.String(), "00013_sessions.sql") || strings.Contains(out.String(), "applied") {
		t.Fatalf("status of a new database: %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"migrate", "up", "--config", cfg}, env, &out, &errb); code != 0 || strings.Contains(out.String(), "pending") ||
		!strings.Contains(out.String(), "00014_replicas.sql") {
		t.Fatalf("up: %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"migrate", "status", "--config", cfg}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "LLMPROXY_DATABASE_URL") {
		t.Fatalf("no connection string: %d %s", code, errb.String())
	}
}
