package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Shared carries the small groups of many callers on a few connections to
// one node, back to back: each group's frames are appended whole to a
// line's buffer (so a MULTI … EXEC or CLIENT REPLY OFF … ON block is never
// split by another group's frames), handed to the socket together with
// whatever else was appended meanwhile, and read by the line's reader
// goroutine in the same order, each group walking its own layout. Replies
// go back by position.
//
// When a line fails, every group on it is settled by what reached the
// socket: groups whose bytes were written and not answered are unknown,
// those still in its buffer are not sent. A caller whose context ends
// takes its group back when it is still in the buffer (not sent), or
// leaves it to be read and dropped (unknown); the other groups go on. A
// line that had nothing in flight for recheckAfter is looked at before it
// is written to: found closed, its groups go on another line, unwritten.
//
// Close refuses groups from then on, and lets those already on a line
// finish: each line is closed once its last group was answered (or ended
// as a lost connection ends it, by the response timeout).
//
// With more than one line, the last carries only the groups that end in
// WAIT or WAITAOF and the others carry the rest: Redis answers nothing
// after a WAIT on its connection until the WAIT returns, so a WAIT the
// replicas are slow to satisfy holds up only groups that wait as well.
type Shared struct {
	get   func(ctx context.Context, wait bool) (Lease, error)
	lines []atomic.Pointer[line] // nil where no line was up yet
	next  atomic.Uint32
	// dial is held (a token in it) while a line is dialed: one at a time.
	// A channel, so that a caller waiting for another's dial gives up when
	// its context ends.
	dial chan struct{}
	mu   sync.Mutex // guards closed, and a line's store against Close
	// closed is set by Close: later groups fail with ErrSharedClosed.
	closed bool
}

// ErrSharedClosed fails a group given to a Shared after Close.
var ErrSharedClosed = errors.New("shared connections closed")

// NewShared returns n lines to a node whose connections come from get,
// which waits for a free connection only when told to (wait): the first
// line does, a further one is brought up only when a connection is free
// at once.
func NewShared(n int, get func(ctx context.Context, wait bool) (Lease, error)) *Shared {
	return &Shared{get: get, lines: make([]atomic.Pointer[line], max(n, 1)), dial: make(chan struct{}, 1)}
}

// Close refuses later groups (ErrSharedClosed) and closes each line once
// the groups already on it were settled; it does not wait for them.
func (s *Shared) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for i := range s.lines {
		if ln := s.lines[i].Swap(nil); ln != nil {
			ln.drain()
		}
	}
	return nil
}

// Retire lets the lines up now finish the groups on them and close, as
// Close does, while later groups get new lines: the node's connections
// changed (its role in the cluster, and with it READONLY).
func (s *Shared) Retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.lines {
		if ln := s.lines[i].Swap(nil); ln != nil {
			ln.drain()
		}
	}
}

// Shareable reports whether g may go on a shared line: it fits one write
// (see smallGroup) and has no Guard (which needs round trips of its own).
func Shareable(g *Group) bool { return g.Guard == nil && g.small() }

// Traffic is what a group's frames weighed on the wire.
type Traffic struct{ Written, Read int64 }

// Run sends g on one of the lines, dialing it when it is down, and waits
// for its replies. Errors getting a connection come back as connErr
// (nothing was written; res says nothing); everything else is in res, as
// Run would give it.
func (s *Shared) Run(ctx context.Context, g *Group, res *Result) (t Traffic, connErr error) {
	c := newCall(g)
	if err := s.send(ctx, c); err != nil {
		putCall(c)
		return Traffic{}, err
	}
	t, own := c.wait(ctx, res)
	for tries := 1; own && errors.Is(res.Err, errFoundClosed) && tries < 3 && ctx.Err() == nil; tries++ {
		// Nothing was written: the line had died while idle. Go again on
		// another (a new one, dialed now).
		c.reset()
		if err := s.send(ctx, c); err != nil {
			putCall(c)
			*res = Result{}
			return Traffic{}, err
		}
		t, own = c.wait(ctx, res)
	}
	if !own { // left to the reader, which drops its replies
		return t, nil
	}
	for k := range res.Answered {
		g.Resolve.Resolve(g.Indices[k], c.replies[k])
	}
	putCall(c)
	return t, nil
}

