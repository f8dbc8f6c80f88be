package app

import (
	"context"
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
	mark        string // the table as last loaded (store.Settings)
}

func newSettings(st *store.Store, retention int, bodies bool, maxBody int, redact []string) *settings {
	return &settings{st: st, retention: retention, bodies: bodies, maxBody: maxBody, redact: redact,
		pruneNow: make(chan struct{}, 1), changedKeys: map[string]bool{}}
}

// load reads the stored values over the defaults.
func (s *settings) load(ctx context.Context) error {
	values, mark, err := s.st.Settings(ctx)
	if err != nil {
		return err
	}
	s.set(values, mark)
	return nil
}

// set takes the stored values over the defaults.
func (s *settings) set(values map[string]string, mark string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mark = mark
	for k, v := range values {
		switch k {
		case settingRetentionDays:
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= MaxRetentionDays {
				s.retention, s.changedKeys[k] = n, true
			}
		case settingLogBodies:
			if b, err := strconv.ParseBool(v); err == nil {
				s.bodies, s.changedKeys[k] = b, true
			}
		}
	}
}

// refresh loads the table again when another process (a replica) changed
// it, and applies what changed.
func (s *settings) refresh(ctx context.Context) error {
	values, mark, err := s.st.Settings(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	same, retention := mark == s.mark, s.retention
	s.mu.Unlock()
	if same {
		return nil
	}
	s.set(values, mark)
	s.apply()
	if s.retentionDays() != retention {
		s.wakePrune()
	}
	return nil
}

func (s *settings) wakePrune() {
	select {
	case s.pruneNow <- struct{}{}:
	default:
	}
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
	values := map[string]string{}
	if p.RetentionDays != nil {
		values[settingRetentionDays] = strconv.Itoa(*p.RetentionDays)
	}
	if p.LogBodies != nil {
		values[settingLogBodies] = strconv.FormatBool(*p.LogBodies)
	}
	if err := s.st.PutSettings(ctx, values); err != nil {
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
		s.wakePrune()
	}
	return s.Settings(), nil
}
