package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/llm-proxy/llm-proxy/host/internal/apierror"
	"github.com/llm-proxy/llm-proxy/host/internal/sessions"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// Sessions is what the server needs of dashboard sessions.
type Sessions interface {
	Login(ctx context.Context, username, password, addr, device string) (string, *sessions.Session, error)
	Start(ctx context.Context, u *users.User) (string, *sessions.Session, error)
	Check(ctx context.Context, token string) (*sessions.Session, error)
	Logout(ctx context.Context, token string) error
	LiveAdmin(token string) bool
	RevokeUser(ctx context.Context, userID string) (int, error)
	TTL() time.Duration
}

// Users is what the server needs of dashboard accounts.
type Users interface {
	List(ctx context.Context) ([]*users.User, error)
	Get(ctx context.Context, username string) (*users.User, error)
	Create(ctx context.Context, username, password, role string, now time.Time) (*users.User, error)
	Authenticate(ctx context.Context, username, password string) (*users.User, error)
	SetPassword(ctx context.Context, username, password string, now time.Time) error
	SetRole(ctx context.Context, username, role string, now time.Time) error
	SetDisabled(ctx context.Context, username string, disabled bool, now time.Time) error
	Delete(ctx context.Context, username string) error
}

const (
	// SessionCookie is the name of the dashboard's session cookie.
	SessionCookie = "llmproxy_session"
	// DeviceCookie holds the browser's device token, which exempts it
	// from the throttling of strangers' failed logins to its account (see
	// package sessions). It is sent to the login route only.
	DeviceCookie = "llmproxy_device"
	// CSRFHeader carries the session's CSRF token on state-changing calls.
	CSRFHeader = "X-CSRF-Token"
)

// principal is who is calling the admin API.
type principal struct {
	session *sessions.Session // nil for the admin key
}

func (p principal) role() string {
	if p.session == nil {
		return users.RoleAdmin
	}
	return p.session.User.Role
}

const principalLocal = "principal"

var errNoAPIAuth = apierror.New(fiber.StatusUnauthorized, apierror.CodeMissingCredentials,
	"This endpoint needs a dashboard session (POST /api/login) or the admin key as 'Authorization: Bearer <key>'.")

func sessionEnded() *apierror.Error {
	return apierror.New(fiber.StatusUnauthorized, apierror.CodeSessionExpired, "Your session has ended; sign in again.")
}

// safeMethod reports methods that change nothing.
func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

// selfService are the state-changing calls a viewer may make on their own
// account.
var selfService = map[string]bool{"/api/session/password": true}

// requireAPI admits the admin key, or a session with its role enforced:
// viewers may read everything and change only their own password; every
// state-changing call made with a session must carry its CSRF token.
func (s *Server) requireAPI(c *fiber.Ctx) error {
	if key := presentedKey(c); key != "" {
		if !s.isAdmin(key) {
			return apierror.New(fiber.StatusUnauthorized, apierror.CodeInvalidAPIKey,
				"This endpoint needs the admin key or a dashboard session; client API keys only work on /v1.")
		}
		c.Locals(keyIDLocal, "admin")
		c.Locals(principalLocal, principal{})
		return c.Next()
	}
	token := c.Cookies(SessionCookie)
	if token == "" || s.opts.Sessions == nil {
		return errNoAPIAuth
	}
	sess, err := s.opts.Sessions.Check(c.UserContext(), token)
	if err != nil {
		if errors.Is(err, sessions.ErrInvalid) {
			s.clearSessionCookie(c)
			return sessionEnded()
		}
		return err
	}
	if !safeMethod(c.Method()) {
		if !csrfMatches(sess, c.Get(CSRFHeader)) {
			return apierror.New(fiber.StatusForbidden, apierror.CodeCSRFFailed,
				"This call needs the session's CSRF token in the "+CSRFHeader+" header (it comes with the login answer and GET /api/session).")
		}
		if sess.User.Role != users.RoleAdmin && !selfService[c.Path()] {
			return apierror.New(fiber.StatusForbidden, apierror.CodePermissionDenied,
				"Your account is a viewer: it can read everything but change nothing. Ask an admin.")
		}
	}
	c.Locals(principalLocal, principal{session: sess})
	return c.Next()
}

func csrfMatches(sess *sessions.Session, header string) bool {
	return sess.CSRF != "" && subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(header)) == 1
}

// deviceCookieAge is how long a browser keeps its device token, in
// seconds: a year, renewed at each login.
const deviceCookieAge = 365 * 24 * 3600

func (s *Server) setSessionCookie(c *fiber.Ctx, token string, sess *sessions.Session) {
	c.Cookie(&fiber.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		Expires: sess.ExpiresAt, MaxAge: int(time.Until(sess.ExpiresAt).Seconds()),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
}

func (s *Server) clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
	})
}

// sessionAnswer is the body of a login and of GET /api/session.
type sessionAnswer struct {
	Auth      string      `json:"auth"` // "session" or "admin_key"
	User      *users.User `json:"user"`
	Role      string      `json:"role"`
	CSRFToken string      `json:"csrf_token,omitempty"`
	ExpiresAt *time.Time  `json:"expires_at,omitempty"`
}

