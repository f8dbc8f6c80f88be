package app

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/server"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Keys of the settings table.
const (
	settingRetentionDays = "retention_days"
	settingLogBodies     = "log_bodies"
)

// MaxRetentionDays bounds retention_days set at run time (ten years).
const MaxRetentionDays = 3650

// settings are the values an admin can change while the proxy runs. Their
// defaults come from config.toml; a value set through PATCH /api/settings
// is stored in the settings table and wins over the file from then on,
// restarts included. Changes apply at once: body logging to the next
// request, retention to a prune run started right away.
type settings struct {
	st          *store.Store
	srv         *server.Server
	maxBody     int
	redact      []string
	pruneNow    chan struct{} // a retention change wakes the prune loop
	mu          sync.Mutex
	retention   int
	bodies      bool
	changedKeys map[string]bool
}

func newSettings(st *store.Store, retention int, bodies bool, maxBody int, redact []string) *settings {
	return &settings{st: st, retention: retention, bodies: bodies, maxBody: maxBody, redact: redact,
		pruneNow: make(chan struct{}, 1), changedKeys: map[string]bool{}}
}

// load reads the stored values over the defaults.
func (s *settings) load(ctx context.Context) error {
	var rows []struct {
		Key   string `db:"key"`
		Value string `db:"value"`
	}
	if err := s.st.Reader().SelectContext(ctx, &rows, `SELECT key, value FROM settings`); err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		switch r.Key {
		case settingRetentionDays:
			if n, err := strconv.Atoi(r.Value); err == nil && n >= 0 && n <= MaxRetentionDays {
				s.retention, s.changedKeys[r.Key] = n, true
			}
		case settingLogBodies:
			if b, err := strconv.ParseBool(r.Value); err == nil {
				s.bodies, s.changedKeys[r.Key] = b, true
			}
		}
	}
	return nil
}

// apply hands the body setting to the server.
func (s *settings) apply() {
	s.mu.Lock()
	n := 0
	if s.bodies {
		n = s.maxBody
	}
	s.mu.Unlock()
	s.srv.SetLogBodyBytes(n)
}

func (s *settings) retentionDays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retention
}

// Settings implements server.SettingsStore.
func (s *settings) Settings() server.Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := []string{}
	for k := range s.changedKeys {
		changed = append(changed, k)
	}
	slices.Sort(changed)
	return server.Settings{RetentionDays: s.retention, LogBodies: s.bodies, MaxBodyBytes: s.maxBody,
		RedactFields: append([]string{}, s.redact...), Changed: changed}
}

// UpdateSettings implements server.SettingsStore.
func (s *settings) UpdateSettings(p server.SettingsPatch) (server.Settings, error) {
	if p.RetentionDays != nil && (*p.RetentionDays < 0 || *p.RetentionDays > MaxRetentionDays) {
		return server.Settings{}, fmt.Errorf("%w: retention_days must be from 0 (keep forever) to %d, got %d",
			server.ErrBadSetting, MaxRetentionDays, *p.RetentionDays)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := s.st.Writer().BeginTxx(ctx, nil)
	if err != nil {
		return server.Settings{}, err
	}
	defer tx.Rollback()
	put := func(k, v string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v)
		return err
	}
	if p.RetentionDays != nil {
		if err := put(settingRetentionDays, strconv.Itoa(*p.RetentionDays)); err != nil {
			return server.Settings{}, err
		}
	}
	if p.LogBodies != nil {
		if err := put(settingLogBodies, strconv.FormatBool(*p.LogBodies)); err != nil {
			return server.Settings{}, err
		}
	}
	if err := tx.Commit(); err != nil && err != sql.ErrTxDone {
		return server.Settings{}, err
	}
	s.mu.Lock()
	if p.RetentionDays != nil {
		s.retention, s.changedKeys[settingRetentionDays] = *p.RetentionDays, true
	}
	if p.LogBodies != nil {
		s.bodies, s.changedKeys[settingLogBodies] = *p.LogBodies, true
	}
	s.mu.Unlock()
	s.apply()
	if p.RetentionDays != nil {
		select {
		case s.pruneNow <- struct{}{}:
		default:
		}
	}
	return s.Settings(), nil
}
