package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// The web console's response headers. The page loads only its own files
// (no inline script or style, no other origin), talks only to its own
// origin (the WebSocket included: CSP's 'self' covers ws: and wss: on the
// same host), and may not be framed.
const (
	dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; " +
		"form-action 'self'; frame-ancestors 'none'"
	// Files under vendor/ carry their version in the path, so they never
	// change under one URL; the console's own files and the page are
	// revalidated on every load (a cheap 304 while they are unchanged), so
	// an upgraded binary is picked up at once.
	cacheImmutable   = "public, max-age=31536000, immutable"
	cacheRevalidate  = "no-cache"
	dashboardIndex   = "index.html"
	dashboardVendors = "vendor/"
)

// staticFile is one console file, read once at start.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
	cache       string
}

// consoleTypes are the content types of the files the console ships,
// fixed here rather than read from the system's MIME tables, which vary
// from machine to machine.
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

// dashboardRoutes serves the web console from opts.Dashboard at "/":
// its files by their paths, and index.html for "/" and every other path
// that names no file, so the page's own routes (/logs, /keys ...) survive
// a reload. /api and /v1 are never answered here, whatever order the
// routes were registered in.
func (s *Server) dashboardRoutes() {
	files := map[string]*staticFile{}
	err := fs.WalkDir(s.opts.Dashboard, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := consoleTypes[path.Ext(p)]
		if !ok {
			return nil // Go sources and anything else not meant for the browser
		}
		b, err := fs.ReadFile(s.opts.Dashboard, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := &staticFile{body: b, contentType: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, cache: cacheRevalidate}
		if strings.HasPrefix(p, dashboardVendors) {
			f.cache = cacheImmutable
		}
		files[p] = f
		return nil
	})
	if err != nil {
		s.log.Error("dashboard files unreadable; the console is not served", "err", err)
		return
	}
	index := files[dashboardIndex]
	// A middleware rather than a GET route: Fiber answers 405 to any
	// method on a path that some route of another method matches, and a
	// GET route for every path would turn each unknown POST into a 405.
	s.app.Use(func(c *fiber.Ctx) error {
		p := c.Path()
		if (c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead) || isAPIPath(p) {
			return c.Next()
		}
		name := strings.TrimPrefix(path.Clean(p), "/")
		f := files[name]
		if f == nil {
			// A missing script or style is a 404, not the page: the
			// browser would otherwise report a confusing type error.
			if path.Ext(name) != "" || index == nil {
				return c.Next()
			}
			f = index
		}
		setPageHeaders(c)
		c.Set(fiber.HeaderCacheControl, f.cache)
		c.Set(fiber.HeaderETag, f.etag)
		if match := c.Get(fiber.HeaderIfNoneMatch); match != "" && strings.Contains(match, f.etag) {
			return c.SendStatus(fiber.StatusNotModified)
		}
		c.Set(fiber.HeaderContentType, f.contentType)
		return c.Send(f.body)
	})
}

// isAPIPath reports the paths that belong to the APIs and health checks,
// never to the console.
func isAPIPath(p string) bool {
	for _, prefix := range []string{"/api", "/v1"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return p == "/healthz" || p == "/readyz" || p == "/metrics"
}

func setPageHeaders(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", dashboardCSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
}
