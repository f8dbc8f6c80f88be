// Package users keeps the dashboard's accounts: a unique username, a
// bcrypt (cost 12) password hash, a role (admin or viewer) and a disabled
// flag. Sessions and login build on it.
package users

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
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
	ErrExists      = errors.New("a user with that name exists")
	ErrNotFound    = errors.New("no such user")
	ErrBadUsername = errors.New("usernames are 1 to 64 letters, digits, '.', '_', '-' or '@'")
	ErrBadRole     = errors.New(`role must be "admin" or "viewer"`)
	// ErrBadLogin is the one answer to a failed login, whatever failed.
	ErrBadLogin = errors.New("wrong username or password")
	// ErrLastAdmin refuses to remove, disable or demote the only enabled
	// admin, which would leave nobody able to manage the dashboard.
	ErrLastAdmin = errors.New("this is the only enabled admin; make another admin first")
)

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// User is an account without its password hash.
type User struct {
	ID                string    `json:"id" db:"id"`
	Username          string    `json:"username" db:"username"`
	Role              string    `json:"role" db:"role"`
	Disabled          bool      `json:"disabled" db:"disabled"`
	CreatedAt         time.Time `json:"created_at" db:"-"`
	PasswordChangedAt time.Time `json:"password_changed_at" db:"-"`
}

type row struct {
	User
	Hash      string `db:"password_hash"`
	Created   int64  `db:"created_at"`
	Changed   int64  `db:"password_changed_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func (r row) user() *User {
	u := r.User
	u.CreatedAt, u.PasswordChangedAt = time.UnixMilli(r.Created).UTC(), time.UnixMilli(r.Changed).UTC()
	return &u
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
	id := "usr_" + hex.EncodeToString(b[:])
	ms := now.UnixMilli()
	_, err = s.st.Writer().ExecContext(ctx, `INSERT INTO users (id, username, password_hash, role, created_at, updated_at, password_changed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, id, username, hash, role, ms, ms, ms)
	if err != nil {
		if store.IsUniqueViolation(err) {
			return nil, fmt.Errorf("%w: %s", ErrExists, username)
		}
		return nil, fmt.Errorf("create user: %w", err)
	}
	return s.Get(ctx, username)
}

func (s *Store) get(ctx context.Context, username string) (*row, error) {
	var r row
	err := s.st.Reader().GetContext(ctx, &r, `SELECT id, username, role, disabled, password_hash, created_at, password_changed_at, updated_at
		FROM users WHERE username = ?`, username)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read user: %w", err)
	}
	return &r, nil
}

// GetByID returns an account by id.
func (s *Store) GetByID(ctx context.Context, id string) (*User, error) {
	var r row
	err := s.st.Reader().GetContext(ctx, &r, `SELECT id, username, role, disabled, password_hash, created_at, password_changed_at, updated_at
		FROM users WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read user: %w", err)
	}
	return r.user(), nil
}

// Get returns an account by username.
func (s *Store) Get(ctx context.Context, username string) (*User, error) {
	r, err := s.get(ctx, username)
	if err != nil {
		return nil, err
	}
	return r.user(), nil
}

// List returns every account, by username.
func (s *Store) List(ctx context.Context) ([]*User, error) {
	var rows []row
	if err := s.st.Reader().SelectContext(ctx, &rows, `SELECT id, username, role, disabled, password_hash, created_at, password_changed_at, updated_at
		FROM users ORDER BY username`); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]*User, len(rows))
	for i := range rows {
		out[i] = rows[i].user()
	}
	return out, nil
}

// Authenticate checks a login. Every failure is ErrBadLogin, and an
// unknown user costs the same bcrypt comparison as a wrong password, so
// neither the answer nor its timing tells which part was wrong.
func (s *Store) Authenticate(ctx context.Context, username, password string) (*User, error) {
	r, err := s.get(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	found := err == nil
	hash := ""
	if found {
		hash = r.Hash
	}
	if !secrets.CheckPasswordOrDummy(hash, found, password) || !found || r.Disabled {
		return nil, ErrBadLogin
	}
	return r.user(), nil
}

// SetPassword changes a password; sessions issued before it must be
// revoked by the caller (PasswordChangedAt tells when).
func (s *Store) SetPassword(ctx context.Context, username, password string, now time.Time) error {
	hash, err := secrets.HashPassword(password)
	if err != nil {
		return err
	}
	return s.update(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE username = ?`,
		hash, now.UnixMilli(), now.UnixMilli(), username)
}

// SetDisabled disables or re-enables an account. The only enabled admin
// cannot be disabled (ErrLastAdmin).
func (s *Store) SetDisabled(ctx context.Context, username string, disabled bool, now time.Time) error {
	if disabled {
		return s.updateKeepingAdmin(ctx, username, `UPDATE users SET disabled = 1, updated_at = ? WHERE username = ?`, now.UnixMilli(), username)
	}
	return s.update(ctx, `UPDATE users SET disabled = 0, updated_at = ? WHERE username = ?`, now.UnixMilli(), username)
}

// SetRole changes an account's role. The only enabled admin cannot be
// made a viewer (ErrLastAdmin).
func (s *Store) SetRole(ctx context.Context, username, role string, now time.Time) error {
	if role != RoleAdmin && role != RoleViewer {
		return ErrBadRole
	}
	if role == RoleAdmin {
		return s.update(ctx, `UPDATE users SET role = 'admin', updated_at = ? WHERE username = ?`, now.UnixMilli(), username)
	}
	return s.updateKeepingAdmin(ctx, username, `UPDATE users SET role = 'viewer', updated_at = ? WHERE username = ?`, now.UnixMilli(), username)
}

// Delete removes an account. The only enabled admin cannot be removed
// (ErrLastAdmin).
func (s *Store) Delete(ctx context.Context, username string) error {
	return s.updateKeepingAdmin(ctx, username, `DELETE FROM users WHERE username = ?`, username)
}

// updateKeepingAdmin runs a statement that may take away an enabled
// admin, and undoes it if no enabled admin would be left. Only accounts
// that were enabled admins are guarded, so a database with no admin at
// all (before `llm-proxy users create --admin`) can still be changed.
func (s *Store) updateKeepingAdmin(ctx context.Context, username, query string, args ...any) (err error) {
	tx, err := s.st.Writer().BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var wasAdmin bool
	switch err := tx.GetContext(ctx, &wasAdmin, `SELECT role = 'admin' AND disabled = 0 FROM users WHERE username = ?`, username); {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("update user: %w", err)
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if wasAdmin {
		var left int
		if err := tx.GetContext(ctx, &left, `SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0`); err != nil {
			return fmt.Errorf("update user: %w", err)
		}
		if left == 0 {
			return ErrLastAdmin
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	return nil
}

func (s *Store) update(ctx context.Context, query string, args ...any) error {
	res, err := s.st.Writer().ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
