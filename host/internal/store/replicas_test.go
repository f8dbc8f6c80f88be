package store

import (
	"testing"
	"time"
)

// TestReplicasAndLimitShares: replicas' heartbeats and their exchange of
// limit counts, on both databases.
func TestReplicasAndLimitShares(t *testing.T) {
	t.Parallel()
	bothDatabases(t, func(t *testing.T, st *Store) {
		ctx := t.Context()
		for i, id := range []string{"a", "b", "c"} {
			if err := st.SeeReplica(ctx, Replica{ID: id, Hostname: "h" + id, Version: "v", StartedAt: int64(i), SeenAt: 1000, Plugins: `[]`}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.SeeReplica(ctx, Replica{ID: "a", Hostname: "ha", Version: "v", StartedAt: 0, SeenAt: 2000, Plugins: `[{"name":"demo"}]`}); err != nil {
			t.Fatal(err)
		}
		rs, err := st.Replicas(ctx, 1500)
		if err != nil || len(rs) != 1 || rs[0].ID != "a" || rs[0].Plugins != `[{"name":"demo"}]` {
			t.Fatalf("replicas seen since 1500: %+v %v", rs, err)
		}

		if _, err := st.ExchangeLimitShares(ctx, "a", []LimitShare{{KeyID: "k", Requests: 3, Tokens: 30, InFlight: 1, Reserved: 0.5}}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExchangeLimitShares(ctx, "b", []LimitShare{{KeyID: "k", Requests: 2, Tokens: 20}, {KeyID: "j", Requests: 1}}, time.Hour); err != nil {
			t.Fatal(err)
		}
		others, err := st.ExchangeLimitShares(ctx, "c", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]LimitShare{}
		for _, o := range others {
			got[o.KeyID] = o
		}
		if k := got["k"]; len(got) != 2 || k.Requests != 5 || k.Tokens != 50 || k.InFlight != 1 || k.Reserved != 0.5 || got["j"].Requests != 1 {
			t.Fatalf("others' sums: %+v", others)
		}
		// a's next round replaces its shares; stale ones are not counted.
		if _, err := st.ExchangeLimitShares(ctx, "a", nil, time.Hour); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		others, _ = st.ExchangeLimitShares(ctx, "c", nil, 50*time.Millisecond)
		if len(others) != 0 {
			t.Fatalf("b's stale shares and a's empty round: %+v", others)
		}
		if err := st.RemoveReplica(ctx, "a", time.Now().Add(time.Hour).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		var n int
		st.Reader().Get(&n, `SELECT count(*) FROM replicas`)
		var shares int
		st.Reader().Get(&shares, `SELECT count(*) FROM limit_shares`)
		if n != 0 || shares != 0 {
			t.Fatalf("%d replicas and %d shares left", n, shares)
		}
	})
}
