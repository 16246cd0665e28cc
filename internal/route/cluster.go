package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ShardInfo is one shard of a cluster: its slot ranges, primary and replicas
// ("host:port").
type ShardInfo struct {
	Slots    [][2]int // inclusive ranges
	Primary  string
	Replicas []string
}

// Fetcher asks the node at addr for the cluster's shards.
type Fetcher func(ctx context.Context, addr string) ([]ShardInfo, error)

// NodeMaker returns the node for addr. A node that has a
// SetReplica(bool) method is told its role at every load of the slot map:
// its connections should send READONLY (for reads on a replica) only while
// it is one — a primary demoted behind a stale map then redirects reads
// instead of answering them.
type NodeMaker[N Node] func(addr string) N

// roled is a node that is told its role in the slot map.
type roled interface{ SetReplica(replica bool) }

// setRole tells n its role, when it listens.
func setRole[N Node](n N, replica bool) {
	if r, ok := any(n).(roled); ok {
		r.SetReplica(replica)
	}
}

// Cluster routes keys by hash slot to the primary owning the slot. Its slot
// map is refreshed on demand, one refresh at a time: concurrent batches that
// ask for a refresh of the same map share one.
type Cluster[N Node] struct {
	fetch    Fetcher
	makeNode NodeMaker[N]
	seeds    []string

	mu       sync.RWMutex // guards the fields below
	owner    [NumSlots]N
	replicas map[N][]N    // primary → its replicas
	nodes    map[string]N // every node ever known, by address
	gen      uint64       // bumped by each refresh
	loadedAt time.Time    // when the map was last loaded

	refreshMu sync.Mutex // one refresh at a time
}

// NewCluster discovers the cluster through the first seed that answers.
func NewCluster[N Node](ctx context.Context, seeds []string, fetch Fetcher, makeNode NodeMaker[N]) (*Cluster[N], error) {
	c := &Cluster[N]{fetch: fetch, makeNode: makeNode, seeds: seeds, nodes: map[string]N{}}
	if err := c.Refresh(ctx, 0); err != nil {
		return nil, err
	}
	return c, nil
}

// ErrSlotNotServed is the cause when no primary owns a key's slot.
var ErrSlotNotServed = errors.New("slot not served by any node")

// Route returns the primary owning key's slot; for "" any primary.
func (c *Cluster[N]) Route(key string) (N, error) {
	if key == "" {
		return c.RouteSlot(-1)
	}
	return c.RouteSlot(Slot(key))
}

// RouteSlot returns the primary owning slot; for -1 any primary.
func (c *Cluster[N]) RouteSlot(slot int) (N, error) {
	var zero N
	c.mu.RLock()
	defer c.mu.RUnlock()
	if slot < 0 {
		for node := range c.replicas {
			return node, nil
		}
		return zero, fmt.Errorf("no primary: %w", ErrSlotNotServed)
	}
	if n := c.owner[slot]; n != zero {
		return n, nil
	}
	return zero, fmt.Errorf("slot %d: %w", slot, ErrSlotNotServed)
}

// Replica returns a replica of primary, or the zero N.
func (c *Cluster[N]) Replica(primary N) N {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rs := c.replicas[primary]; len(rs) > 0 {
		return rs[0]
	}
	var none N
	return none
}

// Node returns the node at addr, making it when a redirect names a node the
// slot map does not know yet.
func (c *Cluster[N]) Node(addr string) N {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked(addr)
}

// nodeLocked is Node with c.mu held.
func (c *Cluster[N]) nodeLocked(addr string) N {
	n, ok := c.nodes[addr]
	if !ok {
		n = c.makeNode(addr)
		c.nodes[addr] = n
	}
	return n
}

// Nodes lists every node known.
func (c *Cluster[N]) Nodes() []N {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]N, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	return out
}

// Generation identifies the current slot map; pass it to Refresh.
func (c *Cluster[N]) Generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// Age is how long ago the slot map was last loaded.
func (c *Cluster[N]) Age() time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return time.Since(c.loadedAt)
}

// Refresh reloads the slot map unless it changed since generation gen (then
// someone else's refresh already answers the caller's need). The nodes
// named failed (they just failed a batch) are asked last.
func (c *Cluster[N]) Refresh(ctx context.Context, gen uint64, failed ...string) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if c.Generation() != gen {
		return nil
	}
	var addrs, last []string
	for _, addr := range c.candidates() {
		if slices.Contains(failed, addr) {
			last = append(last, addr)
		} else {
			addrs = append(addrs, addr)
		}
	}
	addrs = append(addrs, last...)
	var errs []error
	for _, addr := range addrs {
		shards, err := c.fetch(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.apply(shards)
		return nil
	}
	return fmt.Errorf("cluster slot map: %w", errors.Join(errs...))
}

// candidates lists the addresses to ask for the slot map: the known
// primaries, then the seeds.
func (c *Cluster[N]) candidates() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var addrs []string
	seen := map[string]bool{}
	for p := range c.replicas {
		addrs = append(addrs, p.Addr())
		seen[p.Addr()] = true
	}
	for _, s := range c.seeds {
		if !seen[s] {
			addrs = append(addrs, s)
		}
	}
	return addrs
}

func (c *Cluster[N]) apply(shards []ShardInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	node := c.nodeLocked
	var owner [NumSlots]N
	replicas := map[N][]N{}
	for _, s := range shards {
		if s.Primary == "" || len(s.Slots) == 0 {
			continue
		}
		p := node(s.Primary)
		setRole(p, false)
		rs := []N{}
		for _, r := range s.Replicas {
			rs = append(rs, node(r))
			setRole(rs[len(rs)-1], true)
		}
		replicas[p] = rs
		for _, rg := range s.Slots {
			for slot := max(rg[0], 0); slot <= rg[1] && slot < NumSlots; slot++ {
				owner[slot] = p
			}
		}
	}
	c.owner, c.replicas = owner, replicas
	c.gen++
	c.loadedAt = time.Now()
}

// Close closes every node's pool.
func (c *Cluster[N]) Close() error {
	for _, n := range c.Nodes() {
		n.Close()
	}
	return nil
}
