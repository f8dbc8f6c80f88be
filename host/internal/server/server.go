// Package server is LLM Proxy's HTTP layer, on Fiber. It has two faces
// and the health endpoints:
//
//   - the OpenAI-compatible /v1 face (v1*.go): client keys, limits,
//     routing with its retries, the plugin call and the answer or stream;
//   - the admin /api face (api*.go): the dashboard's sessions and users,
//     keys, providers, routes, plugins, the request log, settings and the
//     live events.
//
// Every error either face gives is an [apierror.Error] with one of the
// codes of package apierror.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jmoiron/sqlx"
	"github.com/valyala/fasthttp"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/keys"
	"github.com/llm-proxy/llm-proxy/host/internal/limits"
	"github.com/llm-proxy/llm-proxy/host/internal/metrics"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/pricing"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/router"
	"github.com/llm-proxy/llm-proxy/host/internal/tracing"
)

// Plugins is what the server needs of the plugin registry.
type Plugins interface {
	Lookup(name string) (*plugin.Version, error)
	List() []plugin.Info
	Ready() bool
	Install(ctx context.Context, file string, data []byte) (plugin.Info, error)
}

// MaxPluginUpload is the largest plugin file PUT /api/plugins/{file}
// accepts; every other request is held to Options.MaxBodyBytes.
const MaxPluginUpload = 64 << 20

// Requests receives every finished /v1 request (the async request log). Log
// must not block.
type Requests interface {
	Log(requestlog.Entry)
	Stats() requestlog.Stats
}

// Keys is what the server needs of the client API keys.
type Keys interface {
	Authenticate(presented string, now time.Time) (*keys.Key, error)
	Create(ctx context.Context, req keys.CreateRequest, now time.Time) (string, *keys.Key, error)
	List() []*keys.Key
	Revoke(ctx context.Context, id string, now time.Time) (*keys.Key, error)
	Rotate(ctx context.Context, id string) (string, *keys.Key, error)
	Update(ctx context.Context, id string, p keys.Patch, now time.Time) (*keys.Key, error)
}

// Options configure a Server.
type Options struct {
	Router *router.Live // the providers; swapped when they change
	// Health keeps every target's breaker and latency; nil makes one with
	// the default breaker.
	Health *router.Health
	// Routing sets how requests are retried.
	Routing Routing
	// Limits enforces client keys' limits; optional.
	Limits  *limits.Keeper
	Plugins Plugins
	// DatabaseUp, when set, reports whether the database answers;
	// /readyz fails while it does not.
	DatabaseUp func() bool
	Keys       Keys // optional: without it only the admin key is accepted
	// Sessions and Users enable dashboard logins and /api/users; both or
	// neither. Without them the admin API takes the admin key only.
	Sessions Sessions
	Users    Users
	// Hub, when set, feeds GET /api/ws and gets request.started events.
	Hub *hub.Hub
	// Providers answers /api/providers; optional.
	Providers Providers
	// Routes answers /api/routes; optional.
	Routes Routes
	// Dashboard is the web console's files, served at "/"; optional.
	Dashboard fs.FS
	// LogDB answers /api/logs and /api/usage (a read-only pool); optional.
	LogDB *sqlx.DB
	// Metrics counts requests for GET /metrics; optional (nil counts
	// nothing). ServeMetrics serves them on this server, to the admin key
	// and to MetricsToken, if set.
	Metrics      *metrics.Metrics
	ServeMetrics bool
	MetricsToken string
	// Tracer traces the /v1 requests; nil when tracing is off.
	Tracer *tracing.Tracer
	// Prices turns each request's tokens into its cost; optional.
	Prices   pricing.Table
	Requests Requests // optional
	// Responses keeps the Responses API's responses for ResponsesTTL;
	// without either, none is kept and previous_response_id is refused.
	Responses    ResponseStore
	ResponsesTTL time.Duration
	AdminKey     string
	MaxBodyBytes int
	LogBodyBytes int // above 0: bytes of each /v1 body kept for the request log ([logs] bodies); see SetLogBodyBytes
	// Settings answers /api/settings; optional.
	Settings SettingsStore
	// Replicas lists the proxy processes on the database for
	// GET /api/replicas; optional.
	Replicas    func(ctx context.Context) ([]Replica, error)
	ReadTimeout time.Duration
	// WriteTimeout drops a streaming client that reads nothing for this
	// long while output waits for it; 0 never drops one.
	WriteTimeout time.Duration
	// TrustedProxies are the reverse proxies (IPs or CIDR ranges) whose
	// X-Forwarded-For and X-Forwarded-Proto are believed; from anyone else
	// those headers are ignored.
	TrustedProxies []string
	Logger         *slog.Logger
}

