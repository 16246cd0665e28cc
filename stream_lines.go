package rbatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
)

// A stream keeps one connection per node for all its segments: a segment's
// frames are written right after the previous one's, while the previous
// one's replies are still being read, so the wire never drains between
// segments. Two segments are in flight at most, and a segment's later
// rounds (redirects, retries) wait for the previous segment to end, as does
// its first round when the previous one will send again or was routed by
// another slot map (see overtakes), so commands on one key keep their order.

// streamLines are a stream's connections, one pipe per node. A pipe whose
// connection failed is replaced by a new one for the groups that follow,
// so that one lost connection ends in not sent or unknown only the
// commands that were on it, and the stream goes on.
//
// Once a node's connection failed, or could not be had (and no fallback
// took the group: see pipeFor), the node is troubled for the rest of the
// stream: each segment's first group there waits for the segment before
// it to end, so that what that segment sends again (not sent, retried) is
// not overtaken by what follows. A failure is known before the group that
// met it lets the next segment start.
//
// A node whose new connection failed its dial or handshake is
// unreachable (not a pool that had none free, nor a redigo pool given to
// NewClientFromPool, whose errors tell neither apart): the later
// segments' groups there end not sent at once, with the same cause,
// instead of each waiting out a dial or a handshake of its own (a server
// that accepts connections and answers nothing would hold every segment
// for the read timeout). One attempt at a time tries the node again: a
// retry round (WithRetry), while the node's attempts in a row that
// failed, counted across segments, are no more than WithRetry allows one
// batch; and any group once unreachableRecheck passed since the last
// attempt failed, so that a stream outlasts an outage longer than its
// retries. A connection had makes the node reachable again.
type streamLines struct {
	mu          sync.Mutex
	nodes       map[pool.Node]*batch.Pipe // nil where the last connection failed
	unreachable map[pool.Node]*reach      // the nodes whose last connection could not be had
	retries     int                       // WithRetry's attempts
	troubled    map[pool.Node]bool
	running     map[*batch.Pipe]int // the groups each pipe runs now
	// stateful is set once a command that changes its connection's state
	// is queued: the stream keeps every connection it took to its end.
	stateful atomic.Bool
	// tail and tailTimeout are the stream's WAIT or WAITAOF (nil: none);
	// acks are the replies to those sent on the connections given back
	// before the stream's end (see take).
	tail        []byte
	tailTimeout time.Duration
	acks        map[pool.Node][]batch.Result
}

// isTroubled reports whether the connection of the entry's node, or of
// its fallback, failed during the stream: a read that falls back to its
// primary must not overtake there what the segment before it sends again.
func (l *streamLines) isTroubled(e *entry) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.troubled[e.node] || (e.fallback != nil && l.troubled[e.fallback])
}

// trouble marks node's connection failed (see streamLines).
func (l *streamLines) trouble(node pool.Node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.troubled == nil {
		l.troubled = map[pool.Node]bool{}
	}
	l.troubled[node] = true
}

// of returns node's pipe, taking a connection on first use and when the
// pipe failed; an unreachable node is tried again as streamLines says
// (retry: the group is in a retry round).
func (l *streamLines) of(ctx context.Context, node pool.Node, hs []Hook, retry bool) (*batch.Pipe, error) {
	l.mu.Lock()
	if l.nodes == nil {
		l.nodes = map[pool.Node]*batch.Pipe{}
	}
	if l.running == nil {
		l.running = map[*batch.Pipe]int{}
	}
	p := l.nodes[node]
	if p != nil && !p.Broken() {
		l.running[p]++
		l.mu.Unlock()
		return p, nil
	}
	r := l.unreachable[node]
	if r != nil {
		if err := r.refuse(retry, l.retries); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		r.trying = true
	}
	if p != nil {
		// Its connection failed and is given up now, not at the end: a
		// stream cut many times must not hold the pool's connections.
		p.Release(false)
	}
	l.nodes[node] = nil // used, and without a connection for now
	l.mu.Unlock()

	conn, err := l.take(ctx, node, hs) // unlocked: a node slow to reach holds up no other node
	l.mu.Lock()
	defer l.mu.Unlock()
	if r != nil {
		r.trying = false
	}
	if err != nil {
		var dialErr *pool.DialError
		if q := l.nodes[node]; ctx.Err() == nil && errors.As(err, &dialErr) && (q == nil || q.Broken()) {
			// Unreachable, unless another group had a connection meanwhile.
			if cur := l.unreachable[node]; cur != nil {
				r = cur // another attempt failed meanwhile: one count for both
			} else {
				if l.unreachable == nil {
					l.unreachable = map[pool.Node]*reach{}
				}
				r = &reach{}
				l.unreachable[node] = r
			}
			r.err, r.at = err, time.Now()
			r.failures++
		}
		return nil, err
	}
	delete(l.unreachable, node)
	if q := l.nodes[node]; q != nil && !q.Broken() {
		conn.Release(true) // another group brought one up meanwhile
		l.running[q]++
		return q, nil
	}
	p = batch.NewPipe(conn)
	l.nodes[node] = p
	l.running[p]++
	return p, nil
}

