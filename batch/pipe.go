package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Pipe runs groups one after another on one connection, each written while
// the replies of the one before it are still being read: a stream's
// segments go out back to back and the wire never drains between them.
// Groups are written in the order their Runs take the writer's turn and
// read in the same order.
type Pipe struct {
	conn  Lease
	write sync.Mutex // held by the group being written
	// readTurn is closed when the group written last is done reading:
	// the next group reads after it (taken and replaced under write).
	readTurn chan struct{}
	// arm orders the arming of the read deadline: reading is the group
	// whose replies are being read, the only one whose writer may arm it.
	arm     sync.Mutex
	reading *Group
	mu      sync.Mutex // guards broken and used
	broken  bool       // a group left the connection unclean: later groups are not sent
	used    bool       // a group was written
}

// NewPipe returns a pipe over conn, which it holds until Release.
func NewPipe(conn Lease) *Pipe {
	turn := make(chan struct{})
	close(turn)
	return &Pipe{conn: conn, readTurn: turn}
}

// Addr is the connection's node address.
func (p *Pipe) Addr() string {
	if a, ok := p.conn.(interface{ Addr() string }); ok {
		return a.Addr()
	}
	return ""
}

// Run sends g after the group before it and reads its replies after that
// group's, as Run would on a connection of its own. g.Added is called once
// g's frames are all written (or failed to be), so that the next group may
// follow. A group of a pipe whose connection failed is not sent.
func (p *Pipe) Run(ctx context.Context, g *Group) Result {
	p.write.Lock()
	p.mu.Lock()
	broken := p.broken
	p.mu.Unlock()
	if !broken {
		select {
		case <-p.readTurn:
			// Nothing in flight: the connection may have died while idle
			// (a server's timeout, CLIENT KILL). Found so, nothing is sent.
			if a, ok := p.conn.(aliver); ok {
				if cause := a.Alive(); cause != nil {
					p.conn.Abort()
					p.mu.Lock()
					p.broken = true
					p.mu.Unlock()
					p.write.Unlock()
					once(&g.Added)()
					return Result{Err: fmt.Errorf("%w: %w", errFoundClosed, cause)}
				}
			}
		default:
		}
	}
	if broken {
		p.write.Unlock()
		once(&g.Added)()
		return Result{Err: errBroken}
	}
	g.layout.build(g.Plan, g.Prefix, false)
	p.mu.Lock()
	p.used = true
	p.mu.Unlock()
	myTurn, done := p.readTurn, make(chan struct{})
	p.readTurn = done
	defer close(done)
	var w progress
	if d, ok := p.conn.(readDeadliner); ok {
		w.deferred = d
	}
	werr := make(chan error, 1)
	go func() {
		err := writeGroup(ctx, p.conn, g, &w)
		if w.deferred != nil {
			// The deadline is the group's only while its replies are the
			// ones read: armed before (the reader arms it at its turn) or
			// after (a writer late, the next group reading), it would cut
			// another group's wait.
			p.arm.Lock()
			w.written.Store(true)
			if p.reading == g {
				w.deferred.ArmReadDeadline(g.ResponseTimeout)
			}
			p.arm.Unlock()
		}
		if err != nil {
			// Known before Added: what follows sees the pipe broken (and
			// may wait for this group's retries rather than overtake them).
			p.mu.Lock()
			p.broken = true
			p.mu.Unlock()
		}
		p.write.Unlock()
		once(&g.Added)()
		werr <- err
	}()

	<-myTurn
	if w.deferred != nil {
		// The read side is this group's now: a deadline left by an earlier
		// group (armed by its writer) must not bound this one's wait.
		p.arm.Lock()
		p.reading = g
		w.deferred.HoldReadDeadline()
		if w.written.Load() {
			w.deferred.ArmReadDeadline(g.ResponseTimeout)
		}
		p.arm.Unlock()
	}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, p.conn.Abort)
	}
	res := &g.result
	*res = Result{}
	read(p.conn, g.Plan, &g.layout, groupSource{g}, res, &w)
	w.broken.Store(res.Err != nil)
	if res.Err != nil {
		p.conn.Abort() // the writer may be blocked on a socket nobody reads
	}
	settleExchange(ctx, res, &w, <-werr)
	if !stop() && res.Clean {
		res.Clean = false // ctx ended as the group did: the abort may be under way
	}
	p.mu.Lock()
	p.broken = p.broken || !res.Clean
	p.mu.Unlock()
	return *res
}

// Sync sends tail (a WAIT or WAITAOF) after every group the pipe wrote and
// reads its reply within timeout (negative: none): the replicas'
// acknowledgement of all of them, since the server counts a connection's
// writes in order. The result has Synced, Replicas and Local, or SyncErr,
// or Err when the connection failed. A pipe that wrote nothing, or whose
// connection failed, acknowledges nothing: Err says why. No Run may be
// under way.
func (p *Pipe) Sync(ctx context.Context, tail []byte, timeout time.Duration) (res Result) {
	p.mu.Lock()
	broken, used := p.broken, p.used
	p.mu.Unlock()
	switch {
	case broken:
		return Result{Err: errBroken}
	case !used:
		return Result{Err: errNothingWritten}
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, p.conn.Abort)
		defer stop()
	}
	_, err := p.conn.Write(tail)
	if err == nil {
		err = p.conn.Flush()
	}
	var r any
	if err == nil {
		if rd, ok := p.conn.(readDeadliner); ok && timeout < 0 {
			// A WAIT of 0 waits for the replicas however long: no deadline
			// an earlier group's writer armed may cut it.
			rd.HoldReadDeadline()
		}
		r, err = p.conn.Receive(timeout)
	}
	if err != nil {
		p.conn.Abort()
		p.mu.Lock()
		p.broken = true
		p.mu.Unlock()
		if ctx.Err() != nil {
			err = ctxerr.Of(ctx)
		}
		return Result{Sent: 1, Err: err}
	}
	parseTail(&res, r)
	return res
}

// errNothingWritten says a pipe has no write to acknowledge: the stream's
// writes to the node went on a connection that failed.
var errNothingWritten = errors.New("the node's writes went on a connection that failed")

// Wrote reports whether a group was written on the pipe.
func (p *Pipe) Wrote() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// Broken reports whether a group left the connection unclean: later
// groups on the pipe are not sent.
func (p *Pipe) Broken() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

// Release gives the connection back to its pool, reusable only when every
// group left it clean and keep is set (false: a command changed the
// connection's state). No Run may be under way, unless the pipe is broken:
// its connection is aborted, and a Run still reading on it fails at once.
func (p *Pipe) Release(keep bool) {
	p.mu.Lock()
	clean := !p.broken
	p.mu.Unlock()
	p.conn.Release(clean && keep)
}

// once returns *f and clears it, so that it is called once (a no-op when
// already taken).
func once(f *func()) func() {
	fn := *f
	*f = nil
	if fn == nil {
		return func() {}
	}
	return fn
}
