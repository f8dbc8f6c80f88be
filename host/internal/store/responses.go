package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// StoredResponse is a response of OpenAI's Responses API kept so that a
// later request can continue it (migration 00012).
type StoredResponse struct {
	ID    string `db:"id"`
	KeyID string `db:"key_id"` // the key that made it; "admin" for the admin key
	Model string `db:"model"`
	// CreatedAt and ExpiresAt are Unix milliseconds.
	CreatedAt int64 `db:"created_at"`
	ExpiresAt int64 `db:"expires_at"`
	// Messages is the conversation up to and including the response: the
	// comma-separated messages of a chat completion request.
	Messages string `db:"messages"`
	// Response is the Response object the client got.
	Response string `db:"response"`
}

// ErrNoResponse is returned for an id that names no kept response (none
// was made, it expired, or it was deleted).
var ErrNoResponse = errors.New("no kept response has that id")

// SaveResponse keeps a response.
func (s *Store) SaveResponse(ctx context.Context, r StoredResponse) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO responses (id, key_id, model, created_at, expires_at, messages, response)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.ID, r.KeyID, r.Model, r.CreatedAt, r.ExpiresAt, r.Messages, r.Response)
	if err != nil {
		return fmt.Errorf("save response %s: %w", r.ID, err)
	}
	return nil
}

// LoadResponse reads the kept response id of key keyID that has not
// expired at now (Unix ms); another key's is ErrNoResponse too, so that
// ids cannot be probed.
func (s *Store) LoadResponse(ctx context.Context, id, keyID string, now int64) (StoredResponse, error) {
	var r StoredResponse
	err := s.r.GetContext(ctx, &r, `SELECT id, key_id, model, created_at, expires_at, messages, response
		FROM responses WHERE id = ? AND key_id = ? AND expires_at > ?`, id, keyID, now)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNoResponse
	}
	if err != nil {
		return r, fmt.Errorf("load response %s: %w", id, err)
	}
	return r, nil
}

// DeleteResponse deletes the kept response id of key keyID;
// ErrNoResponse when there is none.
func (s *Store) DeleteResponse(ctx context.Context, id, keyID string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM responses WHERE id = ? AND key_id = ?`, id, keyID)
	if err != nil {
		return fmt.Errorf("delete response %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoResponse
	}
	return nil
}

// PruneResponses deletes the responses expired at now (Unix ms), at most
// batch rows per statement, and returns how many went.
func (s *Store) PruneResponses(ctx context.Context, now int64, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	var total int64
	for {
		res, err := s.w.ExecContext(ctx, `DELETE FROM responses WHERE id IN
			(SELECT id FROM responses WHERE expires_at <= ? LIMIT ?)`, now, batch)
		if err != nil {
			return total, fmt.Errorf("prune responses: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < int64(batch) || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
