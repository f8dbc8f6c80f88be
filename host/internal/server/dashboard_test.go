package server

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/llm-proxy/llm-proxy/host/internal/router"
)

func TestDashboardServing(t *testing.T) {
	s := New(Options{
		Router:   router.NewLive(router.New(nil, nil)),
		Plugins:  noPlugins{},
		AdminKey: "k",
		Dashboard: fstest.MapFS{
			"index.html":             {Data: []byte("<!doctype html><title>console</title>")},
			"app/main.js":            {Data: []byte("export {};")},
			"app/style.css":          {Data: []byte("body{}")},
			"vendor/lib-1.0/lib.js":  {Data: []byte("var lib;")},
			"dashboard.go":           {Data: []byte("package dashboard")},
			"vendor/lib-1.0/LICENSE": {Data: []byte("MIT")},
		},
	})
	get := func(path string, header ...string) (int, map[string]string, string) {
		t.Helper()
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		h := map[string]string{}
		for k := range resp.Header {
			h[k] = resp.Header.Get(k)
		}
		return resp.StatusCode, h, string(b)
	}

	cases := []struct {
		path        string
		status      int
		ctype, body string
		cache       string
	}{
		{"/", 200, "text/html; charset=utf-8", "<title>console</title>", "no-cache"},
		{"/index.html", 200, "text/html; charset=utf-8", "<title>console</title>", "no-cache"},
		{"/logs", 200, "text/html; charset=utf-8", "<title>console</title>", "no-cache"},          // a page route
		{"/logs/req_0123", 200, "text/html; charset=utf-8", "<title>console</title>", "no-cache"}, // a deeper one
		{"/app/main.js", 200, "text/javascript; charset=utf-8", "export {};", "no-cache"},
		{"/app/style.css", 200, "text/css; charset=utf-8", "body{}", "no-cache"},
		{"/vendor/lib-1.0/lib.js", 200, "text/javascript; charset=utf-8", "var lib;", "public, max-age=31536000, immutable"},
		{"/app/missing.js", 404, "application/json", `"code":"unknown_url"`, ""},    // not the page
		{"/dashboard.go", 404, "application/json", `"code":"unknown_url"`, ""},      // not a browser file
		{"/vendor/lib-1.0/LICENSE", 200, "text/html; charset=utf-8", "console", ""}, // no extension: a route
		{"/api/nothing", 401, "application/json", `"code":"missing_credentials"`, ""},
		{"/v1/models", 401, "application/json", `"code":"missing_api_key"`, ""},
		{"/healthz", 200, "application/json", `"status":"ok"`, ""},
	}
	for _, tc := range cases {
		status, h, body := get(tc.path)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.path, status, tc.status, body)
			continue
		}
		if h["Content-Type"] != tc.ctype || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %q %q", tc.path, h["Content-Type"], body)
		}
		if tc.cache != "" {
			if h["Cache-Control"] != tc.cache {
				t.Errorf("%s: Cache-Control %q, want %q", tc.path, h["Cache-Control"], tc.cache)
			}
			for k, want := range map[string]string{
				"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
			} {
				if h[k] != want {
					t.Errorf("%s: %s %q, want %q", tc.path, k, h[k], want)
				}
			}
			csp := h["Content-Security-Policy"]
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "frame-ancestors 'none'", "object-src 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: CSP %q lacks %q", tc.path, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("%s: CSP allows something unsafe: %q", tc.path, csp)
			}
		}
	}

	// Other methods are not the console's: an unknown URL stays a 404.
	for _, path := range []string{"/", "/logs", "/app/main.js"} {
		resp, err := s.App().Test(httptest.NewRequest("POST", path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("POST %s: %d, want 404", path, resp.StatusCode)
		}
	}

	// Unchanged files are revalidated for nothing.
	_, h, _ := get("/app/main.js")
	if status, _, body := get("/app/main.js", "If-None-Match", h["Etag"]); status != 304 || body != "" {
		t.Errorf("revalidation: %d %q", status, body)
	}
	if status, _, _ := get("/app/main.js", "If-None-Match", `"something else"`); status != 200 {
		t.Errorf("stale ETag: %d", status)
	}
}
