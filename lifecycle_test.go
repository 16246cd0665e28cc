package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

func TestExecuteOnce(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	f := b.Bucket("once:a").SetAsync("1")
	_, err := f.Get()
	assert.ErrorIs(t, err, rbatch.ErrNotExecuted)
	select {
	case <-f.Done():
		t.Fatal("Done closed before Execute")
	default:
	}

	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	<-f.Done()

	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
	assert.ErrorIs(t, b.Discard(context.Background()), rbatch.ErrAlreadyExecuted)
	r, err := b.ExecuteAsync(context.Background()).Wait(context.Background())
	assert.Nil(t, r)
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)

	late := b.Bucket("once:b").SetAsync("2")
	_, err = late.Get()
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
	assert.Equal(t, -1, late.Index())
	assert.Equal(t, 1, b.Len())
}

// A nil context is refused with an error that says so, and the batch is
// left as it was: executed afterwards with a context, it runs in full.
func TestNilContextIsRefused(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	n := b.AtomicLong("nilctx:n").IncrementAndGetAsync()
	var nilCtx context.Context
	_, err := b.Execute(nilCtx)
	require.ErrorContains(t, err, "nil context")
	_, err = b.ExecuteAsync(nilCtx).Get()
	require.ErrorContains(t, err, "nil context")
	require.ErrorContains(t, b.Discard(nilCtx), "nil context")
	_, err = n.Wait(nilCtx)
	require.ErrorContains(t, err, "nil context")
	_, err = n.Get()
	require.ErrorIs(t, err, rbatch.ErrNotExecuted, "nothing ran")

	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	v, err := n.Wait(nilCtx) // resolved: nothing to wait for
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
}

// A context ended with a cause of its own (WithTimeoutCause,
// WithCancelCause) is reported with both: errors.Is finds the context's
// end and the cause, in every mode.
func TestContextCauseKeepsItsEnd(t *testing.T) {
	c := newClient(t)
	mine := errors.New("request budget spent")
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.Streaming} {
		ctx, cancel := context.WithTimeoutCause(context.Background(), time.Millisecond, mine)
		<-ctx.Done()
		b := c.NewBatch(rbatch.WithMode(mode))
		f := b.Bucket("cause:k").SetAsync("v")
		_, err := b.Execute(ctx)
		cancel()
		for what, e := range map[string]error{"Execute": err, "future": errOf(f)} {
			assert.ErrorIs(t, e, context.DeadlineExceeded, "%v: %s", mode, what)
			assert.ErrorIs(t, e, mine, "%v: %s", mode, what)
		}
	}
}

func TestExecuteFromTwoGoroutines(t *testing.T) {
	c := newClient(t)
	for range 20 {
		b := c.NewBatch()
		b.AtomicLong("twice:ctr").IncrementAndGetAsync()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = b.Execute(context.Background()) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else {
				assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
			}
		}
		assert.Equal(t, 1, ok, "exactly one Execute runs")
	}
}

func TestDiscard(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	f := b.Bucket("discard:a").SetAsync("1")
	require.NoError(t, b.Discard(context.Background()))
	_, err := f.Get()
	assert.ErrorIs(t, err, rbatch.ErrDiscarded)
	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
	assert.Zero(t, calls(t, "set"))
}

func TestEmptyBatch(t *testing.T) {
	c := newClient(t)
	res, err := c.NewBatch().Execute(context.Background())
	require.NoError(t, err)
	assert.Empty(t, res.Responses)
	assert.NotNil(t, res.Responses)
}

func TestExecuteAsync(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	f := b.AtomicLong("async:ctr").AddAndGetAsync(7)
	fut := b.ExecuteAsync(context.Background())
	res, err := fut.Wait(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Responses, 1)
	<-f.Done()
	n, err := f.Get()
	require.NoError(t, err)
	assert.Equal(t, res.Responses[0], n)
}

