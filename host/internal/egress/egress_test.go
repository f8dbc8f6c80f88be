package egress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/egress"
)

const secret = "sk-test-secret"

func TestIsPrivate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"224.0.0.1", true},
		{"ff02::1", true},
		{"ff01::1", true},

		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"172.15.255.255", false},
		{"172.32.0.1", false},
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		{"11.0.0.1", false},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		{"64:ff9b::7f00:1", true},     // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", true},      // NAT64 of 10.0.0.1
		{"64:ff9b::a9fe:a9fe", true},  // NAT64 of 169.254.169.254
		{"64:ff9b:1::a00:1", true},    // local-use NAT64
		{"::7f00:1", true},            // IPv4-compatible 127.0.0.1
		{"::a00:1", true},             // IPv4-compatible 10.0.0.1
		{"2002:7f00:1::1", true},      // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", true},   // 6to4 of 169.254.169.254
		{"2001:0:4136:e378::1", true}, // Teredo
		{"64:ff9b::808:808", false},   // NAT64 of 8.8.8.8
		{"2002:808:808::1", false},    // 6to4 of 8.8.8.8
		{"198.20.0.1", false},
		{"239.255.255.255", true}, // multicast
		{"2606:4700::1111", false},
		{"2001:4860:4860::8888", false},
		{"::ffff:8.8.8.8", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			a := netip.MustParseAddr(tt.addr)
			if got := egress.IsPrivate(a); got != tt.want {
				t.Fatalf("IsPrivate(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "api.openai.com", "https://", "/v1/chat", "http://[::1", "%zz"} {
		t.Run(fmt.Sprintf("%q", base), func(t *testing.T) {
			t.Parallel()
			if c, err := egress.New(egress.Options{BaseURL: base}); err == nil {
				t.Fatalf("New(%q) = %v, nil; want an error", base, c)
			}
		})
	}
}

// seen is what a test server received.
type seen struct {
	Method string
	URI    string
	Query  url.Values
	Header http.Header
}

// upstream is a loopback test server that records requests and counts
// the TCP connections it accepts.
type upstream struct {
	*httptest.Server
	conns atomic.Int32
	mu    sync.Mutex
	reqs  []seen
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// at returns the server's URL with its host replaced (the port is kept)
// and path appended.
// hostPort is host with the server's port, as extra_hosts names it.
func (u *upstream) hostPort(host string) string {
	p, err := url.Parse(u.URL)
	if err != nil {
		panic(err)
	}
	return net.JoinHostPort(host, p.Port())
}

func (u *upstream) at(host, path string) string {
	p, err := url.Parse(u.URL)
	if err != nil {
		panic(err)
	}
	p.Host = net.JoinHostPort(host, p.Port())
	return p.String() + path
}

func (u *upstream) port() string {
	_, port, err := net.SplitHostPort(u.Listener.Addr().String())
	if err != nil {
		panic(err)
	}
	return port
}

// startUpstream starts a server on 127.0.0.1:0; handler may be nil for a
// plain 200 "ok".
func startUpstream(t *testing.T, useTLS bool, handler http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Method: r.Method, URI: r.RequestURI, Query: r.URL.Query(), Header: r.Header.Clone()})
		u.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	if useTLS {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func newClient(t *testing.T, opts egress.Options) *egress.Client {
	t.Helper()
	c, err := egress.New(opts)
	if err != nil {
		t.Fatalf("egress.New(%+v): %v", opts, err)
	}
	return c
}

// send issues a request through c and drains and closes any response.
func send(t *testing.T, c *egress.Client, rawURL string, header http.Header) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(`{"x":1}`))
	if err != nil {
		t.Fatalf("NewRequest(%q): %v", rawURL, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func TestClientInjectsSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		auth       egress.Auth
		secret     string
		baseHost   string // host used in base_url; the request always uses 127.0.0.1
		path       string
		header     http.Header // set by the plugin
		wantHeader map[string][]string
		wantQuery  url.Values // checked only for the keys listed
	}{
		{
			name:       "bearer header",
			auth:       egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			secret:     secret,
			path:       "/v1/chat/completions",
			header:     http.Header{"Content-Type": {"application/json"}},
			wantHeader: map[string][]string{"Authorization": {"Bearer " + secret}, "Content-Type": {"application/json"}},
		},
		{
			name:       "plugin header of the same name is overwritten",
			auth:       egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			secret:     secret,
			path:       "/v1/models",
			header:     http.Header{"Authorization": {"Bearer plugin-made", "Basic second"}},
			wantHeader: map[string][]string{"Authorization": {"Bearer " + secret}},
		},
		{
			name:       "custom header name in any case",
			auth:       egress.Auth{Type: "header", Name: "x-api-key", Format: "{key}"},
			secret:     secret,
			path:       "/v1/messages",
			header:     http.Header{"X-Api-Key": {"spoofed"}},
			wantHeader: map[string][]string{"X-Api-Key": {secret}},
		},
		{
			name:       "base url host matched case-insensitively",
			auth:       egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			secret:     secret,
			baseHost:   "LOCALHOST",
			path:       "/",
			wantHeader: map[string][]string{"Authorization": {"Bearer " + secret}},
		},
		{
			name:      "query parameter",
			auth:      egress.Auth{Type: "query", Name: "key"},
			secret:    secret,
			path:      "/v1beta/models?alt=sse",
			wantQuery: url.Values{"key": {secret}, "alt": {"sse"}},
		},
		{
			name:      "plugin query parameter of the same name is overwritten",
			auth:      egress.Auth{Type: "query", Name: "key"},
			secret:    secret,
			path:      "/v1beta/models?key=spoofed&key=again&alt=sse",
			wantQuery: url.Values{"key": {secret}, "alt": {"sse"}},
		},
		{
			name:       "auth none leaves the request alone",
			auth:       egress.Auth{Type: "none"},
			secret:     secret,
			path:       "/x?key=mine",
			header:     http.Header{"Authorization": {"Bearer plugin-made"}},
			wantHeader: map[string][]string{"Authorization": {"Bearer plugin-made"}},
			wantQuery:  url.Values{"key": {"mine"}},
		},
		{
			name:       "no secret configured injects nothing",
			auth:       egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
			path:       "/x",
			wantHeader: map[string][]string{"Authorization": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startUpstream(t, false, nil)
			baseHost := tt.baseHost
			if baseHost == "" {
				baseHost = "127.0.0.1"
			}
			c := newClient(t, egress.Options{
				BaseURL:             srv.at(baseHost, ""),
				AllowPrivateNetwork: true,
				Auth:                tt.auth,
				Secret:              tt.secret,
			})
			reqHost := "127.0.0.1"
			if tt.baseHost != "" {
				reqHost = strings.ToLower(tt.baseHost)
			}
			status, err := send(t, c, srv.at(reqHost, tt.path), tt.header)
			if err != nil || status != http.StatusOK {
				t.Fatalf("Do = %d, %v; want 200", status, err)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			for name, want := range tt.wantHeader {
				if vs := got.Header.Values(name); strings.Join(vs, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", name, vs, want)
				}
			}
			for name, want := range tt.wantQuery {
				if vs := got.Query[name]; strings.Join(vs, "|") != strings.Join(want, "|") {
					t.Errorf("query %s = %q, want %q (request %s)", name, vs, want, got.URI)
				}
			}
		})
	}
}

// TestPathConfined: the base URL's host, which gets the secret, is sent
// only requests for the base URL's path and below it, and no host is sent
// a path with a "." or ".." segment (however it is encoded), which the
// server would resolve to somewhere else.
func TestPathConfined(t *testing.T) {
	t.Parallel()
	srv := startUpstream(t, false, nil)
	c := newClient(t, egress.Options{
		BaseURL:             srv.at("127.0.0.1", "/v1beta/"),
		ExtraHosts:          []string{srv.hostPort("localhost")},
		AllowPrivateNetwork: true,
		Auth:                egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
		Secret:              secret,
	})
	for _, path := range []string{"/v1beta", "/v1beta/models", "/v1beta/models/gemini-pro:generateContent?alt=sse"} {
		if status, err := send(t, c, srv.at("127.0.0.1", path), nil); err != nil || status != http.StatusOK {
			t.Errorf("%s: %d, %v; want 200", path, status, err)
		}
	}
	for _, u := range []string{
		srv.at("127.0.0.1", "/v1beta/../../admin/delete-everything?confirm=yes&x=:generateContent"),
		srv.at("127.0.0.1", "/v1beta/%2e%2e/admin"),
		srv.at("127.0.0.1", "/v1beta/%2E%2E%2Fadmin"),
		srv.at("127.0.0.1", "/v1beta/./models"),
		srv.at("127.0.0.1", "/v1betax/models"),
		srv.at("127.0.0.1", "/admin"),
		srv.at("127.0.0.1", "/"),
		srv.at("localhost", "/a/../b"),
	} {
		if status, err := send(t, c, u, nil); !errors.Is(err, egress.ErrPathNotAllowed) || !egress.IsDenied(err) {
			t.Errorf("%s: %d, %v; want ErrPathNotAllowed", u, status, err)
		}
	}
	// Another granted host may be sent any other path (it gets no secret).
	if status, err := send(t, c, srv.at("localhost", "/elsewhere"), nil); err != nil || status != http.StatusOK {
		t.Errorf("extra host: %d, %v", status, err)
	}
	if n := len(srv.requests()); n != 4 {
		t.Errorf("the server saw %d requests, want 4", n)
	}
}

// TestPortsConfined: the base URL's host may be reached on the base URL's
// port only, an extra host on the port it names or, named bare, on 443 and
// 80: a provider on 127.0.0.1 does not open every loopback port to its
// plugin.
func TestPortsConfined(t *testing.T) {
	t.Parallel()
	srv := startUpstream(t, false, nil)
	other := startUpstream(t, false, nil)
	c := newClient(t, egress.Options{BaseURL: srv.at("127.0.0.1", ""), ExtraHosts: []string{"localhost", "[::1]:8443"}, AllowPrivateNetwork: true})
	if status, err := send(t, c, srv.at("127.0.0.1", "/ok"), nil); err != nil || status != http.StatusOK {
		t.Fatalf("base port: %d, %v", status, err)
	}
	for _, u := range []string{
		other.at("127.0.0.1", "/x"), // the base host on another port
		other.at("localhost", "/x"), // a bare extra host on a port it was not given
		"http://[::1]:8444/x",       // an extra host:port on another port
	} {
		if _, err := send(t, c, u, nil); !errors.Is(err, egress.ErrHostNotAllowed) {
			t.Errorf("%s: %v, want ErrHostNotAllowed", u, err)
		}
	}
	if n := len(other.requests()); n != 0 {
		t.Fatalf("the other port saw %d requests", n)
	}
}

func TestHostNotAllowed(t *testing.T) {
	t.Parallel()
	srv := startUpstream(t, false, nil)
	c := newClient(t, egress.Options{
		BaseURL:             srv.at("127.0.0.1", "/v1"),
		ExtraHosts:          []string{"cdn.example.com"},
		AllowPrivateNetwork: true,
		Auth:                egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
		Secret:              secret,
	})
	port := srv.port()
	tests := []struct{ name, url string }{
		{"other name for the same address", "http://localhost:" + port + "/v1/models"},
		{"ipv6 loopback", "http://[::1]:" + port + "/"},
		{"other loopback address", "http://127.0.0.2:" + port + "/"},
		{"suffix of an allowed host", "https://127.0.0.1.evil.example/"},
		{"subdomain of an extra host", "https://eu.cdn.example.com/"},
		{"userinfo that looks like the host", "http://127.0.0.1:" + port + "@evil.example/"},
		{"public host", "https://api.openai.com/v1/models"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := send(t, c, tt.url, nil)
			if !errors.Is(err, egress.ErrHostNotAllowed) {
				t.Fatalf("Do(%s) = %d, %v; want ErrHostNotAllowed", tt.url, status, err)
			}
			if !egress.IsDenied(err) {
				t.Errorf("IsDenied(%v) = false", err)
			}
		})
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections, want none", n)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

func TestExtraHostsGetNoSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth egress.Auth
	}{
		{"header", egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"}},
		{"custom header", egress.Auth{Type: "header", Name: "X-Api-Key", Format: "{key}"}},
		{"query", egress.Auth{Type: "query", Name: "key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := startUpstream(t, false, nil)
			extra := startUpstream(t, false, nil)
			c := newClient(t, egress.Options{
				BaseURL:             base.at("127.0.0.1", "/v1"),
				ExtraHosts:          []string{extra.hostPort("LocalHost")},
				AllowPrivateNetwork: true,
				Auth:                tt.auth,
				Secret:              secret,
			})
			status, err := send(t, c, extra.at("localhost", "/files/1?alt=media"), nil)
			if err != nil || status != http.StatusOK {
				t.Fatalf("Do to extra host = %d, %v; want 200", status, err)
			}
			reqs := extra.requests()
			if len(reqs) != 1 {
				t.Fatalf("extra host saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if v := r.Header.Get(tt.auth.Name); tt.auth.Type == "header" && v != "" {
				t.Errorf("extra host received header %s = %q", tt.auth.Name, v)
			}
			if tt.auth.Type == "query" && r.Query.Has(tt.auth.Name) {
				t.Errorf("extra host received query %s (request %s)", tt.auth.Name, r.URI)
			}
			if strings.Contains(fmt.Sprint(r.Header), secret) || strings.Contains(r.URI, secret) {
				t.Errorf("extra host received the secret: %s %v", r.URI, r.Header)
			}
			if n := len(base.requests()); n != 0 {
				t.Errorf("base host saw %d requests", n)
			}
		})
	}
}

func TestSchemeDenied(t *testing.T) {
	t.Parallel()
	srv := startUpstream(t, false, nil)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name    string
		private bool
		base    string
		url     string
	}{
		{"http without private network", false, "https://" + hostPort, "http://" + hostPort + "/v1/models"},
		{"ftp with private network", true, "http://" + hostPort, "ftp://" + hostPort + "/file"},
		{"ws with private network", true, "http://" + hostPort, "ws://" + hostPort + "/"},
		{"file scheme", true, "http://" + hostPort, "file:///etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, egress.Options{BaseURL: tt.base, AllowPrivateNetwork: tt.private})
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if !errors.Is(err, egress.ErrSchemeDenied) {
				t.Fatalf("Do(%s) error = %v, want ErrSchemeDenied", tt.url, err)
			}
			if !egress.IsDenied(err) {
				t.Errorf("IsDenied(%v) = false", err)
			}
		})
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections, want none", n)
	}
}

func TestPrivateAddressRefusedByDialer(t *testing.T) {
	t.Parallel()
	srv := startUpstream(t, true, nil)
	tests := []struct{ name, host string }{
		{"name resolving to loopback", "localhost"},
		{"loopback literal", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No Transport override: the shared public transport and its
			// dialer check are what is under test.
			c := newClient(t, egress.Options{
				BaseURL:             srv.at(tt.host, "/v1"),
				AllowPrivateNetwork: false,
				Auth:                egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"},
				Secret:              secret,
			})
			status, err := send(t, c, srv.at(tt.host, "/v1/models"), nil)
			if err == nil {
				t.Fatalf("Do = %d, nil; want the dialer to refuse", status)
			}
			if !errors.Is(err, egress.ErrPrivateAddress) {
				t.Fatalf("Do error = %v (%T); want errors.Is ErrPrivateAddress", err, err)
			}
			var ue *url.Error
			if !errors.As(err, &ue) {
				t.Errorf("Do error %T is not a *url.Error", err)
			}
			if !egress.IsDenied(err) {
				t.Errorf("IsDenied(%v) = false", err)
			}
			if egress.IsTimeout(err) {
				t.Errorf("IsTimeout(%v) = true", err)
			}
		})
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections, want none", n)
	}
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	bearer := egress.Auth{Type: "header", Name: "Authorization", Format: "Bearer {key}"}

	t.Run("to a host not granted", func(t *testing.T) {
		t.Parallel()
		target := startUpstream(t, false, nil)
		origin := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.at("localhost", "/stolen"), http.StatusFound)
		})
		c := newClient(t, egress.Options{BaseURL: origin.URL, AllowPrivateNetwork: true, Auth: bearer, Secret: secret})
		_, err := send(t, c, origin.URL+"/start", nil)
		if !errors.Is(err, egress.ErrHostNotAllowed) {
			t.Fatalf("Do error = %v, want ErrHostNotAllowed", err)
		}
		if !egress.IsDenied(err) {
			t.Errorf("IsDenied(%v) = false", err)
		}
		if n := len(origin.requests()); n != 1 {
			t.Errorf("origin saw %d requests, want 1", n)
		}
		if n := target.conns.Load(); n != 0 {
			t.Errorf("redirect target accepted %d connections, want none", n)
		}
	})

	t.Run("https to http without private network", func(t *testing.T) {
		t.Parallel()
		var origin *upstream
		origin = startUpstream(t, true, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://"+r.Host+"/plain", http.StatusMovedPermanently)
		})
		// The test server's own transport trusts its certificate; with it
		// the private-address dialer is out of the way and only the
		// redirect check can refuse.
		c := newClient(t, egress.Options{BaseURL: origin.URL, Auth: bearer, Secret: secret, Transport: origin.Client().Transport})
		_, err := send(t, c, origin.URL+"/start", nil)
		if !errors.Is(err, egress.ErrSchemeDenied) {
			t.Fatalf("Do error = %v, want ErrSchemeDenied", err)
		}
		if n := len(origin.requests()); n != 1 {
			t.Errorf("origin saw %d requests, want 1", n)
		}
	})

	t.Run("same host keeps the secret", func(t *testing.T) {
		t.Parallel()
		origin := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/start" {
				http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
				return
			}
			io.WriteString(w, "done")
		})
		c := newClient(t, egress.Options{BaseURL: origin.URL, AllowPrivateNetwork: true, Auth: bearer, Secret: secret})
		status, err := send(t, c, origin.URL+"/start", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("Do = %d, %v; want 200", status, err)
		}
		reqs := origin.requests()
		if len(reqs) != 2 || reqs[1].URI != "/final" {
			t.Fatalf("origin saw %+v, want /start then /final", reqs)
		}
		if got := reqs[1].Header.Get("Authorization"); got != "Bearer "+secret {
			t.Errorf("redirected request Authorization = %q", got)
		}
	})

	for _, auth := range []egress.Auth{
		{Type: "header", Name: "X-Api-Key", Format: "{key}"},
		{Type: "query", Name: "key"},
	} {
		t.Run("to an extra host drops a "+auth.Type+" secret", func(t *testing.T) {
			t.Parallel()
			extra := startUpstream(t, false, nil)
			origin := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, extra.at("localhost", "/landing"), http.StatusFound)
			})
			c := newClient(t, egress.Options{
				BaseURL: origin.URL, ExtraHosts: []string{extra.hostPort("localhost")}, AllowPrivateNetwork: true, Auth: auth, Secret: secret,
			})
			if status, err := send(t, c, origin.URL+"/start", nil); err != nil || status != http.StatusOK {
				t.Fatalf("Do = %d, %v; want 200", status, err)
			}
			if o := origin.requests(); len(o) != 1 || (o[0].Header.Get("X-Api-Key") != secret && o[0].Query.Get("key") != secret) {
				t.Fatalf("the base host must get the secret: %+v", o)
			}
			reqs := extra.requests()
			if len(reqs) != 1 {
				t.Fatalf("extra host saw %d requests, want 1", len(reqs))
			}
			if reqs[0].Header.Get("X-Api-Key") != "" || reqs[0].Query.Get("key") != "" {
				t.Fatalf("secret followed the redirect to another host: %+v", reqs[0])
			}
		})
	}

	t.Run("to an extra host drops the Authorization secret", func(t *testing.T) {
		t.Parallel()
		extra := startUpstream(t, false, nil)
		origin := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, extra.at("localhost", "/landing"), http.StatusFound)
		})
		c := newClient(t, egress.Options{
			BaseURL: origin.URL, ExtraHosts: []string{extra.hostPort("localhost")}, AllowPrivateNetwork: true, Auth: bearer, Secret: secret,
		})
		status, err := send(t, c, origin.URL+"/start", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("Do = %d, %v; want 200", status, err)
		}
		reqs := extra.requests()
		if len(reqs) != 1 {
			t.Fatalf("extra host saw %d requests, want 1", len(reqs))
		}
		if got := reqs[0].Header.Get("Authorization"); got != "" {
			t.Errorf("extra host received Authorization %q", got)
		}
	})

	t.Run("too many redirects", func(t *testing.T) {
		t.Parallel()
		origin := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/again", http.StatusFound)
		})
		c := newClient(t, egress.Options{BaseURL: origin.URL, AllowPrivateNetwork: true})
		_, err := send(t, c, origin.URL+"/start", nil)
		if err == nil || !strings.Contains(err.Error(), "too many redirects") {
			t.Fatalf("Do error = %v, want too many redirects", err)
		}
		if egress.IsDenied(err) {
			t.Errorf("IsDenied(%v) = true for a redirect loop", err)
		}
		if n := len(origin.requests()); n != 5 {
			t.Errorf("origin saw %d requests, want 5", n)
		}
	})
}

