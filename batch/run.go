// Package batch is one of rbatch's lower layers, under the root package that
// users touch. It runs one node's group of queued commands on one connection.
// A group that fits one write is written and then read by the caller alone;
// a larger one is streamed by a writer goroutine while another reads the
// replies, so a group of millions of commands never piles up in either
// direction.
//
// Run sends a group built at Execute (IN_MEMORY and IN_MEMORY_ATOMIC);
// Session holds a connection for a Redis-side queue, where MULTI and each
// command are sent as they are queued (REDIS_READ_ATOMIC, REDIS_WRITE_ATOMIC).
package batch

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
	"github.com/rbatch/rbatch/queue"
)

// Conn is a connection as a group needs it. One goroutine calls Write and
// Flush while another calls Receive; Abort may be called from any goroutine
// and makes both return promptly.
type Conn interface {
	// Write hands encoded commands to the connection (buffered).
	Write(p []byte) (int, error)
	// Flush sends what Write buffered.
	Flush() error
	// Receive returns the next reply. An error reply is returned as a
	// redis.Error value with a nil error; the error is for transport faults.
	// timeout bounds the wait (0: the connection's default).
	Receive(timeout time.Duration) (any, error)
	// Abort breaks the connection so that pending Write and Receive calls
	// fail. The connection must not be reused afterwards.
	Abort()
}

// readDeadliner is a Conn whose read deadline can wait for the writer.
type readDeadliner interface {
	// HoldReadDeadline removes the read deadline: bounded Receives set
	// their own, unbounded ones (a negative timeout) wait.
	HoldReadDeadline()
	// ArmReadDeadline bounds the read under way, or the next, by timeout
	// from now (0: the connection's default). Safe while a Receive runs.
	ArmReadDeadline(timeout time.Duration)
}

// armWaiter is a Conn that sets each read's deadline as the read starts
// and cannot move it later (a redigo connection): WaitForArm makes its
// next read wait for ArmReadDeadline (or Abort), so that a skip-result
// batch's one reply is not awaited while the batch is still being written.
type armWaiter interface {
	WaitForArm()
	ArmReadDeadline(timeout time.Duration)
}

// sendBuffer is a Conn that holds what it was handed until Flush (a redigo
// connection): a writer that stops early flushes it before aborting, so
// that the commands it counted as sent reach the server, and the reader
// gets the reply it waits for.
type sendBuffer interface {
	FlushPending()
}

// Lease is a Conn taken from a pool: Release gives it back, to be reused
// only when clean (no pending reply, no open transaction, replies on).
type Lease interface {
	Conn
	Release(clean bool)
}

// Group is one node's share of a batch, sent at Execute.
type Group struct {
	Queue   *queue.Queue
	Indices []int // submission indices, in submission order

	// Prefix holds encoded commands sent before the group whose replies are
	// read and dropped, such as SCRIPT LOAD for the group's EVALSHAs.
	Prefix [][]byte

	// Resolve receives each answered command's reply.
	Resolve Resolver

	// Guard, when set, is checked first: the group is sent only if it holds
	// (a conditional transaction; Plan.Atomic).
	Guard *Guard

	// Added, when set, is called once the group has its place on a
	// Shared line (or cannot have one): what is added later goes after it.
	Added func()

	// Wrote, when set, is told the commands (their Queue positions) as
	// they are handed to the connection: a progress report, which many
	// groups may feed at once.
	Wrote func(idx []int)

	Plan
	layout layout // built by Run from Plan and Prefix
	result Result // filled by Run
}

type groupSource struct{ g *Group }

func (s groupSource) has(k int) bool       { return k < len(s.g.Indices) }
func (s groupSource) resolve(k int, r any) { s.g.Resolve.Resolve(s.g.Indices[k], r) }
func (s groupSource) after() []frame       { return s.g.layout.after() }

// Run sends g's commands on conn laid out by g.Plan and hands each answered
// command its reply through g.Resolve. It returns when every expected reply was
// read, or at the first transport error, or when ctx ends (then conn is
// aborted).
func Run(ctx context.Context, conn Conn, g *Group) Result {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, conn.Abort)
	}
	g.layout.build(g.Plan, g.Prefix, false)
	res := &g.result // the reader keeps a pointer: in the group, not apart
	*res = Result{}
	switch {
	case g.Guard != nil && !guard(conn, g, res):
		// Nothing of the group was sent: res says why.
		if res.Err != nil && ctx.Err() != nil {
			res.Err = ctxerr.Of(ctx)
		}
	case g.small():
		// It fits one write: written, then read, by the caller alone.
		var w progress
		err := writeGroup(ctx, conn, g, &w)
		if err == nil {
			read(conn, g.Plan, &g.layout, groupSource{g}, res, nil)
			if res.Err != nil {
				conn.Abort() // its later replies would answer the wrong commands
			}
		}
		settleExchange(ctx, res, &w, err)
	default:
		exchange(ctx, conn, g.Plan, &g.layout, groupSource{g}, res,
			func(w *progress) error { return writeGroup(ctx, conn, g, w) })
	}
	if g.Guard != nil && res.MultiRefused != nil {
		res.Clean = false // the WATCH outlived the refused transaction
	}
	if !stop() && res.Clean {
		// ctx ended just as the group did: the abort may be under way,
		// so the connection cannot go back to the pool.
		res.Clean = false
	}
	return *res
}

