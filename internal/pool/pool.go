package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// ErrClosed is returned by Get after Close, and by a Get that was waiting
// for a free slot when Close came.
var ErrClosed = errors.New("pool closed")

// Pool keeps up to Size connections to one node. Get waits, honouring its
// context, while all of them are in use. A Pool is safe for concurrent use.
type Pool struct {
	addr  string
	dial  func(ctx context.Context) (*Conn, error)
	slots chan struct{} // one token per connection in use; its capacity is the pool size
	done  chan struct{} // closed by Close: the Gets waiting for a slot give up

	mu       sync.Mutex // guards idle, closed, st and lastTurn
	idle     []*Conn
	closed   bool
	st       Stats         // Idle is len(idle), filled in by Stats
	lastTurn chan struct{} // closed once the last Turn taken was served (nil: none taken)
	// discarded counts the idle connections Get found dead or dirty.
	discarded int

	timeouts atomic.Int64 // replies not received in time, counted by the connections

	// replica is the node's role in the cluster's slot map: its
	// connections send READONLY (to serve reads of its primary's slots)
	// while it is a replica, and READWRITE once it is a primary again, as
	// they are handed out; the shared ones are retired when it changes
	// (SetReplica). So a primary's connections carry no READONLY, and one
	// demoted behind a stale map redirects reads (MOVED) instead of
	// answering them from its copy. (A stream keeps its connection to its
	// end.)
	replica atomic.Bool

	// extra is what the layers above keep per node (the shared
	// connections), closed with the pool.
	extraOnce sync.Once
	extra     io.Closer
}

// Stats are a pool's figures. Total = Idle + InUse + Shared.
type Stats struct {
	Total, Idle, InUse int
	Shared             int // connections carrying the groups of many callers
	// Waits counts the Gets that found every connection in use and waited;
	// WaitTime is their total wait, WaitTimeouts those whose context ended
	// first.
	Waits        int64
	WaitTime     time.Duration
	WaitTimeouts int64
	// Timeouts counts the replies not received within their bound.
	Timeouts int64
	// Dead counts the connections closed because they failed (an idle one
	// the server had closed, one aborted by a fault or a timeout); Dirty
	// those closed because they came back with replies pending, a
	// transaction open or replies off.
	Dead, Dirty int64
}

// New returns a pool of at most size connections made by dial.
func New(addr string, size int, dial func(ctx context.Context) (*Conn, error)) *Pool {
	return &Pool{addr: addr, dial: dial, slots: make(chan struct{}, size), done: make(chan struct{})}
}

// Addr is the node's address.
func (p *Pool) Addr() string { return p.addr }

var _ Node = (*Pool)(nil)

// Get returns an idle connection or dials one, waiting for a free slot.
// The caller gives it back with its Release.
func (p *Pool) Get(ctx context.Context) (Lease, error) {
	l, _, err := p.GetTimed(ctx)
	return l, err
}

// GetTimed is Get, also saying how long it waited for a free slot (0 when
// one was free at once).
func (p *Pool) GetTimed(ctx context.Context) (Lease, time.Duration, error) {
	return p.getTimed(ctx, true)
}

// ErrNoFreeSlot is returned by GetWithin, and by a GetShared told not to
// wait, when every connection of the pool is out.
var ErrNoFreeSlot = errors.New("no free pooled connection")

