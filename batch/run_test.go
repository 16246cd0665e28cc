package batch_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/resp"
	"github.com/rbatch/rbatch/queue"
)

// fakeConn is an in-memory batch.Conn: it records what is written and
// answers Receive from a script. Like a server, it answers only once the
// writer flushed; a script entry that is an error is returned as a transport
// failure; past the end of the script Receive blocks until Abort.
type fakeConn struct {
	script []any

	mu      sync.Mutex
	written bytes.Buffer
	next    int

	flushOnce sync.Once
	flushed   chan struct{}
	abortOnce sync.Once
	aborted   chan struct{}
}

// transportErr is a scripted transport failure (not an error reply).
type transportErr struct{ msg string }

func (e *transportErr) Error() string { return e.msg }

var errConnReset = &transportErr{"connection reset by peer"}

func newFakeConn(script ...any) *fakeConn {
	return &fakeConn{script: script, flushed: make(chan struct{}), aborted: make(chan struct{})}
}

func (c *fakeConn) Write(p []byte) (int, error) {
	select {
	case <-c.aborted:
		return 0, errors.New("write on aborted connection")
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written.Write(p)
}

func (c *fakeConn) Flush() error {
	select {
	case <-c.aborted:
		return errors.New("flush on aborted connection")
	default:
	}
	c.flushOnce.Do(func() { close(c.flushed) })
	return nil
}

func (c *fakeConn) Receive(time.Duration) (any, error) {
	select {
	case <-c.flushed:
	case <-c.aborted:
		return nil, errors.New("receive on aborted connection")
	}
	c.mu.Lock()
	if c.next < len(c.script) {
		r := c.script[c.next]
		c.next++
		c.mu.Unlock()
		if e, ok := r.(*transportErr); ok {
			return nil, e
		}
		return r, nil
	}
	c.mu.Unlock()
	<-c.aborted
	return nil, errors.New("receive on aborted connection")
}

func (c *fakeConn) Abort() { c.abortOnce.Do(func() { close(c.aborted) }) }

func (c *fakeConn) isAborted() bool {
	select {
	case <-c.aborted:
		return true
	default:
		return false
	}
}

func (c *fakeConn) bytes() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written.String()
}

// cmd is one queued command for a test group.
type cmd struct {
	name string
	args []any
}

