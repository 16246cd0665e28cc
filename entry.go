package rbatch

import (
	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/queue"
)

// entry is one node's share of a batch: the submission indices of the
// commands routed to it, in submission order.
type entry struct {
	node     pool.Node // where the commands are routed
	fallback pool.Node // the primary, when node is a replica for read-only work
	used     pool.Node // the node whose connection ran the group last
	indices  []int

	session *batch.Session // the Redis-side queue (RedisReadAtomic/RedisWriteAtomic)
}

// groupByNode splits the queued commands into one entry per node, keeping
// submission order within each. In the atomic modes the whole batch goes to
// one node, a replica only when every command is read-only.
func (b *Batch) groupByNode() ([]*entry, error) {
	n := b.q.Len()
	allReadOnly := true
	for i := 0; i < n && allReadOnly; i++ {
		allReadOnly = b.q.At(i).Flags&queue.ReadOnly != 0
	}
	var entries []*entry
	var last *entry // consecutive commands mostly share a node: skip the map
	byNode := make(map[pool.Node]*entry)
	for i := 0; i < n; i++ {
		c := b.q.At(i)
		readOnly := c.Flags&queue.ReadOnly != 0
		if b.opts.Mode.atomic() {
			readOnly = allReadOnly
		}
		node, fallback, err := b.routeKey(c.Key, readOnly)
		if err != nil {
			return nil, err
		}
		e := last
		if e == nil || e.node != node {
			e = byNode[node]
		}
		if e == nil {
			e = &entry{node: node, fallback: fallback}
			if len(byNode) == 0 {
				e.indices = make([]int, 0, n)
			}
			byNode[node] = e
			entries = append(entries, e)
		}
		e.indices = append(e.indices, i)
		last = e
	}
	return entries, nil
}