// Get blocks while its batch runs, as Redisson's get() does: right after
// ExecuteAsync (the batch held up by a WAIT no replica answers) it waits for
// the value instead of saying "not executed".
func TestGetWaitsForARunningBatch(t *testing.T) {
	c := newClient(t)
	key := "getwait:" + strconv.FormatInt(time.Now().UnixNano(), 10) // fresh under -count
	b := c.NewBatch(rbatch.WithSync(1, 300*time.Millisecond))
	f := b.AtomicLong(key + ":n").IncrementAndGetAsync()
	g := b.Bucket(key + ":s").GetAsync()
	_, err := f.Get()
	require.ErrorIs(t, err, rbatch.ErrNotExecuted, "not executed yet")
	fut := b.ExecuteAsync(context.Background())
	n, err := f.Get() // the WAIT holds the batch for 300 ms
	require.NoError(t, err, "Get waited for the running batch")
	assert.Equal(t, int64(1), n)
	_, err = g.Get()
	assert.ErrorIs(t, err, rbatch.ErrNil)
	res, err := fut.Get()
	require.NoError(t, err)
	assert.Zero(t, res.SyncedReplicas)
	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
	again, err := b.ExecuteAsync(context.Background()).Get()
	assert.Nil(t, again)
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
}

// Done, Wait and Get called from many goroutines while the batch runs and
// as it finishes all return, each with the value, and a batch that was
// used again starts clean (finished batches give their working state back).
func TestWaitersRaceTheFinish(t *testing.T) {
	c := newClient(t)
	key := "waiters:" + strconv.FormatInt(time.Now().UnixNano(), 10)
	for round := range 20 {
		b := c.NewBatch()
		f := b.AtomicLong(key).IncrementAndGetAsync()
		fut := b.ExecuteAsync(context.Background())
		var wg sync.WaitGroup
		got := make([]int64, 24)
		for k := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch k % 3 {
				case 0:
					<-f.Done()
				case 1:
					_, err := f.Wait(context.Background())
					assert.NoError(t, err)
				}
				got[k], _ = f.Get()
			}()
		}
		wg.Wait()
		_, err := fut.Get()
		require.NoError(t, err)
		for k, v := range got {
			assert.Equal(t, int64(round+1), v, "round %d, waiter %d", round, k)
		}
		assert.Equal(t, 1, b.Len(), "Len after Execute is what was queued")
	}
}

func TestFutureWaitHonoursContext(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	f := b.Bucket("wait:a").GetAsync()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := f.Wait(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// The context's cause comes along, as from Execute.
	why := errors.New("request budget spent")
	ctx, cancel = context.WithTimeoutCause(context.Background(), 20*time.Millisecond, why)
	defer cancel()
	_, err = f.Wait(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, why)
	require.NoError(t, b.Discard(context.Background()))
}

func TestInvalidOptionsSendNothing(t *testing.T) {
	cases := map[string]rbatch.Option{
		"negative sync replicas": rbatch.WithSync(-1, time.Second),
		"negative sync timeout":  rbatch.WithSync(1, -time.Second),
		"negative aof replicas":  rbatch.WithSyncAOF(true, -1, time.Second),
		"aof asking nothing":     rbatch.WithSyncAOF(false, 0, time.Second),
		"negative response":      rbatch.WithResponseTimeout(-time.Second),
		"negative attempts":      rbatch.WithRetry(-1, time.Second),
		"negative interval":      rbatch.WithRetry(1, -time.Second),
		"retry without interval": rbatch.WithRetry(3, 0),
		"unknown mode":           rbatch.WithMode(rbatch.ExecutionMode(9)),
		// Redis takes these in milliseconds; 0 would mean forever.
		"sub-millisecond sync timeout": rbatch.WithSync(1, 500*time.Microsecond),
		"sub-millisecond aof timeout":  rbatch.WithSyncAOF(true, 0, 999*time.Microsecond),
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(opt)
			f := b.Bucket("opt:a").SetAsync("1")
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), "invalid option")
			assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
			assert.Zero(t, calls(t, "set"))
			assert.Zero(t, calls(t, "wait"))
		})
	}
}

func TestOptionsView(t *testing.T) {
	c := newClient(t)
	o := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithSync(1, time.Second),
		rbatch.WithResponseTimeout(2*time.Second), rbatch.WithRetry(3, 10*time.Millisecond),
		rbatch.WithCodec(rbatch.JSONCodec), rbatch.WithSkipResult()).Options()
	assert.Equal(t, rbatch.RedisWriteAtomic, o.Mode)
	assert.True(t, o.Sync)
	assert.Equal(t, 1, o.SyncReplicas)
	assert.Equal(t, time.Second, o.SyncTimeout)
	assert.Equal(t, 2*time.Second, o.ResponseTimeout)
	assert.Equal(t, 3, o.RetryAttempts)
	assert.Equal(t, 10*time.Millisecond, o.RetryInterval)
	assert.Equal(t, rbatch.JSONCodec, o.Codec)
	assert.True(t, o.SkipResult)
	assert.Equal(t, "REDIS_WRITE_ATOMIC", o.Mode.String())
	assert.Equal(t, "IN_MEMORY", rbatch.InMemory.String())
	assert.Equal(t, "IN_MEMORY_ATOMIC", rbatch.InMemoryAtomic.String())
	assert.Equal(t, "REDIS_READ_ATOMIC", rbatch.RedisReadAtomic.String())
}

