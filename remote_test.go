package rbatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

// redisSideModes are the modes that queue each command in Redis as it is
// queued, in a MULTI held on a connection of the batch's own.
var redisSideModes = []rbatch.ExecutionMode{rbatch.RedisWriteAtomic, rbatch.RedisReadAtomic}

// queueOne queues one command a batch of mode accepts, on key.
func queueOne(b *rbatch.Batch, mode rbatch.ExecutionMode, key string) interface{ Get() (string, error) } {
	if mode == rbatch.RedisReadAtomic {
		return b.Bucket(key).GetAsync()
	}
	return b.Bucket(key).GetAndSetAsync("new")
}

// holdOnlyConn opens a Redis-side batch that takes the one connection of a
// PoolSize 1 client and keeps it in MULTI; it is discarded at the end.
func holdOnlyConn(t *testing.T, c *rbatch.Client, mode rbatch.ExecutionMode) *rbatch.Batch {
	t.Helper()
	holder := c.NewBatch(rbatch.WithMode(mode))
	queueOne(holder, mode, "remote:held")
	waitUntil(t, "the holder's command is queued in Redis", func() bool { return clientInMulti(t, srv) == 1 })
	t.Cleanup(func() { holder.Discard(context.Background()) })
	return holder
}

// returnsWithin runs fn and fails the test when it takes longer than d.
// fn is left running then (the test's cleanups end what it waits for).
func returnsWithin(t *testing.T, d time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

// A Redis-side batch still waiting for its connection (all of them held by
// another open Redis-side batch) wrote nothing: its Discard needs no
// connection and returns at once, even with a context that never ends,
// its futures end ErrDiscarded, and the holder goes on unharmed.
func TestDiscardOfRedisSideBatchWaitingForConnIsPrompt(t *testing.T) {
	for _, mode := range redisSideModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			srv.MustDo(t, "SET", "remote:held", "old")
			srv.MustDo(t, "SET", "remote:waiting", "old")
			c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			holder := holdOnlyConn(t, c, mode)

			waiting := c.NewBatch(rbatch.WithMode(mode))
			f := queueOne(waiting, mode, "remote:waiting")
			err := returnsWithin(t, time.Second, "Discard of the waiting batch", func() error {
				return waiting.Discard(context.Background())
			})
			require.NoError(t, err)
			_, err = f.Get()
			assert.ErrorIs(t, err, rbatch.ErrDiscarded)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := holder.Execute(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, res.Counts.Applied)
			assert.Equal(t, "old", string(srv.MustDo(t, "GET", "remote:waiting").([]byte)), "nothing of the discarded batch applied")
			assert.Zero(t, calls(t, "discard"), "no DISCARD sent: nothing was queued in Redis")

			// The discarded batch gave up its place in line: the next one
			// gets the connection.
			next := c.NewBatch(rbatch.WithMode(mode))
			queueOne(next, mode, "remote:waiting")
			_, err = next.Execute(ctx)
			require.NoError(t, err)
		})
	}
}

// Close does not wait for the connection of a Redis-side batch that never
// got one: it discards each such batch at once (here the only connection
// is busy with a BLPOP, which Close leaves to finish).
func TestCloseWithRedisSideBatchWaitingForConnIsPrompt(t *testing.T) {
	for _, mode := range redisSideModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			srv.MustDo(t, "SET", "remote:waiting", "old")
			c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, PoolSize: 1})
			require.NoError(t, err)
			busy := c.NewBatch()
			pop := busy.Do("BLPOP", "remote:wake", 10)
			busyRes := busy.ExecuteAsync(context.Background())
			t.Cleanup(func() {
				srv.MustDo(t, "RPUSH", "remote:wake", "x")
				busyRes.Get()
			})
			waitUntil(t, "the BLPOP holds the connection", func() bool { return srv.Info(t, "clients")["blocked_clients"] == "1" })

			var waiting []interface{ Get() (string, error) }
			for range 2 {
				b := c.NewBatch(rbatch.WithMode(mode))
				waiting = append(waiting, queueOne(b, mode, "remote:waiting"))
			}
			require.NoError(t, returnsWithin(t, 2*time.Second, "Close", c.Close))
			for _, f := range waiting {
				_, err := f.Get()
				assert.ErrorIs(t, err, rbatch.ErrDiscarded)
			}

			srv.MustDo(t, "RPUSH", "remote:wake", "x")
			_, err = pop.Get()
			assert.NoError(t, err, "Close left the running batch to finish")
			assert.Zero(t, calls(t, "multi"), "no MULTI opened for the discarded batches")
			assert.Equal(t, "old", string(srv.MustDo(t, "GET", "remote:waiting").([]byte)), "nothing applied")
		})
	}
}