// send appends c to a line, dialing one when none is up, and flushes it
// when no flush is under way. An error means c is on no line.
func (s *Shared) send(ctx context.Context, c *call) error {
	lo, hi := s.slots(c.plan.Tail != nil)
	for attempt := 0; ; attempt++ {
		ln, err := s.line(ctx, lo, hi)
		if err != nil {
			return err
		}
		leader, err := ln.add(c)
		if err == nil {
			if leader {
				ln.flushOnce()
			}
			return nil
		}
		if attempt == 2 { // the lines keep failing as they come up
			return err
		}
	}
}

// slots returns the lines a group may go on, lines[lo:hi]: the last of
// several for a group that ends in WAIT or WAITAOF (tail), the others for
// the rest.
func (s *Shared) slots(tail bool) (lo, hi int) {
	n := len(s.lines)
	switch {
	case n == 1:
		return 0, 1
	case tail:
		return n - 1, n
	default:
		return 0, n - 1
	}
}

// line returns the line of lines[lo:hi] to use: one with nothing on it,
// or else a new one while a slot is free, or else the least busy. So one
// caller at a time uses one connection, and more come up as callers
// overlap — only when a pooled connection is free at once and no other
// caller is bringing one up: with a line up, no group waits for another.
// A group that finds no line up waits for the dial as long as its ctx
// allows.
func (s *Shared) line(ctx context.Context, lo, hi int) (*line, error) {
	best, free := s.pick(lo, hi)
	if best != nil && (free < 0 || best.busy.Load() == 0) {
		return best, nil
	}
	if best != nil { // one is up, only busy: another is worth no wait
		select {
		case s.dial <- struct{}{}:
		default:
			return best, nil
		}
	} else {
		select {
		case s.dial <- struct{}{}:
		case <-ctx.Done(): // another caller's dial holds it up: nothing was sent
			return nil, fmt.Errorf("waiting for a shared connection to come up: %w", ctxerr.Of(ctx))
		}
	}
	defer func() { <-s.dial }()
	if s.isClosed() {
		return nil, ErrSharedClosed
	}
	if best, free = s.pick(lo, hi); free < 0 || (best != nil && best.busy.Load() == 0) {
		return best, nil // another caller brought one up meanwhile
	}
	conn, err := s.get(ctx, best == nil)
	if err != nil {
		if best != nil {
			return best, nil
		}
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // Close came while it was dialed: nothing was written
		conn.Release(true)
		return nil, ErrSharedClosed
	}
	ln := newLine(conn)
	s.lines[free].Store(ln)
	return ln, nil
}

func (s *Shared) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// pick returns the least busy line of lines[lo:hi] that is up (nil: none)
// and a slot there with no line up (-1: none).
func (s *Shared) pick(lo, hi int) (best *line, free int) {
	free = -1
	least := int32(0)
	for i := lo; i < hi; i++ {
		ln := s.lines[i].Load()
		if ln == nil || ln.down.Load() {
			if free < 0 {
				free = i
			}
			continue
		}
		n := ln.busy.Load()
		if n == 0 {
			return ln, free
		}
		if best == nil || n < least {
			best, least = ln, n
		}
	}
	return best, free
}

// byteCounter is a connection that counts the bytes its socket took and gave.
type byteCounter interface {
	Written() int64
	BytesRead() int64
}

// awaiter is a connection whose reader can idle at the socket until a
// reply's first byte comes, with the wait bounded by the writer once it
// wrote what the reply answers.
type awaiter interface {
	readDeadliner
	AwaitReply() error
}

// errUnasked fails a line whose server sent bytes while nothing was asked.
var errUnasked = errors.New("shared connection: the server sent a reply nothing asked for")

// aliver is a connection that can tell, without reading, whether the
// server closed it (or sent something unasked) while nothing was in flight.
type aliver interface{ Alive() error }