func TestCancelledBeforeExecuteSendsNothing(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	f := b.Bucket("ctx:a").SetAsync("1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Execute(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(f), context.Canceled)
	assert.Zero(t, calls(t, "set"))
}

// A command the server holds (BLPOP on an empty list) keeps the batch
// waiting; cancelling returns promptly. The command before it was answered,
// the held one and the one after were written and are unknown.
func TestCancelWhileReading(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	before := b.AtomicLong("cancel:ctr").IncrementAndGetAsync()
	held := b.Do("BLPOP", "cancel:empty", 10)
	after := b.AtomicLong("cancel:ctr").IncrementAndGetAsync()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Execute(ctx)
	assert.Less(t, time.Since(start), 5*time.Second, "Execute returns promptly once ctx ends")
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	n, err := before.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.ErrorIs(t, errOf(held), rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, errOf(after), rbatch.ErrUnknownOutcome)

	// The aborted connection was not reused: the next batch works normally.
	b2 := c.NewBatch()
	echo := b2.Do("ECHO", "still fine")
	_, err = b2.Execute(context.Background())
	require.NoError(t, err)
	v, _ := echo.Get()
	assert.Equal(t, "still fine", v)
}

func TestResponseTimeoutEndsUnknown(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch(rbatch.WithResponseTimeout(100 * time.Millisecond))
	held := b.Do("BLPOP", "timeout:empty", 5)
	start := time.Now()
	_, err := b.Execute(context.Background())
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, errOf(held), rbatch.ErrUnknownOutcome)
}

// A blocking command holds its reply back for its own timeout: the client's
// ReadTimeout counts from the end of that block, wherever the command takes
// its timeout (last argument, first, or after BLOCK), and a block of 0 waits
// as long as it takes.
func TestBlockingCommandOutlastsReadTimeout(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} { // (a stream: each part for its own blocks)
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.ReadTimeout = 150 * time.Millisecond })
			b := c.NewBatch(rbatch.WithMode(mode))
			before := b.AtomicLong("block:ctr").IncrementAndGetAsync()
			timedOut := map[string]*rbatch.Future[any]{
				"BLPOP":      b.Do("BLPOP", "block:empty1", 0.4),
				"BRPOPLPUSH": b.Do("BRPOPLPUSH", "block:empty2", "block:dst", "0.4"),
				"BLMOVE":     b.Do("BLMOVE", "block:empty3", "block:dst", "LEFT", "RIGHT", 0.4),
				"BZPOPMIN":   b.Do("BZPOPMIN", "block:empty4", 0.4),
				"BLMPOP":     b.Do("BLMPOP", 0.4, 1, "block:empty5", "LEFT"),
				"BZMPOP":     b.Do("BZMPOP", "0.4", 1, "block:empty6", "MIN"),
				"XREAD":      b.Do("XREAD", "COUNT", 1, "block", 400, "STREAMS", "block:stream", "$"),
			}
			forever := b.Do("BLPOP", "block:later", 0)
			after := b.AtomicLong("block:ctr").IncrementAndGetAsync()

			go func() {
				time.Sleep(time.Second) // well past every block and the ReadTimeout
				srv.Do(t, "RPUSH", "block:later", "v")
			}()
			_, err := b.Execute(context.Background())
			require.NoError(t, err)
			for name, f := range timedOut {
				assert.ErrorIs(t, errOf(f), rbatch.ErrNil, "%s timed out empty: a nil reply, not an unknown outcome", name)
			}
			v, err := forever.Get()
			require.NoError(t, err, "BLPOP with no timeout waits for the push")
			assert.Equal(t, []any{"block:later", "v"}, v)
			n1, _ := before.Get()
			n2, _ := after.Get()
			assert.Equal(t, []int64{1, 2}, []int64{n1, n2})
		})
	}
}

