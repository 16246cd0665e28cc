package rbatch_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// A Redis-side batch filled and then abandoned (neither executed nor
// discarded) does not outlive Close: its MULTI is discarded, nothing of it
// is applied, its futures end ErrDiscarded, no goroutine is left, and a
// PoolSize 1 server is free for the next client.
func TestCloseDiscardsAbandonedRedisSideBatch(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.RedisWriteAtomic, rbatch.RedisReadAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			s := redistest.Standalone(t)
			before := goleak.IgnoreCurrent() // the server's own goroutines
			s.MustDo(t, "SET", "held:r", "before")
			c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{s.Addr}, PoolSize: 1})
			require.NoError(t, err)
			b := c.NewBatch(rbatch.WithMode(mode))
			var fs []interface{ Get() (string, error) }
			if mode == rbatch.RedisWriteAtomic {
				b.Bucket("held:w").SetAsync("x")
				b.AtomicLong("held:n").IncrementAndGetAsync()
			}
			fs = append(fs, b.Bucket("held:r").GetAsync())
			waitUntil(t, "the batch is queued in Redis", func() bool { return clientInMulti(t, s) >= 1 })

			require.NoError(t, c.Close())
			waitUntil(t, "no connection left in MULTI", func() bool { return clientInMulti(t, s) == -1 })
			goleak.VerifyNone(t, before)
			for _, f := range fs {
				_, err := f.Get()
				assert.ErrorIs(t, err, rbatch.ErrDiscarded)
			}
			_, err = b.Execute(context.Background())
			assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
			assert.ErrorIs(t, b.Discard(context.Background()), rbatch.ErrAlreadyExecuted)
			late := b.Bucket("held:late").SetAsync("y")
			_, err = late.Get()
			assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted, "queueing after Close opens nothing")
			assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "held:w", "held:n", "held:late"), "nothing applied")

			// The server serves the next client at once.
			c2 := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			b2 := c2.NewBatch(rbatch.WithMode(mode))
			got := b2.Bucket("held:r").GetAsync()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = b2.Execute(ctx)
			require.NoError(t, err)
			v, _ := got.Get()
			assert.Equal(t, "before", v)
		})
	}
}

// Close discards its abandoned Redis-side batches side by side: on a server
// that stopped answering, six of them cost one response timeout, not six.
func TestCloseDiscardsHeldBatchesTogether(t *testing.T) {
	s := redistest.Standalone(t)
	const held, timeout = 6, 500 * time.Millisecond
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{s.Addr}, PoolSize: held, ReadTimeout: timeout})
	require.NoError(t, err)
	var fs []*rbatch.Future[int64]
	for i := range held {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		fs = append(fs, b.AtomicLong("held:"+strconv.Itoa(i)).IncrementAndGetAsync())
		waitUntil(t, "the batch is queued in Redis", func() bool { return clientsInMulti(t, s) == i+1 })
	}
	resume := stopServer(t, s)
	start := time.Now()
	require.NoError(t, c.Close())
	took := time.Since(start)
	resume()
	assert.Less(t, took, held/2*timeout, "the DISCARDs waited one after another")
	for _, f := range fs {
		assert.ErrorIs(t, errOf(f), rbatch.ErrDiscarded)
	}
	assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "held:0", "held:1", "held:2", "held:3", "held:4", "held:5"), "nothing applied")
}

// Close while other goroutines queue on a Redis-side batch: no race, no
// session opened after Close, nothing left in MULTI.
func TestCloseWhileQueueingRedisSide(t *testing.T) {
	s := redistest.Standalone(t)
	for round := range 20 {
		c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{s.Addr}, PoolSize: 2})
		require.NoError(t, err)
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 50 {
					b.AtomicLong("race:n").IncrementAndGetAsync()
				}
			}()
		}
		close(start)
		if round%2 == 0 {
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, c.Close())
		wg.Wait()
		b.Execute(context.Background()) // whatever it says, it ends
	}
	waitUntil(t, "no connection left in MULTI", func() bool { return clientInMulti(t, s) == -1 })
	n, err := redis.Int64(s.MustDo(t, "GET", "race:n"), nil)
	if err != redis.ErrNil {
		require.NoError(t, err)
	}
	assert.Zero(t, n, "no abandoned transaction was applied")
}

// sharedUserConns lists the connections of user sharedUser on s.
func sharedUserConns(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	list, err := redis.String(s.Call("CLIENT", "LIST"))
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, " user="+sharedUser+" ") {
			out = append(out, l)
		}
	}
	return out
}