// netErr is a net.Error with a chosen Timeout result.
type netErr struct{ timeout bool }

func (e netErr) Error() string   { return fmt.Sprintf("net error (timeout %v)", e.timeout) }
func (e netErr) Timeout() bool   { return e.timeout }
func (e netErr) Temporary() bool { return false }

func TestIsDeniedAndIsTimeout(t *testing.T) {
	t.Parallel()
	urlErr := func(err error) error { return &url.Error{Op: "Post", URL: "https://x/", Err: err} }
	tests := []struct {
		name                string
		err                 error
		wantDenied, wantTmo bool
	}{
		{name: "nil"},
		{name: "unrelated", err: errors.New("boom")},
		{name: "io.EOF", err: io.EOF},
		{name: "context canceled", err: context.Canceled},
		{name: "host not allowed", err: egress.ErrHostNotAllowed, wantDenied: true},
		{name: "host not allowed wrapped", err: fmt.Errorf("%w: evil.example", egress.ErrHostNotAllowed), wantDenied: true},
		{name: "scheme denied in url.Error", err: urlErr(egress.ErrSchemeDenied), wantDenied: true},
		{name: "private address in OpError in url.Error", err: urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%w: 10.0.0.1", egress.ErrPrivateAddress)}), wantDenied: true},
		{name: "deadline exceeded", err: context.DeadlineExceeded, wantTmo: true},
		{name: "deadline exceeded in url.Error", err: urlErr(fmt.Errorf("read: %w", context.DeadlineExceeded)), wantTmo: true},
		{name: "os deadline", err: os.ErrDeadlineExceeded, wantTmo: true},
		{name: "net.Error timeout", err: urlErr(netErr{timeout: true}), wantTmo: true},
		{name: "net.Error not timeout", err: urlErr(netErr{timeout: false})},
		{name: "joined", err: errors.Join(errors.New("x"), egress.ErrPrivateAddress, context.DeadlineExceeded), wantDenied: true, wantTmo: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := egress.IsDenied(tt.err); got != tt.wantDenied {
				t.Errorf("IsDenied(%v) = %v, want %v", tt.err, got, tt.wantDenied)
			}
			if got := egress.IsTimeout(tt.err); got != tt.wantTmo {
				t.Errorf("IsTimeout(%v) = %v, want %v", tt.err, got, tt.wantTmo)
			}
		})
	}
}

func TestIsTimeoutOnRealDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := startUpstream(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	c := newClient(t, egress.Options{BaseURL: srv.URL, AllowPrivateNetwork: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if resp != nil {
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("Do succeeded against a server that never answers")
	}
	if !egress.IsTimeout(err) {
		t.Errorf("IsTimeout(%v) = false", err)
	}
	if egress.IsDenied(err) {
		t.Errorf("IsDenied(%v) = true", err)
	}
}