// A batch's own response timeout bounds a blocking command's reply as it
// is.
func TestResponseTimeoutBoundsBlockingCommand(t *testing.T) {
	c := newClient(t, func(cfg *rbatch.Config) { cfg.ReadTimeout = 150 * time.Millisecond })
	b := c.NewBatch(rbatch.WithResponseTimeout(100 * time.Millisecond))
	held := b.Do("BLPOP", "block:never", 0)
	start := time.Now()
	_, err := b.Execute(context.Background())
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.ErrorIs(t, errOf(held), rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
}

// With one connection in the pool, a second batch waits for it and gives up
// when its context ends, sending nothing.
func TestContextWhileWaitingForConnection(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	slow := c.NewBatch()
	slow.Do("BLPOP", "pool:empty", 1)
	done := slow.ExecuteAsync(context.Background())
	time.Sleep(100 * time.Millisecond) // let it take the connection

	b := c.NewBatch()
	f := b.Bucket("pool:a").SetAsync("1")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := b.Execute(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	_, err = done.Wait(context.Background())
	require.NoError(t, err)
	assert.Zero(t, calls(t, "set"))
}

func TestClosedClient(t *testing.T) {
	fresh(t)
	c := newClient(t)
	require.NoError(t, c.Close())
	b := c.NewBatch()
	f := b.Bucket("closed:a").SetAsync("1")
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrClosed)
	assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	assert.Zero(t, calls(t, "set"))
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	_, err := rbatch.NewClient(ctx, rbatch.Config{})
	assert.ErrorContains(t, err, "no addresses")
	_, err = rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}, PoolSize: -1})
	assert.ErrorContains(t, err, "PoolSize")
	_, err = rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}, ReadTimeout: -1})
	assert.ErrorContains(t, err, "negative timeout")

	// Nothing listens on a closed port: the error names the address.
	_, err = rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	assert.ErrorContains(t, err, "127.0.0.1:1")
}

func TestACLUserAndPassword(t *testing.T) {
	const password = "s3cret-pa55"
	srv.MustDo(t, "ACL", "SETUSER", "orders", "on", ">"+password, "~order:*", "+@all")
	t.Cleanup(func() { srv.MustDo(t, "ACL", "DELUSER", "orders") })

	c := newClient(t, func(cfg *rbatch.Config) { cfg.Username, cfg.Password = "orders", password })
	b := c.NewBatch()
	ok := b.Bucket("order:1").SetAsync("paid")
	denied := b.Bucket("stock:1").SetAsync("0")
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.NoError(t, errOf(ok))
	var rerr *rbatch.RedisError
	require.ErrorAs(t, errOf(denied), &rerr)
	assert.Equal(t, "NOPERM", rerr.Prefix())

	_, err = rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, Username: "orders", Password: "wrong-" + password})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WRONGPASS")
	assert.NotContains(t, err.Error(), password)
}

func TestDatabaseSelection(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.DB = 3 })
	b := c.NewBatch()
	b.Bucket("db:a").SetAsync("three")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	conn := srv.Conn(t)
	_, err = conn.Do("SELECT", 3)
	require.NoError(t, err)
	v, err := redis.String(conn.Do("GET", "db:a"))
	require.NoError(t, err)
	assert.Equal(t, "three", v)
	assert.Equal(t, int64(0), srv.MustDo(t, "EXISTS", "db:a"), "not in DB 0")
}

// Through a redigo pool whose connections time reads out at 100 ms, a WAIT
// of 400 ms is still awaited: its reply gets its own timeout.
func TestClientFromRedigoPoolWaitsForWait(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) {
		return redis.Dial("tcp", srv.Addr, redis.DialReadTimeout(100*time.Millisecond))
	}, MaxIdle: 1}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	b := c.NewBatch(rbatch.WithSync(1, 400*time.Millisecond)) // no replica: WAIT runs to its timeout
	f := b.Bucket("pool:wait").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.NoError(t, errOf(f))
	assert.Equal(t, 0, res.SyncedReplicas)
}

// A redigo pool's client asks its server's version when a batch first
// needs it: WithSyncAOF on Redis before 7.2 fails with ErrUnsupported
// before anything is sent, in every mode, as with NewClient.
func TestClientFromRedigoPoolWaitAOFUnsupported(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr) }, MaxIdle: 2}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.RedisWriteAtomic, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSyncAOF(true, 0, 100*time.Millisecond))
		f := b.AtomicLong("pool:aof").IncrementAndGetAsync()
		res, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrUnsupported, "mode %d", mode)
		assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
		assert.Equal(t, rbatch.Counts{NotSent: 1}, res.Counts)
	}
	assert.Zero(t, calls(t, "incr"), "nothing was sent")
	assert.Zero(t, calls(t, "multi"))
}

