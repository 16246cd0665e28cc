package rbatch

import (
	"errors"

	"github.com/rbatch/rbatch/internal/pool"
)

// CheckPoolsClean pings every idle connection of c's pools: each must answer
// PONG (no pending reply, no open MULTI, replies on).
func CheckPoolsClean(c *Client) error {
	var errs []error
	nodes := c.router.Nodes()
	for _, r := range c.replicas {
		nodes = append(nodes, r)
	}
	for _, n := range nodes {
		if p, ok := n.(*pool.Pool); ok {
			errs = append(errs, p.PingIdle())
		}
	}
	return errors.Join(errs...)
}