// Server serves the API.
type Server struct {
	app      *fiber.App
	opts     Options
	log      *slog.Logger
	adminKey [32]byte
	// writeTimeout is Options.WriteTimeout.
	writeTimeout time.Duration
	proxies      proxies      // Options.TrustedProxies
	inFlight     atomic.Int64 // /v1 requests begun and not yet logged
	// logBodyBytes is how much of each /v1 body the request log keeps; 0
	// keeps none. It changes at run time with the body logging setting.
	logBodyBytes atomic.Int64
}

// SetLogBodyBytes turns body logging on (n > 0 bytes kept per body) or off
// (0) for the requests that start from now on.
func (s *Server) SetLogBodyBytes(n int) { s.logBodyBytes.Store(int64(n)) }

// InFlight is the number of /v1 requests being served.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// New builds the server and its routes.
//
// Router and Plugins are required (the /v1 face serves through them), and
// Sessions and Users go together: New panics without them, a mistake in
// the caller's code rather than in anyone's input.
func New(o Options) *Server {
	switch {
	case o.Router == nil || o.Plugins == nil:
		panic("server.New: Options.Router and Options.Plugins are required")
	case (o.Sessions == nil) != (o.Users == nil):
		panic("server.New: Options.Sessions and Options.Users go together")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.Health == nil {
		o.Health = router.NewHealth(router.DefaultBreaker, nil)
	}
	s := &Server{opts: o, log: o.Logger, adminKey: sha256.Sum256([]byte(o.AdminKey)), writeTimeout: o.WriteTimeout,
		proxies: parseProxies(o.TrustedProxies)}
	s.logBodyBytes.Store(int64(o.LogBodyBytes))
	s.app = fiber.New(fiber.Config{
		AppName:               "llm-proxy",
		BodyLimit:             o.MaxBodyBytes,
		ReadTimeout:           o.ReadTimeout,
		DisableStartupMessage: true,
		UnescapePath:          true,
		// X-Forwarded-Proto decides c.Protocol() (and so the Secure flag of
		// the session cookie) only on connections from a trusted proxy.
		EnableTrustedProxyCheck: true,
		TrustedProxies:          o.TrustedProxies,
		ErrorHandler:            s.handleError,
	})
	s.app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	s.app.Get("/readyz", s.readyz)

	if o.ServeMetrics && o.Metrics != nil {
		s.metricsRoute()
	}
	s.v1Face()
	s.apiFace()
	if o.Dashboard != nil {
		s.dashboardRoutes()
	}
	return s
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting connections and waits up to timeout for the
// requests in flight, streams included.
func (s *Server) Shutdown(timeout time.Duration) error { return s.app.ShutdownWithTimeout(timeout) }

// App exposes the Fiber app (tests use app.Test).
func (s *Server) App() *fiber.App { return s.app }

func (s *Server) readyz(c *fiber.Ctx) error {
	if s.opts.Plugins.Ready() && (s.opts.DatabaseUp == nil || s.opts.DatabaseUp()) {
		return c.JSON(fiber.Map{"status": "ready"})
	}
	// Unauthenticated: the status only. Which plugin failed and why is
	// for an admin, in GET /api/plugins; a database that does not answer
	// is in the log.
	return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "not ready"})
}

