package rbatch

import (
	"errors"

	"github.com/rbatch/rbatch/internal/pool"
)

// CheckPoolsClean pings every idle connection of c's pools: each must answer
// PONG (no pending reply, no open MULTI, replies on).
func CheckPoolsClean(c *Client) error {
	var errs []error
	for _, n := range c.router.Nodes() {
		if p, ok := n.(*pool.Pool); ok {
			errs = append(errs, p.PingIdle())
		}
	}
	return errors.Join(errs...)
}

// BreakIdleWrites makes the next write of each idle connection of c fail
// before any byte leaves (see pool.Pool.BreakIdleWrites).
func BreakIdleWrites(c *Client) error {
	n := 0
	for _, node := range c.router.Nodes() {
		if p, ok := node.(*pool.Pool); ok {
			p.BreakIdleWrites()
			n += p.Idle()
		}
	}
	if n == 0 {
		return errors.New("no idle connection")
	}
	return nil
}

// ServerIsProxy reports whether c took its server for a proxy that closes
// the connection on INFO (pool.ServerInfo.Proxy).
func ServerIsProxy(c *Client) bool { return c.info.Proxy }

// DefaultOptions returns the options every batch made without any shares:
// they must stay the zero BatchOptions.
func DefaultOptions() BatchOptions { return noOptions }
