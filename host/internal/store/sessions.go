package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrSessionNotFound: no live session has that id.
var ErrSessionNotFound = errors.New("no such session")

// Session is a row of the sessions table: a dashboard session that has
// not ended. Times are Unix milliseconds.
type Session struct {
	ID        string `db:"id"`
	UserID    string `db:"user_id"`
	IssuedAt  int64  `db:"issued_at"`
	ExpiresAt int64  `db:"expires_at"`
}

// StartSession stores a new session and ends the user's oldest sessions
// beyond maxPerUser (none when maxPerUser ≤ 0), in one transaction, so
// replicas logging the same user in at once keep the bound.
func (s *Store) StartSession(ctx context.Context, ss Session, maxPerUser int) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)`,
		ss.ID, ss.UserID, ss.IssuedAt, ss.ExpiresAt); err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	if maxPerUser > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND id NOT IN
			(SELECT id FROM sessions WHERE user_id = ? ORDER BY issued_at DESC, id DESC LIMIT ?)`,
			ss.UserID, ss.UserID, maxPerUser); err != nil {
			return fmt.Errorf("start session: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	return nil
}

// GetSession returns the session id unless it has ended or expired by
// now; ErrSessionNotFound otherwise.
func (s *Store) GetSession(ctx context.Context, id string, now int64) (Session, error) {
	var ss Session
	err := s.r.GetContext(ctx, &ss, `SELECT id, user_id, issued_at, expires_at FROM sessions WHERE id = ? AND expires_at > ?`, id, now)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrSessionNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	return ss, nil
}

// EndSession deletes the session id; ending an ended session is not an
// error.
func (s *Store) EndSession(ctx context.Context, id string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// EndUserSessions deletes every session of userID and returns how many
// there were.
func (s *Store) EndUserSessions(ctx context.Context, userID string) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, userID)
	if err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// PruneSessions deletes the sessions expired by now and returns how many.
func (s *Store) PruneSessions(ctx context.Context, now int64) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, now)
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// CountSessions returns how many sessions are live at now.
func (s *Store) CountSessions(ctx context.Context, now int64) (int, error) {
	var n int
	if err := s.r.GetContext(ctx, &n, `SELECT count(*) FROM sessions WHERE expires_at > ?`, now); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}