func enc(name string, args ...any) string {
	b, err := resp.AppendCommand(nil, nil, name, args...)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// group queues cmds and returns the group plus the replies it resolves.
func group(plan batch.Plan, cmds ...cmd) (batch.Group, map[int]any) {
	var q queue.Queue
	idx := make([]int, len(cmds))
	for i, c := range cmds {
		idx[i] = q.Add(queue.Command{Name: c.name}, nil, c.args...)
	}
	got := map[int]any{}
	var mu sync.Mutex
	return batch.Group{Queue: &q, Indices: idx, Plan: plan, Resolve: batch.ResolverFunc(func(i int, r any) {
		mu.Lock()
		defer mu.Unlock()
		got[i] = r
	})}, got
}

var three = []cmd{{"SET", []any{"a", "1"}}, {"INCR", []any{"n"}}, {"GET", []any{"a"}}}

func wire(frames ...string) string {
	var sb bytes.Buffer
	for _, f := range frames {
		sb.WriteString(f)
	}
	return sb.String()
}

var (
	cmdsWire = wire(enc("SET", "a", "1"), enc("INCR", "n"), enc("GET", "a"))
	multi    = enc("MULTI")
	exec     = enc("EXEC")
	replyOff = enc("CLIENT", "REPLY", "OFF")
	replyOn  = enc("CLIENT", "REPLY", "ON")
)

func TestRunPlainPipeline(t *testing.T) {
	g, got := group(batch.Plan{}, three...)
	conn := newFakeConn("OK", int64(1), []byte("1"))
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	assert.Equal(t, 3, r.Answered)
	assert.Equal(t, 3, r.Sent)
	assert.False(t, r.ExecSent)
	assert.Nil(t, r.Aborted)
	assert.Nil(t, r.MultiRefused)
	assert.False(t, r.Skipped)
	assert.False(t, r.RepliesRead)
	assert.False(t, r.Synced)
	assert.True(t, r.Clean)
	assert.Equal(t, map[int]any{0: "OK", 1: int64(1), 2: []byte("1")}, got)
	assert.Equal(t, cmdsWire, conn.bytes())
	assert.False(t, conn.isAborted())
}

func TestRunAtomicExecArray(t *testing.T) {
	g, got := group(batch.Plan{Atomic: true}, three...)
	conn := newFakeConn("OK", "QUEUED", "QUEUED", "QUEUED",
		[]any{"OK", redis.Error("WRONGTYPE Operation against a key"), []byte("1")})
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	assert.Equal(t, 3, r.Answered)
	assert.Equal(t, 3, r.Sent)
	assert.True(t, r.ExecSent)
	assert.Nil(t, r.Aborted, "an error inside EXEC's array fails only its command")
	assert.True(t, r.Clean)
	assert.Equal(t, map[int]any{0: "OK", 1: redis.Error("WRONGTYPE Operation against a key"), 2: []byte("1")}, got)
	assert.Equal(t, wire(multi, cmdsWire, exec), conn.bytes())
}

func TestRunExecAbortNamesTheQueueTimeError(t *testing.T) {
	g, got := group(batch.Plan{Atomic: true}, three...)
	refused := redis.Error("ERR wrong number of arguments for 'incr' command")
	conn := newFakeConn("OK", "QUEUED", refused, "QUEUED",
		redis.Error("EXECABORT Transaction discarded because of previous errors."))
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	require.NotNil(t, r.Aborted)
	assert.Equal(t, 1, r.Aborted.Index, "the command refused while queueing")
	assert.Equal(t, refused, r.Aborted.Cause)
	assert.ErrorIs(t, r.Aborted, refused)
	assert.Zero(t, r.Answered, "nothing of an aborted transaction is answered")
	assert.Equal(t, 3, r.Sent)
	assert.True(t, r.ExecSent)
	assert.True(t, r.Clean, "EXECABORT ends the transaction: the connection is reusable")
	assert.Empty(t, got)
}

func TestRunNilExec(t *testing.T) {
	g, got := group(batch.Plan{Atomic: true}, three[:2]...)
	conn := newFakeConn("OK", "QUEUED", "QUEUED", nil)
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	require.NotNil(t, r.Aborted)
	assert.Equal(t, -1, r.Aborted.Index)
	assert.ErrorIs(t, r.Aborted, batch.ErrNilExec)
	assert.Zero(t, r.Answered)
	assert.Equal(t, 2, r.Sent)
	assert.True(t, r.ExecSent)
	assert.True(t, r.Clean)
	assert.Empty(t, got)
}

func TestRunExecArrayOfTheWrongLength(t *testing.T) {
	g, got := group(batch.Plan{Atomic: true}, three...)
	conn := newFakeConn("OK", "QUEUED", "QUEUED", "QUEUED", []any{"OK"})
	r := batch.Run(context.Background(), conn, &g)
	// Nothing says whether it ran: not aborted, but an error that leaves
	// the commands unknown, and the connection is not clean.
	assert.Nil(t, r.Aborted)
	assert.ErrorContains(t, r.Err, "unexpected reply: an array of 1")
	assert.True(t, r.ExecSent)
	assert.False(t, r.Clean)
	assert.Zero(t, r.Answered)
	assert.Empty(t, got)
}

func TestRunMultiRefused(t *testing.T) {
	g, got := group(batch.Plan{Atomic: true}, three[:2]...)
	conn := newFakeConn(redis.Error("ERR MULTI is not allowed"), "OK", int64(1),
		redis.Error("ERR EXEC without MULTI"))
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	assert.Equal(t, redis.Error("ERR MULTI is not allowed"), r.MultiRefused)
	assert.Nil(t, r.Aborted)
	assert.Equal(t, 2, r.Answered, "the commands ran on their own")
	assert.True(t, r.Clean)
	assert.Equal(t, map[int]any{0: "OK", 1: int64(1)}, got)
}

func TestRunSkipResult(t *testing.T) {
	for _, atomic := range []bool{false, true} {
		g, got := group(batch.Plan{SkipResult: true, Atomic: atomic}, three...)
		mark := batch.NextMark()
		conn := newFakeConn("OK") // only CLIENT REPLY ON answers
		if atomic {
			conn = newFakeConn("OK", []byte(mark)) // and the mark, read back
		}
		r := batch.Run(context.Background(), conn, &g)

		assert.NoError(t, r.Err)
		assert.True(t, r.Skipped)
		assert.False(t, r.RepliesRead)
		assert.Zero(t, r.Answered)
		assert.Equal(t, 3, r.Sent)
		assert.Equal(t, atomic, r.ExecSent)
		assert.True(t, r.Clean)
		assert.Empty(t, got)
		want := wire(replyOff, cmdsWire, replyOn)
		if atomic {
			want = wire(replyOff, multi, cmdsWire, enc("CLIENT", "SETNAME", mark), exec, replyOn, getName)
		}
		assert.Equal(t, want, conn.bytes(), "atomic %v", atomic)
	}
}

// A server that refuses CLIENT REPLY answers every frame: the replies are
// read as without WithSkipResult (each error kept), a transaction's from
// EXEC's array, and the connection stays usable.
func TestRunClientReplyRefused(t *testing.T) {
	unknown := redis.Error("ERR unknown subcommand 'REPLY'")
	wrongType := redis.Error("WRONGTYPE Operation against a key")
	t.Run("pipeline", func(t *testing.T) {
		g, got := group(batch.Plan{SkipResult: true, Tail: batch.Wait(1, time.Second)}, three...)
		conn := newFakeConn(unknown, "OK", wrongType, redis.Error("ERR not an integer"), unknown, int64(1))
		r := batch.Run(context.Background(), conn, &g)

		assert.NoError(t, r.Err)
		assert.True(t, r.RepliesRead)
		assert.False(t, r.Skipped)
		assert.Equal(t, 3, r.Answered)
		assert.Equal(t, map[int]any{0: "OK", 1: wrongType, 2: redis.Error("ERR not an integer")}, got)
		assert.Equal(t, 3, r.Sent)
		assert.True(t, r.Synced, "the tail is read after the replies")
		assert.Equal(t, 1, r.Replicas)
		assert.True(t, r.Clean)
	})
	t.Run("atomic", func(t *testing.T) {
		g, got := group(batch.Plan{SkipResult: true, Atomic: true}, three...)
		conn := newFakeConn(unknown, "OK", "QUEUED", "QUEUED", "QUEUED", "QUEUED", []any{"OK", wrongType, int64(1), "OK"},
			unknown, []byte("rbatch-tx-0"))
		r := batch.Run(context.Background(), conn, &g)

		assert.NoError(t, r.Err)
		assert.True(t, r.RepliesRead)
		assert.Equal(t, map[int]any{0: "OK", 1: wrongType, 2: int64(1)}, got, "EXEC's array resolves the commands, the mark's +OK aside")
		assert.True(t, r.ExecSent)
		assert.Nil(t, r.Aborted, "EXEC ran it (the name read back is not looked at: EXEC said)")
		assert.True(t, r.Clean)
	})
	t.Run("atomic discarded", func(t *testing.T) {
		g, _ := group(batch.Plan{SkipResult: true, Atomic: true}, three...)
		arity := redis.Error("ERR wrong number of arguments for 'incr' command")
		conn := newFakeConn(unknown, "OK", "QUEUED", arity, "QUEUED", "QUEUED",
			redis.Error("EXECABORT Transaction discarded because of previous errors."), unknown, nil)
		r := batch.Run(context.Background(), conn, &g)

		assert.NoError(t, r.Err)
		require.NotNil(t, r.Aborted, "EXECABORT, though its reply was dropped")
		assert.Equal(t, 1, r.Aborted.Index)
		assert.Equal(t, arity, r.Aborted.Cause)
		assert.Equal(t, []batch.Span{{State: batch.Aborted, From: 0, To: 3}}, r.Spans(nil, 3, g.Plan, false))
		assert.True(t, r.Clean)
	})
}

func TestRunTail(t *testing.T) {
	cases := []struct {
		name   string
		tail   []byte
		reply  any
		synced bool
		repl   int
		local  bool
		errs   bool
	}{
		{"WAIT", batch.Wait(2, time.Second), int64(2), true, 2, false, false},
		{"WAIT none", batch.Wait(1, 10*time.Millisecond), int64(0), true, 0, false, false},
		{"WAITAOF", batch.WaitAOF(true, 1, time.Second), []any{int64(1), int64(1)}, true, 1, true, false},
		{"WAITAOF local only", batch.WaitAOF(true, 0, time.Second), []any{int64(1), int64(0)}, true, 0, true, false},
		{"WAITAOF short array", batch.WaitAOF(true, 0, time.Second), []any{int64(1)}, false, 0, false, true},
		{"WAIT error", batch.Wait(1, time.Second), redis.Error("ERR WAIT cannot be used with replica instances"), false, 0, false, true},
		{"WAIT odd reply", batch.Wait(1, time.Second), []byte("1"), false, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := group(batch.Plan{Tail: tc.tail}, three[:1]...)
			conn := newFakeConn("OK", tc.reply)
			r := batch.Run(context.Background(), conn, &g)
			assert.NoError(t, r.Err)
			assert.Equal(t, 1, r.Answered)
			assert.Equal(t, tc.synced, r.Synced)
			assert.Equal(t, tc.repl, r.Replicas)
			assert.Equal(t, tc.local, r.Local)
			assert.Equal(t, tc.errs, r.SyncErr != nil, "SyncErr %v", r.SyncErr)
			assert.True(t, r.Clean)
			assert.Equal(t, wire(enc("SET", "a", "1"), string(tc.tail)), conn.bytes())
		})
	}
	// The tail's exact encodings.
	assert.Equal(t, enc("WAIT", "2", "1500"), string(batch.Wait(2, 1500*time.Millisecond)))
	assert.Equal(t, enc("WAITAOF", "1", "0", "20"), string(batch.WaitAOF(true, 0, 20*time.Millisecond)))
	assert.Equal(t, enc("WAITAOF", "0", "3", "0"), string(batch.WaitAOF(false, 3, 0)))
}

