// Package keys manages client API keys ("virtual keys"): created with a
// random secret shown once, stored only as a SHA-256 hash with a visible
// prefix, limited to a model allow-list, an expiry, and revocable.
//
// The request path never reads the database: Authenticate looks the key's
// hash up in an in-memory table. Changes made through this package apply
// at once; changes made by another process on the same database (a
// replica, the `llm-proxy keys` command) are picked up by [Registry.Refresh],
// which the app calls when PostgreSQL notifies a change and on a poll every
// second on SQLite, so a revocation takes effect within a second either way.
//
// Nor does the request path write to it. Authenticate notes when a key was
// last used as a Unix millisecond stamp in an atomic on the key, at most
// once a second per key (a load, and a store when the stamp is a second
// old), and [Registry.FlushUsage], run every few seconds and at shutdown,
// writes the stamps that changed to api_keys.last_used_at in one
// transaction.
package keys

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// Errors of Authenticate and the management calls.
var (
	ErrUnknown  = errors.New("unknown API key")
	ErrExpired  = errors.New("API key expired")
	ErrRevoked  = errors.New("API key revoked")
	ErrNotFound = errors.New("no such key")
	ErrBadInput = errors.New("invalid key request")
)

// Key is a client API key as listed; the secret itself is never kept.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Models    []string   `json:"models"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// LastUsedAt is when the key last authenticated a request, to the
	// second; nil if never. It is filled in the copies List and Get
	// return, from memory, so it is ahead of the database by up to one
	// flush interval.
	LastUsedAt *time.Time `json:"last_used_at"`
	// Limits are the key's rate limits and budget; zero fields are none.
	Limits
	hash  [32]byte
	usage *usage
}

// Limits of a client key; 0 (or "") means none.
type Limits struct {
	// RPM is requests per minute (a sliding minute).
	RPM int `json:"rpm"`
	// TPM is tokens per minute: each request's estimate (its body's
	// length in characters / 4 plus its max_tokens) counts when it starts,
	// replaced by the usage the upstream reports when it ends.
	TPM int `json:"tpm"`
	// MaxParallel is requests served at once.
	MaxParallel int `json:"max_parallel"`
	// BudgetUSD is what the key may spend per BudgetPeriod, from the price
	// table ([prices]).
	BudgetUSD float64 `json:"budget_usd"`
	// BudgetPeriod is "day" or "month" (UTC); "month" when a budget is set
	// without one.
	BudgetPeriod string `json:"budget_period"`
}

// Periods a budget may have.
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// maxLimit bounds rpm, tpm and max_parallel.
const maxLimit = 1_000_000_000

// check validates l and fills in the default period.
func (l *Limits) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"rpm", l.RPM}, {"tpm", l.TPM}, {"max_parallel", l.MaxParallel}} {
		if f.v < 0 || f.v > maxLimit {
			return fmt.Errorf("%w: %s must be between 0 (no limit) and %d, got %d", ErrBadInput, f.name, maxLimit, f.v)
		}
	}
	if math.IsNaN(l.BudgetUSD) || l.BudgetUSD < 0 || l.BudgetUSD > 1e12 {
		return fmt.Errorf("%w: budget_usd must be a number from 0 (no budget) up, got %v", ErrBadInput, l.BudgetUSD)
	}
	switch l.BudgetPeriod {
	case PeriodDay, PeriodMonth:
	case "":
		if l.BudgetUSD > 0 {
			l.BudgetPeriod = PeriodMonth
		}
	default:
		return fmt.Errorf("%w: budget_period must be %q or %q, got %q", ErrBadInput, PeriodDay, PeriodMonth, l.BudgetPeriod)
	}
	return nil
}

// Limited reports whether any limit is set.
func (l Limits) Limited() bool {
	return l.RPM > 0 || l.TPM > 0 || l.MaxParallel > 0 || l.BudgetUSD > 0
}

