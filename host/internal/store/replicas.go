package store

import (
	"context"
	"fmt"
	"time"
)

// Replica is a row of the replicas table: a proxy process on this
// database. Times are Unix milliseconds; Plugins is a JSON array.
type Replica struct {
	ID        string `db:"id" json:"id"`
	Hostname  string `db:"hostname" json:"hostname"`
	Version   string `db:"version" json:"version"`
	StartedAt int64  `db:"started_at" json:"-"`
	SeenAt    int64  `db:"seen_at" json:"-"`
	Plugins   string `db:"plugins" json:"-"`
}

// SeeReplica writes r (a heartbeat), creating its row or updating it.
func (s *Store) SeeReplica(ctx context.Context, r Replica) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO replicas (id, hostname, version, started_at, seen_at, plugins)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, plugins = excluded.plugins`,
		r.ID, r.Hostname, r.Version, r.StartedAt, r.SeenAt, r.Plugins)
	if err != nil {
		return fmt.Errorf("replica heartbeat: %w", err)
	}
	return nil
}

// Replicas lists the replicas seen since a time, oldest first.
func (s *Store) Replicas(ctx context.Context, since int64) ([]Replica, error) {
	var rs []Replica
	if err := s.r.SelectContext(ctx, &rs, `SELECT id, hostname, version, started_at, seen_at, plugins FROM replicas
		WHERE seen_at >= ? ORDER BY started_at, id`, since); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return rs, nil
}

// RemoveReplica deletes a replica's row and its limit shares (a replica
// stopping), and those of every replica not seen since a time (replicas
// that died).
func (s *Store) RemoveReplica(ctx context.Context, id string, staleBefore int64) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("remove replica: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{
		`DELETE FROM limit_shares WHERE replica = ? OR updated_at < ?`,
		`DELETE FROM replicas WHERE id = ? OR seen_at < ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, id, staleBefore); err != nil {
			return fmt.Errorf("remove replica: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("remove replica: %w", err)
	}
	return nil
}

// LimitShare is one replica's counts for one client key (see
// limits.Share).
type LimitShare struct {
	KeyID    string  `db:"key_id"`
	Requests int64   `db:"requests"`
	Tokens   int64   `db:"tokens"`
	InFlight int64   `db:"in_flight"`
	Reserved float64 `db:"reserved"`
}

// ExchangeLimitShares replaces replica's shares with shares, and returns
// the sums, by key, of the other replicas' shares written within the last
// stale. One transaction: one round of the exchange. The rows are stamped
// and judged by the database's clock on PostgreSQL, so replicas whose
// clocks disagree still count each other.
func (s *Store) ExchangeLimitShares(ctx context.Context, replica string, shares []LimitShare, stale time.Duration) ([]LimitShare, error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("exchange limit shares: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UnixMilli()
	if s.dialect == dialectPostgres {
		if err := tx.GetContext(ctx, &now, `SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)`); err != nil {
			return nil, fmt.Errorf("exchange limit shares: %w", err)
		}
	}
	since := now - stale.Milliseconds()
	if _, err := tx.ExecContext(ctx, `DELETE FROM limit_shares WHERE replica = ?`, replica); err != nil {
		return nil, fmt.Errorf("exchange limit shares: %w", err)
	}
	for _, sh := range shares {
		if _, err := tx.ExecContext(ctx, `INSERT INTO limit_shares (replica, key_id, requests, tokens, in_flight, reserved, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, replica, sh.KeyID, sh.Requests, sh.Tokens, sh.InFlight, sh.Reserved, now); err != nil {
			return nil, fmt.Errorf("exchange limit shares: %w", err)
		}
	}
	var others []LimitShare
	if err := tx.SelectContext(ctx, &others, `SELECT key_id, CAST(sum(requests) AS BIGINT) AS requests,
		CAST(sum(tokens) AS BIGINT) AS tokens, CAST(sum(in_flight) AS BIGINT) AS in_flight, sum(reserved) AS reserved
		FROM limit_shares WHERE replica <> ? AND updated_at >= ? GROUP BY key_id`, replica, since); err != nil {
		return nil, fmt.Errorf("exchange limit shares: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("exchange limit shares: %w", err)
	}
	return others, nil
}
