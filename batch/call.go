package batch

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// call is one group on a shared line: a copy of what the reader needs (the
// caller may return before the reader is done with it) and what the reader
// found. The replies are kept here and handed to the group's Resolver by
// the caller, in its own goroutine, so that a caller who stopped waiting
// never has a future resolved behind its back.
type call struct {
	g       *Group // the caller's, used only while the caller waits
	plan    Plan
	layout  layout
	n       int // the group's commands
	res     Result
	replies []any
	traffic Traffic

	// answered counts the replies the reader put in replies, in order: a
	// caller who stops waiting keeps those (a batch whose WAIT outlasts its
	// context keeps its commands' answers).
	answered atomic.Int32

	line       *line
	start, end int // where its frames are in line.buf while queued
	// execEnd is where its EXEC ends, counted from start (0: none): a
	// write cut before it leaves the transaction unfinished on the server.
	execEnd int
	queued  bool // in line.buf, not yet taken by a flusher (guarded by line.mu)

	// state settles who owns the call once it is written: the reader
	// (done → the caller takes it) or the caller who stopped waiting
	// (abandoned → the reader recycles it).
	state atomic.Int32
	done  chan struct{}
}

const (
	callWaiting int32 = iota
	callDone
	callAbandoned
)

var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// newCall takes a call for g from the pool, its layout built from g's
// plan and prefix.
func newCall(g *Group) *call {
	c := calls.Get().(*call)
	c.g, c.plan, c.n = g, g.Plan, len(g.Indices)
	c.layout.build(g.Plan, g.Prefix, false)
	if cap(c.replies) < c.n {
		c.replies = make([]any, c.n)
	}
	c.replies = c.replies[:c.n]
	return c
}

func putCall(c *call) {
	clear(c.replies)
	c.g, c.line, c.res, c.traffic, c.layout.prefix = nil, nil, Result{}, Traffic{}, nil
	c.answered.Store(0)
	c.state.Store(callWaiting)
	calls.Put(c)
}

// reset readies a call that was settled unsent to be added to a line again.
func (c *call) reset() {
	c.line, c.res, c.traffic = nil, Result{}, Traffic{}
	c.answered.Store(0)
	c.state.Store(callWaiting)
}

// appendTo appends the group's frames to buf.
func (c *call) appendTo(buf []byte) []byte {
	l, g := &c.layout, c.g
	buf = l.appendFrames(buf, l.before())
	for idx := g.Indices; len(idx) > 0; {
		if l.askEach {
			buf = append(buf, Asking...)
			buf = append(buf, g.Queue.Bytes(idx[0])...)
			idx = idx[1:]
			continue
		}
		b, n := g.Queue.Span(idx)
		buf = append(buf, b...)
		idx = idx[n:]
	}
	c.execEnd = 0
	after := l.after()
	for i, f := range after {
		buf = l.appendFrames(buf, after[i:i+1])
		if f.kind == frameExec {
			c.execEnd = len(buf) - c.start
		}
	}
	c.traffic.Written = int64(len(buf) - c.start)
	return buf
}

// execReached reports whether a write of which the socket took the line's
// bytes up to out may have handed over the call's EXEC.
func (c *call) execReached(out int64) bool {
	return c.plan.Atomic && (c.execEnd == 0 || int64(c.start+c.execEnd) <= out)
}

// settle ends a call the reader did not read: r says how far it got.
func (c *call) settle(r Result) {
	c.res = r
	c.finish()
}

// finish hands the call to its caller, or recycles it when the caller
// stopped waiting.
func (c *call) finish() {
	c.line.settled()
	if c.state.CompareAndSwap(callWaiting, callDone) {
		c.done <- struct{}{}
		return
	}
	putCall(c)
}

// wait puts the call's result in res once it is settled, or when ctx
// ends: then a group still in the line's buffer is taken back (not sent),
// and one already written is left to the reader (unknown). own reports
// that the caller holds the call (its replies are valid; it recycles it).
// The result is written through res, not returned, so that it is copied
// once on its way to the batch.
func (c *call) wait(ctx context.Context, res *Result) (t Traffic, own bool) {
	done := ctx.Done()
	if done == nil { // nothing to give up for: a plain receive, not a select
		<-c.done
		*res = c.res
		return c.traffic, true
	}
	select {
	case <-c.done:
		*res = c.res
		return c.traffic, true
	case <-done:
	}
	if c.line.withdraw(c) {
		*res = Result{Err: ctxerr.Of(ctx)}
		return Traffic{}, true
	}
	// Once abandoned the call is the reader's, to recycle: read it first.
	// The replies it read already are the group's (the reader writes no
	// reply twice, and those after them are not looked at).
	t = Traffic{Written: c.traffic.Written} // Read is the reader's
	n := int(c.answered.Load())
	for k := range n {
		c.g.Resolve.Resolve(c.g.Indices[k], c.replies[k])
	}
	gone := Result{Answered: n, Sent: c.n, ExecSent: c.plan.Atomic, Err: ctxerr.Of(ctx)}
	if c.state.CompareAndSwap(callWaiting, callAbandoned) {
		*res = gone
		return t, false
	}
	<-c.done // the reader settled it meanwhile
	*res = c.res
	return c.traffic, true
}

// callSource is a call as the reader walks it.
type callSource struct{ c *call }

func (s callSource) has(k int) bool       { return k < s.c.n }
func (s callSource) resolve(k int, r any) { s.c.replies[k] = r; s.c.answered.Store(int32(k + 1)) }
func (s callSource) after() []frame       { return s.c.layout.after() }