// exchange runs write in a goroutine of its own while the replies are read
// into res, then waits for the writer and completes res with what it did.
//
// The response timeout does not run while the writer is still writing (a
// skip-result batch of millions is answered only once all of it is
// written): on a connection that can defer its read deadline, the replies
// are awaited without one until the writer flushed the last frame, which
// then arms it.
func exchange(ctx context.Context, conn Conn, p Plan, l *layout, src source, res *Result, write func(w *progress) error) {
	var w progress
	var armed armWaiter
	if d, ok := conn.(readDeadliner); ok {
		d.HoldReadDeadline()
		w.deferred = d
	} else if a, ok := conn.(armWaiter); ok && p.SkipResult {
		a.WaitForArm()
		armed = a
	}
	werr := make(chan error, 1)
	go func() {
		err := write(&w)
		if w.deferred != nil {
			w.written.Store(true)
			w.deferred.ArmReadDeadline(p.ResponseTimeout)
		}
		if armed != nil {
			armed.ArmReadDeadline(p.ResponseTimeout)
		}
		werr <- err
	}()
	read(conn, p, l, src, res, &w)
	w.broken.Store(res.Err != nil)
	if res.Err != nil {
		// The writer may be blocked on a socket nobody reads: break it.
		conn.Abort()
	}
	settleExchange(ctx, res, &w, <-werr)
}

// settleExchange completes res with what the writer did once it is done.
func settleExchange(ctx context.Context, res *Result, w *progress, writeErr error) {
	res.Sent = int(w.sent.Load())
	res.ExecSent = w.execSent.Load()
	switch {
	case writeErr == nil:
	case res.Err == nil:
		res.Err = writeErr
	case errors.Is(res.Err, net.ErrClosed) && !errors.Is(writeErr, net.ErrClosed):
		// The writer failed first (its timeout, a reset) and aborted the
		// connection under the reader: the write's error is the cause.
		res.Err = writeErr
	}
	if res.Err != nil && ctx.Err() != nil {
		res.Err = ctxerr.Of(ctx)
	}
	res.Clean = res.Clean && res.Err == nil
}

// smallGroup is the most a group may weigh, in encoded bytes, to be
// written and read by the caller alone: it fits the connection's write
// buffer, so it leaves in one write, and the server reads all of it
// whether or not anyone reads its replies yet.
const smallGroup = 32 << 10

// small reports whether g goes in one write (see smallGroup).
func (g *Group) small() bool {
	size := 0
	for _, p := range g.Prefix {
		size += len(p)
	}
	for k, idx := 0, g.Indices; len(idx) > 0; k++ {
		if size > smallGroup || k > 64 {
			return false
		}
		b, n := g.Queue.Span(idx)
		size += len(b)
		idx = idx[n:]
	}
	return size <= smallGroup
}

// progress is what a writer has handed to the connection; the reader's
// goroutine reads it once the writer is done.
type progress struct {
	sent     atomic.Int64 // commands handed to the connection
	execSent atomic.Bool  // EXEC handed to the connection
	// deferred is the connection whose read deadline waits for the writer
	// (nil: the deadline runs as each reply is awaited); written is set
	// once the writer is done.
	deferred readDeadliner
	written  atomic.Bool
	// broken is set when the reader saw the connection fail: what the
	// writer hands over after that never reaches the server.
	broken atomic.Bool
}

// errBroken stops a writer whose connection the reader saw fail.
var errBroken = errors.New("connection failed while writing")

// markExec records that EXEC is about to be handed over, unless the
// connection is already known dead (then EXEC cannot reach Redis).
func (w *progress) markExec() error {
	if w.broken.Load() {
		return errBroken
	}
	w.execSent.Store(true)
	return nil
}

// wrote tells g.Wrote of the commands idx, handed to the connection.
func (g *Group) wrote(idx []int) {
	if g.Wrote != nil {
		g.Wrote(idx)
	}
}

// writeGroup streams prefix, head, commands and end frames, then flushes.
// When it stops early it aborts conn, so that the reader does not wait for
// replies that will never come.
func writeGroup(ctx context.Context, conn Conn, g *Group, w *progress) (err error) {
	defer func() {
		if err != nil {
			if b, ok := conn.(sendBuffer); ok {
				b.FlushPending()
			}
			conn.Abort()
		}
	}()
	if err := g.layout.writeFrames(conn, g.layout.before()); err != nil {
		return err
	}
	for idx := g.Indices; len(idx) > 0; {
		if err := ctxerr.Of(ctx); err != nil {
			return err
		}
		if g.layout.askEach {
			w.sent.Add(1)
			g.wrote(idx[:1])
			if _, err := conn.Write(Asking); err != nil {
				return err
			}
			if _, err := conn.Write(g.Queue.Bytes(idx[0])); err != nil {
				return err
			}
			idx = idx[1:]
			continue
		}
		b, n := g.Queue.Span(idx)
		w.sent.Add(int64(n))
		g.wrote(idx[:n])
		if _, err := conn.Write(b); err != nil {
			return err
		}
		idx = idx[n:]
	}
	if err := ctxerr.Of(ctx); err != nil {
		return err
	}
	if g.Atomic {
		if err := w.markExec(); err != nil {
			return err
		}
	}
	if err := g.layout.writeFrames(conn, g.layout.after()); err != nil {
		return err
	}
	return conn.Flush()
}