// errFoundClosed fails the groups of a line (or pipe) found dead while it
// had nothing in flight, by the writer about to write them or by the idle
// reader: nothing of theirs was sent, and they go on another connection.
var errFoundClosed = errors.New("connection found closed before writing")

// FoundClosed reports whether err says a group's connection was found
// closed before anything of it was written: it may go again on another.
func FoundClosed(err error) bool { return errors.Is(err, errFoundClosed) }

// recheckAfter is how long a line must have had nothing in flight before a
// write first looks at its socket: its reader sees a closed connection at
// once when it gets to run, but one starved by a busy machine may not have
// yet, and a group written there would end unknown instead of not sent.
// Under load a line is never idle that long, so the look costs nothing.
const recheckAfter = time.Millisecond

// line is one shared connection, for as long as it works.
type line struct {
	conn Lease
	down atomic.Bool // set once it failed

	mu       sync.Mutex
	ready    sync.Cond // signalled when fifo gains calls or the line fails
	buf      []byte    // frames appended and not yet handed to the socket
	pending  []*call   // their calls, in order
	holes    []hole    // parts of buf whose calls were withdrawn, cut out at the next take
	spareBuf []byte
	spare    []*call
	fifo     []*call      // written, for the reader, in order
	flushing bool         // a flusher holds buf's next take
	writing  bool         // a take is being written: replies may come before its calls reach fifo
	idle     bool         // the reader waits at the socket with no deadline
	idleFrom time.Time    // when the reader last went idle
	busy     atomic.Int32 // calls added and not settled
	draining bool         // Close was called: no call is added, and the line closes once busy is 0
	err      error        // why the line failed (nil: up)
	kick     chan struct{}
	// rest is a take its flusher could not hand to the socket whole (it
	// was full): the writer goroutine writes the rest before any other.
	rest    pendingWrite
	hasRest bool
}

// pendingWrite is a take (buf, the frames of calls) of which the socket
// took buf[:off], before being the socket's count of bytes taken before it.
type pendingWrite struct {
	buf    []byte
	calls  []*call
	off    int
	before int64
}

// tryWriter is a connection whose socket can be written without waiting
// for room in it: n is what it took, ok false when it cannot be written so.
type tryWriter interface {
	TryWrite(p []byte) (n int, ok bool, err error)
}

func newLine(conn Lease) *line {
	ln := &line{conn: conn, kick: make(chan struct{}, 1)}
	ln.ready.L = &ln.mu
	go ln.readLoop()
	go ln.writeLoop()
	return ln
}

// add appends c's frames to the line; leader reports that the caller is
// to hand them to the socket (no flush was under way).
func (ln *line) add(c *call) (leader bool, err error) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.err != nil {
		return false, ln.err
	}
	if ln.draining {
		return false, ErrSharedClosed
	}
	c.start = len(ln.buf)
	ln.buf = c.appendTo(ln.buf)
	c.end = len(ln.buf)
	c.line, c.queued = ln, true
	ln.pending = append(ln.pending, c)
	ln.busy.Add(1)
	if ln.flushing {
		return false, nil
	}
	ln.flushing = true
	return true, nil
}

// take hands the flusher what was appended; false when there is nothing
// (the flush is over). recheck says the line has had nothing in flight for
// recheckAfter: its socket is to be looked at before the write.
func (ln *line) take() (buf []byte, calls []*call, recheck, ok bool) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if len(ln.pending) == 0 || ln.err != nil {
		ln.flushing = false
		return nil, nil, false, false
	}
	recheck = ln.idle && len(ln.fifo) == 0 && !ln.writing && time.Since(ln.idleFrom) > recheckAfter
	if len(ln.holes) > 0 {
		ln.cutHoles()
	}
	buf, calls = ln.buf, ln.pending
	ln.buf, ln.pending = ln.spareBuf[:0], ln.spare[:0]
	ln.spareBuf, ln.spare = nil, nil
	for _, c := range calls {
		c.queued = false
	}
	ln.writing = true
	return buf, calls, recheck, true
}

