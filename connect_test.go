package rbatch_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// silentListener accepts connections and never answers; it closes them at
// the end of the test.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// NewClient's every wait honours its context: a server that accepts and
// never answers holds it no longer than ctx allows, whether the handshake
// sends AUTH or goes straight to INFO.
func TestNewClientHonoursContextInHandshake(t *testing.T) {
	addr := silentListener(t)
	for _, tc := range []struct {
		name string
		cfg  rbatch.Config
	}{
		{"no auth", rbatch.Config{Addrs: []string{addr}, DialTimeout: time.Second}},
		{"auth", rbatch.Config{Addrs: []string{addr}, DialTimeout: time.Second, Password: "secret"}},
		{"two seeds", rbatch.Config{Addrs: []string{addr, addr}, DialTimeout: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			c, err := rbatch.NewClient(ctx, tc.cfg)
			elapsed := time.Since(start)
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.NotContains(t, err.Error(), "secret")
			assert.Less(t, elapsed, 5*time.Second, "returned within its context (the read timeout is 30s)")
		})
	}
}

// idleClient runs a few concurrent batches so that the client keeps
// several idle connections, and checks they work: a small one brings up
// the shared connection, Redis-side ones (which hold a connection of their
// own) leave pooled ones idle.
func idleClient(t *testing.T, s *redistest.Server, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	c := clientFor(t, s, mods...)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
			if i == 0 {
				b = c.NewBatch()
			}
			for range 200 {
				b.AtomicLong("warm").IncrementAndGetAsync()
			}
			_, err := b.Execute(context.Background())
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	return c
}

// afterIdleDeath runs, in each mode that uses pooled connections, a batch
// on a client whose idle connections the server dropped: it must succeed
// with nothing unknown, without WithRetry.
func afterIdleDeath(t *testing.T, s *redistest.Server, kill func(t *testing.T)) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			c := idleClient(t, s)
			kill(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Bucket("idle:k").SetAsync("v")
			incr := b.AtomicLong("idle:n").IncrementAndGetAsync()
			_, err := b.Execute(context.Background())
			require.NoError(t, err, "the dead idle connections were not used")
			_, err = set.Get()
			assert.NoError(t, err)
			n, err := incr.Get()
			assert.NoError(t, err)
			got, err := redis.Int64(s.Conn(t).Do("GET", "idle:n")) // the helper's own pooled connections may be dead too
			require.NoError(t, err)
			assert.Equal(t, got, n, "applied once")
		})
	}
}

// CLIENT KILL of every idle pooled connection.
func TestIdleConnectionsKilled(t *testing.T) {
	s := redistest.Standalone(t)
	afterIdleDeath(t, s, func(t *testing.T) {
		admin := s.Conn(t)
		killed, err := redis.Int(admin.Do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, killed, 2, "several idle connections")
		time.Sleep(50 * time.Millisecond) // the FINs reach the client's sockets
	})
}

// A server with `timeout 1` closes connections idle for over a second.
func TestIdleConnectionsTimedOut(t *testing.T) {
	s := redistest.Standalone(t, "--timeout", "1")
	afterIdleDeath(t, s, func(t *testing.T) { time.Sleep(2500 * time.Millisecond) })
}

// A server restarted between two batches.
func TestServerRestartedBetweenBatches(t *testing.T) {
	s := redistest.Standalone(t, "--save", "")
	afterIdleDeath(t, s, func(t *testing.T) { require.NoError(t, s.Restart()) })
}

// A connection that the server closes after the pool's check and before the
// batch's first byte reaches it is no different from one found dead: with
// WithRetry the batch goes to a fresh connection, nothing unknown.
func TestDeadConnectionBeforeFirstWriteRetried(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	b := c.NewBatch()
	b.Bucket("x").SetAsync("1")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.NoError(t, rbatch.BreakIdleWrites(c), "the idle connection's next write fails")
	b = c.NewBatch(rbatch.WithRetry(2, 10*time.Millisecond))
	f := b.AtomicLong("n").IncrementAndGetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	n, err := f.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.Equal(t, 2, res.Nodes[0].Attempts, "sent again on a fresh connection")

	// Without a retry the command ends not sent, not unknown.
	require.NoError(t, rbatch.BreakIdleWrites(c))
	b = c.NewBatch()
	f = b.AtomicLong("n").IncrementAndGetAsync()
	_, err = b.Execute(context.Background())
	require.Error(t, err)
	_, err = f.Get()
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.False(t, errors.Is(err, rbatch.ErrUnknownOutcome))
	got, err := redis.Int64(s.Call("GET", "n"))
	require.NoError(t, err)
	assert.Equal(t, int64(1), got, "not applied")
}

// NodeResult.Commands counts the commands sent to the node: a round that
// never had a connection (the server gone, every dial refused) sent none,
// though it counts as an attempt.
func TestNodeCommandsCountOnlyRoundsSent(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.DialTimeout = 200 * time.Millisecond })
	s.Stop()
	b := c.NewBatch(rbatch.WithRetry(2, 10*time.Millisecond))
	b.Bucket("gone:k").SetAsync("v")
	b.AtomicLong("gone:n").IncrementAndGetAsync()
	res, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.Equal(t, rbatch.Counts{NotSent: 2}, res.Counts)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, 0, res.Nodes[0].Commands, "nothing reached the node")
	assert.Equal(t, 3, res.Nodes[0].Attempts, "the first round and two retries")
}
