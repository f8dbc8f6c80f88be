package store

import (
	"context"
	"errors"
	"fmt"
)

// ResealProviderSecrets rewrites every stored provider secret in one
// transaction: reseal gets the provider's id and sealed bytes and returns
// the new sealed bytes. If any call fails, nothing changes. It returns how
// many secrets were rewritten. The store never sees a secret in clear: the
// sealing is the caller's.
func (s *Store) ResealProviderSecrets(ctx context.Context, reseal func(id string, sealed []byte) ([]byte, error)) (n int, err error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reseal secrets: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	var rows []struct {
		ID     string `db:"id"`
		Sealed []byte `db:"secret_ciphertext"`
	}
	if err := tx.SelectContext(ctx, &rows, `SELECT id, secret_ciphertext FROM providers WHERE secret_ciphertext IS NOT NULL`); err != nil {
		return 0, fmt.Errorf("reseal secrets: %w", err)
	}
	for _, r := range rows {
		next, err := reseal(r.ID, r.Sealed)
		if err != nil {
			return 0, fmt.Errorf("reseal secret of provider %s: %w", r.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE providers SET secret_ciphertext = ? WHERE id = ?`, next, r.ID); err != nil {
			return 0, fmt.Errorf("reseal secrets: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("reseal secrets: %w", err)
	}
	return len(rows), nil
}