// A client given no redigo pool fails its batches with an error that says
// so, in every mode, instead of a nil dereference deep in redigo.
func TestClientFromNilPool(t *testing.T) {
	c := rbatch.NewClientFromPool(nil)
	defer c.Close()
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode))
		f := b.AtomicLong("pool:nil").IncrementAndGetAsync()
		res, err := b.Execute(context.Background())
		require.Error(t, err, mode)
		assert.ErrorContains(t, err, "nil *redis.Pool", mode)
		assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent, mode)
		assert.Equal(t, rbatch.Counts{NotSent: 1}, res.Counts, mode)
	}
	assert.Len(t, c.Stats(), 1)
}

func TestClientFromRedigoPool(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr) }, MaxIdle: 2}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	b := c.NewBatch()
	var fs []*rbatch.Future[int64]
	for range 1000 {
		fs = append(fs, b.AtomicLong("pool:ctr").IncrementAndGetAsync())
	}
	push := b.List("pool:list").AddAllAsync("a", []byte("b"), 3)
	wrong := b.List("pool:ctr").SizeAsync()
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	for i, f := range fs {
		n, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, int64(i+1), n)
	}
	assert.NoError(t, errOf(push))
	assert.ErrorContains(t, errOf(wrong), "WRONGTYPE")
	vals, err := redis.Strings(srv.Call("LRANGE", "pool:list", 0, -1))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "3"}, vals)
	// The connection went back clean and serves the next command.
	st := c.Stats()
	require.Len(t, st, 1, "the redigo pool is the client's one node")
	assert.Equal(t, p.Stats().ActiveCount, st[0].Total)
	assert.Equal(t, p.Stats().IdleCount, st[0].Idle)
	assert.Positive(t, st[0].Total)
	conn := p.Get()
	defer conn.Close()
	pong, err := redis.String(conn.Do("PING"))
	require.NoError(t, err)
	assert.Equal(t, "PONG", pong)
	assert.Equal(t, 1, c.Stats()[0].InUse, "the connection held here")
}

// A large batch streams: 200k commands on one connection, every reply in order.
func TestLargeBatchStreams(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	const n = 200_000
	for i := range n {
		b.Set("large:set").AddAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Responses, n)
	for i, r := range res.Responses {
		if r != true {
			t.Fatalf("Responses[%d] = %v, want true", i, r)
		}
	}
	assert.Equal(t, int64(n), srv.MustDo(t, "SCARD", "large:set"))
	assert.Equal(t, int64(n), calls(t, "sadd"))
}

func TestBatchErrorMessage(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	b.Bucket("msg:str").SetAsync("x")
	for range 5 {
		b.List("msg:str").AddAsync("y")
	}
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "rbatch: "), msg)
	assert.Contains(t, msg, "5 of 6 commands did not succeed (5 failed)")
	assert.Contains(t, msg, "commands 1 to 5")
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.Len(t, berr.Commands, 5)
	assert.Len(t, berr.Unwrap(), 5)
}

// Cancelling a batch of a million commands mid-flight returns within a
// second; every command ends applied, unknown or not sent, and the keys in
// Redis account for it.
func TestCancelMillionCommandBatch(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	const n = 1_000_000
	fs := make([]*rbatch.Future[bool], n)
	for i := range fs {
		fs[i] = b.Set("cancel1m:" + strconv.Itoa(i%1000)).AddAsync(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var cancelledAt time.Time
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		// Cancel once the server has run part of the batch.
		deadline := time.Now().Add(30 * time.Second)
		for calls(t, "sadd") < 10_000 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancelledAt = time.Now()
		cancel()
	}()
	_, err := b.Execute(ctx)
	returned := time.Now()
	<-cancelled
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	t.Logf("Execute returned %v after the cancel", returned.Sub(cancelledAt))
	if !raceEnabled { // -race slows the million resolutions several times over
		assert.Less(t, returned.Sub(cancelledAt), time.Second, "Execute returns within 1s of the cancel")
	}

	var applied, unknown, notSent int64
	for _, f := range fs {
		_, err := f.Get()
		switch {
		case err == nil:
			applied++
		case errors.Is(err, rbatch.ErrUnknownOutcome):
			unknown++
		case errors.Is(err, rbatch.ErrNotSent):
			notSent++
		default:
			t.Fatalf("unexpected outcome %v", err)
		}
	}
	t.Logf("applied %d, unknown %d, not sent %d", applied, unknown, notSent)
	assert.Equal(t, int64(n), applied+unknown+notSent)
	assert.Less(t, applied, int64(n), "the cancel landed mid-batch")
	var members int64
	for i := range 1000 {
		m, err := redis.Int64(srv.Call("SCARD", "cancel1m:"+strconv.Itoa(i)))
		require.NoError(t, err)
		members += m
	}
	assert.GreaterOrEqual(t, members-applied, int64(0))
	assert.LessOrEqual(t, members-applied, unknown)
}

// A WithSkipResult batch through a redigo pool returns, and the pool goes
// on serving: redigo would wait on its connection's close for the replies
// CLIENT REPLY OFF leaves out, so that connection is dropped instead.
func TestClientFromRedigoPoolSkipResult(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr) }, MaxIdle: 2}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	for round := range 2 {
		b := c.NewBatch(rbatch.WithSkipResult())
		for i := range 100 {
			b.Bucket(fmt.Sprintf("pool:skip:%d", i)).SetAsync(round)
		}
		done := make(chan error, 1)
		go func() {
			_, err := b.Execute(context.Background())
			done <- err
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a skip-result batch through a redigo pool did not return")
		}
		v, err := redis.Int(srv.Call("GET", "pool:skip:99"))
		require.NoError(t, err)
		assert.Equal(t, round, v)
	}
	conn := p.Get()
	defer conn.Close()
	pong, err := redis.String(conn.Do("PING"))
	require.NoError(t, err)
	assert.Equal(t, "PONG", pong)
}