// The connection fails after two of four replies: those two are answered,
// all four were handed to the connection, and the connection is not clean.
func TestRunTransportErrorMidReplies(t *testing.T) {
	four := append(append([]cmd{}, three...), cmd{"DEL", []any{"a"}})
	g, got := group(batch.Plan{}, four...)
	conn := newFakeConn("OK", int64(1), errConnReset)
	r := batch.Run(context.Background(), conn, &g)

	assert.ErrorIs(t, r.Err, errConnReset)
	assert.Equal(t, 2, r.Answered)
	assert.Equal(t, 4, r.Sent)
	assert.False(t, r.Clean)
	assert.Equal(t, map[int]any{0: "OK", 1: int64(1)}, got)
	assert.True(t, conn.isAborted(), "a failed connection is aborted")

	t.Run("atomic, after EXEC was written", func(t *testing.T) {
		g, got := group(batch.Plan{Atomic: true}, three...)
		conn := newFakeConn("OK", "QUEUED", "QUEUED", "QUEUED", errConnReset)
		r := batch.Run(context.Background(), conn, &g)
		assert.ErrorIs(t, r.Err, errConnReset)
		assert.True(t, r.ExecSent, "EXEC was written: the outcome is unknown")
		assert.Nil(t, r.Aborted)
		assert.Zero(t, r.Answered)
		assert.Equal(t, 3, r.Sent)
		assert.False(t, r.Clean)
		assert.Empty(t, got)
	})
	t.Run("skip result, before CLIENT REPLY ON answered", func(t *testing.T) {
		g, _ := group(batch.Plan{SkipResult: true}, three...)
		conn := newFakeConn(errConnReset)
		r := batch.Run(context.Background(), conn, &g)
		assert.ErrorIs(t, r.Err, errConnReset)
		assert.False(t, r.Skipped)
		assert.Equal(t, 3, r.Sent)
		assert.False(t, r.Clean)
	})
}

