package pool

import "time"

// BreakIdleWrites makes the next write of every idle connection fail
// before a byte leaves (its write deadline is put in the past) while its
// socket still looks alive: what a server closing the connection right
// after the pool's check looks like. For tests of that case.
func (p *Pool) BreakIdleWrites() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.writeArmedAt = time.Now()
		c.nc.SetWriteDeadline(time.Now().Add(-time.Second))
	}
}
