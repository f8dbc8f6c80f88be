package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrKeyNotFound: no key has that id (or, for a change that only applies
// to a live key, it is revoked).
var ErrKeyNotFound = errors.New("no such api key")

// APIKey is a row of the api_keys table: a client key as stored, never its
// secret (Hash is the SHA-256 of it). Times are Unix milliseconds.
type APIKey struct {
	ID           string        `db:"id"`
	Name         string        `db:"name"`
	Prefix       string        `db:"prefix"`
	Hash         []byte        `db:"hash"`
	Models       string        `db:"models"` // a JSON array of model names
	CreatedAt    int64         `db:"created_at"`
	ExpiresAt    sql.NullInt64 `db:"expires_at"`
	RevokedAt    sql.NullInt64 `db:"revoked_at"`
	LastUsedAt   sql.NullInt64 `db:"last_used_at"`
	RPM          int           `db:"rpm"`
	TPM          int           `db:"tpm"`
	MaxParallel  int           `db:"max_parallel"`
	BudgetUSD    float64       `db:"budget_usd"`
	BudgetPeriod string        `db:"budget_period"`
}

// KeyLimits are the columns [Store.UpdateKeyLimits] changes.
type KeyLimits struct {
	RPM, TPM, MaxParallel int
	BudgetUSD             float64
	BudgetPeriod          string
}

// KeyStamp is a key's last use, for [Store.FlushKeyUsage].
type KeyStamp struct {
	ID string
	MS int64
}

// keysMarkSQL fingerprints the api_keys table: an insert raises the count
// and the newest created_at; a revocation, a change of limits and a
// rotation each raise revoked_at's or updated_at's sum (keys are never
// deleted). last_used_at is left out: it changes all the time and nothing
// cached depends on it.
const keysMarkSQL = `SELECT count(*) || ':' || coalesce(max(created_at), 0) || ':' ||
	coalesce(sum(coalesce(revoked_at, 0)), 0) || ':' || coalesce(sum(updated_at), 0) FROM api_keys`

const keyColumns = `id, name, prefix, hash, models, created_at, expires_at, revoked_at, last_used_at,
	rpm, tpm, max_parallel, budget_usd, budget_period`

// KeysMark returns a short fingerprint of the api_keys table that changes
// with every key created, changed, rotated or revoked, by any process.
func (s *Store) KeysMark(ctx context.Context) (string, error) {
	var mark string
	if err := s.r.GetContext(ctx, &mark, keysMarkSQL); err != nil {
		return "", fmt.Errorf("api keys mark: %w", err)
	}
	return mark, nil
}

// ListKeys returns every key, from one consistent read, with the table's
// [Store.KeysMark] as of that read.
func (s *Store) ListKeys(ctx context.Context) (keys []APIKey, mark string, err error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", fmt.Errorf("load api keys: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := tx.GetContext(ctx, &mark, keysMarkSQL); err != nil {
		return nil, "", fmt.Errorf("load api keys: %w", err)
	}
	if err := tx.SelectContext(ctx, &keys, `SELECT `+keyColumns+` FROM api_keys`); err != nil {
		return nil, "", fmt.Errorf("load api keys: %w", err)
	}
	return keys, mark, nil
}

// InsertKey stores a new key (LastUsedAt is ignored).
func (s *Store) InsertKey(ctx context.Context, k APIKey) error {
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO api_keys (id, name, prefix, hash, models, created_at, expires_at,
			rpm, tpm, max_parallel, budget_usd, budget_period) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Prefix, k.Hash, k.Models, k.CreatedAt, k.ExpiresAt,
		k.RPM, k.TPM, k.MaxParallel, k.BudgetUSD, k.BudgetPeriod)
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// bumpUpdated is the SET clause that moves updated_at forward to now, or
// by one when now is not later (two changes in one millisecond, or a
// clock behind another process's): the mark must change either way. It
// takes now twice.
const bumpUpdated = `updated_at = CASE WHEN updated_at + 1 > ? THEN updated_at + 1 ELSE ? END`

// UpdateKeyLimits sets the limits of the live key id; ErrKeyNotFound when
// there is none.
func (s *Store) UpdateKeyLimits(ctx context.Context, id string, l KeyLimits, now int64) error {
	res, err := s.w.ExecContext(ctx,
		`UPDATE api_keys SET rpm = ?, tpm = ?, max_parallel = ?, budget_usd = ?, budget_period = ?, `+bumpUpdated+`
		WHERE id = ? AND revoked_at IS NULL`,
		l.RPM, l.TPM, l.MaxParallel, l.BudgetUSD, l.BudgetPeriod, now, now, id)
	return affected("update api key", res, err)
}

// RevokeKey revokes the key id as of now; revoking twice keeps the first
// time. ErrKeyNotFound when there is no such key.
func (s *Store) RevokeKey(ctx context.Context, id string, now int64) error {
	res, err := s.w.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, now, id)
	return affected("revoke api key", res, err)
}

// RotateKey gives the live key id a new hash and prefix; ErrKeyNotFound
// when there is none.
func (s *Store) RotateKey(ctx context.Context, id string, hash []byte, prefix string, now int64) error {
	res, err := s.w.ExecContext(ctx,
		`UPDATE api_keys SET hash = ?, prefix = ?, `+bumpUpdated+` WHERE id = ? AND revoked_at IS NULL`,
		hash, prefix, now, now, id)
	return affected("rotate api key", res, err)
}

// affected turns an UPDATE's result into ErrKeyNotFound when it changed no
// row.
func affected(what string, res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	} else if n == 0 {
		return ErrKeyNotFound
	}
	return nil
}

// FlushKeyUsage writes last-used stamps in one transaction. A stamp never
// moves back: each row keeps the later of its value and the stamp, so
// several processes may flush to one database.
func (s *Store) FlushKeyUsage(ctx context.Context, stamps []KeyStamp) error {
	if len(stamps) == 0 {
		return nil
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush key usage: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PreparexContext(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ? AND coalesce(last_used_at, 0) < ?`)
	if err != nil {
		return fmt.Errorf("flush key usage: %w", err)
	}
	defer stmt.Close()
	for _, st := range stamps {
		if _, err := stmt.ExecContext(ctx, st.MS, st.ID, st.MS); err != nil {
			return fmt.Errorf("flush key usage: %s: %w", st.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush key usage: commit: %w", err)
	}
	return nil
}
