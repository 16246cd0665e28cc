package batch_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/batch"
)

// lineConn is a shared line's connection: its socket writes can be held
// (to stop a flush at a precise point) or cut after a number of bytes, and
// Receive answers from replies pushed by the test.
type lineConn struct {
	mu      sync.Mutex
	written bytes.Buffer
	hold    chan struct{} // non-nil: the next socket write waits until it is closed
	holding chan struct{} // closed once a write waits on hold
	cutAt   int           // > 0: the socket takes this many bytes in all, then fails
	out     atomic.Int64  // bytes the socket took
	replies chan any
	aborted chan struct{}
	once    sync.Once
	release chan bool
}

func newLineConn() *lineConn {
	return &lineConn{replies: make(chan any, 64), aborted: make(chan struct{}), release: make(chan bool, 1)}
}

func (c *lineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	hold, holding := c.hold, c.holding
	c.hold = nil
	c.mu.Unlock()
	if hold != nil {
		close(holding)
		select {
		case <-hold:
		case <-c.aborted:
		}
	}
	select {
	case <-c.aborted:
		return 0, errors.New("write on aborted connection")
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cutAt > 0 && c.written.Len()+len(p) > c.cutAt {
		n := c.cutAt - c.written.Len()
		c.written.Write(p[:n])
		c.out.Add(int64(n))
		return n, errConnReset
	}
	c.out.Add(int64(len(p)))
	return c.written.Write(p)
}

func (c *lineConn) Flush() error { return nil }

func (c *lineConn) Receive(time.Duration) (any, error) {
	select {
	case r := <-c.replies:
		if e, ok := r.(*transportErr); ok {
			c.Abort()
			return nil, e
		}
		return r, nil
	case <-c.aborted:
		return nil, errors.New("receive on aborted connection")
	}
}

func (c *lineConn) Abort()             { c.once.Do(func() { close(c.aborted) }) }
func (c *lineConn) Release(clean bool) { c.release <- clean }
func (c *lineConn) Written() int64     { return c.out.Load() }
func (c *lineConn) BytesRead() int64   { return 0 }

func (c *lineConn) holdNextWrite() (holding, release chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.holding = make(chan struct{}), make(chan struct{})
	return c.holding, c.hold
}

func (c *lineConn) bytes() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written.String()
}

type sharedRun struct {
	res batch.Result
	got map[int]any
	err error
}

func runShared(ctx context.Context, sh *batch.Shared, key string) <-chan sharedRun {
	out := make(chan sharedRun, 1)
	g, got := group(batch.Plan{}, cmd{"SET", []any{key, "v"}})
	go func() {
		var res batch.Result
		_, err := sh.Run(ctx, &g, &res)
		out <- sharedRun{res, got, err}
	}()
	return out
}

func waitPending(t *testing.T, sh *batch.Shared, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); batch.Pending(sh) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d groups pending, want %d", batch.Pending(sh), n)
		}
	}
}

// A caller whose context ends while its group still waits in the line's
// buffer takes it out: it is never written (not sent), and the groups on
// either side of it are written back to back and answered.
func TestSharedWithdrawsUnwrittenGroup(t *testing.T) {
	lc := newLineConn()
	sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) { return lc, nil })
	defer sh.Close()
	holding, release := lc.holdNextWrite()
	a := runShared(context.Background(), sh, "a")
	<-holding // a's flush waits at the socket
	ctx, cancel := context.WithCancel(context.Background())
	b := runShared(ctx, sh, "b")
	waitPending(t, sh, 1)
	c := runShared(context.Background(), sh, "c")
	waitPending(t, sh, 2)
	cancel()
	rb := <-b
	require.NoError(t, rb.err)
	assert.Zero(t, rb.res.Sent, "withdrawn before it was written")
	assert.ErrorIs(t, rb.res.Err, context.Canceled)
	waitPending(t, sh, 1)
	lc.replies <- "OK"
	lc.replies <- "OK"
	close(release)
	ra, rc := <-a, <-c
	for _, r := range []sharedRun{ra, rc} {
		require.NoError(t, r.err)
		assert.Equal(t, 1, r.res.Answered)
		assert.Equal(t, "OK", r.got[0])
	}
	assert.Equal(t, enc("SET", "a", "v")+enc("SET", "c", "v"), lc.bytes())
}

