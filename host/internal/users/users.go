// Package users keeps the dashboard's accounts: a unique username, a
// bcrypt (cost 12) password hash, a role (admin or viewer) and a disabled
// flag. Sessions and login build on it.
package users

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"regexp"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Roles.
const (
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// Errors of the user operations.
var (
	ErrExists      = store.ErrUserExists
	ErrNotFound    = store.ErrUserNotFound
	ErrBadUsername = errors.New("usernames are 1 to 64 letters, digits, '.', '_', '-' or '@'")
	ErrBadRole     = errors.New(`role must be "admin" or "viewer"`)
	// ErrBadLogin is the one answer to a failed login, whatever failed.
	ErrBadLogin = errors.New("wrong username or password")
	// ErrLastAdmin refuses to remove, disable or demote the only enabled
	// admin, which would leave nobody able to manage the dashboard.
	ErrLastAdmin = store.ErrLastAdmin
)

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// User is an account without its password hash.
type User struct {
	ID                string    `json:"id"`
	Username          string    `json:"username"`
	Role              string    `json:"role"`
	Disabled          bool      `json:"disabled"`
	CreatedAt         time.Time `json:"created_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

func userOf(r store.UserRow) *User {
	return &User{ID: r.ID, Username: r.Username, Role: r.Role, Disabled: r.Disabled,
		CreatedAt: time.UnixMilli(r.CreatedAt).UTC(), PasswordChangedAt: time.UnixMilli(r.PasswordChangedAt).UTC()}
}

// Store reads and writes accounts.
type Store struct{ st *store.Store }

// New wraps the database.
func New(st *store.Store) *Store { return &Store{st: st} }

// Create adds an account; the password must be 8 to 72 bytes.
func (s *Store) Create(ctx context.Context, username, password, role string, now time.Time) (*User, error) {
	if !usernameRE.MatchString(username) {
		return nil, ErrBadUsername
	}
	if role != RoleAdmin && role != RoleViewer {
		return nil, ErrBadRole
	}
	hash, err := secrets.HashPassword(password)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ms := now.UnixMilli()
	if err := s.st.InsertUser(ctx, store.UserRow{ID: "usr_" + hex.EncodeToString(b[:]), Username: username, Role: role,
		PasswordHash: hash, CreatedAt: ms, UpdatedAt: ms, PasswordChangedAt: ms}); err != nil {
		return nil, err
	}
	return s.Get(ctx, username)
}

// GetByID returns an account by id.
func (s *Store) GetByID(ctx context.Context, id string) (*User, error) {
	r, err := s.st.UserByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return userOf(r), nil
}

// Get returns an account by username.
func (s *Store) Get(ctx context.Context, username string) (*User, error) {
	r, err := s.st.UserByName(ctx, username)
	if err != nil {
		return nil, err
	}
	return userOf(r), nil
}

// List returns every account, by username.
func (s *Store) List(ctx context.Context) ([]*User, error) {
	rows, err := s.st.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*User, len(rows))
	for i := range rows {
		out[i] = userOf(rows[i])
	}
	return out, nil
}

// Authenticate checks a login. Every failure is ErrBadLogin, and an
// unknown user costs the same bcrypt comparison as a wrong password, so
// neither the answer nor its timing tells which part was wrong.
func (s *Store) Authenticate(ctx context.Context, username, password string) (*User, error) {
	r, err := s.st.UserByName(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	found := err == nil
	if !secrets.CheckPasswordOrDummy(r.PasswordHash, found, password) || !found || r.Disabled {
		return nil, ErrBadLogin
	}
	return userOf(r), nil
}

// SetPassword changes a password; sessions issued before it must be
// revoked by the caller (PasswordChangedAt tells when).
func (s *Store) SetPassword(ctx context.Context, username, password string, now time.Time) error {
	hash, err := secrets.HashPassword(password)
	if err != nil {
		return err
	}
	return s.st.SetUserPassword(ctx, username, hash, now.UnixMilli())
}

// SetDisabled disables or re-enables an account. The only enabled admin
// cannot be disabled (ErrLastAdmin).
func (s *Store) SetDisabled(ctx context.Context, username string, disabled bool, now time.Time) error {
	return s.st.SetUserDisabled(ctx, username, disabled, now.UnixMilli())
}

// SetRole changes an account's role. The only enabled admin cannot be
// made a viewer (ErrLastAdmin).
func (s *Store) SetRole(ctx context.Context, username, role string, now time.Time) error {
	if role != RoleAdmin && role != RoleViewer {
		return ErrBadRole
	}
	return s.st.SetUserRole(ctx, username, role, now.UnixMilli())
}

// Delete removes an account. The only enabled admin cannot be removed
// (ErrLastAdmin).
func (s *Store) Delete(ctx context.Context, username string) error {
	return s.st.DeleteUser(ctx, username)
}