// yieldAbove is how many calls a line must carry before its flusher yields
// to let others append to its write. A yield sends the flusher through the
// scheduler's global queue: with many callers in flight some are about to
// append (the reader just handed them their replies), and one write of
// many groups pays; with a few, the yield only delays the write while the
// server idles.
const yieldAbove = 8

// flushOnce writes one take (the leader's own group among it) and leaves
// what was appended since to the line's writer goroutine. The leader never
// waits for room in the socket (its context could not stop that wait):
// what the socket does not take at once goes to the writer goroutine too.
func (ln *line) flushOnce() {
	if ln.busy.Load() > yieldAbove {
		// Let the callers that are ready to run append theirs first: one
		// write of many groups costs the client and the server far less
		// than many writes of one.
		runtime.Gosched()
	}
	if buf, calls, recheck, ok := ln.take(); ok && !ln.tryWrite(buf, calls, recheck) {
		return // the writer goroutine has the flush now
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	switch {
	case ln.err != nil: // kick is closed
	case len(ln.pending) == 0:
		ln.flushing = false
	default:
		select {
		case ln.kick <- struct{}{}:
		default:
		}
	}
}

// writeLoop flushes for callers that appended while another flushed, and
// finishes what a flusher's socket did not take at once, until the line
// fails.
func (ln *line) writeLoop() {
	for range ln.kick {
		ln.writeRest()
		for {
			buf, calls, recheck, ok := ln.take()
			if !ok {
				break
			}
			ln.write(buf, calls, recheck)
		}
	}
	ln.writeRest() // a take left as the line failed: settled by what was written
}

// writeRest writes the rest of a take its flusher left, if there is one.
func (ln *line) writeRest() {
	ln.mu.Lock()
	w, ok := ln.rest, ln.hasRest
	ln.rest, ln.hasRest = pendingWrite{}, false
	ln.mu.Unlock()
	if !ok {
		return
	}
	_, err := ln.conn.Write(w.buf[w.off:])
	if err == nil {
		err = ln.conn.Flush()
	}
	ln.wrote(w.buf, w.calls, w.before, err)
}

// written returns the count of bytes the line's socket took so far (0 when
// the connection does not count them).
func (ln *line) written() int64 {
	if wc, ok := ln.conn.(byteCounter); ok {
		return wc.Written()
	}
	return 0
}

// check looks at the socket of a line that had nothing in flight for a
// while (recheck) before it is written to.
func (ln *line) check(recheck bool) error {
	if a, ok := ln.conn.(aliver); ok && recheck {
		if cause := a.Alive(); cause != nil {
			return fmt.Errorf("%w: %w", errFoundClosed, cause)
		}
	}
	return nil
}

// tryWrite is write for a flusher that must not wait for room in the
// socket: false means the socket took only part of buf (or cannot be
// written without waiting), and the rest was left to the writer goroutine,
// which now holds the flush.
func (ln *line) tryWrite(buf []byte, calls []*call, recheck bool) bool {
	before := ln.written()
	if err := ln.check(recheck); err != nil {
		ln.wrote(buf, calls, before, err)
		return true
	}
	n := 0
	if tw, ok := ln.conn.(tryWriter); ok {
		m, can, err := tw.TryWrite(buf)
		if can && (err != nil || m == len(buf)) {
			ln.wrote(buf, calls, before, err)
			return true
		}
		n = m
	}
	ln.mu.Lock()
	if err := ln.err; err != nil { // kick is closed: nobody will write the rest
		ln.mu.Unlock()
		ln.wrote(buf, calls, before, err)
		return true
	}
	ln.rest, ln.hasRest = pendingWrite{buf: buf, calls: calls, off: n, before: before}, true
	select {
	case ln.kick <- struct{}{}:
	default: // a kick is pending: the writer goroutine comes anyway
	}
	ln.mu.Unlock()
	return false
}

// write hands buf (the frames of calls) to the socket, after looking at
// the socket when recheck, then gives the calls to the reader, or settles
// them when the line failed.
func (ln *line) write(buf []byte, calls []*call, recheck bool) {
	before := ln.written()
	err := ln.check(recheck)
	if err == nil {
		_, err = ln.conn.Write(buf)
	}
	if err == nil {
		err = ln.conn.Flush()
	}
	ln.wrote(buf, calls, before, err)
}

// wrote ends the write of buf (the frames of calls), which failed with err
// or not, the socket's count of bytes being before when it began: it gives
// the calls to the reader, or settles them when the line failed.
func (ln *line) wrote(buf []byte, calls []*call, before int64, err error) {
	_, counted := ln.conn.(byteCounter)
	ln.mu.Lock()
	ln.writing = false
	failed := ln.err
	if err == nil && failed == nil {
		first := len(ln.fifo) == 0
		ln.fifo = append(ln.fifo, calls...)
		if aw, ok := ln.conn.(awaiter); ok && ln.idle && first {
			// The reader idles at the socket: bound its wait now that
			// what it waits for was written (and only then: a later
			// write must not stretch the wait for an earlier one).
			aw.ArmReadDeadline(calls[0].plan.ResponseTimeout)
		}
		ln.ready.Signal()
	}
	ln.spareBuf = buf[:0]
	ln.mu.Unlock()
	if err == nil && failed == nil {
		clear(calls)
		ln.mu.Lock()
		ln.spare = calls[:0]
		ln.mu.Unlock()
		return
	}
	if err != nil {
		ln.fail(err)
		failed = err
	}
	// Bytes the socket took may have reached the server; the rest did not.
	// A transaction cut before its EXEC's end never ran: the lost
	// connection discards its MULTI.
	out := int64(len(buf))
	if err != nil && counted {
		out = ln.written() - before
	}
	for _, c := range calls {
		if int64(c.start) < out {
			c.settle(Result{Sent: c.n, ExecSent: c.execReached(out), Err: failed})
		} else {
			c.settle(Result{Err: failed})
		}
	}
}

// readLoop reads the replies of the written calls, in order, until the line
// fails; then it releases the connection.
func (ln *line) readLoop() {
	var calls []*call
	wc, counted := ln.conn.(interface{ Consumed() int64 })
	aw, awaits := ln.conn.(awaiter)
	for {
		ln.mu.Lock()
		for len(ln.fifo) == 0 && ln.err == nil {
			if ln.closeIfDrainedLocked() {
				break
			}
			if !awaits || ln.writing {
				ln.ready.Wait()
				continue
			}
			// Nothing is on its way: idle at the socket, so that a server
			// closing the connection is seen at once and a reply wakes the
			// reader once.
			aw.HoldReadDeadline()
			ln.idle, ln.idleFrom = true, time.Now()
			ln.mu.Unlock()
			err := aw.AwaitReply()
			ln.mu.Lock()
			ln.idle = false
			if err == nil && len(ln.fifo) == 0 && !ln.writing {
				err = errUnasked
			}
			if err != nil {
				if len(ln.fifo) == 0 && !ln.writing {
					// Nothing was in flight: the line died idle, and the
					// groups waiting in its buffer go on another line.
					err = fmt.Errorf("%w: %w", errFoundClosed, err)
				}
				pending := ln.failLocked(err)
				ln.mu.Unlock()
				for _, c := range pending {
					c.settle(Result{Err: err})
				}
				ln.mu.Lock()
			}
		}
		if ln.err != nil {
			ln.mu.Unlock()
			break
		}
		calls, ln.fifo = ln.fifo, calls[:0]
		ln.mu.Unlock()
		for i, c := range calls {
			var before int64
			if counted {
				before = wc.Consumed()
			}
			read(ln.conn, c.plan, &c.layout, callSource{c}, &c.res, nil)
			if counted {
				c.traffic.Read = wc.Consumed() - before
			}
			c.res.Sent, c.res.ExecSent = c.n, c.plan.Atomic
			err := c.res.Err
			if err != nil {
				// Down before its caller hears of it: a batch it runs next
				// must not find this line still up.
				ln.fail(err)
			}
			c.finish()
			if err != nil {
				for _, d := range calls[i+1:] {
					d.settle(Result{Sent: d.n, ExecSent: d.plan.Atomic, Err: err})
				}
				clear(calls)
				ln.settleFifo()
				ln.conn.Release(false)
				return
			}
		}
		clear(calls)
	}
	ln.settleFifo()
	ln.conn.Release(false)
}

// settleFifo settles the written calls nobody will read (the line failed).
func (ln *line) settleFifo() {
	ln.mu.Lock()
	fifo := ln.fifo
	ln.fifo = nil
	err := ln.err
	ln.mu.Unlock()
	for _, c := range fifo {
		c.settle(Result{Sent: c.n, ExecSent: c.plan.Atomic, Err: err})
	}
}

// fail marks the line failed for err (the first cause stays), breaks its
// connection, and settles the calls still in its buffer as not sent.
func (ln *line) fail(err error) {
	ln.mu.Lock()
	pending := ln.failLocked(err)
	ln.mu.Unlock()
	for _, c := range pending {
		c.settle(Result{Err: ln.err})
	}
}

// failLocked is fail under ln.mu; it returns the calls to settle.
func (ln *line) failLocked(err error) []*call {
	if ln.err != nil {
		return nil
	}
	ln.err = err
	ln.down.Store(true)
	ln.conn.Abort()
	pending := ln.pending
	ln.pending, ln.buf, ln.holes = nil, nil, nil
	for _, c := range pending {
		c.queued = false
	}
	ln.ready.Broadcast()
	close(ln.kick)
	return pending
}

// withdraw takes c back when it is still in the buffer: true means it
// was never handed to the socket. Its bytes stay in the buffer, marked as
// a hole, until the next take cuts them out: many callers giving up at
// once (a stalled server) each pay for a mark, not for moving the buffer.
func (ln *line) withdraw(c *call) bool {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if !c.queued {
		return false
	}
	k := 0
	for _, d := range ln.pending {
		if d != c {
			ln.pending[k] = d
			k++
		}
	}
	clear(ln.pending[k:])
	ln.pending = ln.pending[:k]
	if k == 0 { // nothing is left to write
		ln.buf, ln.holes = ln.buf[:0], ln.holes[:0]
	} else {
		ln.holes = append(ln.holes, hole{c.start, c.end})
	}
	c.queued = false
	ln.busy.Add(-1)
	ln.closeIfDrainedLocked()
	return true
}

// hole is the bytes buf[from:to] of a withdrawn call.
type hole struct{ from, to int }

// cutHoles removes the withdrawn calls' bytes from buf, and moves the
// pending calls' places to match. Under ln.mu.
func (ln *line) cutHoles() {
	slices.SortFunc(ln.holes, func(a, b hole) int { return cmp.Compare(a.from, b.from) })
	out, at, h, cut := ln.holes[0].from, ln.holes[0].from, 0, 0
	for _, c := range ln.pending {
		for h < len(ln.holes) && ln.holes[h].from < c.start {
			out += copy(ln.buf[out:], ln.buf[at:ln.holes[h].from])
			cut += ln.holes[h].to - ln.holes[h].from
			at = ln.holes[h].to
			h++
		}
		c.start -= cut
		c.end -= cut
	}
	for ; h < len(ln.holes); h++ {
		out += copy(ln.buf[out:], ln.buf[at:ln.holes[h].from])
		at = ln.holes[h].to
	}
	out += copy(ln.buf[out:], ln.buf[at:])
	ln.buf = ln.buf[:out]
	ln.holes = ln.holes[:0]
}

// drain stops the line taking calls, and closes it once those on it were
// settled: at once when none is.
func (ln *line) drain() {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	ln.draining = true
	ln.closeIfDrainedLocked()
}

// closeIfDrainedLocked closes a draining line that carries no call (none
// in its buffer, being written, or awaiting its replies); it reports that
// the line is closed. Under ln.mu. Short of the line failing, the busy
// count drops to 0 only in withdraw or in the reader's finish of a call,
// and both look here after it does.
func (ln *line) closeIfDrainedLocked() bool {
	if ln.draining && ln.busy.Load() == 0 {
		ln.failLocked(ErrSharedClosed) // nothing to settle: no call is on it
	}
	return ln.err != nil
}

// settled counts a call off the line.
func (ln *line) settled() { ln.busy.Add(-1) }