// GetWithin is GetTimed waiting at most d for a free slot (ErrNoFreeSlot
// then; d ≤ 0: no wait); the dial, when there is one, is bounded by ctx
// alone.
func (p *Pool) GetWithin(ctx context.Context, d time.Duration) (Lease, time.Duration, error) {
	if d <= 0 {
		return p.getTimed(ctx, false)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	return p.getSlot(ctx, t.C)
}

// DialError is a new connection's dial or handshake that failed: the node
// could not be reached (not a busy pool, a closed one, or a role refused).
// It reads as its cause.
type DialError struct{ Err error }

func (e *DialError) Error() string { return e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// getTimed is GetTimed; without wait, a pool with no free slot fails at
// once with ErrNoFreeSlot (and counts no wait).
func (p *Pool) getTimed(ctx context.Context, wait bool) (Lease, time.Duration, error) {
	if !wait {
		select {
		case p.slots <- struct{}{}:
		default:
			return nil, 0, ErrNoFreeSlot
		}
		return p.getHeld(ctx, 0)
	}
	return p.getSlot(ctx, nil)
}

// getSlot is getTimed waiting for a free slot until ctx ends or giveUp
// fires (ErrNoFreeSlot; nil: never).
func (p *Pool) getSlot(ctx context.Context, giveUp <-chan time.Time) (Lease, time.Duration, error) {
	var waited time.Duration
	select {
	case p.slots <- struct{}{}:
	default:
		start := time.Now()
		select {
		case p.slots <- struct{}{}:
			waited = time.Since(start)
			p.countWait(waited, false)
		case <-giveUp:
			return nil, time.Since(start), ErrNoFreeSlot
		case <-ctx.Done():
			waited = time.Since(start)
			p.countWait(waited, true)
			return nil, waited, p.waitEnded(ctx)
		case <-p.done:
			waited = time.Since(start)
			p.countWait(waited, false)
			return nil, waited, ErrClosed
		}
	}
	return p.getHeld(ctx, waited)
}

// getHeld takes an idle connection or dials one, for a caller that holds a
// slot (after waiting for it waited).
func (p *Pool) getHeld(ctx context.Context, waited time.Duration) (Lease, time.Duration, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, waited, ErrClosed
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if c.check() == nil {
			p.st.InUse++
			p.mu.Unlock()
			c.home = p
			return p.fitRole(ctx, c, waited)
		}
		// The server closed it while idle (its timeout, CLIENT KILL, a
		// restart): a batch written to it would end unknown for nothing.
		p.discarded++
		p.st.Dead++
		p.st.Total--
		c.Close()
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		<-p.slots
		return nil, waited, &DialError{Err: err}
	}
	p.mu.Lock()
	p.st.Total++
	p.st.InUse++
	p.mu.Unlock()
	c.home = p
	return p.fitRole(ctx, c, waited)
}

// SetReplica records the node's role in the slot map (see Pool.replica).
// When it changes, the connections the layers above hold for long (the
// shared ones) are retired: they finish what they carry and close, and
// new ones are taken in the new role.
func (p *Pool) SetReplica(replica bool) {
	if p.replica.Swap(replica) == replica {
		return
	}
	p.mu.Lock()
	extra := p.extra
	p.mu.Unlock()
	if r, ok := extra.(interface{ Retire() }); ok {
		r.Retire()
	}
}

// fitRole hands c out once its READONLY state matches the node's role: a
// round trip only for a connection made or last used in the other role.
func (p *Pool) fitRole(ctx context.Context, c *Conn, waited time.Duration) (Lease, time.Duration, error) {
	want := p.replica.Load()
	if c.readOnly == want {
		return c, waited, nil
	}
	cmd := "READWRITE"
	if want {
		cmd = "READONLY"
	}
	err := c.Bound(ctx, func() error {
		_, err := c.Do(cmd)
		return err
	})
	if err != nil {
		c.Abort()
		c.Release(false)
		return nil, waited, fmt.Errorf("%s: %s: %w", p.addr, cmd, err)
	}
	c.readOnly = want
	return c, waited, nil
}

// Turn is a place in line for a connection: see Line.
type Turn struct {
	prev, mine chan struct{} // closed once the turn before, and this one, were served
}

// Line takes the next place in line for a connection to be held a while (a
// Redis-side MULTI, open until its batch executes): GetInTurn with it is
// served after the GetInTurn of every earlier Turn, so whoever queued first
// gets a connection first, whatever order their goroutines run in.
func (p *Pool) Line() *Turn {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &Turn{prev: p.lastTurn, mine: make(chan struct{})}
	p.lastTurn = t.mine
	return t
}

// GetInTurn is GetTimed once every earlier Turn was served (or gave up);
// the wait it reports is GetTimed's, for a free slot, as Stats counts it.
func (p *Pool) GetInTurn(ctx context.Context, t *Turn) (Lease, time.Duration, error) {
	if t.prev != nil {
		select {
		case <-t.prev:
		case <-ctx.Done():
			go func() { <-t.prev; close(t.mine) }() // the later turns still wait for the earlier
			return nil, 0, p.waitEnded(ctx)
		}
	}
	defer close(t.mine)
	return p.GetTimed(ctx)
}

// waitEnded is the error of a wait for a connection that ctx ended.
func (p *Pool) waitEnded(ctx context.Context) error {
	return fmt.Errorf("waiting for one of the %d pooled connections: %w", cap(p.slots), ctxerr.Of(ctx))
}

// GetShared is GetTimed for a connection that carries the groups of many
// callers for as long as it works: it counts as Shared, not InUse.
// Without wait it takes a connection only when one is free at once
// (ErrNoFreeSlot otherwise): a second line is worth no wait.
func (p *Pool) GetShared(ctx context.Context, wait bool) (Lease, time.Duration, error) {
	l, waited, err := p.getTimed(ctx, wait)
	if err != nil {
		return nil, waited, err
	}
	p.mu.Lock()
	p.st.InUse--
	p.st.Shared++
	p.mu.Unlock()
	l.(*Conn).shared = true
	return l, waited, nil
}

func (p *Pool) countWait(d time.Duration, timedOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Waits++
	p.st.WaitTime += d
	if timedOut {
		p.st.WaitTimeouts++
	}
}

// put gives c back. Only a clean connection (no pending replies, no open
// transaction, replies on) may be reused; any other is closed.
func (p *Pool) put(c *Conn, clean bool) {
	p.mu.Lock()
	if c.shared {
		c.shared = false
		p.st.Shared--
	} else {
		p.st.InUse--
	}
	switch {
	case c.Aborted():
		p.st.Dead++
		p.st.Total--
	case !clean:
		p.st.Dirty++
		p.st.Total--
	case p.closed:
		p.st.Total--
	default:
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
	<-p.slots
}

// AddIdle adds a connection dialed outside the pool (the client's first).
func (p *Pool) AddIdle(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, c)
	p.st.Total++
}

// Extra returns what the layers above keep for this node, made by make on
// the first call; Close closes it.
func (p *Pool) Extra(make func() io.Closer) io.Closer {
	p.extraOnce.Do(func() {
		e := make()
		p.mu.Lock()
		p.extra = e
		p.mu.Unlock()
	})
	return p.extra
}

// Close closes the idle connections and the node's extra; connections in
// use are closed when put back. Gets waiting for a free slot end with
// ErrClosed.
func (p *Pool) Close() error {
	p.extraOnce.Do(func() {}) // none is made after Close
	if p.extra != nil {
		p.extra.Close()
	}
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	idle := p.idle
	p.idle, p.closed = nil, true
	p.st.Total -= len(idle)
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	return nil
}

// Discarded returns how many idle connections Get found closed by the
// server (or holding unexpected bytes) and dropped instead of using.
func (p *Pool) Discarded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.discarded
}

