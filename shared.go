package rbatch

import (
	"context"
	"io"
	"time"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
)

// Small batches share connections. A node's group that fits one write (at
// most 32 KiB of encoded commands and 64 runs of them) in the InMemory and
// InMemoryAtomic modes, with or without WithSkipResult and WithSync, goes
// on one of a few connections per node that carry the groups of every
// caller back to back; each group's frames stay contiguous and its replies
// come back by position. What keeps a connection of its own: larger
// groups, the Redis-side modes and Streaming, conditions (WATCH), blocking
// commands and WAIT with no timeout.

// defaultSharedConns is Config.SharedConns when it is 0: one connection
// for the batches that end in WAIT or WAITAOF, one for the rest (see
// batch.Shared). One connection for the rest carries the most batches per
// write and per read, so it costs the server fewest syscalls: spreading
// them over two, the 128-goroutine small bench made 8–22% fewer batches a
// second.
const defaultSharedConns = 2

// sharedLines returns how many shared connections a node gets under cfg: at
// most half its pool, so that batches with a connection of their own
// always find one (0: sharing off).
func sharedLines(cfg Config) int {
	if cfg.DisableSharing {
		return 0
	}
	n := cfg.SharedConns
	if n == 0 {
		n = defaultSharedConns
	}
	return min(n, cfg.PoolSize/2)
}

// sharedOf returns node's shared connections, or nil when its batches do
// not share (sharing off, a redigo pool's node, a closed node).
func (c *Client) sharedOf(node pool.Node) *batch.Shared {
	p, ok := node.(*pool.Pool)
	if !ok || c.sharedLines == 0 {
		return nil
	}
	sh, _ := p.Extra(func() io.Closer {
		return batch.NewShared(c.sharedLines, func(ctx context.Context, wait bool) (batch.Lease, error) {
			// ctx is the group's that brings the line up: the hooks hear of
			// its wait as of any group's.
			conn, err := reportWait(ctx, p.Addr(), c.hooks.installed(), func() (pool.Lease, time.Duration, error) {
				return p.GetShared(ctx, wait)
			})
			if err != nil {
				return nil, err
			}
			return conn, nil
		})
	}).(*batch.Shared)
	return sh
}

// shares reports whether the batch's groups may go on shared connections
// (each one still only when small: see batch.Shareable). A batch with a
// response timeout of its own (WithResponseTimeout) does not: a shared
// connection's reads are bounded by one timeout for all its batches (the
// client's ReadTimeout), and a batch's own, shorter or longer, would end
// or stretch the wait of the batches beside it. Nor does a batch of one
// transaction per slot that ends in WAIT: its transactions run side by
// side, each with its WAIT, which on a node's one WAIT line would run one
// after another.
func (b *Batch) shares() bool {
	return b.c.sharedLines > 0 && !b.opts.Mode.redisSide() && !b.segment && b.guard == nil &&
		!b.ownConn && b.plan.TailTimeout >= 0 && b.plan.ResponseTimeout == 0 &&
		!(b.plan.Tail != nil && b.perSlot())
}
