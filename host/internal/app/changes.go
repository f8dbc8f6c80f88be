package app

import (
	"context"
	"sync"
	"time"
)

// Tables kept in memory, as PostgreSQL's change notices name them
// (migrations/postgres/00013_sessions.sql).
const (
	tableAPIKeys   = "api_keys"
	tableProviders = "providers"
	tableRoutes    = "routes"
	tableSettings  = "settings"
)

// watchChanges keeps the in-memory keys, providers, routes and settings in
// step with changes other processes (replicas, the llm-proxy command) make
// to the database, until ctx ends. On PostgreSQL a change is reloaded as
// soon as its notice arrives; on SQLite, and as a safety net on
// PostgreSQL, each table's fingerprint is polled.
func (a *App) watchChanges(ctx context.Context) {
	refresh := map[string]func(context.Context) error{
		tableAPIKeys:   a.keys.Refresh,
		tableProviders: a.providers.Refresh, // providers and routes make one router
		tableSettings:  a.settings.refresh,
	}
	run := func(table string) {
		if table == tableRoutes {
			table = tableProviders
		}
		for name, f := range refresh {
			if table != "" && table != name {
				continue
			}
			if err := f(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("reloading a table changed by another process", "table", name, "err", err)
			}
		}
	}
	every := pollSQLite
	if a.store.Postgres() {
		every = pollPostgres
		go func() { _ = a.store.ListenChanges(ctx, run, a.log) }()
	}
	go tick(ctx, every, func() { run("") })
}

// tick calls fn every interval until ctx ends.
func tick(ctx context.Context, every time.Duration, fn func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// dbProbe answers /readyz's question "does the database answer?" with a
// ping at most once a second, so that load balancers polling every replica
// cost the database next to nothing.
type dbProbe struct {
	ping func(context.Context) error
	log  interface{ Warn(string, ...any) }

	mu   sync.Mutex
	at   time.Time
	up   bool
	busy bool
}

// Up reports the last ping's result, pinging again when it is over a
// second old. A ping takes at most 2 s; callers meanwhile get the last
// result.
func (p *dbProbe) Up() bool {
	p.mu.Lock()
	if time.Since(p.at) < time.Second || p.busy {
		up := p.up
		p.mu.Unlock()
		return up
	}
	p.busy = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := p.ping(ctx)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.up {
		p.log.Warn("the database does not answer; /readyz reports not ready", "err", err)
	}
	p.up, p.at, p.busy = err == nil, time.Now(), false
	return p.up
}
