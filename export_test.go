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

// ServerIsProxy reports whether c took its server for a proxy that closes
// the connection on INFO (pool.ServerInfo.Proxy).
func ServerIsProxy(c *Client) bool { return c.info.Proxy }
