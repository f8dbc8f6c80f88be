package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// browser is a dashboard client: a cookie jar, and the CSRF token of its
// last login.
type browser struct {
	t    *testing.T
	p    *proxy
	c    *http.Client
	csrf string
	hdr  http.Header // sent with every call
}

func newBrowser(t *testing.T, p *proxy) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, p: p, c: &http.Client{Jar: jar}, hdr: http.Header{}}
}

type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// errorCode is the error's code (its specific kind; type is the class).
func (a apiAnswer) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// call sends a request with the jar's cookies; csrf is the header value
// ("" sends none).
func (b *browser) call(method, path, body, csrf string) apiAnswer {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.p.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	for k, v := range b.hdr {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return apiAnswer{resp.StatusCode, resp.Header, buf.Bytes()}
}

func (b *browser) login(user, pw string) apiAnswer {
	b.t.Helper()
	a := b.call("POST", "/api/login", `{"username":`+strconv.Quote(user)+`,"password":`+strconv.Quote(pw)+`}`, "")
	if a.status == 200 {
		var s struct {
			CSRF string `json:"csrf_token"`
		}
		json.Unmarshal(a.body, &s)
		b.csrf = s.CSRF
	}
	return a
}

func (b *browser) cookie() string {
	for _, c := range b.c.Jar.Cookies(mustURL(b.p.URL)) {
		if c.Name == "llmproxy_session" {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(v string) {
	b.c.Jar.SetCookies(mustURL(b.p.URL), []*http.Cookie{{Name: "llmproxy_session", Value: v, Path: "/"}})
}

func expect(t *testing.T, what string, a apiAnswer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.errorCode() != code) {
		t.Fatalf("%s: got %d %s, want %d %s", what, a.status, a.body, status, code)
	}
}

func createUser(t *testing.T, p *proxy, name, pw, role string) {
	t.Helper()
	status, body := adminCall(t, p, "POST", "/api/users",
		`{"username":`+strconv.Quote(name)+`,"password":`+strconv.Quote(pw)+`,"role":"`+role+`"}`)
	if status != 201 {
		t.Fatalf("create user %s: %d %s", name, status, body)
	}
}

func TestDashboardSessions(t *testing.T) {
	if raceEnabled {
		// The session code runs under the race detector in the sessions
		// package's tests; here each bcrypt hash (cost 12) would take
		// seconds. `go tool task test` runs this test without -race.
		t.Skip("dozens of bcrypt hashes are too slow under the race detector; run without -race")
	}
	p := startProxy(t, nil)
	createUser(t, p, "alice", "alice password", "admin")
	createUser(t, p, "victor", "victor password", "viewer")

	t.Run("login", func(t *testing.T) {
		b := newBrowser(t, p)
		wrong := b.login("alice", "not her password")
		expect(t, "wrong password", wrong, 401, "invalid_credentials")
		unknown := b.login("nobody", "alice password")
		expect(t, "unknown user", unknown, 401, "invalid_credentials")
		if !bytes.Equal(wrong.body, unknown.body) {
			t.Fatalf("a wrong password and an unknown user differ:\n%s\n%s", wrong.body, unknown.body)
		}
		if b.cookie() != "" {
			t.Fatal("a failed login set a cookie")
		}
		expect(t, "not JSON", b.call("POST", "/api/login", "", ""), 415, "invalid_content_type")

		ok := b.login("alice", "alice password")
		expect(t, "login", ok, 200, "")
		set := ok.header.Get("Set-Cookie")
		for _, want := range []string{"llmproxy_session=", "HttpOnly", "SameSite=Strict", "Path=/", "max-age=43"} {
			if !strings.Contains(strings.ToLower(set), strings.ToLower(want)) {
				t.Errorf("Set-Cookie %q lacks %q", set, want)
			}
		}
		if strings.Contains(strings.ToLower(set), "secure") {
			t.Errorf("Secure cookie over plain http: %q", set)
		}
		var s struct {
			Auth string `json:"auth"`
			Role string `json:"role"`
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			CSRF string `json:"csrf_token"`
		}
		a := b.call("GET", "/api/session", "", "")
		json.Unmarshal(a.body, &s)
		if a.status != 200 || s.Auth != "session" || s.Role != "admin" || s.User.Username != "alice" || s.CSRF != b.csrf || len(s.CSRF) != 32 {
			t.Fatalf("session: %d %s", a.status, a.body)
		}
		expect(t, "read with a session", b.call("GET", "/api/keys", "", ""), 200, "")

		// A client cannot mark its cookie Secure by claiming https: the
		// proxy trusts no forwarding headers by default (see
		// TestLoginBehindProxy for a trusted one).
		b.hdr.Set("X-Forwarded-Proto", "https")
		if set := b.login("alice", "alice password").header.Get("Set-Cookie"); strings.Contains(strings.ToLower(set), "secure") {
			t.Errorf("X-Forwarded-Proto from an untrusted client made the cookie Secure: %q", set)
		}
	})

	t.Run("csrf", func(t *testing.T) {
		b := newBrowser(t, p)
		expect(t, "login", b.login("alice", "alice password"), 200, "")
		body := `{"name":"from the dashboard"}`
		expect(t, "no token", b.call("POST", "/api/keys", body, ""), 403, "csrf_failed")
		expect(t, "wrong token", b.call("POST", "/api/keys", body, strings.Repeat("0", 32)), 403, "csrf_failed")
		other := newBrowser(t, p)
		expect(t, "login", other.login("alice", "alice password"), 200, "")
		expect(t, "another session's token", b.call("POST", "/api/keys", body, other.csrf), 403, "csrf_failed")
		expect(t, "right token", b.call("POST", "/api/keys", body, b.csrf), 201, "")
	})

	t.Run("tampered", func(t *testing.T) {
		b := newBrowser(t, p)
		expect(t, "login", b.login("alice", "alice password"), 200, "")
		good := b.cookie()
		for _, bad := range []string{
			good[:len(good)-1] + string("AB"[strings.IndexByte("AB", good[len(good)-1])+1&1]), // last char of the MAC
			"x" + good[1:],                    // first char of the payload
			strings.Replace(good, ".", "", 1), // no separator
			good + "A",                        // longer MAC
			"not a token at all",              //
		} {
			b.setCookie(bad)
			a := b.call("GET", "/api/session", "", "")
			expect(t, "tampered "+bad, a, 401, "session_expired")
		}
		// The real token still works: tampering ended nothing.
		b.setCookie(good)
		expect(t, "untouched", b.call("GET", "/api/session", "", ""), 200, "")
	})

	t.Run("expired", func(t *testing.T) {
		// A genuine token, signed with the proxy's key, that expired an
		// hour ago.
		key, err := secrets.ParseKey(testEncryptionKey)
		if err != nil {
			t.Fatal(err)
		}
		u, err := users.New(p.App.Store()).Get(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		token, _, err := key.IssueSession(u.ID, u.Role, time.Hour, time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t, p)
		b.setCookie(token)
		a := b.call("GET", "/api/keys", "", "")
		expect(t, "expired", a, 401, "session_expired")
		if !strings.Contains(a.header.Get("Set-Cookie"), "llmproxy_session=;") {
			t.Errorf("the stale cookie was not cleared: %q", a.header.Get("Set-Cookie"))
		}
	})

	t.Run("logout", func(t *testing.T) {
		b := newBrowser(t, p)
		expect(t, "login", b.login("alice", "alice password"), 200, "")
		token := b.cookie()
		expect(t, "logout without csrf", b.call("POST", "/api/logout", "", ""), 403, "csrf_failed")
		expect(t, "logout", b.call("POST", "/api/logout", "", b.csrf), 200, "")
		if b.cookie() != "" {
			t.Fatal("logout left the cookie")
		}
		b.setCookie(token) // a copy of the cookie kept by an attacker
		expect(t, "after logout", b.call("GET", "/api/session", "", ""), 401, "session_expired")
		expect(t, "logout again", b.call("POST", "/api/logout", "", ""), 200, "")
	})

	t.Run("viewer", func(t *testing.T) {
		b := newBrowser(t, p)
		expect(t, "login", b.login("victor", "victor password"), 200, "")
		for _, path := range []string{"/api/keys", "/api/plugins", "/api/logs", "/api/usage", "/api/users", "/api/stats"} {
			expect(t, "viewer reads "+path, b.call("GET", path, "", ""), 200, "")
		}
		for _, c := range [][3]string{
			{"POST", "/api/keys", `{"name":"sneaky"}`},
			{"POST", "/api/users", `{"username":"mallory","password":"mallory password","role":"admin"}`},
			{"PATCH", "/api/users/victor", `{"role":"admin"}`},
			{"DELETE", "/api/users/alice", ""},
		} {
			expect(t, "viewer "+c[0]+" "+c[1], b.call(c[0], c[1], c[2], b.csrf), 403, "permission_denied")
		}
		if status, body := adminCall(t, p, "GET", "/api/users/victor", ""); status != 200 || !strings.Contains(string(body), `"role":"viewer"`) {
			t.Fatalf("the viewer changed itself: %s", body)
		}
		if status, body := adminCall(t, p, "GET", "/api/keys", ""); status != 200 || strings.Contains(string(body), "sneaky") {
			t.Fatalf("the viewer made a key: %s", body)
		}
	})

	t.Run("password change", func(t *testing.T) {
		old, other := newBrowser(t, p), newBrowser(t, p)
		expect(t, "login", old.login("victor", "victor password"), 200, "")
		expect(t, "login", other.login("victor", "victor password"), 200, "")
		oldToken := old.cookie()
		expect(t, "wrong current password", old.call("POST", "/api/session/password",
			`{"current_password":"nope nope","new_password":"victor 2nd password"}`, old.csrf), 403, "invalid_credentials")
		expect(t, "too short", old.call("POST", "/api/session/password",
			`{"current_password":"victor password","new_password":"short"}`, old.csrf), 400, "invalid_request")
		a := old.call("POST", "/api/session/password", `{"current_password":"victor password","new_password":"victor 2nd password"}`, old.csrf)
		expect(t, "own password", a, 200, "")
		// The caller got a new session; every other one ended.
		if old.cookie() == oldToken || old.cookie() == "" {
			t.Fatal("no new session after the change")
		}
		expect(t, "new session", old.call("GET", "/api/session", "", ""), 200, "")
		expect(t, "other session", other.call("GET", "/api/session", "", ""), 401, "session_expired")
		stale := newBrowser(t, p)
		stale.setCookie(oldToken)
		expect(t, "old session", stale.call("GET", "/api/session", "", ""), 401, "session_expired")
		expect(t, "old password", newBrowser(t, p).login("victor", "victor password"), 401, "invalid_credentials")

		// An admin resets it: the user's sessions end again.
		if status, body := adminCall(t, p, "PATCH", "/api/users/victor", `{"password":"victor password"}`); status != 200 {
			t.Fatalf("reset: %d %s", status, body)
		}
		expect(t, "after an admin reset", old.call("GET", "/api/session", "", ""), 401, "session_expired")

		// The command line (another process, straight to the database).
		expect(t, "login", old.login("victor", "victor password"), 200, "")
		// The change time is stored in milliseconds: one made within the
		// login's millisecond would not count as later. Make it the next.
		if err := users.New(p.App.Store()).SetPassword(context.Background(), "victor", "victor 3rd password", time.Now().Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		expect(t, "after a change by another process", old.call("GET", "/api/session", "", ""), 401, "session_expired")
		if status, body := adminCall(t, p, "PATCH", "/api/users/victor", `{"password":"victor password"}`); status != 200 {
			t.Fatalf("reset: %d %s", status, body)
		}
	})

	t.Run("disabled and removed", func(t *testing.T) {
		createUser(t, p, "walter", "walter password", "viewer")
		b := newBrowser(t, p)
		expect(t, "login", b.login("walter", "walter password"), 200, "")
		if status, body := adminCall(t, p, "PATCH", "/api/users/walter", `{"disabled":true}`); status != 200 {
			t.Fatalf("disable: %d %s", status, body)
		}
		expect(t, "disabled", b.call("GET", "/api/session", "", ""), 401, "session_expired")
		expect(t, "disabled login", b.login("walter", "walter password"), 401, "invalid_credentials")
		adminCall(t, p, "PATCH", "/api/users/walter", `{"disabled":false}`)
		expect(t, "login", b.login("walter", "walter password"), 200, "")
		if status, body := adminCall(t, p, "DELETE", "/api/users/walter", ""); status != 200 {
			t.Fatalf("delete: %d %s", status, body)
		}
		expect(t, "removed", b.call("GET", "/api/session", "", ""), 401, "session_expired")
	})

	t.Run("last admin", func(t *testing.T) {
		b := newBrowser(t, p)
		expect(t, "login", b.login("alice", "alice password"), 200, "")
		expect(t, "self demotion", b.call("PATCH", "/api/users/alice", `{"role":"viewer"}`, b.csrf), 409, "last_admin")
		expect(t, "self removal", b.call("DELETE", "/api/users/alice", "", b.csrf), 409, "last_admin")
		expect(t, "still admin", b.call("GET", "/api/session", "", ""), 200, "")
	})

	t.Run("client keys and no credentials", func(t *testing.T) {
		k := createKey(t, p, `{"name":"client"}`)
		req, _ := http.NewRequest("GET", p.URL+"/api/keys", nil)
		req.Header.Set("Authorization", "Bearer "+k.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("a client key on /api: %d", resp.StatusCode)
		}
		expect(t, "nothing", newBrowser(t, p).call("GET", "/api/keys", "", ""), 401, "missing_credentials")
	})

	t.Run("throttled", func(t *testing.T) {
		createUser(t, p, "tina", "tina password", "viewer")
		b := newBrowser(t, p)
		for i := 0; i < 5; i++ {
			expect(t, "wrong", b.login("tina", "wrong password"), 401, "invalid_credentials")
		}
		// Strangers are slowed down (a second, then doubling), not
		// locked out; see TestLoginBehindProxy for the owner's browser.
		b.slowedDown("tina")
		// An account that does not exist is throttled the same way.
		for i := 0; i < 5; i++ {
			b.login("ghost", "wrong password")
		}
		b.slowedDown("ghost")
	})
}

// slowedDown probes user's login with a wrong password until it is
// refused with 429 and a Retry-After, and fails the test if it never is.
// A probe that still gets through (on a machine so busy that the last
// delay ran out meanwhile) counts as one more failure and doubles the
// delay, so a 429 comes within a few probes on any machine.
func (b *browser) slowedDown(user string) apiAnswer {
	b.t.Helper()
	for range 6 {
		a := b.login(user, "a probing password")
		if a.status == 401 {
			continue
		}
		expect(b.t, user+" slowed down", a, 429, "too_many_login_attempts")
		if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra > 900 {
			b.t.Fatalf("%s slowed down: Retry-After %q", user, a.header.Get("Retry-After"))
		}
		return a
	}
	b.t.Fatalf("%s was never slowed down", user)
	return apiAnswer{}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