// usage is a key's last-used stamp. One usage belongs to one key id for the
// life of the registry: a reload hands it on to the key's new copy, so a
// stamp set through a copy that was just replaced is not lost.
type usage struct {
	last    atomic.Int64 // Unix ms of the last successful Authenticate; 0: never
	flushed atomic.Int64 // the stamp the database is known to hold
}

// stampEvery is the resolution of last-used stamps, in milliseconds: a key
// used all the time stores a new stamp once a second, so the cache line of
// a busy key is written that often, not on every request.
const stampEvery = 1000

// touch notes a use at ms.
func (u *usage) touch(ms int64) {
	if ms-u.last.Load() >= stampEvery {
		u.last.Store(ms)
	}
}

// raise sets a to v unless it already holds a later stamp.
func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Allows reports whether the key may use model (an empty list allows all).
func (k *Key) Allows(model string) bool {
	if len(k.Models) == 0 {
		return true
	}
	return slices.Contains(k.Models, model)
}

func fromRow(r store.APIKey) (*Key, error) {
	k := &Key{ID: r.ID, Name: r.Name, Prefix: r.Prefix, CreatedAt: time.UnixMilli(r.CreatedAt).UTC(),
		Limits: Limits{RPM: r.RPM, TPM: r.TPM, MaxParallel: r.MaxParallel, BudgetUSD: r.BudgetUSD, BudgetPeriod: r.BudgetPeriod}}
	if len(r.Hash) != 32 {
		return nil, fmt.Errorf("key %s: bad hash length %d", r.ID, len(r.Hash))
	}
	copy(k.hash[:], r.Hash)
	if err := json.Unmarshal([]byte(r.Models), &k.Models); err != nil {
		return nil, fmt.Errorf("key %s: models: %w", r.ID, err)
	}
	if k.Models == nil {
		k.Models = []string{}
	}
	if r.ExpiresAt.Valid {
		t := time.UnixMilli(r.ExpiresAt.Int64).UTC()
		k.ExpiresAt = &t
	}
	if r.RevokedAt.Valid {
		t := time.UnixMilli(r.RevokedAt.Int64).UTC()
		k.RevokedAt = &t
	}
	return k, nil
}

// Registry is the key table and its in-memory copy.
type Registry struct {
	st  *store.Store
	log *slog.Logger

	mu     sync.RWMutex
	byHash map[[32]byte]*Key
	mark   string // fingerprint of the table at the last load

	flushMu sync.Mutex // one FlushUsage at a time
}

// Open loads the keys from the database.
func Open(ctx context.Context, st *store.Store, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{st: st, log: log, byHash: map[[32]byte]*Key{}}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Authenticate returns the key a client presented, from memory.
func (r *Registry) Authenticate(presented string, now time.Time) (*Key, error) {
	h := secrets.HashAPIKey(presented)
	r.mu.RLock()
	k := r.byHash[h]
	r.mu.RUnlock()
	if k == nil || subtle.ConstantTimeCompare(k.hash[:], h[:]) != 1 {
		return nil, ErrUnknown
	}
	switch {
	case k.RevokedAt != nil:
		return nil, ErrRevoked
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return nil, ErrExpired
	}
	k.usage.touch(now.UnixMilli())
	return k, nil
}

// FlushUsage writes the last-used stamps that changed since the last flush
// to the database, in one transaction, and returns how many it wrote. A
// stamp never moves back: the database keeps the later of its value and
// this process's, so several processes may share a database.
func (r *Registry) FlushUsage(ctx context.Context) (int, error) {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	type stamp struct {
		u  *usage
		id string
		ms int64
	}
	var todo []stamp
	r.mu.RLock()
	for _, k := range r.byHash {
		if ms := k.usage.last.Load(); ms > k.usage.flushed.Load() {
			todo = append(todo, stamp{k.usage, k.ID, ms})
		}
	}
	r.mu.RUnlock()
	if len(todo) == 0 {
		return 0, nil
	}
	stamps := make([]store.KeyStamp, len(todo))
	for i, t := range todo {
		stamps[i] = store.KeyStamp{ID: t.id, MS: t.ms}
	}
	if err := r.st.FlushKeyUsage(ctx, stamps); err != nil {
		return 0, err
	}
	for _, s := range todo {
		raise(&s.u.flushed, s.ms)
	}
	return len(todo), nil
}

// FlushUsageEvery calls FlushUsage every interval until ctx ends. The
// final flush, once no request can use a key any more, is the caller's.
func (r *Registry) FlushUsageEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.FlushUsage(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("api keys: last_used_at not written, will retry", "err", err)
			}
		}
	}
}