// A write that fails part way: the groups whose bytes reached the socket
// end unknown, those still in the buffer not sent; the line is replaced.
func TestSharedWriteFailsPartWay(t *testing.T) {
	lc := newLineConn()
	dials := 0
	sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) {
		dials++
		if dials == 1 {
			return lc, nil
		}
		return nil, errors.New("no second connection")
	})
	defer sh.Close()
	lc.cutAt = 10 // part of a's frames
	holding, release := lc.holdNextWrite()
	a := runShared(context.Background(), sh, "a")
	<-holding
	b := runShared(context.Background(), sh, "b")
	waitPending(t, sh, 1)
	close(release)
	ra, rb := <-a, <-b
	require.NoError(t, ra.err)
	assert.Equal(t, 1, ra.res.Sent, "some of it reached the socket")
	assert.Zero(t, ra.res.Answered)
	assert.ErrorIs(t, ra.res.Err, errConnReset)
	require.NoError(t, rb.err)
	assert.Zero(t, rb.res.Sent, "it never left the buffer")
	assert.ErrorIs(t, rb.res.Err, errConnReset)
	assert.False(t, <-lc.release, "a failed connection is not reused")
	_, err := sh.Run(context.Background(), &batch.Group{}, &batch.Result{})
	assert.ErrorContains(t, err, "no second connection", "the next group dials anew")
}

// The reader fails between two written groups: the first keeps its
// answer, the second, written and never answered, is unknown.
func TestSharedReaderFailsBetweenGroups(t *testing.T) {
	lc := newLineConn()
	sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) { return lc, nil })
	defer sh.Close()
	holding, release := lc.holdNextWrite()
	a := runShared(context.Background(), sh, "a")
	<-holding
	b := runShared(context.Background(), sh, "b")
	waitPending(t, sh, 1)
	lc.replies <- "OK"
	close(release)
	both := enc("SET", "a", "v") + enc("SET", "b", "v")
	for deadline := time.Now().Add(5 * time.Second); lc.bytes() != both; time.Sleep(time.Millisecond) {
		require.False(t, time.Now().After(deadline), "b was never written")
	}
	lc.replies <- errConnReset // after b went out
	ra, rb := <-a, <-b
	require.NoError(t, ra.err)
	assert.Equal(t, 1, ra.res.Answered)
	assert.Equal(t, "OK", ra.got[0])
	require.NoError(t, rb.err)
	assert.Equal(t, 1, rb.res.Sent)
	assert.Zero(t, rb.res.Answered)
	assert.ErrorIs(t, rb.res.Err, errConnReset)
}

// Close lets the group written on a line get its reply and refuses the
// groups after it; the line's connection is given back once nothing is on
// it, not before.
func TestSharedCloseLetsWrittenGroupFinish(t *testing.T) {
	lc := newLineConn()
	sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) { return lc, nil })
	holding, release := lc.holdNextWrite()
	a := runShared(context.Background(), sh, "a")
	<-holding // a's frames are at the socket
	ctx, cancel := context.WithCancel(context.Background())
	b := runShared(ctx, sh, "b")
	waitPending(t, sh, 1)

	require.NoError(t, sh.Close())
	_, err := sh.Run(context.Background(), &batch.Group{}, &batch.Result{})
	assert.ErrorIs(t, err, batch.ErrSharedClosed, "a group after Close")
	cancel() // b, still in the buffer, is taken out
	rb := <-b
	require.NoError(t, rb.err)
	assert.Zero(t, rb.res.Sent)
	assert.ErrorIs(t, rb.res.Err, context.Canceled)

	close(release)
	for deadline := time.Now().Add(5 * time.Second); lc.bytes() == ""; time.Sleep(time.Millisecond) {
		require.False(t, time.Now().After(deadline), "a was never written")
	}
	select {
	case <-lc.release:
		t.Fatal("the connection was given back with a reply pending")
	case <-lc.aborted:
		t.Fatal("the connection was broken with a reply pending")
	case <-time.After(20 * time.Millisecond):
	}
	lc.replies <- "OK"
	ra := <-a
	require.NoError(t, ra.err)
	assert.NoError(t, ra.res.Err)
	assert.Equal(t, 1, ra.res.Answered)
	assert.Equal(t, "OK", ra.got[0])
	select {
	case <-lc.release:
	case <-time.After(5 * time.Second):
		t.Fatal("the drained line kept its connection")
	}
	assert.Equal(t, enc("SET", "a", "v"), lc.bytes())
}

