// Package route maps a command's key to the node that runs it. A standalone
// server is one node; a cluster maps keys through their hash slots.
package route

import (
	"context"

	"github.com/rbatch/rbatch/internal/pool"
)

// Router maps keys to nodes. Implementations are safe for concurrent use.
type Router interface {
	// Route returns the node for key ("" for a command without a key).
	Route(key string) (pool.Node, error)
	// RouteSlot returns the node for a key of slot (-1: no key).
	RouteSlot(slot int) (pool.Node, error)
	// Replica returns a replica of primary for read-only work, or nil.
	Replica(primary pool.Node) pool.Node
	// Node returns the node at addr (a redirect's target).
	Node(addr string) pool.Node
	// Nodes lists every node the router knows.
	Nodes() []pool.Node
	// Generation identifies the current map; Refresh(ctx, gen) reloads it
	// unless it already changed since gen.
	Generation() uint64
	Refresh(ctx context.Context, gen uint64) error
	Close() error
}

// Single routes everything to one node (a standalone server), and
// read-only work to its replica when one is set.
type Single struct {
	Primary     pool.Node
	ReplicaNode pool.Node // nil: none
}

var _ Router = Single{}

func (s Single) Route(string) (pool.Node, error)  { return s.Primary, nil }
func (s Single) RouteSlot(int) (pool.Node, error) { return s.Primary, nil }
func (s Single) Replica(p pool.Node) pool.Node {
	if p == s.Primary {
		return s.ReplicaNode
	}
	return nil
}
func (s Single) Node(string) pool.Node                 { return s.Primary }
func (s Single) Generation() uint64                    { return 0 }
func (s Single) Refresh(context.Context, uint64) error { return nil }
func (s Single) Nodes() []pool.Node {
	if s.ReplicaNode != nil {
		return []pool.Node{s.Primary, s.ReplicaNode}
	}
	return []pool.Node{s.Primary}
}
func (s Single) Close() error {
	if s.ReplicaNode != nil {
		s.ReplicaNode.Close()
	}
	return s.Primary.Close()
}
