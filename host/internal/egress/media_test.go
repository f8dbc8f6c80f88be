package egress_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
)

// png is the 8-byte PNG signature followed by a little padding, enough for
// content sniffing.
var png = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")

func mediaServer(t *testing.T) (*httptest.Server, *atomic.Value) {
	t.Helper()
	var lastAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastAuth.Store(r.Header.Get("Authorization") + r.Header.Get("x-goog-api-key"))
		switch r.URL.Path {
		case "/cat.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write(png)
		case "/sniffed":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(png)
		case "/page.html":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html></html>"))
		case "/big.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte(strings.Repeat("x", 2048)))
		case "/redirect":
			http.Redirect(w, r, "ftp://example.com/cat.png", http.StatusFound)
		case "/missing.png":
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &lastAuth
}

func TestFetchImage(t *testing.T) {
	t.Parallel()
	srv, lastAuth := mediaServer(t)
	ctx := context.Background()
	// Image fetches never reach a private address; a transport of the
	// test's own lets them reach the loopback server, to check the rest.
	c := newClient(t, egress.Options{BaseURL: "https://api.example.com", AllowPrivateNetwork: true,
		Auth: egress.Auth{Type: "header", Name: "x-goog-api-key", Format: "{key}"}, Secret: secret,
		Transport: http.DefaultTransport.(*http.Transport).Clone()})

	mt, data, err := c.FetchImage(ctx, srv.URL+"/cat.png", 1024)
	if err != nil || mt != "image/png" || string(data) != string(png) {
		t.Fatalf("%q %q %v", mt, data, err)
	}
	if got := lastAuth.Load().(string); got != "" {
		t.Fatalf("credentials sent with an image fetch: %q", got)
	}
	if mt, _, err := c.FetchImage(ctx, srv.URL+"/sniffed", 1024); err != nil || mt != "image/png" {
		t.Fatalf("sniffed: %q %v", mt, err)
	}
	for path, want := range map[string]error{
		"/page.html":   egress.ErrNotImage,
		"/big.png":     egress.ErrTooLarge,
		"/missing.png": egress.ErrFetch,
		"/redirect":    egress.ErrSchemeDenied,
	} {
		if _, _, err := c.FetchImage(ctx, srv.URL+path, 1024); !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", path, err, want)
		}
	}
	if _, _, err := c.FetchImage(ctx, "file:///etc/passwd", 1024); !errors.Is(err, egress.ErrSchemeDenied) {
		t.Errorf("file URL: %v", err)
	}
}

// TestFetchImagePrivateRefused: an image is never fetched from a private
// address, whatever name resolves to it, even for a provider that may reach
// private networks itself (that grant covers its own hosts, not URLs a
// client names). The refusal comes before any connection, so an open port
// and a closed one look the same.
func TestFetchImagePrivateRefused(t *testing.T) {
	t.Parallel()
	srv, _ := mediaServer(t)
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	t.Cleanup(tls.Close)
	closed := "http://127.0.0.1:1/cat.png" // nothing listens there
	ctx := context.Background()
	for _, private := range []bool{false, true} {
		c := newClient(t, egress.Options{BaseURL: "https://api.example.com", AllowPrivateNetwork: private})
		for _, u := range []string{srv.URL + "/cat.png", closed, tls.URL + "/cat.png", strings.Replace(tls.URL, "127.0.0.1", "localhost", 1) + "/cat.png"} {
			_, _, err := c.FetchImage(ctx, u, 1024)
			if !errors.Is(err, egress.ErrPrivateAddress) || !egress.IsDenied(err) {
				t.Fatalf("allow_private_network=%v, %s: %v, want the private address refused", private, u, err)
			}
		}
	}
}
