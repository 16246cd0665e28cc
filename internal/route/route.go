// Package route maps a command's key to the node that runs it. A standalone
// server is one node; a cluster maps keys through their hash slots.
package route

import (
	"context"
	"time"
)

// Node is what routing needs of a node: its address, and closing it. The
// client's nodes are connection pools; routing knows nothing of them.
type Node interface {
	comparable
	Addr() string
	Close() error
}

// Router maps keys to nodes. Implementations are safe for concurrent use.
type Router[N Node] interface {
	// Route returns the node for key ("" for a command without a key).
	Route(key string) (N, error)
	// RouteSlot returns the node for a key of slot (-1: no key).
	RouteSlot(slot int) (N, error)
	// Replica returns a replica of primary for read-only work, or the zero N.
	Replica(primary N) N
	// Node returns the node at addr (a redirect's target).
	Node(addr string) N
	// Nodes lists every node the router knows.
	Nodes() []N
	// Generation identifies the current map; Refresh(ctx, gen) reloads it
	// unless it already changed since gen.
	Generation() uint64
	Refresh(ctx context.Context, gen uint64, failed ...string) error
	// Age is how long ago the map was last loaded (0: a map that never
	// changes).
	Age() time.Duration
	Close() error
}

// Single routes everything to one node (a standalone server), and
// read-only work to its replica when one is set.
type Single[N Node] struct {
	Primary     N
	ReplicaNode N // the zero N: none
}

func (s Single[N]) Route(string) (N, error)  { return s.Primary, nil }
func (s Single[N]) RouteSlot(int) (N, error) { return s.Primary, nil }
func (s Single[N]) Replica(p N) N {
	var none N
	if p == s.Primary {
		return s.ReplicaNode
	}
	return none
}
func (s Single[N]) Node(string) N                                    { return s.Primary }
func (s Single[N]) Generation() uint64                               { return 0 }
func (s Single[N]) Age() time.Duration                               { return 0 }
func (s Single[N]) Refresh(context.Context, uint64, ...string) error { return nil }
func (s Single[N]) Nodes() []N {
	var none N
	if s.ReplicaNode != none {
		return []N{s.Primary, s.ReplicaNode}
	}
	return []N{s.Primary}
}
func (s Single[N]) Close() error {
	var none N
	if s.ReplicaNode != none {
		s.ReplicaNode.Close()
	}
	return s.Primary.Close()
}
