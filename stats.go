package rbatch

import (
	"slices"
	"strings"
	"time"

	"github.com/rbatch/rbatch/internal/pool"
)

// PoolStats are one node's connection figures (database/sql's DBStats,
// go-redis's PoolStats). Total = Idle + InUse + Shared, taken at one
// moment.
type PoolStats struct {
	Addr  string
	Total int // connections open
	Idle  int // open and in the pool
	InUse int // open and held by a batch
	// Shared counts the connections that carry the small batches of every
	// caller together (Config.SharedConns): they stay open while they work.
	Shared int
	// Waits counts the times a batch found every connection in use and
	// waited for one; WaitDuration is their total wait; WaitTimeouts are the
	// waits whose context ended first.
	Waits        int64
	WaitDuration time.Duration
	WaitTimeouts int64
	// Timeouts counts replies that did not come within their bound (the
	// response or read timeout): each closed its connection.
	Timeouts int64
	// DiscardedDead counts connections closed because they failed (the
	// server closed an idle one; a fault or a timeout broke one in use);
	// DiscardedDirty those closed because a batch left them unusable
	// (replies pending, a transaction or WATCH open, replies off).
	DiscardedDead, DiscardedDirty int64
}

// statser is a node that keeps figures (a redigo pool's node has only
// those redigo keeps: connections and waits).
type statser interface{ Stats() pool.Stats }

// Stats returns the figures of every node the client knows, by address: in
// a cluster the primaries, and the replicas once the client reads from
// them (Config.ReadFrom); on one server, it and the replica it reads from.
func (c *Client) Stats() []PoolStats {
	var out []PoolStats
	for _, n := range c.router.Nodes() {
		s, ok := n.(statser)
		if !ok {
			continue
		}
		st := s.Stats()
		out = append(out, PoolStats{
			Addr: n.Addr(), Total: st.Total, Idle: st.Idle, InUse: st.InUse, Shared: st.Shared,
			Waits: st.Waits, WaitDuration: st.WaitTime, WaitTimeouts: st.WaitTimeouts,
			Timeouts: st.Timeouts, DiscardedDead: st.Dead, DiscardedDirty: st.Dirty,
		})
	}
	slices.SortFunc(out, func(a, b PoolStats) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