// unreachableRecheck is how long after a failed attempt an unreachable
// node of a stream is tried again by the next group there, retries spent
// or not.
const unreachableRecheck = time.Second

// reach is why a stream's node is unreachable (see streamLines).
type reach struct {
	err      error     // the last attempt's
	at       time.Time // when it failed
	failures int       // attempts in a row that failed
	trying   bool      // an attempt is under way
}

// refuse returns the error a group fails with at once, not sent, or nil
// when it is to try the node again: it is a retry round (retry) and the
// stream's retries (retries) allow another attempt in a row, or the last
// attempt failed long enough ago. A refused group is retried, unless no
// attempt in a row is left (unreachableError).
func (r *reach) refuse(retry bool, retries int) error {
	spent := r.failures > retries
	if !r.trying && ((retry && !spent) || time.Since(r.at) >= unreachableRecheck) {
		return nil
	}
	if spent {
		return &unreachableError{attempts: r.failures, cause: r.err}
	}
	return r.err
}

// unreachableError fails a group whose node the stream gave up on: its
// attempts in a row to get a connection there failed, as many as
// WithRetry allows. The group is not retried.
type unreachableError struct {
	attempts int
	cause    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("no connection after %d attempts in a row during the stream: %v", e.attempts, e.cause)
}
func (e *unreachableError) Unwrap() error { return e.cause }

// ran ends a group's use of pipe p (from of).
func (l *streamLines) ran(p *batch.Pipe) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[p]--; l.running[p] <= 0 {
		delete(l.running, p)
	}
}

// slotWaiter is a node whose connections can be asked for with a bound on
// the wait for a free slot.
type slotWaiter interface {
	GetWithin(ctx context.Context, d time.Duration) (pool.Lease, time.Duration, error)
}

// slotWait bounds each wait for a free slot of a stream that may hold
// connections of other nodes, between which it gives back those idle.
const slotWait = 5 * time.Millisecond

// take gets a connection of node for the stream. A stream never waits long
// for a free one while it holds connections of other nodes: two streams
// that each hold one node's last connection and wait for the other's
// would wait for ever. Its groups run side by side, so it may come to hold
// some while a group waits: each wait is short, and between two it gives
// back the connections of other nodes that run no group (one is taken
// again when next needed).
func (l *streamLines) take(ctx context.Context, node pool.Node, hs []Hook) (pool.Lease, error) {
	sw, ok := node.(slotWaiter)
	if !ok {
		return get(ctx, node, hs)
	}
	var waited time.Duration // told to the hooks as one wait
	return reportWait(ctx, node.Addr(), hs, func() (pool.Lease, time.Duration, error) {
		for {
			conn, d, err := sw.GetWithin(ctx, slotWait)
			waited += d
			if !errors.Is(err, pool.ErrNoFreeSlot) {
				return conn, waited, err
			}
			l.giveBack(ctx, node)
		}
	})
}

// giveBack gives back the connections of nodes other than node that run no
// group. A stream that waits for its replicas sends its WAIT on each first,
// since a WAIT acknowledges only its connection's writes; one whose
// commands changed their connection's state keeps them all.
func (l *streamLines) giveBack(ctx context.Context, node pool.Node) {
	stateful := l.stateful.Load()
	l.mu.Lock()
	var idle []nodePipe
	for n, p := range l.nodes {
		switch {
		case n == node || p == nil, stateful, l.running[p] > 0:
		default:
			idle = append(idle, nodePipe{n, p})
			delete(l.nodes, n) // the next group there takes a connection anew
		}
	}
	l.mu.Unlock()
	for _, np := range idle {
		if l.tail != nil && np.pipe.Wrote() {
			r := np.pipe.Sync(ctx, l.tail, l.tailTimeout)
			l.mu.Lock()
			if l.acks == nil {
				l.acks = map[pool.Node][]batch.Result{}
			}
			l.acks[np.node] = append(l.acks[np.node], r)
			l.mu.Unlock()
		}
		np.pipe.Release(true)
	}
}

