package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Settings returns the settings table as key → value, with a mark that
// changes whenever a value does, whichever process changed it.
func (s *Store) Settings(ctx context.Context) (map[string]string, string, error) {
	var rows []struct {
		Key   string `db:"key"`
		Value string `db:"value"`
	}
	if err := s.r.SelectContext(ctx, &rows, `SELECT key, value FROM settings`); err != nil {
		return nil, "", fmt.Errorf("read settings: %w", err)
	}
	m := make(map[string]string, len(rows))
	for _, r := range rows {
		m[r.Key] = r.Value
	}
	return m, settingsMark(m), nil
}

// settingsMark is the table's contents in key order: it has a few short
// rows, so the mark is the table itself.
func settingsMark(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%q=%q;", k, m[k])
	}
	return b.String()
}

// PutSettings stores values (key → value) in one transaction.
func (s *Store) PutSettings(ctx context.Context, values map[string]string) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for k, v := range values {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
			return fmt.Errorf("write settings: %s: %w", k, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return nil
}