// A small batch running on a shared connection when the client closes
// finishes with its replies: Close refuses what comes after it, and closes
// the shared connection once the batches on it were answered.
func TestCloseLetsSharedBatchFinish(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", sharedUser, "on", ">"+sharedPass, "~*", "&*", "+@all")
	before := goleak.IgnoreCurrent()
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{
		Addrs: []string{s.Addr}, Username: sharedUser, Password: sharedPass,
	})
	require.NoError(t, err)

	// The server holds the batch's commands, written, until UNPAUSE.
	s.MustDo(t, "CLIENT", "PAUSE", 10000, "WRITE")
	defer s.Call("CLIENT", "UNPAUSE")
	b := c.NewBatch()
	set := b.Bucket("close:s").SetAsync("v")
	n1 := b.AtomicLong("close:n").IncrementAndGetAsync()
	n2 := b.AtomicLong("close:n").IncrementAndGetAsync()
	run := b.ExecuteAsync(context.Background())
	waitUntil(t, "the batch's SET waits in the server", func() bool {
		for _, l := range sharedUserConns(t, s) {
			if strings.Contains(l, " cmd=set ") {
				return true
			}
		}
		return false
	})

	require.NoError(t, c.Close())
	late := c.NewBatch()
	lf := late.Bucket("close:late").SetAsync("x")
	_, err = late.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrClosed)
	assert.ErrorIs(t, errOf(lf), rbatch.ErrNotSent)
	assert.NotEmpty(t, sharedUserConns(t, s), "the running batch's connection stays up")

	s.MustDo(t, "CLIENT", "UNPAUSE")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := run.Wait(ctx)
	require.NoError(t, err, "the batch running at Close finishes")
	assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts)
	assert.NoError(t, errOf(set))
	v, err := n1.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	v, err = n2.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(2), v)
	assert.Equal(t, []byte("2"), s.MustDo(t, "GET", "close:n"), "each INCR applied once")
	assert.Zero(t, s.MustDo(t, "EXISTS", "close:late"))

	waitUntil(t, "the client's connections are closed", func() bool { return len(sharedUserConns(t, s)) == 0 })
	goleak.VerifyNone(t, before)
}

// A small batch waiting for a connection to bring a shared connection up
// when the client closes ends at once, not sent, with ErrClosed: Close
// neither waits for it nor leaves it waiting for a connection to free.
func TestCloseEndsBatchWaitingForSharedLine(t *testing.T) {
	s := redistest.Standalone(t)
	before := goleak.IgnoreCurrent()
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{s.Addr}, PoolSize: 2, SharedConns: 1})
	require.NoError(t, err)

	// Two blocking batches hold both of the pool's connections.
	var holds []*rbatch.Future[*rbatch.BatchResult]
	for i := range 2 {
		b := c.NewBatch()
		b.Do("BLPOP", "close:empty:"+strconv.Itoa(i), 0)
		holds = append(holds, b.ExecuteAsync(context.Background()))
	}
	waitUntil(t, "both connections are held", func() bool {
		return s.Info(t, "clients")["blocked_clients"] == "2"
	})
	waiting := make(chan struct{})
	c.AddHook(groupStarted{ch: waiting})
	b := c.NewBatch()
	n := b.AtomicLong("close:w").IncrementAndGetAsync()
	run := b.ExecuteAsync(context.Background())
	<-waiting
	time.Sleep(50 * time.Millisecond) // let it get to the wait for a connection

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		assert.NoError(t, c.Close())
	}()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Error("Close waits for the batch waiting for a connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = run.Wait(ctx)
	cancel()
	assert.ErrorIs(t, err, rbatch.ErrClosed)
	assert.ErrorIs(t, errOf(n), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(n), rbatch.ErrClosed)

	s.MustDo(t, "LPUSH", "close:empty:0", "x")
	s.MustDo(t, "LPUSH", "close:empty:1", "x")
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range holds {
		_, err := h.Wait(ctx)
		assert.NoError(t, err, "a batch running at Close finishes")
	}
	<-closed
	assert.Zero(t, s.MustDo(t, "EXISTS", "close:w"))
	waitUntil(t, "the client's connections are closed", func() bool {
		return s.Info(t, "clients")["connected_clients"] == "1" // the test's own
	})
	goleak.VerifyNone(t, before)
}

// groupStarted closes its channel when the first group starts.
type groupStarted struct {
	rbatch.NopHook
	ch chan struct{}
}

func (h groupStarted) GroupStart(ctx context.Context, _ rbatch.GroupInfo) context.Context {
	select {
	case <-h.ch:
	default:
		close(h.ch)
	}
	return ctx
}

// A batch waiting for a connection when Close comes fails with ErrClosed,
// nothing sent: it does not take the connection that the DISCARD of an
// abandoned Redis-side batch gives back. Repeated: the two race.
func TestCloseFailsBatchWaitingBehindAHeldOne(t *testing.T) {
	s := redistest.Standalone(t)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		for round := range 8 {
			c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{s.Addr}, PoolSize: 1, DisableSharing: true})
			require.NoError(t, err)
			holder := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
			holder.Do("INCR", "cw:holder") // holds the only connection, MULTI open
			waitUntil(t, "the held batch's MULTI is open", func() bool {
				list, _ := redis.String(s.MustDo(t, "CLIENT", "LIST"), nil)
				return strings.Contains(list, " multi=1 ")
			})
			waiter := c.NewBatch(rbatch.WithMode(mode))
			wf := waiter.Do("INCR", "cw:waiter")
			done := make(chan error, 1)
			go func() {
				_, err := waiter.Execute(context.Background())
				done <- err
			}()
			time.Sleep(100 * time.Millisecond) // it waits for the connection (counted once the wait ends)
			require.NoError(t, c.Close())
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting Execute hangs")
			}
			assert.ErrorIs(t, err, rbatch.ErrClosed, "%s round %d", mode, round)
			assert.ErrorIs(t, errOf(wf), rbatch.ErrNotSent, "%s round %d", mode, round)
			assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "cw:holder", "cw:waiter"), "%s round %d: nothing applied", mode, round)
		}
	}
}
