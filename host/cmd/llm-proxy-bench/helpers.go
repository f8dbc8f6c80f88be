package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/fakeupstream"
)

// The two helper modes below run in their own processes (the orchestrator
// starts this same binary again with a subcommand), so that the CPU time and
// memory of each party can be read from /proc separately.

// helperFlags are the flags both helper modes share.
type helperFlags struct {
	listen     string
	watchStdin bool
}

func (h *helperFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.listen, "listen", "127.0.0.1:0", "loopback address to listen on (port 0 picks a free one)")
	fs.BoolVar(&h.watchStdin, "exit-on-stdin-eof", false, "exit when standard input closes (the orchestrator uses this to take its helpers down with it)")
}

// listenLoopback listens on addr after checking that it is a loopback
// address: the benchmark never exposes anything beyond the machine.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("listen address %q is not a loopback address", addr)
		}
	}
	return net.Listen("tcp", addr)
}

// waitForStop blocks until SIGINT/SIGTERM, or until stdin reaches EOF when
// watchStdin is set.
func waitForStop(watchStdin bool) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	eof := make(chan struct{})
	if watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(eof)
		}()
	}
	select {
	case <-sig:
	case <-eof:
	}
}

// runUpstream serves the fake OpenAI API on the given address. The first
// line written to stdout is the address actually bound.
func runUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	var h helperFlags
	h.register(fs)
	chunks := fs.Int("chunks", 20, "content chunks per streamed reply")
	delay := fs.Duration("chunk-delay", 0, "pause between two stream chunks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := listenLoopback(h.listen)
	if err != nil {
		return err
	}
	// Start also serves the fake on a port of its own; only its handler is
	// used here, mounted on the requested address.
	fake, err := fakeupstream.Start(fakeupstream.Options{Chunks: *chunks, ChunkDelay: *delay, DisableRecording: true})
	if err != nil {
		ln.Close()
		return err
	}
	defer fake.Close()
	srv := &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	waitForStop(h.watchStdin)
	_ = srv.Close()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bufPool holds the copy buffers of streamed replies.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// runBare serves a minimal reverse proxy: Fiber in front, net/http towards
// the upstream (the same client stack llm-proxy's egress uses), nothing else.
// It is the floor llm-proxy is compared with.
func runBare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	var h helperFlags
	h.register(fs)
	upstream := fs.String("upstream", "", "base URL of the upstream API, e.g. http://127.0.0.1:4000/v1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return errors.New("bare: -upstream is required")
	}
	target := strings.TrimRight(*upstream, "/") + "/chat/completions"
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}

	app := fiber.New(fiber.Config{AppName: "bare-proxy", DisableStartupMessage: true})
	app.Get("/readyz", func(c *fiber.Ctx) error { return c.SendString("ready") })
	app.Post("/v1/chat/completions", func(c *fiber.Ctx) error {
		// Fiber reuses the request buffer once the handler returns, and the
		// upstream request may still be reading it, so it gets its own copy.
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(bytes.Clone(c.Body())))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if a := c.Get(fiber.HeaderAuthorization); a != "" {
			req.Header.Set("Authorization", a)
		}
		resp, err := client.Do(req)
		if err != nil {
			return c.Status(fiber.StatusBadGateway).SendString("upstream: " + err.Error())
		}
		ct := resp.Header.Get("Content-Type")
		c.Status(resp.StatusCode)
		if ct != "" {
			c.Set(fiber.HeaderContentType, ct)
		}
		if !strings.HasPrefix(ct, "text/event-stream") {
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return c.Status(fiber.StatusBadGateway).SendString("upstream body: " + err.Error())
			}
			return c.Send(b)
		}
		c.Set(fiber.HeaderCacheControl, "no-cache")
		// Relay every read as soon as it arrives; a failed flush means the
		// client left, and closing the upstream body cancels the upstream.
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			defer resp.Body.Close()
			bp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bp)
			buf := *bp
			for {
				n, rerr := resp.Body.Read(buf)
				if n > 0 {
					if _, err := w.Write(buf[:n]); err != nil {
						return
					}
					if err := w.Flush(); err != nil {
						return
					}
				}
				if rerr != nil {
					return
				}
			}
		})
		return nil
	})

	ln, err := listenLoopback(h.listen)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	fmt.Println(ln.Addr().String())
	waitForStop(h.watchStdin)
	_ = app.ShutdownWithTimeout(2 * time.Second)
	<-served
	return nil
}
