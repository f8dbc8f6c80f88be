package sessions

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// accounts is an in-memory Accounts with plain-text passwords, so these
// tests need no bcrypt and no database.
type accounts struct {
	mu    sync.Mutex
	users map[string]*users.User
	pw    map[string]string
}

func newAccounts() *accounts {
	return &accounts{users: map[string]*users.User{}, pw: map[string]string{}}
}

func (a *accounts) add(name, pw, role string) *users.User {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := &users.User{ID: "usr_" + name, Username: name, Role: role, PasswordChangedAt: time.Unix(0, 0)}
	a.users[u.ID], a.pw[name] = u, pw
	return u
}

func (a *accounts) Authenticate(_ context.Context, name, pw string) (*users.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.users {
		if u.Username == name && a.pw[name] == pw && !u.Disabled {
			c := *u
			return &c, nil
		}
	}
	return nil, users.ErrBadLogin
}

func (a *accounts) GetByID(_ context.Context, id string) (*users.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[id]
	if u == nil {
		return nil, users.ErrNotFound
	}
	c := *u
	return &c, nil
}

func (a *accounts) change(id string, f func(*users.User)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a.users[id])
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// setup makes a Manager on a fresh SQLite store.
func setup(t *testing.T, o Options) (*Manager, *accounts, *clock) {
	t.Helper()
	st, err := store.Open(t.Context(), store.Options{Path: filepath.Join(t.TempDir(), "llm-proxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return setupOn(t, st, o)
}

func setupOn(t *testing.T, st *store.Store, o Options) (*Manager, *accounts, *clock) {
	t.Helper()
	key, err := secrets.ParseKey(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	o.Now = clk.now
	acc := newAccounts()
	return New(key, acc, st, o), acc, clk
}

// count is the number of live sessions in the table.
func count(t *testing.T, m *Manager) int {
	t.Helper()
	n, err := m.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLoginCheckLogout(t *testing.T) {
	ctx := context.Background()
	m, acc, _ := setup(t, Options{})
	acc.add("alice", "right password", users.RoleAdmin)

	if _, _, err := m.Login(ctx, "alice", "wrong", "10.0.0.1", ""); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := m.Login(ctx, "nobody", "right password", "10.0.0.1", ""); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("unknown user: %v", err)
	}
	token, s, err := m.Login(ctx, "alice", "right password", "10.0.0.1", "")
	if err != nil || s.User.Username != "alice" || len(s.CSRF) != 32 || s.ExpiresAt.Sub(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) != 12*time.Hour {
		t.Fatalf("login: %+v %v", s, err)
	}
	got, err := m.Check(ctx, token)
	if err != nil || got.ID != s.ID || got.CSRF != s.CSRF || got.User.Role != users.RoleAdmin {
		t.Fatalf("check: %+v %v", got, err)
	}
	// Any changed character invalidates the token.
	for i := 0; i < len(token); i++ {
		b := []byte(token)
		b[i] ^= 1
		if _, err := m.Check(ctx, string(b)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("token altered at %d accepted: %v", i, err)
		}
	}
	if !m.Live(token) || m.Live(token+"x") || m.Live("") {
		t.Fatal("Live disagrees with Check")
	}
	if err := m.Logout(ctx, token); err != nil {
		t.Fatal(err)
	}
	if m.Live(token) {
		t.Fatal("live after logout")
	}
	if _, err := m.Check(ctx, token); !errors.Is(err, ErrInvalid) {
		t.Fatalf("after logout: %v", err)
	}
	if n := count(t, m); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestSessionEnds(t *testing.T) {
	ctx := context.Background()
	m, acc, clk := setup(t, Options{TTL: time.Hour})
	u := acc.add("bob", "password1", users.RoleViewer)
	login := func() string {
		t.Helper()
		token, _, err := m.Login(ctx, "bob", "password1", "10.0.0.2", "")
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	valid := func(token string) bool {
		_, err := m.Check(ctx, token)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatal(err)
		}
		return err == nil
	}

	t.Run("expiry", func(t *testing.T) {
		token := login()
		clk.advance(time.Hour - time.Second)
		if !valid(token) {
			t.Fatal("ended before its ttl")
		}
		clk.advance(time.Second)
		if valid(token) {
			t.Fatal("valid at its expiry")
		}
	})
	t.Run("password changed", func(t *testing.T) {
		token := login()
		clk.advance(time.Millisecond)
		acc.change(u.ID, func(u *users.User) { u.PasswordChangedAt = clk.now() })
		if valid(token) {
			t.Fatal("valid after a password change")
		}
		clk.advance(time.Millisecond)
		if !valid(login()) {
			t.Fatal("a login after the change is refused")
		}
	})
	t.Run("password changed in the same millisecond", func(t *testing.T) {
		clk.advance(time.Second)
		token := login()
		acc.change(u.ID, func(u *users.User) { u.PasswordChangedAt = clk.now().Truncate(time.Millisecond) })
		if valid(token) {
			t.Fatal("valid after a password change in the millisecond of the login")
		}
		// A session started right after that change (the caller's own
		// change of password) is valid.
		fresh, _ := acc.GetByID(ctx, u.ID)
		token, _, err := m.Start(ctx, fresh)
		if err != nil || !valid(token) {
			t.Fatalf("a session started after the change: %v", err)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		token := login()
		acc.change(u.ID, func(u *users.User) { u.Disabled = true })
		if valid(token) {
			t.Fatal("valid for a disabled user")
		}
		acc.change(u.ID, func(u *users.User) { u.Disabled = false })
		if valid(token) {
			t.Fatal("an ended session came back")
		}
	})
	t.Run("role follows the account", func(t *testing.T) {
		token := login()
		if m.LiveAdmin(token) {
			t.Fatal("a viewer's session passes LiveAdmin")
		}
		acc.change(u.ID, func(u *users.User) { u.Role = users.RoleAdmin })
		s, err := m.Check(ctx, token)
		if err != nil || s.User.Role != users.RoleAdmin || !m.LiveAdmin(token) {
			t.Fatalf("%+v %v, LiveAdmin %v", s, err, m.LiveAdmin(token))
		}
		acc.change(u.ID, func(u *users.User) { u.Role = users.RoleViewer })
		if _, err := m.Check(ctx, token); err != nil || m.LiveAdmin(token) {
			t.Fatalf("demoted: %v, LiveAdmin %v", err, m.LiveAdmin(token))
		}
	})
	t.Run("revoked", func(t *testing.T) {
		a, b := login(), login()
		if n, err := m.RevokeUser(ctx, u.ID); err != nil || n < 2 {
			t.Fatalf("revoked %d", n)
		}
		if valid(a) || valid(b) {
			t.Fatal("valid after RevokeUser")
		}
	})
	t.Run("removed user", func(t *testing.T) {
		token := login()
		acc.mu.Lock()
		delete(acc.users, u.ID)
		acc.mu.Unlock()
		if valid(token) {
			t.Fatal("valid for a removed user")
		}
	})
}

// TestSessionsShared: a second manager on the same database (another
// replica, or the same process after a restart) accepts a session the
// first one started, and a logout on either ends it on both, on both
// databases.
func TestSessionsShared(t *testing.T) {
	storetest.EachShared(t, func(t *testing.T, connect func() *store.Store) {
		ctx := context.Background()
		m, acc, clk := setupOn(t, connect(), Options{})
		acc.add("carol", "password1", users.RoleAdmin)
		other := New(m.key, acc, connect(), Options{Now: clk.now})
		token, _, err := m.Login(ctx, "carol", "password1", "10.0.0.3", "")
		if err != nil {
			t.Fatal(err)
		}
		if s, err := other.Check(ctx, token); err != nil || s.User.Username != "carol" {
			t.Fatalf("refused by another replica: %+v %v", s, err)
		}
		if !other.LiveAdmin(token) {
			t.Fatal("LiveAdmin refuses an admin session started on another replica")
		}
		if err := other.Logout(ctx, token); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Check(ctx, token); !errors.Is(err, ErrInvalid) {
			t.Fatalf("valid on the first replica after a logout on the other: %v", err)
		}
		if m.Live(token) {
			t.Fatal("Live after a logout seen by Check")
		}
		// A session unknown to a replica that has not seen it yet is
		// checked in the table by Live too.
		token, _, err = m.Login(ctx, "carol", "password1", "10.0.0.3", "")
		if err != nil {
			t.Fatal(err)
		}
		third := New(m.key, acc, connect(), Options{Now: clk.now})
		if !third.Live(token) {
			t.Fatal("Live refuses a session started on another replica")
		}
		if n, err := third.RevokeUser(ctx, "usr_carol"); err != nil || n != 1 {
			t.Fatalf("RevokeUser: %d %v", n, err)
		}
		if _, err := m.Check(ctx, token); !errors.Is(err, ErrInvalid) {
			t.Fatalf("valid after RevokeUser on another replica: %v", err)
		}
		// Expired rows are pruned by the next login a minute later.
		if _, _, err := m.Login(ctx, "carol", "password1", "10.0.0.3", ""); err != nil {
			t.Fatal(err)
		}
		clk.advance(13 * time.Hour)
		if n := count(t, m); n != 0 {
			t.Fatalf("%d live sessions after the TTL", n)
		}
		if _, _, err := m.Login(ctx, "carol", "password1", "10.0.0.3", ""); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := m.table.(*store.Store).Reader().Get(&rows, `SELECT count(*) FROM sessions`); err != nil || rows != 1 {
			t.Fatalf("%d rows after the prune (%v), want the new session only", rows, err)
		}
	})
}

func TestMaxPerUser(t *testing.T) {
	ctx := context.Background()
	m, acc, clk := setup(t, Options{MaxPerUser: 3})
	acc.add("dan", "password1", users.RoleViewer)
	var tokens []string
	for i := 0; i < 5; i++ {
		token, _, err := m.Login(ctx, "dan", "password1", "10.0.0.4", "")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, token)
		clk.advance(time.Second)
	}
	for i, token := range tokens {
		_, err := m.Check(ctx, token)
		if (err == nil) != (i >= 2) {
			t.Errorf("session %d: %v", i, err)
		}
	}
}

func TestThrottle(t *testing.T) {
	ctx := context.Background()
	m, acc, clk := setup(t, Options{AccountFailures: 3, AccountDelay: time.Second, AccountMaxDelay: 8 * time.Second,
		AddressFailures: 5, FailureWindow: time.Minute})
	acc.add("erin", "password1", users.RoleAdmin)
	acc.add("frank", "password1", users.RoleAdmin)
	var te *ThrottledError

	// Erin signs in once from her own browser, which keeps a device token.
	_, s, err := m.Login(ctx, "erin", "password1", "10.1.0.1", "")
	if err != nil || s.Device == "" {
		t.Fatalf("login: %v, device %q", err, s.Device)
	}
	device := s.Device

	// Three failures for erin, from different addresses, slow erin down:
	// the next try must wait a second, then two, four, eight, eight ...
	for i := 0; i < 3; i++ {
		if _, _, err := m.Login(ctx, "erin", "wrong", "10.1.0."+string(rune('2'+i)), ""); !errors.Is(err, ErrBadLogin) {
			t.Fatal(err)
		}
	}
	for i, wait := range []time.Duration{1, 2, 4, 8, 8, 8} {
		wait *= time.Second
		if _, _, err := m.Login(ctx, "Erin", "password1", "10.1.0.9", ""); !errors.As(err, &te) || te.RetryAfter != wait {
			t.Fatalf("right password while slowed down: %v, want a wait of %s", err, wait)
		}
		clk.advance(wait)
		if _, _, err := m.Login(ctx, "erin", "wrong", "10.1.1."+strconv.Itoa(i), ""); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("after waiting %s: %v", wait, err)
		}
	}
	// Meanwhile her own browser is not slowed down at all ...
	if _, s, err = m.Login(ctx, "erin", "password1", "10.1.0.1", device); err != nil {
		t.Fatalf("erin from her own browser: %v", err)
	}
	// ... nor is frank.
	if _, _, err := m.Login(ctx, "frank", "password1", "10.1.0.1", ""); err != nil {
		t.Fatalf("another account: %v", err)
	}
	// A device token is for one account only, and cannot be forged.
	// One character in the middle changed (the last one may carry unused
	// bits of the encoding, or already be the replacement).
	forged := []byte(s.Device)
	mid := len(forged) / 2
	forged[mid] = map[bool]byte{true: 'B', false: 'A'}[forged[mid] == 'A']
	if _, _, err := m.Login(ctx, "erin", "password1", "10.1.0.1", string(forged)); !errors.As(err, &te) {
		t.Fatalf("a forged device token passed: %v", err)
	}
	if _, _, err := m.Login(ctx, "ghost", "wrong", "10.2.0.1", s.Device); !errors.Is(err, ErrBadLogin) {
		t.Fatal(err)
	}
	// A device that fails too often is blocked, on its own.
	for i := 0; i < 3; i++ {
		m.Login(ctx, "erin", "wrong", "10.1.0.1", s.Device)
	}
	if _, _, err := m.Login(ctx, "erin", "password1", "10.1.0.1", s.Device); !errors.As(err, &te) || te.RetryAfter != time.Minute {
		t.Fatalf("a device failing too often: %v", err)
	}
	if _, _, err := m.Login(ctx, "erin", "password1", "10.1.0.1", device); err != nil {
		t.Fatalf("her other device: %v", err)
	}

	// An unknown name is slowed down the same way as a real one.
	for i := 0; i < 3; i++ {
		m.Login(ctx, "ghost", "wrong", "10.2.0.1", "")
	}
	if _, _, err := m.Login(ctx, "ghost", "wrong", "10.2.0.2", ""); !errors.As(err, &te) {
		t.Fatalf("unknown name not throttled: %v", err)
	}
	// A minute after the last failure, the account's failures are forgotten.
	clk.advance(time.Minute)
	for i := 0; i < 3; i++ {
		if _, _, err := m.Login(ctx, "erin", "wrong", "10.1.0.7", ""); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("after the window, failure %d: %v", i, err)
		}
	}

	// Five failures from one address block it for every account.
	clk.advance(time.Minute)
	for i := 0; i < 5; i++ {
		m.Login(ctx, "user"+string(rune('a'+i)), "wrong", "10.3.0.1", "")
	}
	if _, _, err := m.Login(ctx, "frank", "password1", "10.3.0.1", ""); !errors.As(err, &te) {
		t.Fatalf("address not throttled: %v", err)
	}
	if _, _, err := m.Login(ctx, "frank", "password1", "10.3.0.2", ""); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// For IPv6 the whole /64 counts as one address.
	for i := 0; i < 5; i++ {
		m.Login(ctx, "user"+string(rune('a'+i)), "wrong", "2001:db8:1:2::"+string(rune('a'+i)), "")
	}
	if _, _, err := m.Login(ctx, "frank", "password1", "2001:db8:1:2:ffff::1", ""); !errors.As(err, &te) {
		t.Fatalf("IPv6 /64 not throttled: %v", err)
	}
	if _, _, err := m.Login(ctx, "frank", "password1", "2001:db8:1:3::1", ""); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

func TestNetworkKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7":              "a:192.0.2.7",
		"::ffff:192.0.2.7":       "a:192.0.2.7",
		"2001:db8:aa:bb:1:2:3:4": "n:2001:db8:aa:bb::/64",
		"2001:db8:aa:bb::9":      "n:2001:db8:aa:bb::/64",
		"fe80::1%eth0":           "n:fe80::/64",
		"not an address":         "a:not an address",
	} {
		if got := networkKey(addr); got != want {
			t.Errorf("networkKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestThrottleBounded(t *testing.T) {
	th := newThrottle(2, time.Minute, 100)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		th.fail(string(rune(i)), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(th.keys); n > 100 {
		t.Fatalf("%d keys kept, limit 100", n)
	}
	// Ended windows are swept to make room.
	th.fail("late", now.Add(2*time.Minute))
	if n := len(th.keys); n != 1 {
		t.Fatalf("%d keys after the sweep", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	m, acc, _ := setup(t, Options{MaxPerUser: 5})
	u := acc.add("gina", "password1", users.RoleAdmin)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				token, _, err := m.Login(ctx, "gina", "password1", "10.9.0.1", "")
				if err != nil {
					t.Error(err)
					return
				}
				m.Check(ctx, token)
				switch i % 10 {
				case 3:
					m.Logout(ctx, token)
				case 7:
					m.RevokeUser(ctx, u.ID)
				}
				m.Login(ctx, "nobody", "wrong", "10.9.0."+string(rune('0'+g)), "")
			}
		}(g)
	}
	wg.Wait()
	if n := count(t, m); n > 5 {
		t.Fatalf("%d sessions for one user, at most 5 allowed", n)
	}
}
