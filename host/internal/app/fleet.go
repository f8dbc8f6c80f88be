package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/limits"
	"github.com/llm-proxy/llm-proxy/host/internal/server"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// How replicas on one database keep in touch (store.Replica,
// store.ExchangeLimitShares).
const (
	// heartbeatEvery is how often a replica writes its row: when it was
	// last seen and the plugins it runs.
	heartbeatEvery = 2 * time.Second
	// replicaGone is how long a replica may stay silent before the others
	// leave it out of the fleet and ignore its limit counts.
	replicaGone = 15 * time.Second
	// shareEvery is how often a replica exchanges its client keys' limit
	// counts with the others (on PostgreSQL): the bound on how stale the
	// others' counts are when it admits a request.
	shareEvery = 250 * time.Millisecond
	// sharesStale: counts older than this belong to a replica that stopped
	// exchanging (died, or cut off) and are not counted.
	sharesStale = 2 * time.Second
	// spentEvery is how often a budget's spend is read again from the
	// request log, where the other replicas' spending shows.
	spentEvery = 2 * time.Second
)

// hostname is the machine's name, or "replica" when it has none.
func hostname() string {
	if host, _ := os.Hostname(); host != "" {
		return host
	}
	return "replica"
}

// newReplicaID names this process in the replicas table: the host name
// and a random suffix (a restarted process is a new replica).
func newReplicaID() string {
	host := hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// runFleet writes this replica's heartbeat and, on PostgreSQL, exchanges
// limit counts with the other replicas, until ctx ends; leaveFleet then
// removes its rows.
func (a *App) runFleet(ctx context.Context) {
	me := store.Replica{ID: a.replicaID, Hostname: hostname(), Version: a.Version, StartedAt: time.Now().UnixMilli()}
	failing := false
	beat := func() {
		var ps []server.ReplicaPlugin
		for _, p := range a.Registry.List() {
			ps = append(ps, server.ReplicaPlugin{Name: p.Name, Version: p.Version, SHA256: p.SHA256, State: p.State})
		}
		b, _ := json.Marshal(ps)
		if ps == nil {
			b = []byte("[]")
		}
		me.Plugins, me.SeenAt = string(b), time.Now().UnixMilli()
		err := a.store.SeeReplica(ctx, me)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Once, not every 2 s while the database is away.
			a.log.Warn("replica heartbeat not written; the other replicas will leave this one out until it is", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("replica heartbeat written again")
			failing = false
		}
	}
	beat()
	go tick(ctx, heartbeatEvery, beat)
	if !a.store.Postgres() || a.limits == nil {
		return
	}
	lastSpent := time.Now()
	go tick(ctx, shareEvery, func() {
		a.exchangeShares(ctx)
		if time.Since(lastSpent) >= spentEvery {
			a.limits.RefreshSpent(ctx)
			lastSpent = time.Now()
		}
	})
}

// exchangeShares is one round of the limit counts' exchange.
func (a *App) exchangeShares(ctx context.Context) {
	mine := a.limits.Shares()
	shares := make([]store.LimitShare, len(mine))
	for i, s := range mine {
		shares[i] = store.LimitShare{KeyID: s.KeyID, Requests: s.Requests, Tokens: s.Tokens, InFlight: s.InFlight, Reserved: s.Reserved}
	}
	others, err := a.store.ExchangeLimitShares(ctx, a.replicaID, shares, sharesStale)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Debug("limit counts not exchanged", "err", err)
		}
		return // the others' last counts stand until the next round
	}
	remote := make(map[string]limits.Share, len(others))
	for _, o := range others {
		remote[o.KeyID] = limits.Share{KeyID: o.KeyID, Requests: o.Requests, Tokens: o.Tokens, InFlight: o.InFlight, Reserved: o.Reserved}
	}
	a.limits.SetRemote(remote)
}

// leaveFleet removes this replica's rows, and those of replicas long
// gone.
func (a *App) leaveFleet(ctx context.Context) {
	if err := a.store.RemoveReplica(ctx, a.replicaID, time.Now().Add(-time.Hour).UnixMilli()); err != nil {
		a.log.Warn("replica row not removed", "err", err)
	}
}

// replicas answers GET /api/replicas: the replicas seen lately, with the
// plugins each runs.
func (a *App) replicas(ctx context.Context) ([]server.Replica, error) {
	rows, err := a.store.Replicas(ctx, time.Now().Add(-replicaGone).UnixMilli())
	if err != nil {
		return nil, err
	}
	out := make([]server.Replica, 0, len(rows))
	for _, r := range rows {
		rp := server.Replica{ID: r.ID, Hostname: r.Hostname, Version: r.Version, Self: r.ID == a.replicaID,
			StartedAt: time.UnixMilli(r.StartedAt).UTC(), SeenAt: time.UnixMilli(r.SeenAt).UTC(), Plugins: []server.ReplicaPlugin{}}
		if err := json.Unmarshal([]byte(r.Plugins), &rp.Plugins); err != nil || rp.Plugins == nil {
			rp.Plugins = []server.ReplicaPlugin{}
		}
		out = append(out, rp)
	}
	return out, nil
}
