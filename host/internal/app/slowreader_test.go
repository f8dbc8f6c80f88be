package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// TestSlowReaderIsDropped: a client that opens a stream and stops reading
// (its connection stays open, its socket buffers fill) costs its own
// buffer and nothing else. The proxy stops reading that stream's upstream
// while output waits (the upstream has written a bounded amount), drops the
// client once it has read nothing for write_timeout, cancels the upstream,
// and logs the request as 499; no instance is held meanwhile, and other
// clients of the same plugin stream at full speed throughout.
func TestSlowReaderIsDropped(t *testing.T) {
	writeTimeout := 2 * time.Second
	p := startProxy(t, func(cfg *config.Config) {
		cfg.Server.WriteTimeout = config.Duration(writeTimeout)
	})
	before := pluginInfo(t, p, "openai").Instances

	// The slow reader: a raw connection that sends the request, reads the
	// response head, and then nothing more.
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10) // a small window, so the proxy's writes block sooner
	}
	body := `{"model":"` + fakeupstream.ModelEndlessStream + `","stream":true,"messages":[{"role":"user","content":"x"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", adminKey, len(body), body)
	br := bufio.NewReaderSize(conn, 512)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("status line %q, %v", status, err)
	}
	stalled := time.Now()
	id := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := strings.CutPrefix(line, "X-Request-Id: "); ok {
			id = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	// From here on the client reads nothing.

	// Meanwhile other clients stream through the same plugin.
	c := p.client(adminKey)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	streams := 0
	stop := make(chan struct{})
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				s := c.Chat.Completions.NewStreaming(context.Background(), chatParams("gpt-4o-mini", "meanwhile"))
				for s.Next() {
				}
				if err := s.Err(); err != nil {
					t.Errorf("a concurrent stream failed: %v", err)
					return
				}
				mu.Lock()
				streams++
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
			}
		}()
	}

	// The upstream is cancelled once the client has been dropped.
	waitFor(t, func() bool { return p.Upstream.Canceled() >= 1 })
	dropped := time.Since(stalled)
	written := p.Upstream.EndlessBytes()
	close(stop)
	wg.Wait()
	t.Logf("slow reader dropped after %s; the endless upstream wrote %d KiB in all; %d other streams meanwhile, the slowest %s",
		dropped.Round(time.Millisecond), written>>10, streams, slowest.Round(time.Millisecond))
	if dropped < writeTimeout {
		t.Fatalf("dropped after %s, before write_timeout (%s)", dropped, writeTimeout)
	}
	// Without backpressure the proxy would have read the fast upstream for
	// the whole time: hundreds of megabytes. With it, the upstream wrote
	// what the sockets and the stream's buffer hold.
	if written > 32<<20 {
		t.Fatalf("the upstream wrote %d MiB to a stream whose client read nothing", written>>20)
	}
	if streams == 0 || slowest > 10*time.Second {
		t.Fatalf("%d other streams, the slowest took %s", streams, slowest)
	}
	waitFor(t, func() bool { return pluginInfo(t, p, "openai").Instances.Streams == 0 })
	after := pluginInfo(t, p, "openai").Instances
	if after.Failures != before.Failures {
		t.Fatalf("an instance failed: %+v", after)
	}
	if row := getLog(t, p, id); row.Status != 499 {
		t.Fatalf("logged with status %d, want 499", row.Status)
	}
}