// A command queued in a Redis-side batch once its WithContext context
// ended never reaches Redis: its future fails at once, not sent, with the
// context's cause, and Execute counts it not sent; the command queued in
// the MULTI before the end is aborted with it.
func TestRedisSideQueuedAfterContextEndedIsNotSent(t *testing.T) {
	for _, mode := range redisSideModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			stop := errors.New("shutting down")
			bg, cancel := context.WithCancelCause(context.Background())
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithContext(bg))
			early := queueOne(b, mode, "remote:early")
			waitUntil(t, "the first command is queued in Redis", func() bool { return clientInMulti(t, srv) == 1 })
			cancel(stop)
			waitUntil(t, "the MULTI is dropped", func() bool { return clientInMulti(t, srv) == -1 })

			late := queueOne(b, mode, "remote:late")
			_, err := late.Get()
			assert.ErrorIs(t, err, rbatch.ErrNotSent, "refused at once, before Execute")
			assert.ErrorIs(t, err, context.Canceled)
			assert.ErrorIs(t, err, stop)
			assert.Equal(t, 1, late.(*rbatch.Future[string]).Index())

			res, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.Equal(t, rbatch.Counts{Aborted: 1, NotSent: 1}, res.Counts)
			_, err = early.Get()
			assert.ErrorIs(t, err, rbatch.ErrTxAborted, "it was in the MULTI the dropped connection discarded")
			_, err = late.Get()
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.ErrorIs(t, err, stop)
		})
	}
}

// A Redis-side batch whose WithContext context ended before its first
// command opens no MULTI: every command fails at once, not sent.
func TestRedisSideQueuedOnlyAfterContextEndedOpensNothing(t *testing.T) {
	fresh(t)
	c := newClient(t)
	bg, cancel := context.WithCancel(context.Background())
	cancel()
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithContext(bg))
	f := b.Bucket("remote:late").SetAsync("x")
	_, err := f.Get()
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.ErrorIs(t, err, context.Canceled)

	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Equal(t, rbatch.Counts{NotSent: 1}, res.Counts)
	assert.Zero(t, calls(t, "multi"), "no MULTI opened")
	assert.Equal(t, int64(0), srv.MustDo(t, "EXISTS", "remote:late"))
}

// A Redis-side batch refused while its session still waits for a
// connection wrote nothing: its commands are not sent (safe to retry), not
// aborted.
func TestRemoteRefusedBeforeItsConnectionIsNotSent(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "SET", "remote:held", "old")
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	holder := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	holder.Bucket("remote:held").GetAndSetAsync("new")
	waitUntil(t, "the holder's command is queued in Redis", func() bool { return clientInMulti(t, srv) == 1 })
	srv.ResetStats(t)

	b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
	get := b.Bucket("ro:a").GetAsync() // its session waits for the held connection
	set := b.Bucket("ro:b").SetAsync("x")
	res, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrReadOnlyBatch)
	assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(get), rbatch.ErrNotSent)
	assert.NotErrorIs(t, errOf(get), rbatch.ErrTxAborted)
	assert.Equal(t, rbatch.Counts{NotSent: 2}, res.Counts)
	st := srv.CommandStats(t)
	assert.Zero(t, st["multi"]+st["discard"], "nothing of the batch reached Redis: %v", st)

	_, err = holder.Execute(context.Background())
	require.NoError(t, err)
}
