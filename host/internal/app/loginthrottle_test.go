package app_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/host/internal/config"
)

// TestLoginBehindProxy runs the proxy behind a trusted reverse proxy (the
// test itself, on loopback) and shows that nobody can lock an account by
// failing its password, that a known browser always gets in, and that the
// forwarded address and scheme are believed from the trusted proxy.
func TestLoginBehindProxy(t *testing.T) {
	if raceEnabled {
		t.Skip("dozens of bcrypt hashes are too slow under the race detector; run without -race")
	}
	p := startProxy(t, func(c *config.Config) { c.Server.TrustedProxies = []string{"127.0.0.0/8"} })
	createUser(t, p, "alice", "alice password", "admin")

	// Alice signs in from her browser, which keeps a device cookie for the
	// login route only; over https (as the trusted proxy says) both cookies
	// are Secure.
	alice := newBrowser(t, p)
	alice.hdr.Set("X-Forwarded-For", "198.51.100.20")
	alice.hdr.Set("X-Forwarded-Proto", "https")
	a := alice.login("alice", "alice password")
	expect(t, "alice", a, 200, "")
	var device string
	for _, c := range a.header.Values("Set-Cookie") {
		if !strings.Contains(c, "; secure") {
			t.Errorf("cookie over https is not Secure: %q", c)
		}
		if strings.HasPrefix(c, "llmproxy_device=") {
			device = c
		}
	}
	for _, want := range []string{"path=/api/login", "httponly", "samesite=strict", "max-age=31536000"} {
		if !strings.Contains(strings.ToLower(device), want) {
			t.Errorf("device cookie %q lacks %q", device, want)
		}
	}

	// An attacker guesses alice's password from many addresses: after five
	// failures every stranger must wait, whatever its address ...
	attacker := newBrowser(t, p)
	for i := 0; i < 5; i++ {
		attacker.hdr.Set("X-Forwarded-For", "203.0.113."+strconv.Itoa(i+1))
		expect(t, "guess", attacker.login("alice", "guess "+strconv.Itoa(i)), 401, "invalid_credentials")
	}
	attacker.hdr.Set("X-Forwarded-For", "203.0.113.99")
	attacker.slowedDown("alice")
	// ... but alice's browser gets straight in.
	expect(t, "alice while attacked", alice.login("alice", "alice password"), 200, "")

	// The client address is the last untrusted hop of X-Forwarded-For: a
	// hop the client wrote itself, further left, changes nothing.
	spoofer := newBrowser(t, p)
	for i := 0; i < 20; i++ {
		spoofer.hdr.Set("X-Forwarded-For", "192.0.2."+strconv.Itoa(i)+", 203.0.113.200")
		expect(t, "spoofer", spoofer.login("nobody"+strconv.Itoa(i), "wrong"), 401, "invalid_credentials")
	}
	spoofer.hdr.Set("X-Forwarded-For", "192.0.2.250, 203.0.113.200")
	expect(t, "spoofer's network after 20 failures", spoofer.login("someone", "wrong"), 429, "too_many_login_attempts")
	alice.hdr.Set("X-Forwarded-For", "203.0.113.200")
	expect(t, "alice from the blocked address", alice.login("alice", "alice password"), 429, "too_many_login_attempts")
	alice.hdr.Set("X-Forwarded-For", "203.0.113.201")
	expect(t, "alice from another address", alice.login("alice", "alice password"), 200, "")
}
