package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Session is a Redis-side queue: a connection held for one batch, on which
// the plan's head (MULTI) and then each command are sent as they are queued.
// Push never blocks on the network: commands are buffered and a writer
// goroutine sends them, while a reader goroutine takes each QUEUED reply as
// it arrives. Exec (or Discard) closes the queue, sends EXEC (DISCARD) and
// the tail, and returns the group's Result. A session still waiting for
// its connection has written nothing: Discard ends the wait instead.
//
// Push may be called from any goroutine, but its callers must serialize
// their calls so that commands keep their order (the batch's lock does).
type Session struct {
	plan    Plan
	resolve SinkResolver
	acquire func(ctx context.Context) (Lease, error)
	cancel  context.CancelCauseFunc // stops a pending acquire
	done    chan struct{}           // closed when the reader and writer are finished; res is final
	release sync.Once               // the connection goes back once, however often the session is closed

	mu     sync.Mutex // guards the fields below
	cond   *sync.Cond // signalled when out, sinks or closed change
	conn   Lease      // set once acquired; released when the session closes
	out    [][]byte   // frames waiting for the writer: the pushed encodings themselves, not copies, back-to-back ones joined
	sinks  []any      // where each pushed command's reply goes, in order
	closed bool       // EXEC or DISCARD pushed: no more commands
	asked  int        // the command the reader waits for: those before it are answered
	// written is how many commands were handed to the connection, and
	// armedTo how many of them a read deadline armed after their write
	// covers: the reader waits for a QUEUED reply with the response timeout
	// once its command is written, and with none before (see has).
	written, armedTo int
	held             bool // the reader removed the read deadline: nothing it waits for is written
	// deadline is conn as a connection whose read deadline can wait for
	// the writer (nil: it cannot, or replies are off and nothing written
	// before EXEC is answered): the QUEUED replies' bound is kept on it.
	deadline readDeadliner
	discard  bool // the queue was closed by DISCARD
	tainted  bool // a command changed the connection's state: it is closed at the end

	res Result // written by the run goroutine before done closes

	// layout is the session's frames: its head is written at Open, its
	// end chosen (EXEC and the tail, or DISCARD) and written at close.
	// Its end is set under mu before closed.
	layout layout
}

// Open starts a session: acquire gets its connection in the background.
// When parent ends before the session closes, the session is aborted: its
// connection is dropped, which discards the open MULTI.
func Open(parent context.Context, plan Plan, resolve SinkResolver, acquire func(ctx context.Context) (Lease, error)) *Session {
	ctx, cancel := context.WithCancelCause(parent)
	s := &Session{plan: plan, resolve: resolve, acquire: acquire, cancel: cancel, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	if parent.Done() != nil {
		stop := context.AfterFunc(parent, s.abort)
		go func() { <-s.done; stop() }()
	}
	s.layout.build(plan, nil, false)
	s.out = appendFrames(s.out, s.layout.before())
	go s.run(ctx)
	return s
}

// SinkResolver hands a pushed command's reply to its sink. Replies may come
// while commands are still pushed (when MULTI was refused, each runs as it
// comes): the sink, given at Push, is all the resolver needs.
type SinkResolver func(sink, reply any)

// Push queues one encoded command whose reply goes to sink. Its QUEUED
// reply is read as it arrives; EXEC's element for it goes to the resolver.
// It returns false when the session was already closed. cmd is written as
// it is: it must not change until the session is closed.
func (s *Session) Push(cmd []byte, sink any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if n := len(s.out); n > 0 && adjacent(s.out[n-1], cmd) {
		s.out[n-1] = s.out[n-1][:len(s.out[n-1])+len(cmd)]
	} else {
		s.out = append(s.out, cmd)
	}
	s.sinks = append(s.sinks, sink)
	s.cond.Broadcast()
	return true
}

// Exec sends EXEC and the tail, waits for the replies, and returns the
// result. If ctx ends first the connection is aborted.
func (s *Session) Exec(ctx context.Context) Result { return s.close(ctx, false) }

// Discard sends DISCARD (and turns replies back on): nothing queued is
// applied, and the connection stays usable. A session that has no
// connection yet needs none: Discard stops the wait for it (its place in
// line too) and returns at once.
func (s *Session) Discard(ctx context.Context) Result { return s.close(ctx, true) }

// errDiscardedWaiting is why a session discarded before it had its
// connection ended: nothing of it was written.
var errDiscardedWaiting = errors.New("discarded while waiting for a connection: nothing was written")

// Conn returns the session's connection (nil if none was acquired). The
// session releases it when Exec or Discard returns.
func (s *Session) Conn() Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

func (s *Session) close(ctx context.Context, discard bool) Result {
	s.mu.Lock()
	if !s.closed {
		s.layout.buildEnd(s.plan, discard)
		s.closed, s.discard = true, discard
		s.out = appendFrames(s.out, s.layout.after())
		s.cond.Broadcast()
	}
	waiting := s.discard && s.conn == nil
	s.mu.Unlock()
	if waiting {
		s.cancel(errDiscardedWaiting) // run sees s.discard if the connection comes anyway
	}
	stop := context.AfterFunc(ctx, s.abort)
	<-s.done
	res := s.res
	if !stop() {
		// ctx ended: the abort may be under way (even if every reply came).
		res.Clean = false
		if res.Err != nil {
			res.Err = ctxerr.Of(ctx)
		}
	}
	s.mu.Lock()
	tainted := s.tainted
	s.mu.Unlock()
	if conn := s.Conn(); conn != nil {
		s.release.Do(func() { conn.Release(res.Clean && !tainted) })
	}
	return res
}

// Taint says a command pushed changes the connection's state (CLIENT
// SETNAME, …): the connection is closed when the session ends, not reused.
func (s *Session) Taint() {
	s.mu.Lock()
	s.tainted = true
	s.mu.Unlock()
}

// abort stops a pending acquire and breaks the connection.
func (s *Session) abort() {
	s.cancel(nil)
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Abort()
	}
}