// An atomic group whose write the socket took only in part: cut before
// the end of its EXEC, Redis holds an unfinished MULTI that the lost
// connection discards (EXEC not sent: aborted); cut after it (in the next
// group's bytes), EXEC may have run (sent: unknown).
func TestSharedAtomicWriteCutAroundExec(t *testing.T) {
	tx := enc("MULTI") + enc("INCR", "n") + enc("EXEC")
	head := len(enc("SET", "first", "v"))
	for _, tc := range []struct {
		cut      int
		execSent bool
	}{{len(tx) - 3, false}, {len(tx) - 1, false}, {len(tx) + 3, true}} {
		lc := newLineConn()
		sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) { return lc, nil })
		lc.cutAt = head + tc.cut
		holding, release := lc.holdNextWrite()
		first := runShared(context.Background(), sh, "first")
		<-holding
		g, _ := group(batch.Plan{Atomic: true}, cmd{"INCR", []any{"n"}})
		out := make(chan batch.Result, 1)
		go func() {
			var res batch.Result
			_, err := sh.Run(context.Background(), &g, &res)
			assert.NoError(t, err)
			out <- res
		}()
		waitPending(t, sh, 1)
		last := runShared(context.Background(), sh, "last")
		waitPending(t, sh, 2)
		close(release)
		<-first
		<-last
		res := <-out
		assert.Equal(t, 1, res.Sent, "cut at %d: part of it reached the socket", tc.cut)
		assert.Equal(t, tc.execSent, res.ExecSent, "cut at %d of %d", tc.cut, len(tx))
		assert.ErrorIs(t, res.Err, errConnReset)
		sh.Close()
	}
}

// Several callers give up while their groups wait in the buffer, in any
// order: the next write carries the others whole, back to back, and each
// gets its own reply.
func TestSharedWithdrawsSeveralGroups(t *testing.T) {
	lc := newLineConn()
	sh := batch.NewShared(1, func(context.Context, bool) (batch.Lease, error) { return lc, nil })
	defer sh.Close()
	holding, release := lc.holdNextWrite()
	first := runShared(context.Background(), sh, "a")
	<-holding // a's flush waits at the socket
	keys := []string{"b", "c", "d", "e", "f", "g"}
	runs := map[string]<-chan sharedRun{}
	cancels := map[string]context.CancelFunc{}
	for i, k := range keys {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[k] = cancel
		runs[k] = runShared(ctx, sh, k)
		waitPending(t, sh, i+1)
	}
	for _, k := range []string{"e", "b", "g"} { // the last, the first, one between
		cancels[k]()
		r := <-runs[k]
		require.NoError(t, r.err)
		assert.Zero(t, r.res.Sent, "%s was withdrawn before it was written", k)
	}
	kept := []string{"c", "d", "f"}
	for range 1 + len(kept) {
		lc.replies <- "OK"
	}
	close(release)
	ra := <-first
	assert.Equal(t, 1, ra.res.Answered)
	want := enc("SET", "a", "v")
	for _, k := range kept {
		r := <-runs[k]
		require.NoError(t, r.err)
		assert.Equal(t, 1, r.res.Answered, k)
		assert.Equal(t, "OK", r.got[0], k)
		want += enc("SET", k, "v")
	}
	assert.Equal(t, want, lc.bytes())
	for _, cancel := range cancels {
		cancel()
	}
}