// pipeFor returns the pipe for the entry's group and the node it leads
// to: the entry's node's, or its fallback's (the primary, for read-only
// work sent to a replica) when the node cannot be reached, as acquire
// does outside a stream. Unreachable nodes are tried again only when
// retry is set (see streamLines).
func (l *streamLines) pipeFor(ctx context.Context, e *entry, hs []Hook, retry bool) (*batch.Pipe, pool.Node, error) {
	p, err := l.of(ctx, e.node, hs, retry)
	if err != nil && e.fallback != nil && ctx.Err() == nil {
		p, err = l.of(ctx, e.fallback, hs, retry)
		return p, e.fallback, err
	}
	return p, e.node, err
}

// nodePipe is a node the stream used and its pipe (nil: its last
// connection failed).
type nodePipe struct {
	node pool.Node
	pipe *batch.Pipe
}

// all returns every node the stream used, with its pipe. No segment runs.
func (l *streamLines) all() []nodePipe {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]nodePipe, 0, len(l.nodes))
	for n, p := range l.nodes {
		out = append(out, nodePipe{n, p})
	}
	return out
}

// end gives the connections back: closed unless every group left them
// clean and keep is set (false: a command changed a connection's state).
// No segment runs any more.
func (l *streamLines) end(keep bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.nodes {
		if p != nil {
			p.Release(keep)
		}
	}
	l.nodes = nil
}

// segmentPipe is how a segment runs beside the one before it.
type segmentPipe struct {
	lines *streamLines
	// prev is closed when the previous segment ended (nil: none).
	prev <-chan struct{}
	// before is the previous segment's pipe while that one runs (nil: none).
	before *segmentPipe
	// genFrom and genTo are the slot map's generations just before and
	// just after the segment's commands were routed.
	genFrom, genTo uint64
	// later is set once the segment's first round left commands to send
	// again (redirected, retried), before the slot map is reloaded for them.
	later atomic.Bool
	// appended is closed once every group of the segment's first round has
	// its place on a line; left counts those still to get one.
	appended  chan struct{}
	left      atomic.Int32
	closeOnce sync.Once
}

func (p *segmentPipe) markAppended() { p.closeOnce.Do(func() { close(p.appended) }) }

// groupAdded counts one first-round group placed.
func (p *segmentPipe) groupAdded() {
	if p.left.Add(-1) == 0 {
		p.markAppended()
	}
}

// overtakes reports whether the segment's first round, sent now, could
// overtake on some key what the previous segment has still to send: that
// one has commands to send again, or the two were routed by different
// slot maps, so that a key of both may go to one node in this segment and
// reach it in the previous one only by a later redirect. Then the first
// round waits for the previous segment to end; both are rare (a slot
// moving, a node loading).
func (p *segmentPipe) overtakes() bool {
	q := p.before
	return q != nil && (q.later.Load() || p.genTo != q.genFrom)
}

// waitPrev waits for the previous segment to end before a later round.
func (p *segmentPipe) waitPrev(ctx context.Context) {
	if p.prev != nil {
		select {
		case <-p.prev:
		case <-ctx.Done():
		}
	}
}

// runPiped runs the entry's group on its stream's pipe to the node, or to
// its fallback when the node cannot be reached (see pipeFor).
func (b *Batch) runPiped(ctx context.Context, e *entry, round int) (r batch.Result, addr string, connErr error) {
	addr = e.node.Addr()
	lines := b.pipe.lines
	if round == 1 && (lines.isTroubled(e) || b.pipe.overtakes()) {
		b.pipe.waitPrev(ctx) // later rounds waited already
	}
	p, node, err := lines.pipeFor(ctx, e, b.run.hooks, round > 1)
	if err != nil {
		if round == 1 {
			lines.trouble(e.node)
			lines.trouble(node) // the fallback, when it failed too
			b.pipe.groupAdded()
		}
		return batch.Result{}, addr, err
	}
	addr = node.Addr()
	g, shas := b.buildGroup(e)
	if round == 1 {
		g.Added = func() {
			if p.Broken() { // what follows may have to wait for this group's retries
				lines.trouble(node)
			}
			b.pipe.groupAdded()
		}
	}
	for idx := e.indices; len(idx) > 0; {
		span, n := b.q.Span(idx)
		e.written += int64(len(span))
		idx = idx[n:]
	}
	r = p.Run(ctx, g)
	lines.ran(p)
	for tries := 1; batch.FoundClosed(r.Err) && tries < 3 && ctx.Err() == nil; tries++ {
		// The connection had died while idle and nothing was written: go
		// again on a new one, on the fallback if the node is down now.
		var again pool.Node
		if p, again, err = lines.pipeFor(ctx, e, b.run.hooks, true); err != nil {
			break
		}
		if again != node { // its scripts are loaded there anew
			node, addr = again, again.Addr()
			g, shas = b.buildGroup(e)
		}
		r = p.Run(ctx, g)
		lines.ran(p)
	}
	b.afterGroup(e, shas, &r)
	return r, addr, nil
}
