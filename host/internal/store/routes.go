package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// Errors of the route calls.
var (
	// ErrRouteExists: another stored route has that model name.
	ErrRouteExists = errors.New("a route for that model exists")
	// ErrRouteNotFound: no stored route has that model name.
	ErrRouteNotFound = errors.New("no such route")
)

// Route is one row of the routes table: a route managed at run time.
type Route struct {
	ID    string
	Model string
	// Strategy is "fallback", "weighted" or "least_latency"; the store
	// does not check it.
	Strategy    string
	Targets     []RouteTarget
	MaxAttempts int
	// ContextWindowFallback is nil when the route has none.
	ContextWindowFallback *RouteTarget
	// CreatedAt and UpdatedAt are Unix milliseconds; UpdatedAt grows with
	// every change.
	CreatedAt, UpdatedAt int64
}

// RouteTarget is a provider and the model name sent to it.
type RouteTarget struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Weight   int    `json:"weight,omitempty"`
}

type routeRow struct {
	ID          string         `db:"id"`
	Model       string         `db:"model"`
	Strategy    string         `db:"strategy"`
	Targets     string         `db:"targets"`
	MaxAttempts int            `db:"max_attempts"`
	Fallback    sql.NullString `db:"context_window_fallback"`
	CreatedAt   int64          `db:"created_at"`
	UpdatedAt   int64          `db:"updated_at"`
}

const routeColumns = `id, model, strategy, targets, max_attempts, context_window_fallback, created_at, updated_at`

func (r routeRow) route() (Route, error) {
	rt := Route{ID: r.ID, Model: r.Model, Strategy: r.Strategy, MaxAttempts: r.MaxAttempts, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if err := json.Unmarshal([]byte(r.Targets), &rt.Targets); err != nil {
		return Route{}, fmt.Errorf("route %s: targets: %w", r.Model, err)
	}
	if r.Fallback.Valid {
		rt.ContextWindowFallback = new(RouteTarget)
		if err := json.Unmarshal([]byte(r.Fallback.String), rt.ContextWindowFallback); err != nil {
			return Route{}, fmt.Errorf("route %s: context_window_fallback: %w", r.Model, err)
		}
	}
	if rt.Targets == nil {
		rt.Targets = []RouteTarget{}
	}
	return rt, nil
}

// columns encodes the JSON columns of rt.
func (rt *Route) columns() (targets string, fallback sql.NullString, err error) {
	ts := rt.Targets
	if ts == nil {
		ts = []RouteTarget{}
	}
	b, err := json.Marshal(ts)
	if err != nil {
		return "", fallback, fmt.Errorf("targets: %w", err)
	}
	if rt.ContextWindowFallback != nil {
		f, err := json.Marshal(rt.ContextWindowFallback)
		if err != nil {
			return "", fallback, fmt.Errorf("context_window_fallback: %w", err)
		}
		fallback = sql.NullString{String: string(f), Valid: true}
	}
	return string(b), fallback, nil
}

// routesMarkSQL fingerprints the routes table as providersMarkSQL does
// the providers table.
const routesMarkSQL = `SELECT count(*) || ':' || coalesce(max(updated_at), 0) || ':' || coalesce(sum(updated_at), 0) FROM routes`

// ListRoutes returns every stored route, oldest first, from one
// consistent read, with the table's [Store.RoutesMark] as of that read.
func (s *Store) ListRoutes(ctx context.Context) (rs []Route, mark string, err error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", fmt.Errorf("list routes: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := tx.GetContext(ctx, &mark, routesMarkSQL); err != nil {
		return nil, "", fmt.Errorf("list routes: %w", err)
	}
	var rows []routeRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+routeColumns+` FROM routes ORDER BY created_at, `+s.insertionOrder()); err != nil {
		return nil, "", fmt.Errorf("list routes: %w", err)
	}
	rs = make([]Route, 0, len(rows))
	for _, r := range rows {
		rt, err := r.route()
		if err != nil {
			return nil, "", fmt.Errorf("list routes: %w", err)
		}
		rs = append(rs, rt)
	}
	return rs, mark, nil
}

