package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
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

// Errors of the provider calls.
var (
	// ErrProviderExists: another provider already has that name.
	ErrProviderExists = errors.New("a provider with that name exists")
	// ErrProviderNotFound: no provider has that name.
	ErrProviderNotFound = errors.New("no such provider")
)

// Provider is one row of the providers table: a provider managed at run
// time. Lists and options are kept as JSON text; the store encodes and
// decodes them. SecretSealed is the provider's credential as sealed by the
// caller (nil when it has none): the store never sees a secret in clear.
type Provider struct {
	ID                  string
	Name                string
	Plugin              string
	BaseURL             string
	Models              []string
	AllowPrivateNetwork bool
	AllowImageFetch     bool
	ExtraHosts          []string
	Options             map[string]any
	SecretSealed        []byte
	// RPM, TPM and MaxParallel limit the provider's use upstream; 0 is
	// none.
	RPM, TPM, MaxParallel int
	// KeyWeights gives each key of the secret its share; empty is equal
	// turns.
	KeyWeights []int
	// CreatedAt and UpdatedAt are Unix milliseconds. UpdatedAt grows with
	// every change, even two changes within one millisecond.
	CreatedAt int64
	UpdatedAt int64
}

type providerRow struct {
	ID                  string `db:"id"`
	Name                string `db:"name"`
	Plugin              string `db:"plugin"`
	BaseURL             string `db:"base_url"`
	Models              string `db:"models"`
	AllowPrivateNetwork bool   `db:"allow_private_network"`
	AllowImageFetch     bool   `db:"allow_image_fetch"`
	ExtraHosts          string `db:"extra_hosts"`
	Options             string `db:"options"`
	SecretSealed        []byte `db:"secret_ciphertext"`
	RPM                 int    `db:"rpm"`
	TPM                 int    `db:"tpm"`
	MaxParallel         int    `db:"max_parallel"`
	KeyWeights          string `db:"key_weights"`
	CreatedAt           int64  `db:"created_at"`
	UpdatedAt           int64  `db:"updated_at"`
}

const providerColumns = `id, name, plugin, base_url, models, allow_private_network, allow_image_fetch, extra_hosts, options, secret_ciphertext,
	rpm, tpm, max_parallel, key_weights, created_at, updated_at`