// run acquires the connection, then reads while a writer goroutine writes.
func (s *Session) run(ctx context.Context) {
	defer close(s.done)
	defer s.cancel(nil)
	conn, err := s.acquire(ctx)
	if err != nil {
		s.res.Err = err
		return
	}
	s.mu.Lock()
	if s.discard {
		// Discarded while the connection was on its way: nothing was
		// written on it, and nothing will be.
		s.mu.Unlock()
		s.res.Err = errDiscardedWaiting
		s.release.Do(func() { conn.Release(true) })
		return
	}
	s.conn = conn
	if d, ok := conn.(readDeadliner); ok && !s.plan.SkipResult {
		s.deadline = d
	}
	s.mu.Unlock()

	exchange(ctx, conn, s.plan, &s.layout, sessionSource{s}, &s.res,
		func(w *progress) error { return s.write(conn, w) })
}

// write sends what Push and close buffer, until the queue is closed and
// everything is written.
func (s *Session) write(conn Conn, w *progress) (err error) {
	defer func() {
		if err != nil {
			conn.Abort()
		}
	}()
	var spare [][]byte
	written := 0 // commands handed to the connection before this buffer
	var wroteAt time.Time
	for {
		s.mu.Lock()
		for len(s.out) == 0 && !s.closed {
			s.cond.Wait()
		}
		// EXEC is appended when the queue closes, so the first buffer
		// taken once closed holds it.
		buf, pushed, closed, discard := s.out, len(s.sinks), s.closed, s.discard
		caughtUp := s.asked == written // every command written before is answered: nothing is in flight
		s.out = spare[:0]
		s.mu.Unlock()

		if len(buf) > 0 {
			if w.broken.Load() {
				return errBroken
			}
			w.sent.Store(int64(pushed))
			// A connection the server closed while the batch was filled
			// discarded its MULTI, and its idle reader may not have seen
			// the close yet: EXEC, or a command queued after, written into
			// it would be left unknown, not aborted. So the socket is
			// looked at before EXEC, and before a command that comes after
			// a pause (one queued right after another costs no look).
			look := closed || time.Since(wroteAt) > recheckAfter
			if a, ok := conn.(aliver); ok && look && caughtUp && written > 0 && !discard {
				if cause := a.Alive(); cause != nil {
					return fmt.Errorf("%w: %w", errFoundClosed, cause)
				}
			}
			if closed && !discard {
				if err := w.markExec(); err != nil {
					return err
				}
			}
			for _, frame := range buf {
				if _, err := conn.Write(frame); err != nil {
					return err
				}
			}
			if err := conn.Flush(); err != nil {
				return err
			}
			if !closed { // once closed, exchange bounds what is left
				s.wrote(written, pushed)
			}
			written, wroteAt = pushed, time.Now()
		}
		clear(buf) // keep no reference to the batch's bytes
		spare = buf
		if closed { // the last frames (EXEC or DISCARD, the tail) are written
			return nil
		}
	}
}

// wrote records that the commands before pushed were handed to the
// connection, from from on, and bounds the reader's wait when it waits for
// one of them (or for MULTI's reply, before any): a reader still behind
// keeps the deadline armed for what it waits for, so a later write never
// stretches that wait. With replies off nothing written before EXEC is
// answered: the reader waits for CLIENT REPLY ON's reply, which exchange
// bounds.
func (s *Session) wrote(from, pushed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = pushed
	if d := s.deadline; d != nil && s.asked >= from {
		d.ArmReadDeadline(s.plan.ResponseTimeout)
		s.armedTo, s.held = pushed, false
	}
}

// adjacent reports whether b starts where a ends, in the same array.
func adjacent(a, b []byte) bool {
	return len(b) > 0 && cap(a)-len(a) >= len(b) && &a[:len(a)+1][len(a)] == &b[0]
}

// sessionSource lets the reader wait for commands as they are pushed.
type sessionSource struct{ s *Session }

// has waits until command k is pushed (false: the queue closed first), and
// leaves the read deadline as the wait for its QUEUED reply needs it: armed
// once k is written (by the writer, or here when the writer wrote it while
// the reader was behind), and removed while it is not, so that a deadline
// armed for earlier commands cannot cut a wait for one the user has not
// queued yet, nor for EXEC's reply, which exchange bounds once all of it is
// written.
func (src sessionSource) has(k int) bool {
	s := src.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = k
	for k >= len(s.sinks) && !s.closed {
		s.cond.Wait()
	}
	if d := s.deadline; d != nil && k >= s.armedTo {
		switch {
		case k < s.written && k < len(s.sinks):
			d.ArmReadDeadline(s.plan.ResponseTimeout)
			s.armedTo, s.held = s.written, false
		case !s.held:
			d.HoldReadDeadline()
			s.held = true
		}
	}
	return k < len(s.sinks)
}

func (src sessionSource) resolve(k int, r any) {
	s := src.s
	s.mu.Lock()
	sink := s.sinks[k]
	s.mu.Unlock()
	s.resolve(sink, r)
}

func (src sessionSource) after() []frame {
	s := src.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.layout.after()
}

// appendFrames appends the frames' encoded commands to out.
func appendFrames(out [][]byte, frames []frame) [][]byte {
	for _, f := range frames { // a session has no prefix frame
		if f.bytes != nil {
			out = append(out, f.bytes)
		}
	}
	return out
}