// Refresh loads the keys again if another process (a replica, the
// llm-proxy command) changed the table since the last load.
func (r *Registry) Refresh(ctx context.Context) error {
	mark, err := r.st.KeysMark(ctx)
	if err != nil {
		return err
	}
	r.mu.RLock()
	same := mark == r.mark
	r.mu.RUnlock()
	if same {
		return nil
	}
	return r.reload(ctx)
}

func (r *Registry) reload(ctx context.Context) error {
	rows, mark, err := r.st.ListKeys(ctx)
	if err != nil {
		return err
	}
	m := make(map[[32]byte]*Key, len(rows))
	for _, rw := range rows {
		k, err := fromRow(rw)
		if err != nil {
			return err
		}
		m[k.hash] = k
	}
	r.mu.Lock()
	// Each key keeps the usage of the key it replaces (same id, and the
	// hash too unless it was rotated), taken from the table being replaced
	// under the lock, so that no stamp set in the meantime is lost.
	prev := make(map[string]*usage, len(r.byHash))
	for _, k := range r.byHash {
		prev[k.ID] = k.usage
	}
	for _, rw := range rows {
		k := m[[32]byte(rw.Hash)]
		if u := prev[k.ID]; u != nil {
			k.usage = u
		} else {
			k.usage = &usage{}
		}
		if rw.LastUsedAt.Valid {
			raise(&k.usage.last, rw.LastUsedAt.Int64)
			raise(&k.usage.flushed, rw.LastUsedAt.Int64)
		}
	}
	r.byHash, r.mark = m, mark
	r.mu.Unlock()
	return nil
}

// CreateRequest describes a new key.
type CreateRequest struct {
	Name      string     `json:"name"`
	Models    []string   `json:"models"`
	ExpiresAt *time.Time `json:"expires_at"`
	Limits
}

// Create makes a key and returns its secret, which is not stored.
func (r *Registry) Create(ctx context.Context, req CreateRequest, now time.Time) (string, *Key, error) {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		return "", nil, fmt.Errorf("%w: name must be 1 to 200 characters", ErrBadInput)
	}
	for _, m := range req.Models {
		if strings.TrimSpace(m) == "" {
			return "", nil, fmt.Errorf("%w: models must not contain empty names", ErrBadInput)
		}
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		return "", nil, fmt.Errorf("%w: expires_at is in the past", ErrBadInput)
	}
	if err := req.Limits.check(); err != nil {
		return "", nil, err
	}
	secret, prefix, hash := secrets.NewAPIKey()
	models := req.Models
	if models == nil {
		models = []string{}
	}
	mj, _ := json.Marshal(models)
	id := newID()
	var expires sql.NullInt64
	if req.ExpiresAt != nil {
		expires = sql.NullInt64{Int64: req.ExpiresAt.UnixMilli(), Valid: true}
	}
	err := r.st.InsertKey(ctx, store.APIKey{ID: id, Name: req.Name, Prefix: prefix, Hash: hash[:], Models: string(mj),
		CreatedAt: now.UnixMilli(), ExpiresAt: expires, RPM: req.RPM, TPM: req.TPM, MaxParallel: req.MaxParallel,
		BudgetUSD: req.BudgetUSD, BudgetPeriod: req.BudgetPeriod})
	if err != nil {
		return "", nil, err
	}
	if err := r.reload(ctx); err != nil {
		return "", nil, err
	}
	k, err := r.Get(id)
	return secret, k, err
}