// RoutesMark returns a short fingerprint of the routes table that changes
// with every insert, update and delete, whichever process made it.
func (s *Store) RoutesMark(ctx context.Context) (string, error) {
	var mark string
	if err := s.r.GetContext(ctx, &mark, routesMarkSQL); err != nil {
		return "", fmt.Errorf("routes mark: %w", err)
	}
	return mark, nil
}

// CreateRoute inserts rt; a taken model name is ErrRouteExists. UpdatedAt
// is set to CreatedAt.
func (s *Store) CreateRoute(ctx context.Context, rt Route) error {
	targets, fallback, err := rt.columns()
	if err != nil {
		return fmt.Errorf("create route %s: %w", rt.Model, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO routes (`+routeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		rt.ID, rt.Model, rt.Strategy, targets, rt.MaxAttempts, fallback, rt.CreatedAt, rt.CreatedAt)
	if IsUniqueViolation(err) {
		return ErrRouteExists
	}
	if err != nil {
		return fmt.Errorf("create route %s: %w", rt.Model, err)
	}
	return nil
}

// UpdateRoute changes the route for model in one transaction, as
// UpdateProvider does a provider: change edits the stored row (an error
// from it cancels the update and is returned as is), every column but id,
// model and created_at is written back, and updated_at grows. It returns
// the row as stored, or ErrRouteNotFound.
func (s *Store) UpdateRoute(ctx context.Context, model string, now int64, change func(*Route) error) (rt Route, err error) {
	err = s.writeTx(ctx, "update route "+model, func(tx *sqlx.Tx) error {
		var err error
		if rt, err = getRoute(ctx, tx, model); err != nil {
			return err
		}
		if err := change(&rt); err != nil {
			return err
		}
		targets, fallback, err := rt.columns()
		if err != nil {
			return fmt.Errorf("update route %s: %w", model, err)
		}
		rt.UpdatedAt = max(now, rt.UpdatedAt+1)
		if _, err := tx.ExecContext(ctx, `UPDATE routes SET strategy = ?, targets = ?, max_attempts = ?, context_window_fallback = ?, updated_at = ? WHERE id = ?`,
			rt.Strategy, targets, rt.MaxAttempts, fallback, rt.UpdatedAt, rt.ID); err != nil {
			return fmt.Errorf("update route %s: %w", model, err)
		}
		return nil
	})
	if err != nil {
		return Route{}, err
	}
	return rt, nil
}

// DeleteRoute removes the route for model and returns it as it was, or
// ErrRouteNotFound.
func (s *Store) DeleteRoute(ctx context.Context, model string) (rt Route, err error) {
	err = s.writeTx(ctx, "delete route "+model, func(tx *sqlx.Tx) error {
		var err error
		if rt, err = getRoute(ctx, tx, model); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM routes WHERE id = ?`, rt.ID); err != nil {
			return fmt.Errorf("delete route %s: %w", model, err)
		}
		return nil
	})
	if err != nil {
		return Route{}, err
	}
	return rt, nil
}

// writeTx runs fn in a write transaction and commits it when fn returns
// nil. An error of fn is returned as it is; what names the work in the
// transaction's own errors.
func (s *Store) writeTx(ctx context.Context, what string, fn func(*sqlx.Tx) error) (err error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func getRoute(ctx context.Context, tx *sqlx.Tx, model string) (Route, error) {
	var r routeRow
	err := tx.GetContext(ctx, &r, `SELECT `+routeColumns+` FROM routes WHERE model = ?`, model)
	if errors.Is(err, sql.ErrNoRows) {
		return Route{}, ErrRouteNotFound
	}
	if err != nil {
		return Route{}, fmt.Errorf("read route %s: %w", model, err)
	}
	return r.route()
}
