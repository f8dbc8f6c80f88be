package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestHostileClients runs the real binary and attacks it from loopback, all
// at once: 10,000 idle connections, slowloris headers, clients that never
// read their streams, oversized and deeply nested bodies on every route
// that takes one, model names that try to steer the upstream URL, and more
// WebSockets than the dashboard allows. Meanwhile a well-behaved client
// keeps chatting: every one of its requests must succeed. The proxy must
// stay up, close what it should close, and keep its memory bounded.
//
// The proxy runs in its own process so that the 10,000 connections count
// against its file limit and the test's separately, as they would for a
// real server.
func TestHostileClients(t *testing.T) {
	const (
		idle      = 10_000
		slowloris = 200
		stalled   = 20
		sockets   = 300 // the hub takes 256
		rssBudget = 512 << 20
	)
	p := startProcWith(t, `
read_timeout = "3s"
write_timeout = "3s"
`, "")
	addr := strings.TrimPrefix(p.base, "http://")
	pid := p.cmd.Process.Pid
	dial := func(what string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		return c
	}

	// The well-behaved client, and the proxy's memory, throughout.
	good := &http.Client{Timeout: 20 * time.Second}
	var goodOK, goodFailed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, ok := oneRequest(good, p.base, `{"model":"demo-echo","messages":[{"role":"user","content":"still there?"}]}`); ok {
				goodOK.Add(1)
			} else {
				goodFailed.Add(1)
				firstFailure.CompareAndSwap(nil, time.Now().String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	base := rss(pid)
	var peak atomic.Int64
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if r := rss(pid); r > peak.Load() {
				peak.Store(r)
			}
		}
	})

	var attacks sync.WaitGroup
	// 1. Idle connections: opened, never used. The proxy closes each one
	// after read_timeout.
	idleConns := make([]net.Conn, 0, idle)
	var idleMu sync.Mutex
	attacks.Go(func() {
		var dialers sync.WaitGroup
		for range 50 {
			dialers.Go(func() {
				for range idle / 50 {
					c := dial("idle connection")
					if c == nil {
						return
					}
					idleMu.Lock()
					idleConns = append(idleConns, c)
					idleMu.Unlock()
				}
			})
		}
		dialers.Wait()
	})
	t.Cleanup(func() {
		for _, c := range idleConns {
			c.Close()
		}
	})

	// 2. Slowloris: a request head sent a byte every 200 ms, never ending.
	// The proxy gives up on each after read_timeout.
	var slowClosed atomic.Int64
	for range slowloris {
		attacks.Go(func() {
			c := dial("slowloris")
			if c == nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\n", procAdminKey)
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := c.Write([]byte("X")); err != nil {
					slowClosed.Add(1)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}

	// 3. Clients that start a long stream and never read it. The stream
	// plays out into the socket buffers or the client is dropped after
	// write_timeout; either way the connection ends.
	var stalledEnded atomic.Int64
	for range stalled {
		attacks.Go(func() {
			c := dial("stalled reader")
			if c == nil {
				return
			}
			defer c.Close()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetReadBuffer(4 << 10)
			}
			body := `{"model":"demo-story","stream":true,"messages":[{"role":"user","content":"go on"}]}`
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				procAdminKey, len(body), body)
			time.Sleep(10 * time.Second) // reads nothing meanwhile
			if endsWithin(c, 60*time.Second) {
				stalledEnded.Add(1)
			}
		})
	}

	// 4. Oversized and deeply nested bodies on every route that takes a
	// body: each is an OpenAI-shaped 4xx.
	routes := [][2]string{
		{"POST", "/v1/chat/completions"}, {"POST", "/v1/embeddings"},
		{"POST", "/api/login"}, {"POST", "/api/keys"}, {"PATCH", "/api/keys/key_x"}, {"POST", "/api/users"},
		{"PATCH", "/api/users/alice"}, {"POST", "/api/providers"}, {"PATCH", "/api/providers/demo"},
		{"PATCH", "/api/settings"}, {"PUT", "/api/plugins/evil.wasm"},
	}
	deep := append(append([]byte(`{"model":`), bytes.Repeat([]byte("["), 1<<20)...), '}')
	checkError := func(what string, status int, out []byte) {
		var e struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if status < 400 || status >= 500 || json.Unmarshal(out, &e) != nil || e.Error.Message == "" {
			t.Errorf("%s: %d %.200s", what, status, out)
		}
	}
	attacks.Go(func() {
		hc := &http.Client{Timeout: 60 * time.Second}
		for _, r := range routes {
			// Deeply nested: read, and refused before any recursive parse.
			if status, out, err := send(hc, r[0], p.base+r[1], deep); err != nil {
				t.Errorf("%s %s, deep: %v", r[0], r[1], err)
			} else {
				checkError(r[0]+" "+r[1]+", deep", status, out)
			}

			// Oversized: refused from its Content-Length, before the body
			// is read (so a raw connection that never sends it gets the
			// answer), and the connection is closed.
			size := 5 << 20
			if r[0] == "PUT" {
				size = 65 << 20 // plugin uploads may be 64 MiB
			}
			c := dial("oversized")
			if c == nil {
				continue
			}
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{",
				r[0], r[1], procAdminKey, size)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("%s %s, oversized: %v", r[0], r[1], err)
				c.Close()
				continue
			}
			out, _ := io.ReadAll(resp.Body)
			c.Close()
			if resp.StatusCode != 413 {
				t.Errorf("%s %s, oversized: %d %.200s", r[0], r[1], resp.StatusCode, out)
			}
			checkError(r[0]+" "+r[1]+", oversized", resp.StatusCode, out)
		}
	})

	// 5. Model names that try to leave the upstream path: 400 each.
	attacks.Go(func() {
		for _, model := range []string{"demo/../../admin?x=", "demo/demo-echo#x", "demo/%2e%2e/x", "demo\r\nX-Evil: 1", "../demo-echo"} {
			body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hi"}}})
			status, out, err := send(good, "POST", p.base+"/v1/chat/completions", body)
			if err != nil {
				t.Errorf("model %q: %v", model, err)
			} else if status != 400 || !bytes.Contains(out, []byte(`"invalid_model"`)) {
				t.Errorf("model %q: %d %s", model, status, out)
			}
		}
	})

	// 6. More dashboards than the hub takes: the ones over the cap are
	// closed with 1013 (try again later).
	var wsConns []*websocket.Conn // only this attack's goroutine appends, before attacks.Wait
	attacks.Go(func() {
		h := http.Header{"Authorization": {"Bearer " + procAdminKey}}
		for range sockets {
			c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/ws", h)
			if err != nil {
				t.Errorf("websocket: %v", err)
				return
			}
			wsConns = append(wsConns, c)
		}
	})
	t.Cleanup(func() {
		for _, c := range wsConns {
			c.Close()
		}
	})

	attacks.Wait()
	// Every idle and slowloris connection is closed by the proxy in time
	// (read_timeout is 3 s; the budget is generous for a busy machine).
	idleMu.Lock()
	conns := idleConns
	idleMu.Unlock()
	if len(conns) != idle {
		t.Fatalf("%d idle connections opened, want %d", len(conns), idle)
	}
	var closed atomic.Int64
	var readers sync.WaitGroup
	for i := 0; i < len(conns); i += 100 { // a sample of 100
		readers.Go(func() {
			if endsWithin(conns[i], 60*time.Second) {
				closed.Add(1)
			}
		})
	}
	readers.Wait()
	if closed.Load() != int64(len(conns)/100) {
		t.Errorf("%d of %d sampled idle connections were closed by the proxy", closed.Load(), len(conns)/100)
	}
	if n := slowClosed.Load(); n != slowloris {
		t.Errorf("%d of %d slowloris connections were closed by the proxy", n, slowloris)
	}
	if n := stalledEnded.Load(); n != stalled {
		t.Errorf("%d of %d never-reading streams ended", n, stalled)
	}
	if n := countRefused(wsConns); n != sockets-256 {
		t.Errorf("%d of %d WebSockets refused, want %d", n, sockets, sockets-256)
	}

	// The proxy is still up and serving, and it served the good client
	// all along.
	close(stop)
	bg.Wait()
	if _, ok := oneRequest(good, p.base, `{"model":"demo-echo","messages":[{"role":"user","content":"after"}]}`); !ok {
		t.Error("the proxy does not serve after the attacks")
	}
	if goodFailed.Load() != 0 || goodOK.Load() < 10 {
		t.Errorf("the well-behaved client: %d served, %d failed (first at %v)", goodOK.Load(), goodFailed.Load(), firstFailure.Load())
	}
	select {
	case <-p.exited:
		t.Fatalf("the proxy exited: %v", p.waitErr)
	default:
	}
	t.Logf("RSS %d MiB before, peak %d MiB; good client served %d times", base>>20, peak.Load()>>20, goodOK.Load())
	if grew := peak.Load() - base; grew > rssBudget {
		t.Errorf("RSS grew by %d MiB under attack, budget %d MiB", grew>>20, rssBudget>>20)
	}
}

// countRefused reads every WebSocket and counts those the proxy closed
// with 1013 (try again later).
func countRefused(conns []*websocket.Conn) int {
	var refused atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, _, err := c.ReadMessage(); websocket.IsCloseError(err, websocket.CloseTryAgainLater) {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	return int(refused.Load())
}

// endsWithin reports whether the proxy ends connection c (after whatever
// it still sends, such as a 408) within d.
func endsWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil || !os.IsTimeout(err)
}

// send makes a request with the admin key and a JSON body, and returns the
// answer's status and body.
func send(hc *http.Client, method, url string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+procAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// rss is a process's resident set size in bytes, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