// List returns a copy of every key, newest first, with LastUsedAt.
func (r *Registry) List() []*Key {
	r.mu.RLock()
	out := make([]*Key, 0, len(r.byHash))
	for _, k := range r.byHash {
		c := *k
		if ms := k.usage.last.Load(); ms > 0 {
			t := time.UnixMilli(ms).UTC()
			c.LastUsedAt = &t
		}
		out = append(out, &c)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Key) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Get returns one key by id.
func (r *Registry) Get(id string) (*Key, error) {
	for _, k := range r.List() {
		if k.ID == id {
			return k, nil
		}
	}
	return nil, ErrNotFound
}

// Patch changes a key's limits; a nil field is left as it is.
type Patch struct {
	RPM          *int     `json:"rpm"`
	TPM          *int     `json:"tpm"`
	MaxParallel  *int     `json:"max_parallel"`
	BudgetUSD    *float64 `json:"budget_usd"`
	BudgetPeriod *string  `json:"budget_period"`
}

// Update applies p to the key id, which must not be revoked.
func (r *Registry) Update(ctx context.Context, id string, p Patch, now time.Time) (*Key, error) {
	k, err := r.Get(id)
	if err != nil {
		return nil, err
	}
	if k.RevokedAt != nil {
		return nil, fmt.Errorf("%w: the key is revoked", ErrBadInput)
	}
	l := k.Limits
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&l.RPM, p.RPM)
	set(&l.TPM, p.TPM)
	set(&l.MaxParallel, p.MaxParallel)
	if p.BudgetUSD != nil {
		l.BudgetUSD = *p.BudgetUSD
	}
	if p.BudgetPeriod != nil {
		l.BudgetPeriod = *p.BudgetPeriod
	}
	if l.BudgetUSD == 0 && p.BudgetPeriod == nil {
		l.BudgetPeriod = ""
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	err = r.st.UpdateKeyLimits(ctx, id, store.KeyLimits{RPM: l.RPM, TPM: l.TPM, MaxParallel: l.MaxParallel,
		BudgetUSD: l.BudgetUSD, BudgetPeriod: l.BudgetPeriod}, now.UnixMilli())
	if err != nil {
		return nil, notFound(err)
	}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	return r.Get(id)
}

// Revoke disables a key for good; revoking twice is not an error.
func (r *Registry) Revoke(ctx context.Context, id string, now time.Time) (*Key, error) {
	if err := r.st.RevokeKey(ctx, id, now.UnixMilli()); err != nil {
		return nil, notFound(err)
	}
	if err := r.reload(ctx); err != nil {
		return nil, err
	}
	return r.Get(id)
}

// Rotate gives a key a new secret; the old one stops working at once.
func (r *Registry) Rotate(ctx context.Context, id string) (string, *Key, error) {
	secret, prefix, hash := secrets.NewAPIKey()
	if err := r.st.RotateKey(ctx, id, hash[:], prefix, time.Now().UnixMilli()); err != nil {
		return "", nil, notFound(err)
	}
	if err := r.reload(ctx); err != nil {
		return "", nil, err
	}
	k, err := r.Get(id)
	return secret, k, err
}

// notFound maps the store's ErrKeyNotFound to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, store.ErrKeyNotFound) {
		return ErrNotFound
	}
	return err
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "key_" + hex.EncodeToString(b[:])
}

// ParseExpiry reads "30d", "12h", "90m" (relative to now) or an RFC 3339
// time; "" means never.
func ParseExpiry(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return &t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err == nil && days > 0 && fmt.Sprint(days) == n {
			t := now.AddDate(0, 0, days)
			return &t, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		t := now.Add(d)
		return &t, nil
	}
	return nil, fmt.Errorf("%w: expiry %q: use e.g. 30d, 12h or an RFC 3339 time", ErrBadInput, s)
}