// A context cancelled while waiting for a reply aborts the connection and
// ends the group with the context's error.
func TestRunContextCancelledWhileReading(t *testing.T) {
	g, got := group(batch.Plan{}, three...)
	conn := newFakeConn("OK") // the second reply never comes
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := batch.Run(ctx, conn, &g)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
	assert.Equal(t, 1, r.Answered)
	assert.Equal(t, 3, r.Sent)
	assert.False(t, r.Clean)
	assert.True(t, conn.isAborted())
	assert.Equal(t, map[int]any{0: "OK"}, got)
}

func TestRunAskEachAndPrefix(t *testing.T) {
	g, got := group(batch.Plan{AskEach: true}, three[:2]...)
	load := []byte(enc("SCRIPT", "LOAD", "return 1"))
	g.Prefix = [][]byte{load}
	conn := newFakeConn([]byte("e0e1f9fabfc9d4800c877a703b823ac0578ff8db"), "OK", "OK", "OK", int64(1))
	r := batch.Run(context.Background(), conn, &g)

	assert.NoError(t, r.Err)
	assert.Equal(t, []any{[]byte("e0e1f9fabfc9d4800c877a703b823ac0578ff8db")}, r.PrefixReplies)
	assert.Equal(t, 2, r.Answered)
	assert.True(t, r.Clean)
	assert.Equal(t, map[int]any{0: "OK", 1: int64(1)}, got)
	asking := string(batch.Asking)
	assert.Equal(t, wire(string(load), asking, enc("SET", "a", "1"), asking, enc("INCR", "n")), conn.bytes())
}
