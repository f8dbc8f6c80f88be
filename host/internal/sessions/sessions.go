// Package sessions signs dashboard users in and out.
//
// A login checks the password (bcrypt, through the users package), then
// issues a token signed with the master key (secrets.IssueSession) that
// travels in a cookie. Tokens alone are not enough: every session also has
// a row in the database's sessions table (see Table), so a session ends
// for good when its user logs out, changes password, is disabled or
// removed. The table is shared by every replica on the database: a login
// on one is valid on all, and a logout on one ends the session on all.
// Each check reads the session's row and the account, so a change made by
// another process (a replica, the `llm-proxy users` command) takes effect
// on the next request, and the role in force is always the account's
// current one.
//
// This process also keeps the sessions it has seen in memory, for Live and
// LiveAdmin: cheap filters that do not read the database when the session
// is known (Check is the real test).
//
// Failed logins are throttled three ways (see Options):
//   - per client network (an IPv4 address or an IPv6 /64): too many
//     failures block that network for a while;
//   - per account name, for browsers that never signed in to it: past a
//     few failures each try must wait a delay that doubles up to a cap, so
//     guessing stays slow, but nobody can lock the account for good;
//   - per device: a browser that signed in to an account before holds a
//     signed device token (secrets.IssueDevice) and is throttled on its
//     own, so a stranger's guessing never keeps the account's owner out.
//
// A throttled login is refused before any password is checked, with the
// time to wait; the account name is counted whether or not such an
// account exists, so throttling tells nothing about which accounts exist
// either.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

// Errors of Login and Check.
var (
	// ErrBadLogin: the username or the password is wrong, or the account
	// is disabled. Which one is not said.
	ErrBadLogin = users.ErrBadLogin
	// ErrInvalid: the token is malformed, altered, signed by another key,
	// expired, or its session has ended.
	ErrInvalid = errors.New("the session is not valid; sign in again")
)

// ThrottledError is a login refused because of too many failures.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins; try again in %s", e.RetryAfter.Round(time.Second))
}

// Accounts is what sessions need of the users package.
type Accounts interface {
	Authenticate(ctx context.Context, username, password string) (*users.User, error)
	GetByID(ctx context.Context, id string) (*users.User, error)
}

// Table is where sessions are kept: the store's sessions table, shared by
// every process on the database.
type Table interface {
	StartSession(ctx context.Context, s store.Session, maxPerUser int) error
	GetSession(ctx context.Context, id string, now int64) (store.Session, error)
	EndSession(ctx context.Context, id string) error
	EndUserSessions(ctx context.Context, userID string) (int, error)
	PruneSessions(ctx context.Context, now int64) (int, error)
	CountSessions(ctx context.Context, now int64) (int, error)
}

