// Package route maps a command's key to the node that runs it. A standalone
// server is one node; a cluster maps keys through their hash slots.
package route

import "github.com/rbatch/rbatch/internal/pool"

// Router maps keys to nodes. Implementations are safe for concurrent use.
type Router interface {
	// Route returns the node for key ("" for a command without a key).
	Route(key string) (pool.Node, error)
	// Nodes lists every node the router knows.
	Nodes() []pool.Node
	Close() error
}

// Single routes everything to one node.
type Single struct{ Node pool.Node }

var _ Router = Single{}

func (s Single) Route(string) (pool.Node, error) { return s.Node, nil }
func (s Single) Nodes() []pool.Node              { return []pool.Node{s.Node} }
func (s Single) Close() error                    { return s.Node.Close() }