func answerFor(sess *sessions.Session) sessionAnswer {
	return sessionAnswer{Auth: "session", User: sess.User, Role: sess.User.Role, CSRFToken: sess.CSRF, ExpiresAt: &sess.ExpiresAt}
}

// decodeJSON reads a JSON object body into v, refusing other content types
// (a cross-site form cannot send application/json without the browser
// asking first) and unknown fields.
func decodeJSON(c *fiber.Ctx, v any, example string) error {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
	if ct != fiber.MIMEApplicationJSON {
		return apierror.New(fiber.StatusUnsupportedMediaType, apierror.CodeInvalidContentType,
			"Send the body as JSON with 'Content-Type: application/json', e.g. "+example+".")
	}
	dec := json.NewDecoder(strings.NewReader(string(c.Body())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "The body must be a JSON object like " + example + "."
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			msg = "Unknown field " + f + "; expected a body like " + example + "."
		}
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidJSON, msg)
	}
	return nil
}

const loginExample = `{"username": "alice", "password": "..."}`

// login answers POST /api/login.
func (s *Server) login(c *fiber.Ctx) error {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(c, &req, loginExample); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeInvalidRequest, "Both username and password are required.")
	}
	token, sess, err := s.opts.Sessions.Login(c.UserContext(), req.Username, req.Password, s.clientAddr(c), c.Cookies(DeviceCookie))
	var te *sessions.ThrottledError
	switch {
	case errors.As(err, &te):
		e := apierror.New(fiber.StatusTooManyRequests, apierror.CodeTooManyLoginAttempts,
			"Too many failed sign-ins; wait before trying again.")
		e.RetryAfter = strconv.Itoa(int(math.Ceil(te.RetryAfter.Seconds())))
		return e
	case errors.Is(err, sessions.ErrBadLogin):
		return apierror.New(fiber.StatusUnauthorized, apierror.CodeInvalidCredentials, "Incorrect username or password.")
	case err != nil:
		return err
	}
	s.setSessionCookie(c, token, sess)
	if sess.Device != "" {
		c.Cookie(&fiber.Cookie{
			Name: DeviceCookie, Value: sess.Device, Path: "/api/login", MaxAge: deviceCookieAge,
			Expires:  time.Now().Add(deviceCookieAge * time.Second),
			HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: c.Protocol() == "https",
		})
	}
	s.log.Info("dashboard login", "user", sess.User.Username, "role", sess.User.Role, "addr", s.clientAddr(c))
	return c.JSON(answerFor(sess))
}

// logout answers POST /api/logout. It always clears the cookie; a live
// session must prove it is the page's own call with its CSRF token.
func (s *Server) logout(c *fiber.Ctx) error {
	token := c.Cookies(SessionCookie)
	if token != "" {
		if sess, err := s.opts.Sessions.Check(c.UserContext(), token); err == nil {
			if !csrfMatches(sess, c.Get(CSRFHeader)) {
				return apierror.New(fiber.StatusForbidden, apierror.CodeCSRFFailed,
					"Logging out needs the session's CSRF token in the "+CSRFHeader+" header.")
			}
			if err := s.opts.Sessions.Logout(c.UserContext(), token); err != nil {
				return err
			}
		}
	}
	s.clearSessionCookie(c)
	return c.JSON(fiber.Map{"ok": true})
}

// session answers GET /api/session: who is calling, and the CSRF token the
// page needs after a reload.
func (s *Server) session(c *fiber.Ctx) error {
	p := c.Locals(principalLocal).(principal)
	if p.session == nil {
		return c.JSON(sessionAnswer{Auth: "admin_key", Role: users.RoleAdmin})
	}
	return c.JSON(answerFor(p.session))
}

// changeOwnPassword answers POST /api/session/password. Every session of
// the account ends, and the caller gets a new one in its cookie.
func (s *Server) changeOwnPassword(c *fiber.Ctx) error {
	p := c.Locals(principalLocal).(principal)
	if p.session == nil {
		return apierror.New(fiber.StatusBadRequest, apierror.CodeNoSession,
			"The admin key has no password; use PATCH /api/users/{username} to set a user's password.")
	}
	var req struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decodeJSON(c, &req, `{"current_password": "...", "new_password": "..."}`); err != nil {
		return err
	}
	ctx := c.UserContext()
	u := p.session.User
	if _, err := s.opts.Users.Authenticate(ctx, u.Username, req.Current); err != nil {
		if errors.Is(err, users.ErrBadLogin) {
			return apierror.New(fiber.StatusForbidden, apierror.CodeInvalidCredentials, "The current password is wrong.").WithParam("current_password")
		}
		return err
	}
	if err := s.opts.Users.SetPassword(ctx, u.Username, req.New, time.Now()); err != nil {
		return userError(err, "new_password")
	}
	if _, err := s.opts.Sessions.RevokeUser(ctx, u.ID); err != nil {
		return err
	}
	fresh, err := s.opts.Users.Get(ctx, u.Username)
	if err != nil {
		return err
	}
	token, sess, err := s.opts.Sessions.Start(ctx, fresh)
	if err != nil {
		return err
	}
	s.setSessionCookie(c, token, sess)
	return c.JSON(answerFor(sess))
}
