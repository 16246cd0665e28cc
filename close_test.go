package rbatch_test

import (
	"context"
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
