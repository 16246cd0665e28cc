package rbatch_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
)

// Found by TestFaultSoak (a "cancel" fault, cluster, REDIS_WRITE_ATOMIC):
// a context that ends just as a batch finishes left an aborted (closed)
// connection in the pool; the next batch on it failed without any fault.
// batch.Run and Session.close ignored context.AfterFunc's stop result, so
// the abort it had started could land after the connection was put back as
// clean. Fixed in 7123bce while the soak was written; this failed within a
// few dozen iterations before it (db78719).
func TestCancelAsBatchEndsLeavesNoDeadConn(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) { soakCancelAtEnd(t, mode) })
	}
}

func soakCancelAtEnd(t *testing.T, mode rbatch.ExecutionMode) {
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A goroutine always runnable keeps the other P from going idle and
	// stealing the one AfterFunc starts, as on a loaded machine.
	var stop atomic.Bool
	defer stop.Store(true)
	go func() {
		for !stop.Load() {
			runtime.Gosched()
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(1500 * time.Millisecond)
	iters, early, delay := 0, 0, 500*time.Microsecond
	defer func() { t.Logf("%d iterations, %d cancelled before the end", iters, early) }()
	for ; iters < 20000 && time.Now().Before(deadline); iters++ {
		ctx, cancel := context.WithCancel(context.Background())
		b := c.NewBatch(rbatch.WithMode(mode))
		for range 100 {
			b.Bucket("soakbug:k").GetAsync()
		}
		// The cancel dithers around the end of Execute: about half land
		// before it (an error), half after it returned.
		d := time.Duration(float64(delay) * (0.9 + 0.2*rng.Float64()))
		start := time.Now()
		go func() {
			for time.Since(start) < d {
			}
			cancel()
			// Hold this P a while: the goroutine AfterFunc just started
			// (which aborts the connection) waits in its run queue.
			for t := time.Now(); time.Since(t) < 2*time.Millisecond; {
			}
		}()
		if _, err := b.Execute(ctx); err != nil {
			early++
			delay = delay * 21 / 20
		} else {
			delay = delay * 20 / 21
		}
		cancel()
		// Whatever happened, the pool must hold live, clean connections
		// only, and a batch with a live context must succeed.
		if err := rbatch.CheckPoolsClean(c); err != nil {
			t.Fatalf("iteration %d: the pool holds a dead connection: %v", iters, err)
		}
		b = c.NewBatch(rbatch.WithMode(mode))
		get := b.Bucket("soakbug:k").GetAsync()
		if _, err := b.Execute(context.Background()); err != nil {
			_, gerr := get.Get()
			t.Fatalf("iteration %d: a batch without any fault failed: %v (future: %v)", iters, err, gerr)
		}
	}
}

// Found by TestFaultSoak (a "cancel" fault landing before Execute started on
// a RedisWriteAtomic batch): a refused Redis-side batch resolved its queued
// futures with ErrTxAborted while Execute's error said only "not sent", so
// errors.Is(err, ErrTxAborted) was false although every future was aborted.
// Fixed in 77ed2fe while the soak was written. (A queue whose session had
// no connection yet wrote nothing: its futures are not sent, so each case
// waits for its commands to be queued in Redis, after any MULTI another
// test left open has ended.)
func TestRefusedRedisSideBatchErrorReachesAborted(t *testing.T) {
	c := newClient(t)
	check := func(t *testing.T, f *rbatch.Future[int64], err error) {
		t.Helper()
		if _, ferr := f.Get(); !errors.Is(ferr, rbatch.ErrTxAborted) {
			t.Fatalf("future: %v, want ErrTxAborted", ferr)
		}
		if !errors.Is(err, rbatch.ErrTxAborted) {
			t.Errorf("the queued future is ErrTxAborted, but Execute's error does not reach it: %v", err)
		}
	}
	t.Run("cancelled before Execute", func(t *testing.T) {
		waitUntil(t, "no other client is in a MULTI", func() bool { return clientInMulti(t, srv) < 0 })
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		f := b.AtomicLong("soak:refused").IncrementAndGetAsync()
		waitUntil(t, "the INCR is queued in Redis", func() bool { return clientInMulti(t, srv) == 1 })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.Execute(ctx)
		check(t, f, err)
	})
	t.Run("write in a RedisReadAtomic batch", func(t *testing.T) {
		waitUntil(t, "no other client is in a MULTI", func() bool { return clientInMulti(t, srv) < 0 })
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
		f := b.AtomicLong("soak:refused").GetAsync()
		// Queued in Redis (its session had a connection): the DISCARD aborts it.
		waitUntil(t, "the GET is queued in Redis", func() bool { return clientInMulti(t, srv) == 1 })
		b.AtomicLong("soak:refused").IncrementAndGetAsync() // refused: ErrReadOnlyBatch
		_, err := b.Execute(context.Background())
		check(t, f, err)
	})
}