// presentedKey reads "Authorization: Bearer <key>" (or "x-api-key").
func presentedKey(c *fiber.Ctx) string {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		return bearer(h)
	}
	return c.Get("x-api-key")
}

// bearer is the key of an "Authorization: Bearer <key>" header value, ""
// for any other scheme.
func bearer(h string) string {
	scheme, rest, ok := strings.Cut(h, " ")
	if ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(rest)
	}
	return ""
}

var errMissingKey = apierror.New(fiber.StatusUnauthorized, apierror.CodeMissingAPIKey,
	"You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")

func (s *Server) isAdmin(key string) bool {
	sum := sha256.Sum256([]byte(key))
	return s.opts.AdminKey != "" && subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) == 1
}

// requireClient accepts the admin key or a valid client key.
func (s *Server) requireClient(c *fiber.Ctx) error {
	key := presentedKey(c)
	if key == "" {
		return errMissingKey
	}
	if s.isAdmin(key) {
		c.Locals(keyIDLocal, "admin")
		return c.Next()
	}
	if s.opts.Keys != nil {
		k, err := s.opts.Keys.Authenticate(key, time.Now())
		switch {
		case err == nil:
			c.Locals(keyIDLocal, k.ID)
			c.Locals(keyLocal, k)
			return c.Next()
		case errors.Is(err, keys.ErrExpired):
			return apierror.New(fiber.StatusUnauthorized, apierror.CodeExpiredAPIKey, "This API key has expired.")
		case errors.Is(err, keys.ErrRevoked):
			return apierror.New(fiber.StatusUnauthorized, apierror.CodeRevokedAPIKey, "This API key has been revoked.")
		}
	}
	return apierror.New(fiber.StatusUnauthorized, apierror.CodeInvalidAPIKey, "Incorrect API key provided.")
}

const keyLocal = "client_key"

const keyIDLocal = "key_id"

// handleError writes every error as OpenAI-shaped JSON (Anthropic-shaped
// under /v1/messages).
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	var ae *apierror.Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		switch fe.Code {
		case fiber.StatusNotFound:
			ae = apierror.New(fe.Code, apierror.CodeUnknownURL, "Unknown request URL: "+c.Method()+" "+c.Path())
		case fiber.StatusMethodNotAllowed:
			ae = apierror.New(fe.Code, apierror.CodeMethodNotAllowed, "Method "+c.Method()+" is not allowed on "+c.Path())
		case fiber.StatusRequestEntityTooLarge:
			ae = apierror.New(fe.Code, apierror.CodeRequestTooLarge,
				"The request body is larger than the limit of "+strconv.Itoa(s.opts.MaxBodyBytes)+" bytes.")
		default:
			ae = apierror.New(fe.Code, apierror.NoCode, fe.Message)
		}
	default:
		s.log.Error("internal error", "path", c.Path(), "err", err)
		ae = apierror.New(fiber.StatusInternalServerError, apierror.CodeInternalError, "The proxy failed to handle the request.")
	}
	if ae.RetryAfter != "" {
		c.Set(fiber.HeaderRetryAfter, ae.RetryAfter)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(ae.Status).Send(s.errorBody(c, ae))
}

// newRequestID makes ids that sort by time (6 bytes of Unix milliseconds,
// then 6 random bytes), so request log rows land at the end of the primary
// key index instead of at random places in it.
func newRequestID() string {
	var b [12]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	return "req_" + hex.EncodeToString(b[:])
}

// mayUpload is the cheap check made on a plugin upload's headers, before
// its body is read: the admin key, or a session cookie that is genuine and
// live in this process. requireAPI then checks the caller fully.
func (s *Server) mayUpload(h *fasthttp.RequestHeader) bool {
	if auth := string(h.Peek(fiber.HeaderAuthorization)); auth != "" {
		return s.isAdmin(bearer(auth))
	}
	token := string(h.Cookie(SessionCookie))
	return token != "" && s.opts.Sessions != nil && s.opts.Sessions.LiveAdmin(token)
}
