package rbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// holdPool takes n of the client's pooled connections with BLPOPs that
// block until the test ends.
func holdPool(t *testing.T, s *redistest.Server, c *rbatch.Client, n int) {
	t.Helper()
	var holds []*rbatch.Future[*rbatch.BatchResult]
	prefix := "hold:" + t.Name() + ":"
	for i := range n {
		b := c.NewBatch()
		b.Do("BLPOP", prefix+strconv.Itoa(i), 0)
		holds = append(holds, b.ExecuteAsync(context.Background()))
	}
	waitUntil(t, "the pool held", func() bool { return s.Info(t, "clients")["blocked_clients"] == strconv.Itoa(n) })
	t.Cleanup(func() {
		for i := range n {
			s.MustDo(t, "LPUSH", prefix+strconv.Itoa(i), "x")
		}
		for _, h := range holds {
			h.Get()
		}
	})
}

// A small batch whose shared connection is being brought up by another
// caller (who waits for a pooled connection) gives up when its own context
// ends, not when the other's does: not sent, promptly.
func TestSharedDialWaitEndsWithOwnContext(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize, cfg.SharedConns = 2, 1 })
	holdPool(t, s, c, 2)

	actx, acancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer acancel()
	a := c.NewBatch()
	na := a.AtomicLong("sd:a").IncrementAndGetAsync()
	arun := a.ExecuteAsync(actx) // brings the line up: waits for a pooled connection
	time.Sleep(100 * time.Millisecond)

	b := c.NewBatch()
	nb := b.AtomicLong("sd:b").IncrementAndGetAsync()
	bctx, bcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer bcancel()
	start := time.Now()
	_, err := b.Execute(bctx)
	took := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, errOf(nb), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(nb), context.DeadlineExceeded)
	assert.Less(t, took, 2*time.Second, "its context ended after 200ms")

	acancel()
	arun.Get()
	assert.ErrorIs(t, errOf(na), rbatch.ErrNotSent)
	assert.Nil(t, s.MustDo(t, "GET", "sd:a"))
	assert.Nil(t, s.MustDo(t, "GET", "sd:b"))
}

// With a shared connection up and the pool's others all taken, small
// batches go on the connection that is up rather than wait for a pooled
// one to bring up a second: none fails, none outlasts its context.
func TestSharedSecondLineWaitsForNoConnection(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize, cfg.SharedConns = 6, 3 })
	warmUp(t, c, "sl:warm")
	holdPool(t, s, c, 5) // the sixth is the shared line

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
				b := c.NewBatch()
				b.AtomicLong(fmt.Sprint("sl:n", g)).IncrementAndGetAsync()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := b.Execute(ctx)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("ok %d, failed %d; %+v", ok.Load(), failed.Load(), c.Stats())
	assert.Zero(t, failed.Load(), "small batches failed with a shared connection up: %v", firstErr.Load())
	assert.Positive(t, ok.Load())
	for _, st := range c.Stats() {
		assert.Zero(t, st.WaitTimeouts, "nothing waited out its context for a pooled connection")
	}
}
