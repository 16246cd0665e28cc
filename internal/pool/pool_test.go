package pool_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/redistest"
)

var opts = pool.Options{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}

// newPool returns a pool of size connections to s that counts its dials.
func newPool(t *testing.T, s *redistest.Server, size int) (*pool.Pool, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	p := pool.New(s.Addr, size, func(ctx context.Context) (*pool.Conn, error) {
		dials.Add(1)
		return pool.Dial(ctx, s.Addr, opts)
	})
	t.Cleanup(func() { p.Close() })
	return p, &dials
}

func connectedClients(t *testing.T, s *redistest.Server) int {
	t.Helper()
	n, err := strconv.Atoi(s.Info(t, "clients")["connected_clients"])
	require.NoError(t, err)
	return n
}

type got struct {
	conn pool.Lease
	err  error
}

func getAsync(p *pool.Pool, ctx context.Context) <-chan got {
	ch := make(chan got, 1)
	go func() {
		c, err := p.Get(ctx)
		ch <- got{c, err}
	}()
	return ch
}

func TestPoolGetWaitsForASlot(t *testing.T) {
	s := redistest.Standalone(t)
	p, dials := newPool(t, s, 1)
	ctx := context.Background()

	c1, err := p.Get(ctx)
	require.NoError(t, err)
	reply, err := c1.(*pool.Conn).Do("PING")
	require.NoError(t, err)
	assert.Equal(t, "PONG", reply)
	assert.Equal(t, int32(1), dials.Load())

	// The only connection is in use: Get waits until its context ends.
	start := time.Now() // before the deadline is set: the wait is at least 50ms from here
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = p.Get(tctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	cctx, cancel2 := context.WithCancel(ctx)
	cancel2()
	_, err = p.Get(cctx)
	assert.ErrorIs(t, err, context.Canceled)

	// A waiter gets the connection as soon as it comes back clean.
	waiter := getAsync(p, ctx)
	select {
	case g := <-waiter:
		t.Fatalf("Get returned %v, %v while the pool was full", g.conn, g.err)
	case <-time.After(30 * time.Millisecond):
	}
	c1.Release(true)
	g := <-waiter
	require.NoError(t, g.err)
	assert.Same(t, c1, g.conn, "the clean connection is reused")
	assert.Equal(t, int32(1), dials.Load())

	// An unclean connection is closed, not reused; the next Get dials.
	g.conn.Release(false)
	assert.True(t, g.conn.(*pool.Conn).Aborted())
	assert.Zero(t, p.Idle())
	c3, err := p.Get(ctx)
	require.NoError(t, err)
	assert.NotSame(t, c1, c3)
	assert.Equal(t, int32(2), dials.Load())
	c3.Release(true)
	assert.Equal(t, 1, p.Idle())
	assert.NoError(t, p.PingIdle())
}

// GetWithin waits for a free slot no longer than it is told, and takes one
// that comes back meanwhile.
func TestPoolGetWithin(t *testing.T) {
	s := redistest.Standalone(t)
	p, _ := newPool(t, s, 1)
	ctx := context.Background()
	c1, waited, err := p.GetWithin(ctx, time.Second)
	require.NoError(t, err)
	assert.Zero(t, waited, "a free slot is taken at once")

	start := time.Now()
	_, _, err = p.GetWithin(ctx, 30*time.Millisecond)
	assert.ErrorIs(t, err, pool.ErrNoFreeSlot)
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	_, _, err = p.GetWithin(ctx, 0)
	assert.ErrorIs(t, err, pool.ErrNoFreeSlot, "no wait at all")

	time.AfterFunc(20*time.Millisecond, func() { c1.Release(true) })
	c2, waited, err := p.GetWithin(ctx, 5*time.Second)
	require.NoError(t, err)
	assert.Same(t, c1, c2, "the connection given back meanwhile")
	assert.Positive(t, waited)
	c2.Release(true)
}

func TestPoolSizeBoundsConnections(t *testing.T) {
	s := redistest.Standalone(t)
	base := connectedClients(t, s)
	p, dials := newPool(t, s, 3)
	ctx := context.Background()
	var conns []pool.Lease
	for range 3 {
		c, err := p.Get(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	// The server accepts a connection in its own time: dialling sends no
	// command when there is nothing to set up.
	require.Eventually(t, func() bool {
		info, err := s.FetchInfo("clients")
		return err == nil && info["connected_clients"] == strconv.Itoa(base+3)
	}, 2*time.Second, 5*time.Millisecond, "three connections for three Gets")
	tctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err := p.Get(tctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a fourth connection waits")
	for _, c := range conns {
		c.Release(true)
	}
	assert.Equal(t, 3, p.Idle())
	for range 10 { // reused, never redialled
		c, err := p.Get(ctx)
		require.NoError(t, err)
		c.Release(true)
	}
	assert.Equal(t, int32(3), dials.Load())
}

func TestPoolClose(t *testing.T) {
	s := redistest.Standalone(t)
	base := connectedClients(t, s)
	p, _ := newPool(t, s, 1)
	ctx := context.Background()

	idle, err := p.Get(ctx)
	require.NoError(t, err)
	idle.Release(true)
	inUse, err := p.Get(ctx)
	require.NoError(t, err)
	require.Same(t, idle, inUse)

	// A Get waiting for the slot when the pool closes fails at once, the
	// slot still taken; the connection put back after Close is closed.
	waiter := getAsync(p, ctx)
	require.NoError(t, p.Close())
	select {
	case g := <-waiter:
		assert.ErrorIs(t, g.err, pool.ErrClosed)
		assert.Nil(t, g.conn)
	case <-time.After(5 * time.Second):
		t.Fatal("the Get waiting for the slot still waits after Close")
	}
	inUse.Release(true)
	assert.True(t, inUse.(*pool.Conn).Aborted(), "a connection put back after Close is closed")
	assert.Zero(t, p.Idle())

	_, err = p.Get(ctx)
	assert.ErrorIs(t, err, pool.ErrClosed)
	assert.NoError(t, p.Close(), "Close twice is harmless")

	deadline := time.Now().Add(5 * time.Second)
	n := connectedClients(t, s)
	for n > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = connectedClients(t, s)
	}
	assert.LessOrEqual(t, n, base, "every connection closed")
}

func TestPoolIdleConnectionsClosedByClose(t *testing.T) {
	s := redistest.Standalone(t)
	p, _ := newPool(t, s, 2)
	ctx := context.Background()
	a, err := p.Get(ctx)
	require.NoError(t, err)
	b, err := p.Get(ctx)
	require.NoError(t, err)
	a.Release(true)
	b.Release(true)
	extra, err := pool.Dial(ctx, s.Addr, opts)
	require.NoError(t, err)
	p.AddIdle(extra)
	assert.Equal(t, 3, p.Idle())
	require.NoError(t, p.Close())
	for _, c := range []batch.Conn{a, b, extra} {
		assert.True(t, c.(*pool.Conn).Aborted())
	}
}

// A failed dial gives the slot back: a pool of one keeps failing fast
// instead of blocking.
func TestPoolDialFailureFreesTheSlot(t *testing.T) {
	p := pool.New("127.0.0.1:1", 1, func(ctx context.Context) (*pool.Conn, error) {
		return pool.Dial(ctx, "127.0.0.1:1", pool.Options{DialTimeout: time.Second})
	})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		_, err := p.Get(ctx)
		require.Error(t, err)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "127.0.0.1:1")
	}
}

func TestDialHandshake(t *testing.T) {
	s := redistest.Standalone(t)
	const password = "p00l-pw-secret"
	s.MustDo(t, "ACL", "SETUSER", "app", "on", ">"+password, "~*", "+@all")
	ctx := context.Background()

	o := opts
	o.Username, o.Password, o.DB = "app", password, 2
	c, err := pool.Dial(ctx, s.Addr, o)
	require.NoError(t, err)
	defer c.Close()
	info, err := c.Info()
	require.NoError(t, err)
	assert.Equal(t, 7, info.Version[0])
	assert.True(t, info.AtLeast(7, 0))
	assert.False(t, info.AtLeast(99, 0))
	assert.False(t, info.Cluster)
	assert.Empty(t, info.Replicas)
	ci, err := c.Do("CLIENT", "INFO")
	require.NoError(t, err)
	assert.Contains(t, string(ci.([]byte)), " db=2 ")
	assert.Contains(t, string(ci.([]byte)), " user=app ")

	o.Password = "wrong-" + password
	_, err = pool.Dial(ctx, s.Addr, o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WRONGPASS")
	assert.Contains(t, err.Error(), `"app"`)
	assert.NotContains(t, err.Error(), password)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = pool.Dial(cctx, s.Addr, opts)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, strings.Contains(err.Error(), s.Addr), err.Error())
}

// Turns are served in the order they were taken, whatever order their
// GetInTurn calls come in; one that gives up (its context ended) lets the
// later ones through once the earlier were served.
func TestPoolTurnsServeInOrder(t *testing.T) {
	s := redistest.Standalone(t)
	p, _ := newPool(t, s, 1)
	ctx := context.Background()
	first, quitter, second := p.Line(), p.Line(), p.Line()

	served := make(chan int, 2)
	go func() {
		c, _, err := p.GetInTurn(ctx, second) // called before the earlier turns: it waits for them
		if assert.NoError(t, err) {
			served <- 2
			c.Release(true)
		}
	}()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := p.GetInTurn(gone, quitter) // gives up while the first is unserved
	require.ErrorIs(t, err, context.Canceled)
	time.Sleep(20 * time.Millisecond)
	select {
	case <-served:
		t.Fatal("a later turn was served before the first")
	default:
	}
	c, _, err := p.GetInTurn(ctx, first)
	require.NoError(t, err)
	served <- 1
	c.Release(true)
	assert.Equal(t, 1, <-served)
	assert.Equal(t, 2, <-served)
}