// A batch that changes its connection's state (CLIENT SETNAME here) closes
// that connection when it ends: the next batch does not inherit the name,
// in the buffered and the Redis-side modes alike.
func TestConnectionStateNotInherited(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Do("CLIENT", "SETNAME", "rbatch-named")
			b.Bucket("cs:k").SetAsync("v")
			_, err := b.Execute(context.Background())
			require.NoError(t, err)
			require.NoError(t, errOf(set))
			for range 3 {
				nb := c.NewBatch()
				name := nb.Do("CLIENT", "GETNAME")
				_, err := nb.Execute(context.Background())
				require.NoError(t, err)
				got, err := name.Get()
				assert.ErrorIs(t, err, rbatch.ErrNil, "a later batch's connection is named %v", got)
			}
		})
	}
}

// A redigo pool's connection sets a read's deadline as the read starts: a
// large skip-result batch's one reply (CLIENT REPLY ON's) is awaited for
// the response timeout once the batch is written, not while it is.
func TestClientFromRedigoPoolSkipTimeoutAfterTheWrite(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr) }, MaxIdle: 2}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	b := c.NewBatch(rbatch.WithSkipResult(), rbatch.WithResponseTimeout(100*time.Millisecond))
	val := strings.Repeat("x", 300)
	const n = 200_000 // some 60 MB: longer to write than the timeout
	for i := range n {
		b.Bucket("rgskip:" + strconv.Itoa(i)).SetAsync(val)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err, "counts %+v", res.Counts)
	assert.Equal(t, rbatch.Counts{Skipped: n}, res.Counts)
	assert.Equal(t, int64(n), srv.MustDo(t, "DBSIZE"))
}

// A large batch on a redigo pool's connection whose context is cancelled
// mid-way, the server healthy: the commands handed to redigo are flushed,
// the read under way ends at its reply and the batch stops there (redigo
// cannot interrupt a read). Before, the unflushed commands' replies were
// awaited for ever.
func TestClientFromRedigoPoolCancelMidBatch(t *testing.T) {
	fresh(t)
	p := &redis.Pool{Dial: func() (redis.Conn, error) { return redis.Dial("tcp", srv.Addr) }, MaxIdle: 2}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	b := c.NewBatch()
	const n = 200_000
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		fs[i] = b.AtomicLong("rgcancel:" + strconv.Itoa(i%100)).IncrementAndGetAsync()
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for calls(t, "incr") < 20_000 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	done := b.ExecuteAsync(ctx)
	select {
	case <-done.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("Execute still running 20 s after its context was cancelled, the server healthy")
	}
	res, err := done.Get()
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, n, res.Counts.Total())
	applied, unknown := int64(res.Counts.Applied), int64(res.Counts.Unknown)
	ran := calls(t, "incr")
	assert.GreaterOrEqual(t, ran, applied)
	assert.LessOrEqual(t, ran, applied+unknown, "nothing counted not sent reached Redis")
	t.Logf("%+v, %d INCRs ran", res.Counts, ran)
}
