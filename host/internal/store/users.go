package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Errors of the users table.
var (
	ErrUserExists   = errors.New("a user with that name exists")
	ErrUserNotFound = errors.New("no such user")
	// ErrLastAdmin refuses to remove, disable or demote the only enabled
	// admin, which would leave nobody able to manage the dashboard.
	ErrLastAdmin = errors.New("this is the only enabled admin; make another admin first")
)

// UserRow is a row of the users table (a dashboard account). Times are
// Unix milliseconds.
type UserRow struct {
	ID                string `db:"id"`
	Username          string `db:"username"`
	Role              string `db:"role"`
	Disabled          bool   `db:"disabled"`
	PasswordHash      string `db:"password_hash"`
	CreatedAt         int64  `db:"created_at"`
	PasswordChangedAt int64  `db:"password_changed_at"`
	UpdatedAt         int64  `db:"updated_at"`
}

const userColumns = `id, username, role, disabled, password_hash, created_at, password_changed_at, updated_at`

// InsertUser stores a new account; a taken name is ErrUserExists.
func (s *Store) InsertUser(ctx context.Context, u UserRow) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO users (id, username, password_hash, role, created_at, updated_at, password_changed_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, u.ID, u.Username, u.PasswordHash, u.Role, u.CreatedAt, u.UpdatedAt, u.PasswordChangedAt)
	if IsUniqueViolation(err) {
		return fmt.Errorf("%w: %s", ErrUserExists, u.Username)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// UserByName returns the account of a username; ErrUserNotFound if none.
func (s *Store) UserByName(ctx context.Context, username string) (UserRow, error) {
	return s.user(ctx, `username`, username)
}

// UserByID returns the account of an id; ErrUserNotFound if none.
func (s *Store) UserByID(ctx context.Context, id string) (UserRow, error) {
	return s.user(ctx, `id`, id)
}

func (s *Store) user(ctx context.Context, column, v string) (UserRow, error) {
	var u UserRow
	err := s.r.GetContext(ctx, &u, `SELECT `+userColumns+` FROM users WHERE `+column+` = ?`, v)
	if errors.Is(err, sql.ErrNoRows) {
		return UserRow{}, ErrUserNotFound
	}
	if err != nil {
		return UserRow{}, fmt.Errorf("read user: %w", err)
	}
	return u, nil
}

// ListUsers returns every account, by username.
func (s *Store) ListUsers(ctx context.Context) ([]UserRow, error) {
	var us []UserRow
	if err := s.r.SelectContext(ctx, &us, `SELECT `+userColumns+` FROM users ORDER BY username`); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// SetUserPassword stores a new password hash, changed at now.
func (s *Store) SetUserPassword(ctx context.Context, username, hash string, now int64) error {
	return s.updateUser(ctx, `UPDATE users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE username = ?`,
		hash, now, now, username)
}

// SetUserDisabled disables or re-enables an account; the only enabled
// admin cannot be disabled (ErrLastAdmin).
func (s *Store) SetUserDisabled(ctx context.Context, username string, disabled bool, now int64) error {
	if disabled {
		return s.keepingAdmin(ctx, username, `UPDATE users SET disabled = 1, updated_at = ? WHERE username = ?`, now, username)
	}
	return s.updateUser(ctx, `UPDATE users SET disabled = 0, updated_at = ? WHERE username = ?`, now, username)
}

// SetUserRole changes an account's role ("admin" or "viewer"); the only
// enabled admin cannot be made a viewer (ErrLastAdmin).
func (s *Store) SetUserRole(ctx context.Context, username, role string, now int64) error {
	if role == "admin" {
		return s.updateUser(ctx, `UPDATE users SET role = 'admin', updated_at = ? WHERE username = ?`, now, username)
	}
	return s.keepingAdmin(ctx, username, `UPDATE users SET role = ?, updated_at = ? WHERE username = ?`, role, now, username)
}

// DeleteUser removes an account; the only enabled admin cannot be removed
// (ErrLastAdmin).
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	return s.keepingAdmin(ctx, username, `DELETE FROM users WHERE username = ?`, username)
}

// keepingAdmin runs a statement that may take away an enabled admin, and
// undoes it if no enabled admin would be left. Only accounts that were
// enabled admins are guarded, so a database with no admin at all (before
// `llm-proxy users create --admin`) can still be changed. On PostgreSQL
// the enabled admins are locked first: two replicas each demoting a
// different one of the last two admins cannot both succeed. SQLite's one
// writer, whose transactions begin IMMEDIATE, runs them one after the
// other anyway.
func (s *Store) keepingAdmin(ctx context.Context, username, query string, args ...any) (err error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if s.dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id FOR UPDATE`); err != nil {
			return fmt.Errorf("update user: %w", err)
		}
	}
	var wasAdmin int
	switch err := tx.GetContext(ctx, &wasAdmin, `SELECT CASE WHEN role = 'admin' AND disabled = 0 THEN 1 ELSE 0 END FROM users WHERE username = ?`, username); {
	case errors.Is(err, sql.ErrNoRows):
		return ErrUserNotFound
	case err != nil:
		return fmt.Errorf("update user: %w", err)
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if wasAdmin == 1 {
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

func (s *Store) updateUser(ctx context.Context, query string, args ...any) error {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update user: %w", err)
	} else if n == 0 {
		return ErrUserNotFound
	}
	return nil
}
