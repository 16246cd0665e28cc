package rbatch

import (
	"github.com/rbatch/rbatch/internal/pool"
)

// entry is one node's share of a batch: the submission indices of the
// commands routed to it, in submission order.
type entry struct {
	node    pool.Node
	indices []int
}

// groupByNode splits the queued commands into one entry per node, keeping
// submission order within each. It fails when a key cannot be routed.
func (b *Batch) groupByNode() ([]*entry, error) {
	n := b.q.Len()
	var entries []*entry
	byNode := make(map[pool.Node]*entry)
	for i := 0; i < n; i++ {
		node, err := b.c.router.Route(b.q.At(i).Key)
		if err != nil {
			return nil, err
		}
		e := byNode[node]
		if e == nil {
			e = &entry{node: node}
			if len(byNode) == 0 {
				e.indices = make([]int, 0, n)
			}
			byNode[node] = e
			entries = append(entries, e)
		}
		e.indices = append(e.indices, i)
	}
	return entries, nil
}
