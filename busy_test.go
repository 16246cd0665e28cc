package rbatch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// spinScript spins for ARGV[1] microseconds: past the server's
// busy-reply-threshold, other clients' commands are answered BUSY.
const spinScript = `local t0 = redis.call('TIME'); while true do local t = redis.call('TIME');
	if (t[1]-t0[1])*1000000 + (t[2]-t0[2]) > tonumber(ARGV[1]) then return 1 end end`

// busyServer starts a server that answers BUSY 30 ms into a script.
func busyServer(t *testing.T) *redistest.Server {
	return redistest.Standalone(t, "--busy-reply-threshold", "30")
}

// spin runs a script for d on s and returns once s answers BUSY; the
// channel gives the script's end.
func spin(t *testing.T, s *redistest.Server, d time.Duration) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	conn := s.Conn(t)
	go func() {
		defer conn.Close()
		_, err := conn.Do("EVAL", spinScript, 0, d.Microseconds())
		done <- err
	}()
	waitUntil(t, "the script runs", func() bool {
		_, err := s.Call("PING")
		return err != nil
	})
	return done
}

// A Redis-side transaction whose EXEC a server turned busy refuses
// (EXECABORT … because of: BUSY) was not applied: WithRetry sends it again.
func TestRedisSideExecRefusedBusyIsRetried(t *testing.T) {
	s := busyServer(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithRetry(10, 100*time.Millisecond))
	f := b.AtomicLong("busyexec:n").IncrementAndGetAsync()
	waitUntil(t, "MULTI and INCR queued", func() bool {
		list, _ := redis.String(s.Call("CLIENT", "LIST"))
		return strings.Contains(list, " multi=1 ") // one command queued in a MULTI
	})
	done := spin(t, s, 250*time.Millisecond)
	res, err := b.Execute(context.Background())
	require.NoError(t, <-done)
	require.NoError(t, err)
	n, err := f.Get()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	assert.Greater(t, res.Nodes[0].Attempts, 1, "EXEC refused with BUSY at least once")
	assert.Equal(t, []byte("1"), s.MustDo(t, "GET", "busyexec:n"))
}

// A condition whose read a busy server refuses did not fail: it was not
// checked. WithRetry reads it again once the server answers.
func TestConditionReadBusyIsRetried(t *testing.T) {
	s := busyServer(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	s.MustDo(t, "SET", "busycond:stock", "5")
	done := spin(t, s, 250*time.Millisecond)
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(10, 60*time.Millisecond))
	held := b.AddCondition(rbatch.IntAtLeast("busycond:stock", 1))
	dec := b.AtomicLong("busycond:stock").AddAndGetAsync(-1)
	_, err := b.Execute(context.Background())
	require.NoError(t, <-done)
	require.NoError(t, err)
	ok, err := held.Get()
	require.NoError(t, err)
	assert.True(t, ok)
	n, err := dec.Get()
	require.NoError(t, err)
	assert.EqualValues(t, 4, n)

	// Without retries the refusal is the batch's error, and not a failed
	// condition.
	done = spin(t, s, 250*time.Millisecond)
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.AddCondition(rbatch.IntAtLeast("busycond:stock", 1))
	dec = b.AtomicLong("busycond:stock").AddAndGetAsync(-1)
	_, err = b.Execute(context.Background())
	require.NoError(t, <-done)
	require.Error(t, err)
	assert.NotErrorIs(t, err, rbatch.ErrConditionFailed)
	assert.ErrorIs(t, errOf(dec), rbatch.ErrNotSent)
	assert.Equal(t, []byte("4"), s.MustDo(t, "GET", "busycond:stock"))
}

// A server busy with a script refuses CLIENT REPLY OFF with BUSY, and then
// every command after it: a skip-result batch there is not skipped but
// refused, so its commands fail with BUSY (a transaction is aborted), or go
// again with WithRetry.
func TestSkipResultOnBusyServer(t *testing.T) {
	s := busyServer(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 2 })
	runBusy := func() {
		warm := c.NewBatch() // a live connection, so that no dial meets the script
		warm.Do("PING")
		_, err := warm.Execute(context.Background())
		require.NoError(t, err)
		spin(t, s, 400*time.Millisecond)
	}

	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		key := "busyskip:" + mode.String()
		runBusy()
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		for range 3 {
			b.AtomicLong(key).IncrementAndGetAsync()
		}
		res, err := b.Execute(context.Background())
		var re *rbatch.RedisError
		require.ErrorAs(t, err, &re, mode)
		assert.Equal(t, "BUSY", re.Prefix(), mode)
		want := rbatch.Counts{Failed: 3}
		if mode == rbatch.InMemoryAtomic { // MULTI is allowed while busy; the INCRs are not, and EXEC aborts
			want = rbatch.Counts{Aborted: 3}
			assert.ErrorIs(t, err, rbatch.ErrTxAborted)
		}
		assert.Equal(t, want, res.Counts, "%v: refused, not skipped: %v", mode, err)
		waitUntil(t, "the script ends", func() bool {
			_, err := s.Call("PING")
			return err == nil
		})
		assert.Nil(t, s.MustDo(t, "GET", key), mode)

		runBusy()
		b = c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult(), rbatch.WithRetry(20, 50*time.Millisecond))
		for range 3 {
			b.AtomicLong(key).IncrementAndGetAsync()
		}
		res, err = b.Execute(context.Background())
		require.NoError(t, err, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 3}, res.Counts, mode)
		assert.Greater(t, res.Nodes[0].Attempts, 1, "%v: refused with BUSY at least once", mode)
		assert.Equal(t, []byte("3"), s.MustDo(t, "GET", key), mode)
		assertPoolAnswers(t, c, 2)
	}
}