// Options configure a Manager. Zero values take the defaults given.
type Options struct {
	TTL time.Duration // how long a session lasts; default 12h
	// AccountFailures failed logins for one account name from browsers
	// without its device token are free; each further try must wait
	// AccountDelay, doubled with every failure up to AccountMaxDelay.
	// Defaults 5, 1s and FailureWindow.
	AccountFailures int
	AccountDelay    time.Duration
	AccountMaxDelay time.Duration
	// DeviceFailures failed logins within FailureWindow from a browser
	// with a device token block that device until the window ends.
	// Default AccountFailures.
	DeviceFailures int
	// AddressFailures failed logins from one client network within
	// FailureWindow block that network. Default 20.
	AddressFailures int
	// FailureWindow is how long failures are remembered. Default 15m.
	FailureWindow time.Duration
	// MaxPerUser is the most sessions one user may hold; a new login
	// beyond it ends that user's oldest session. Default 20.
	MaxPerUser int
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Session is a checked session with the account it belongs to.
type Session struct {
	ID   string `json:"-"`
	CSRF string `json:"csrf_token"`
	// Device is a device token for the browser that signed in (Login
	// only); see secrets.IssueDevice.
	Device    string      `json:"-"`
	ExpiresAt time.Time   `json:"expires_at"`
	User      *users.User `json:"user"`
}

// Manager issues, checks and ends sessions.
type Manager struct {
	key      *secrets.Key
	accounts Accounts
	table    Table
	o        Options

	byAccount *throttle // slowing, for browsers without the account's device token
	byDevice  *throttle
	byAddress *throttle
	// bcrypt at cost 12 takes a core for about 0.3 s; at most one login
	// per core runs at a time so a burst of logins cannot starve requests.
	checking chan struct{}

	mu        sync.Mutex
	live      map[string]*entry // sessions seen by this process, by id
	lastSweep time.Time
}

type entry struct {
	userID  string
	role    string    // the account's role when last checked
	issued  time.Time // whole milliseconds, after the password change it knew of
	expires time.Time
}

// New makes a Manager signing with key and keeping sessions in table.
func New(key *secrets.Key, accounts Accounts, table Table, o Options) *Manager {
	if o.TTL <= 0 {
		o.TTL = 12 * time.Hour
	}
	if o.AccountFailures <= 0 {
		o.AccountFailures = 5
	}
	if o.AddressFailures <= 0 {
		o.AddressFailures = 20
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = 15 * time.Minute
	}
	if o.AccountDelay <= 0 {
		o.AccountDelay = time.Second
	}
	if o.AccountMaxDelay <= 0 {
		o.AccountMaxDelay = o.FailureWindow
	}
	if o.DeviceFailures <= 0 {
		o.DeviceFailures = o.AccountFailures
	}
	if o.MaxPerUser <= 0 {
		o.MaxPerUser = 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{
		key: key, accounts: accounts, table: table, o: o,
		byAccount: newSlowdown(o.AccountFailures, o.AccountDelay, o.AccountMaxDelay, o.FailureWindow, 100_000),
		byDevice:  newThrottle(o.DeviceFailures, o.FailureWindow, 100_000),
		byAddress: newThrottle(o.AddressFailures, o.FailureWindow, 100_000),
		checking:  make(chan struct{}, runtime.GOMAXPROCS(0)),
		live:      map[string]*entry{},
	}
}

// TTL is how long new sessions last.
func (m *Manager) TTL() time.Duration { return m.o.TTL }

// Login checks username and password for a client at addr and starts a
// session. device is the browser's device token, if it has one ("" if
// not). It returns the token for the session cookie; the Session carries
// a fresh device token for the browser to keep. Errors: ErrBadLogin,
// *ThrottledError, or a database error.
func (m *Manager) Login(ctx context.Context, username, password, addr, device string) (string, *Session, error) {
	now := m.o.Now()
	// Names differing only in case count as one, so case games do not
	// multiply an attacker's tries.
	who, by := "u:"+strings.ToLower(username), m.byAccount
	if id, ok := m.key.VerifyDevice(device, username); ok {
		who, by = "d:"+id, m.byDevice
	}
	from := networkKey(addr)
	if wait, ok := by.blocked(who, now); ok {
		return "", nil, &ThrottledError{RetryAfter: wait}
	}
	if wait, ok := m.byAddress.blocked(from, now); ok {
		return "", nil, &ThrottledError{RetryAfter: wait}
	}
	select {
	case m.checking <- struct{}{}:
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	u, err := m.accounts.Authenticate(ctx, username, password)
	<-m.checking
	if err != nil {
		if errors.Is(err, users.ErrBadLogin) {
			now = m.o.Now()
			by.fail(who, now)
			m.byAddress.fail(from, now)
		}
		return "", nil, err
	}
	by.reset(who)
	token, s, err := m.start(ctx, u)
	if err == nil {
		s.Device, err = m.key.IssueDevice(username)
	}
	return token, s, err
}

// Start begins a session for u without a password (after a password
// change, to replace the sessions that change ended).
func (m *Manager) Start(ctx context.Context, u *users.User) (string, *Session, error) {
	return m.start(ctx, u)
}

func (m *Manager) start(ctx context.Context, u *users.User) (string, *Session, error) {
	now := m.o.Now()
	token, s, err := m.key.IssueSession(u.ID, u.Role, m.o.TTL, now)
	if err != nil {
		return "", nil, err
	}
	// Password changes are stored in whole milliseconds, so sessions are
	// dated the same way: a change in the millisecond of a login, or any
	// later one, ends it. A session started for an account whose password
	// changed in this very millisecond is dated just after the change.
	issued := now.Truncate(time.Millisecond)
	if !issued.After(u.PasswordChangedAt) {
		issued = u.PasswordChangedAt.Truncate(time.Millisecond).Add(time.Millisecond)
	}
	row := store.Session{ID: s.ID, UserID: u.ID, IssuedAt: issued.UnixMilli(), ExpiresAt: s.ExpiresAt.UnixMilli()}
	if err := m.table.StartSession(ctx, row, m.o.MaxPerUser); err != nil {
		return "", nil, err
	}
	m.mu.Lock()
	sweep := m.sweepLocked(now)
	m.live[s.ID] = &entry{userID: u.ID, role: u.Role, issued: issued, expires: s.ExpiresAt}
	m.trimLocked(u.ID)
	m.mu.Unlock()
	if sweep {
		// Expired rows are of no use to any replica; whichever sweeps
		// first removes them. A failure only leaves them for the next.
		_, _ = m.table.PruneSessions(ctx, now.UnixMilli())
	}
	return token, &Session{ID: s.ID, CSRF: s.CSRF, ExpiresAt: s.ExpiresAt, User: u}, nil
}

// Check returns the session a token stands for, with its account as it is
// now. Every failure is ErrInvalid (or a database error).
func (m *Manager) Check(ctx context.Context, token string) (*Session, error) {
	now := m.o.Now()
	s, err := m.key.VerifySession(token, now)
	if err != nil {
		return nil, ErrInvalid
	}
	row, err := m.table.GetSession(ctx, s.ID, now.UnixMilli())
	switch {
	case errors.Is(err, store.ErrSessionNotFound):
		m.forget(s.ID) // ended by another process
		return nil, ErrInvalid
	case err != nil:
		return nil, err
	case row.UserID != s.UserID:
		return nil, ErrInvalid
	}
	u, err := m.accounts.GetByID(ctx, s.UserID)
	switch {
	case errors.Is(err, users.ErrNotFound):
		if _, err := m.RevokeUser(ctx, s.UserID); err != nil {
			return nil, err
		}
		return nil, ErrInvalid
	case err != nil:
		return nil, err
	}
	// A disabled account, or a password changed after the session began
	// (here or by another process), ends the session.
	issued := time.UnixMilli(row.IssuedAt)
	if u.Disabled || !u.PasswordChangedAt.Before(issued) {
		if err := m.end(ctx, s.ID); err != nil {
			return nil, err
		}
		return nil, ErrInvalid
	}
	m.mu.Lock()
	m.live[s.ID] = &entry{userID: u.ID, role: u.Role, issued: issued, expires: time.UnixMilli(row.ExpiresAt)}
	m.mu.Unlock()
	return &Session{ID: s.ID, CSRF: s.CSRF, ExpiresAt: s.ExpiresAt, User: u}, nil
}

// Live reports whether token is a genuine, unexpired session that has not
// ended as far as this process knows. It reads the database only for a
// session this process has not seen yet (one started on another replica).
// It is a cheap first filter (the server uses it before reading a large
// upload); Check is the real test.
func (m *Manager) Live(token string) bool {
	_, e := m.lookup(token)
	return e != nil
}

// LiveAdmin is Live for a session whose account was an admin when it was
// last checked: the server decides with it, from the headers, whether a
// large upload may be read at all (Check, after, is the real test).
func (m *Manager) LiveAdmin(token string) bool {
	_, e := m.lookup(token)
	if e == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.role == users.RoleAdmin
}

// lookup verifies token and finds its entry among the sessions this
// process knows, checking a session it does not know yet (Check); the
// entry is nil when the token is not valid or its session has ended.
func (m *Manager) lookup(token string) (secrets.Session, *entry) {
	s, err := m.key.VerifySession(token, m.o.Now())
	if err != nil {
		return s, nil
	}
	m.mu.Lock()
	e := m.live[s.ID]
	m.mu.Unlock()
	if e == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := m.Check(ctx, token); err != nil {
			return s, nil
		}
		m.mu.Lock()
		e = m.live[s.ID]
		m.mu.Unlock()
	}
	if e == nil || e.userID != s.UserID {
		return s, nil
	}
	return s, e
}

// Logout ends the session of token, if it is a valid one, on every
// process.
func (m *Manager) Logout(ctx context.Context, token string) error {
	if s, err := m.key.VerifySession(token, m.o.Now()); err == nil {
		return m.end(ctx, s.ID)
	}
	return nil
}

func (m *Manager) end(ctx context.Context, id string) error {
	m.forget(id)
	return m.table.EndSession(ctx, id)
}

// forget drops a session from this process's memory.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.live, id)
	m.mu.Unlock()
}

// RevokeUser ends every session of a user, on every process, and returns
// how many ended.
func (m *Manager) RevokeUser(ctx context.Context, userID string) (int, error) {
	m.mu.Lock()
	for id, e := range m.live {
		if e.userID == userID {
			delete(m.live, id)
		}
	}
	m.mu.Unlock()
	return m.table.EndUserSessions(ctx, userID)
}

// Count is the number of live sessions in the database (for tests and
// stats).
func (m *Manager) Count(ctx context.Context) (int, error) {
	return m.table.CountSessions(ctx, m.o.Now().UnixMilli())
}

// sweepLocked drops expired sessions from memory, at most once a minute,
// and reports whether it did (the caller then prunes the table too).
func (m *Manager) sweepLocked(now time.Time) bool {
	if now.Sub(m.lastSweep) < time.Minute {
		return false
	}
	m.lastSweep = now
	for id, e := range m.live {
		if !now.Before(e.expires) {
			delete(m.live, id)
		}
	}
	return true
}

// trimLocked forgets a user's oldest sessions beyond MaxPerUser, as
// StartSession ends them in the table.
func (m *Manager) trimLocked(userID string) {
	for {
		n := 0
		var oldestID string
		var oldest time.Time
		for id, e := range m.live {
			if e.userID != userID {
				continue
			}
			n++
			if oldestID == "" || e.issued.Before(oldest) {
				oldestID, oldest = id, e.issued
			}
		}
		if n <= m.o.MaxPerUser {
			return
		}
		delete(m.live, oldestID)
	}
}