func (r providerRow) provider() (Provider, error) {
	p := Provider{
		ID: r.ID, Name: r.Name, Plugin: r.Plugin, BaseURL: r.BaseURL,
		AllowPrivateNetwork: r.AllowPrivateNetwork, AllowImageFetch: r.AllowImageFetch, SecretSealed: r.SecretSealed,
		RPM: r.RPM, TPM: r.TPM, MaxParallel: r.MaxParallel,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if err := json.Unmarshal([]byte(r.Models), &p.Models); err != nil {
		return Provider{}, fmt.Errorf("provider %s: models: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(r.ExtraHosts), &p.ExtraHosts); err != nil {
		return Provider{}, fmt.Errorf("provider %s: extra_hosts: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(r.Options), &p.Options); err != nil {
		return Provider{}, fmt.Errorf("provider %s: options: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(r.KeyWeights), &p.KeyWeights); err != nil {
		return Provider{}, fmt.Errorf("provider %s: key_weights: %w", r.Name, err)
	}
	if len(p.KeyWeights) == 0 {
		p.KeyWeights = nil
	}
	if p.Models == nil {
		p.Models = []string{}
	}
	if p.ExtraHosts == nil {
		p.ExtraHosts = []string{}
	}
	if p.Options == nil {
		p.Options = map[string]any{}
	}
	return p, nil
}

// jsonColumns encodes the JSON columns of p.
func (p *Provider) jsonColumns() (models, extraHosts, options, weights string, err error) {
	enc := func(v any, empty string) (string, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		if string(b) == "null" {
			return empty, nil
		}
		return string(b), nil
	}
	if models, err = enc(p.Models, "[]"); err != nil {
		return "", "", "", "", fmt.Errorf("models: %w", err)
	}
	if extraHosts, err = enc(p.ExtraHosts, "[]"); err != nil {
		return "", "", "", "", fmt.Errorf("extra_hosts: %w", err)
	}
	if options, err = enc(p.Options, "{}"); err != nil {
		return "", "", "", "", fmt.Errorf("options: %w", err)
	}
	if weights, err = enc(p.KeyWeights, "[]"); err != nil {
		return "", "", "", "", fmt.Errorf("key_weights: %w", err)
	}
	return models, extraHosts, options, weights, nil
}

// ListProviders returns every stored provider, oldest first (ties broken
// by id), from one consistent read, together with the table's
// [Store.ProvidersMark] as of that read.
func (s *Store) ListProviders(ctx context.Context) (ps []Provider, mark string, err error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", fmt.Errorf("list providers: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := tx.GetContext(ctx, &mark, providersMarkSQL); err != nil {
		return nil, "", fmt.Errorf("list providers: %w", err)
	}
	var rows []providerRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+providerColumns+` FROM providers ORDER BY created_at, `+s.insertionOrder() /* in the order they were made: ids are random */); err != nil {
		return nil, "", fmt.Errorf("list providers: %w", err)
	}
	ps = make([]Provider, 0, len(rows))
	for _, r := range rows {
		p, err := r.provider()
		if err != nil {
			return nil, "", fmt.Errorf("list providers: %w", err)
		}
		ps = append(ps, p)
	}
	return ps, mark, nil
}

// providersMarkSQL fingerprints the providers table: every insert, update
// and delete changes it (updated_at only grows, and a delete lowers the
// count and the sum).
const providersMarkSQL = `SELECT count(*) || ':' || coalesce(max(updated_at), 0) || ':' || coalesce(sum(updated_at), 0) FROM providers`

// ProvidersMark returns a short fingerprint of the providers table that
// changes with every insert, update and delete, whichever process made
// it. It is one aggregate query, cheap enough to poll every few seconds.
func (s *Store) ProvidersMark(ctx context.Context) (string, error) {
	var mark string
	if err := s.r.GetContext(ctx, &mark, providersMarkSQL); err != nil {
		return "", fmt.Errorf("providers mark: %w", err)
	}
	return mark, nil
}

// CreateProvider inserts p. p.ID and p.Name must be new: a taken name is
// ErrProviderExists. UpdatedAt is set to CreatedAt.
func (s *Store) CreateProvider(ctx context.Context, p Provider) error {
	models, extra, opts, weights, err := p.jsonColumns()
	if err != nil {
		return fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO providers (`+providerColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Name, p.Plugin, p.BaseURL, models, p.AllowPrivateNetwork, p.AllowImageFetch, extra, opts, nullBytes(p.SecretSealed),
		p.RPM, p.TPM, p.MaxParallel, weights, p.CreatedAt, p.CreatedAt)
	if IsUniqueViolation(err) {
		return ErrProviderExists
	}
	if err != nil {
		return fmt.Errorf("create provider %s: %w", p.Name, err)
	}
	return nil
}

// UpdateProvider changes the provider called name in one transaction:
// change gets the stored row and edits it in place (an error from it
// cancels the update and is returned as is). Every column but id, name
// and created_at is written back; updated_at becomes now, or one
// millisecond past its previous value if that is later. It returns the row
// as stored, or ErrProviderNotFound.
func (s *Store) UpdateProvider(ctx context.Context, name string, now int64, change func(*Provider) error) (p Provider, err error) {
	err = s.writeTx(ctx, "update provider "+name, func(tx *sqlx.Tx) error {
		var err error
		if p, err = getProvider(ctx, tx, name); err != nil {
			return err
		}
		if err := change(&p); err != nil {
			return err
		}
		models, extra, opts, weights, err := p.jsonColumns()
		if err != nil {
			return fmt.Errorf("update provider %s: %w", name, err)
		}
		p.UpdatedAt = max(now, p.UpdatedAt+1)
		if _, err := tx.ExecContext(ctx, `UPDATE providers SET plugin = ?, base_url = ?, models = ?, allow_private_network = ?,
		allow_image_fetch = ?, extra_hosts = ?, options = ?, secret_ciphertext = ?, rpm = ?, tpm = ?, max_parallel = ?, key_weights = ?, updated_at = ? WHERE id = ?`,
			p.Plugin, p.BaseURL, models, p.AllowPrivateNetwork, p.AllowImageFetch, extra, opts, nullBytes(p.SecretSealed),
			p.RPM, p.TPM, p.MaxParallel, weights, p.UpdatedAt, p.ID); err != nil {
			return fmt.Errorf("update provider %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return Provider{}, err
	}
	return p, nil
}

// DeleteProvider removes the provider called name and returns it as it
// was, or ErrProviderNotFound.
func (s *Store) DeleteProvider(ctx context.Context, name string) (p Provider, err error) {
	err = s.writeTx(ctx, "delete provider "+name, func(tx *sqlx.Tx) error {
		var err error
		if p, err = getProvider(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM providers WHERE id = ?`, p.ID); err != nil {
			return fmt.Errorf("delete provider %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return Provider{}, err
	}
	return p, nil
}

func getProvider(ctx context.Context, tx *sqlx.Tx, name string) (Provider, error) {
	var r providerRow
	err := tx.GetContext(ctx, &r, `SELECT `+providerColumns+` FROM providers WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return Provider{}, ErrProviderNotFound
	}
	if err != nil {
		return Provider{}, fmt.Errorf("read provider %s: %w", name, err)
	}
	return r.provider()
}

// nullBytes stores an empty secret as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// IsUniqueViolation reports whether err is a statement refused for a
// duplicate in a unique column, on either database.
func IsUniqueViolation(err error) bool {
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pe.Code == pgUniqueViolation
}

// pgUniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const pgUniqueViolation = "23505"