// Stats returns the pool's figures, taken at one moment.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Idle = len(p.idle)
	st.Timeouts = p.timeouts.Load()
	return st
}

// Idle returns the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Node is where a group runs: connections to one server.
type Node interface {
	Addr() string
	// Get returns a connection, waiting (honouring ctx) while all are in
	// use. Its Release gives it back.
	Get(ctx context.Context) (Lease, error)
	Close() error
}

// Lease is a connection taken from a Node, as a batch drives it: one
// goroutine writes (Write, Flush) while another reads (Receive); Abort
// breaks it from anywhere. Release gives it back once: a clean connection
// (no pending reply, no open transaction, replies on) may be reused, any
// other is closed.
type Lease interface {
	Write(p []byte) (int, error)
	Flush() error
	Receive(timeout time.Duration) (any, error)
	Abort()
	Release(clean bool)
	Addr() string // the node's
}

// PingIdle sends PING on every idle connection and reports the first that
// does not answer PONG: a connection left with pending replies, an open
// transaction or replies turned off would answer something else.
func (p *Pool) PingIdle() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		reply, err := c.Do("PING")
		if err != nil {
			return fmt.Errorf("%s: idle connection: %w", p.addr, err)
		}
		if reply != "PONG" {
			return fmt.Errorf("%s: idle connection answered %v to PING", p.addr, reply)
		}
	}
	return nil
}
