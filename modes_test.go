package rbatch_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

var atomicModes = []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic}

func clientFor(t testing.TB, s *redistest.Server, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	return clientAt(t, s.Addr, mods...)
}

// clientAt is clientFor by address (a proxy's, say).
func clientAt(t testing.TB, addr string, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	cfg := rbatch.Config{Addrs: []string{addr}}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := rbatch.NewClient(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { closeClean(t, c) })
	return c
}

func TestEveryModeAppliesItsCommands(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Bucket("mode:a").SetAsync("1")
			incr := b.AtomicLong("mode:n").AddAndGetAsync(41)
			push := b.List("mode:l").AddAllAsync("x", "y")
			read := b.List("mode:l").ReadAllAsync()
			get := b.Bucket("mode:missing").GetAsync()
			script := b.Script().EvalAsync("return redis.call('INCR', KEYS[1])", []string{"mode:n"})
			res, err := b.Execute(context.Background())
			require.NoError(t, err)

			assert.NoError(t, errOf(set))
			n, _ := incr.Get()
			assert.Equal(t, int64(41), n)
			ok, _ := push.Get()
			assert.True(t, ok)
			items, _ := read.Get()
			assert.Equal(t, []string{"x", "y"}, items)
			assert.ErrorIs(t, errOf(get), rbatch.ErrNil)
			sv, _ := script.Get()
			assert.Equal(t, int64(42), sv)
			assert.Equal(t, []any{struct{}{}, int64(41), true, []string{"x", "y"}, nil, int64(42)}, res.Responses)

			wantTx := int64(0)
			if mode != rbatch.InMemory {
				wantTx = 1
			}
			stats := srv.CommandStats(t)
			assert.Equal(t, wantTx, stats["multi"], "MULTI calls")
			assert.Equal(t, wantTx, stats["exec"], "EXEC calls")
			assert.Equal(t, []byte("42"), srv.MustDo(t, "GET", "mode:n"))
		})
	}
}

// A reader looping over two keys never sees half of a transaction that
// moves one unit from one key to the other.
func TestAtomicBatchesAreNeverSeenHalfApplied(t *testing.T) {
	for _, mode := range atomicModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			srv.MustDo(t, "MSET", "move:a", 1000, "move:b", 0)

			stop := make(chan struct{})
			var reads, torn atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn := srv.Conn(t)
				for {
					select {
					case <-stop:
						return
					default:
					}
					vals, err := redis.Int64s(conn.Do("MGET", "move:a", "move:b"))
					if err != nil || vals[0]+vals[1] != 1000 {
						torn.Add(1)
					}
					reads.Add(1)
				}
			}()
			const batches = 1000
			for i := range batches {
				b := c.NewBatch(rbatch.WithMode(mode))
				b.AtomicLong("move:a").DecrementAndGetAsync()
				b.AtomicLong("move:b").IncrementAndGetAsync()
				_, err := b.Execute(context.Background())
				require.NoError(t, err, "batch %d", i)
			}
			close(stop)
			wg.Wait()
			assert.Zero(t, torn.Load(), "reads that saw half a transaction, of %d", reads.Load())
			assert.Positive(t, reads.Load())
			assert.Equal(t, int64(batches), calls(t, "exec"))
			assert.Equal(t, []byte(strconv.Itoa(1000-batches)), srv.MustDo(t, "GET", "move:a"))
		})
	}
}

func TestQueueTimeErrorAbortsTransaction(t *testing.T) {
	t.Run("REDIS_READ_ATOMIC", func(t *testing.T) {
		fresh(t)
		srv.MustDo(t, "SET", "abort:r", "1")
		c := newClient(t)
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
		get := b.Bucket("abort:r").GetAsync()
		bad := b.Do("GET", "abort:r", "extra") // wrong arity
		_, err := b.Execute(context.Background())
		assert.ErrorIs(t, err, rbatch.ErrTxAborted)
		for _, e := range []error{errOf(get), errOf(bad)} {
			var ce *rbatch.CommandError
			require.ErrorAs(t, e, &ce)
			assert.Equal(t, 1, ce.Index)
			assert.ErrorIs(t, e, rbatch.ErrTxAborted)
		}
		assert.Zero(t, calls(t, "get"), "nothing ran")
	})
	for _, mode := range atomicModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			first := b.AtomicLong("abort:n").IncrementAndGetAsync()
			bad := b.Do("SET", "abort:only-key") // wrong arity: refused at queue time
			last := b.Bucket("abort:s").SetAsync("x")
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, rbatch.ErrTxAborted)
			for _, e := range []error{errOf(first), errOf(bad), errOf(last)} {
				assert.ErrorIs(t, e, rbatch.ErrTxAborted)
				var ce *rbatch.CommandError
				require.ErrorAs(t, e, &ce, "the cause names the command")
				assert.Equal(t, 1, ce.Index)
				assert.Equal(t, "SET", ce.Command)
				assert.ErrorContains(t, e, "wrong number of arguments")
			}
			assert.Equal(t, int64(0), srv.MustDo(t, "DBSIZE"), "nothing applied")
		})
	}
}

func TestRuntimeErrorInsideExecFailsOnlyItsCommand(t *testing.T) {
	for _, mode := range atomicModes {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Bucket("rt:k").SetAsync("1")
			incr := b.AtomicLong("rt:k").IncrementAndGetAsync()
			push := b.List("rt:k").AddAsync("x") // WRONGTYPE at EXEC time
			after := b.Bucket("rt:after").SetAsync("y")
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			var berr *rbatch.BatchError
			require.ErrorAs(t, err, &berr)
			require.Len(t, berr.Commands, 1)
			assert.Equal(t, 2, berr.Commands[0].Index)
			assert.NoError(t, errOf(set))
			n, _ := incr.Get()
			assert.Equal(t, int64(2), n)
			var re *rbatch.RedisError
			require.ErrorAs(t, errOf(push), &re)
			assert.Equal(t, "WRONGTYPE", re.Prefix())
			assert.NoError(t, errOf(after))
			assert.Equal(t, []byte("2"), srv.MustDo(t, "GET", "rt:k"), "no rollback")
		})
	}
}

var multiFlag = regexp.MustCompile(`flags=x .*multi=(\d+)`)

// clientInMulti returns the multi=N figure of the connection that has an
// open transaction, or -1.
func clientInMulti(t testing.TB, s *redistest.Server) int {
	list, _ := redis.String(s.MustDo(t, "CLIENT", "LIST"), nil)
	if m := multiFlag.FindStringSubmatch(list); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return -1
}

// clientsInMulti counts s's clients in a MULTI.
func clientsInMulti(t testing.TB, s *redistest.Server) int {
	list, _ := redis.String(s.MustDo(t, "CLIENT", "LIST"), nil)
	return strings.Count(list, "flags=x ")
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRedisWriteAtomicQueuesInRedisBeforeExecute(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	for i := range 3 {
		b.AtomicLong("rwa:n").AddAndGetAsync(int64(i + 1))
	}
	waitUntil(t, "the server holds 3 queued commands", func() bool { return clientInMulti(t, srv) == 3 })
	assert.Equal(t, int64(1), calls(t, "multi"), "MULTI sent at the first command")
	assert.Equal(t, int64(0), srv.MustDo(t, "EXISTS", "rwa:n"), "not applied before EXEC")

	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1), int64(3), int64(6)}, res.Responses)
	assert.Equal(t, -1, clientInMulti(t, srv))
	assert.Equal(t, int64(1), calls(t, "exec"))
}

func TestRedisWriteAtomicDiscard(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	f := b.Bucket("rwd:a").SetAsync("1")
	b.AtomicLong("rwd:n").IncrementAndGetAsync()
	waitUntil(t, "the commands are queued in Redis", func() bool { return clientInMulti(t, srv) == 2 })
	require.NoError(t, b.Discard(context.Background()))
	assert.ErrorIs(t, errOf(f), rbatch.ErrDiscarded)
	assert.Equal(t, int64(0), srv.MustDo(t, "DBSIZE"))
	assert.Equal(t, int64(1), calls(t, "discard"))
	assert.Equal(t, -1, clientInMulti(t, srv))

	// The one pooled connection is usable again.
	b2 := c.NewBatch()
	echo := b2.Do("ECHO", "ok")
	_, err := b2.Execute(context.Background())
	require.NoError(t, err)
	v, _ := echo.Get()
	assert.Equal(t, "ok", v)
}

func TestRedisReadAtomicRefusesWrites(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "SET", "ra:a", "1")
	srv.ResetStats(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
	get := b.Bucket("ra:a").GetAsync()
	set := b.Bucket("ra:b").SetAsync("2")
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, rbatch.ErrReadOnlyBatch)
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(set), rbatch.ErrReadOnlyBatch)
	assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent)
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Len(t, berr.Commands, 1, "the write is named")
	assert.Equal(t, 1, berr.Commands[0].Index)
	// The GET, queued in Redis's MULTI, was discarded: aborted. Had its
	// queue no connection yet, nothing was written: not sent.
	if calls(t, "multi") > 0 {
		assert.ErrorIs(t, errOf(get), rbatch.ErrTxAborted)
		assert.Equal(t, int64(1), calls(t, "discard"))
	} else {
		assert.ErrorIs(t, errOf(get), rbatch.ErrNotSent)
	}
	assert.ErrorIs(t, errOf(get), rbatch.ErrReadOnlyBatch)
	assert.Zero(t, calls(t, "set"), "the write never reached Redis")
	assert.Zero(t, calls(t, "exec"))
	assert.Equal(t, int64(0), srv.MustDo(t, "EXISTS", "ra:b"))
}

func TestRedisReadAtomicOnReplica(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	primary.MustDo(t, "RPUSH", "rr:l", "a", "b")
	primary.MustDo(t, "SET", "rr:s", "v")
	primary.WaitReplicated(t, 1)
	replica.ResetStats(t)
	primary.ResetStats(t)

	c := clientFor(t, primary, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
	list := b.List("rr:l").ReadAllAsync()
	s := b.Bucket("rr:s").GetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	items, _ := list.Get()
	assert.Equal(t, []string{"a", "b"}, items)
	v, _ := s.Get()
	assert.Equal(t, "v", v)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, replica.Addr, res.Nodes[0].Addr)
	assert.Equal(t, int64(1), replica.CommandStats(t)["exec"], "EXEC ran on the replica")
	assert.Zero(t, primary.CommandStats(t)["exec"])
}

func TestSkipResultMillionSets(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 2 })
	b := c.NewBatch(rbatch.WithSkipResult())
	const n = 1_000_000
	var some []*rbatch.Future[struct{}]
	for i := range n {
		f := b.Bucket("skip:" + strconv.Itoa(i)).SetAsync(i)
		if i%100_000 == 0 {
			some = append(some, f)
		}
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Empty(t, res.Responses)
	for _, f := range some {
		assert.ErrorIs(t, errOf(f), rbatch.ErrResultSkipped)
	}
	assert.Equal(t, int64(n), srv.MustDo(t, "DBSIZE"))
	assert.Equal(t, int64(n), calls(t, "set"))
	assert.Equal(t, int64(2), calls(t, "client|reply"), "OFF and ON once each")

	// Every pooled connection answers normally afterwards.
	assertPoolAnswers(t, c, 2)
}

// assertPoolAnswers runs k concurrent ordinary batches, so that every pooled
// connection serves one, and checks each answers.
func assertPoolAnswers(t *testing.T, c *rbatch.Client, k int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := c.NewBatch()
			e := b.Do("ECHO", fmt.Sprint(i))
			b.Do("BLPOP", "pool:never", 0.2) // hold the connection a moment
			_, err := b.Execute(context.Background())
			assert.NoError(t, err)
			v, _ := e.Get()
			assert.Equal(t, fmt.Sprint(i), v)
		}()
	}
	wg.Wait()
}

func TestSkipResultInEveryMode(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
			for range 100 {
				b.AtomicLong("skipm:n").IncrementAndGetAsync()
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			assert.Empty(t, res.Responses)
			assert.Equal(t, []byte("100"), srv.MustDo(t, "GET", "skipm:n"))
			assertPoolAnswers(t, c, 1)
		})
	}
}

// A server that refuses CLIENT (as some proxies do) still completes a
// skip-result batch: its replies are read, as on a cluster. A command's
// error reply is its own (inside a transaction, EXEC's array element): it
// fails with it and Execute says so; the others end skipped.
func TestSkipResultWhenClientReplyIsRefused(t *testing.T) {
	s := redistest.Standalone(t, "--rename-command", "CLIENT", "")
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		b.Bucket("fb:s").SetAsync("x")
		for range 1000 {
			b.AtomicLong("fb:n").IncrementAndGetAsync()
		}
		bad := b.List("fb:s").AddAsync("y") // WRONGTYPE
		done := make(chan struct{})
		var res *rbatch.BatchResult
		var err error
		go func() { defer close(done); res, err = b.Execute(context.Background()) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("skip-result batch hangs when CLIENT REPLY is refused")
		}
		require.Len(t, res.Nodes, 1)
		var re *rbatch.RedisError
		require.ErrorAs(t, err, &re, mode)
		assert.Equal(t, "WRONGTYPE", re.Prefix())
		require.ErrorAs(t, errOf(bad), &re, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 1001, Failed: 1}, res.Counts, mode)
	}
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		// Every reply a success: each still ends skipped, as asked.
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		set := b.Bucket("fb:t").SetAsync("x")
		b.AtomicLong("fb:n").IncrementAndGetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 2}, res.Counts, mode)
		assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped, mode)
	}
	assert.Equal(t, []byte("4004"), s.MustDo(t, "GET", "fb:n"))
	assertPoolAnswers(t, c, 1)
}

func TestWaitForReplica(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	c := clientFor(t, primary)

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSync(1, 5*time.Second))
	b.Bucket("wait:order").SetAsync("placed")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, res.SyncedReplicas)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, 1, res.Nodes[0].SyncedReplicas)
	assert.Equal(t, []byte("placed"), replica.MustDo(t, "GET", "wait:order"))

	replica.Stop()
	b = c.NewBatch(rbatch.WithSync(1, 100*time.Millisecond))
	b.Bucket("wait:order2").SetAsync("placed")
	res, err = b.Execute(context.Background())
	require.NoError(t, err, "too few replicas is a figure, not an error")
	assert.Equal(t, 0, res.SyncedReplicas)
	assert.Equal(t, int64(2), primary.CommandStats(t)["wait"], "one WAIT per batch")
}

// WAIT's reply comes once the replicas acknowledged or its own timeout
// passed: the wait for it is that timeout on top of the response timeout,
// not the response timeout alone.
func TestWaitLongerThanResponseTimeout(t *testing.T) {
	fresh(t)
	c := newClient(t) // a server without replicas: WAIT runs to its timeout
	b := c.NewBatch(rbatch.WithSync(1, 400*time.Millisecond), rbatch.WithResponseTimeout(100*time.Millisecond))
	f := b.Bucket("wait:long").SetAsync("v")
	start := time.Now()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0, res.SyncedReplicas)
	assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond, "the server held WAIT's reply for its timeout")
	_, err = f.Get()
	assert.NoError(t, err)
}

// Redis answers a WAIT (or a blocking command) whose timeout passed on its
// timer, up to 1000/hz ms late (100 ms at the default hz): a short response
// timeout on top of the WAIT's does not turn that late answer into a lost one.
func TestWaitAnsweredLateByServerTimer(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.ReadTimeout = 10 * time.Millisecond })
	for i := range 5 {
		b := c.NewBatch(rbatch.WithSync(1, 50*time.Millisecond), rbatch.WithResponseTimeout(10*time.Millisecond))
		set := b.Bucket("wait:late").SetAsync(i)
		res, err := b.Execute(context.Background())
		require.NoError(t, err, "too few replicas is a figure, not an error")
		require.NoError(t, errOf(set))
		assert.Equal(t, 0, res.SyncedReplicas)

		b = c.NewBatch()
		pop := b.Do("BLPOP", "wait:late:empty", 0.05)
		_, err = b.Execute(context.Background())
		require.NoError(t, err, "BLPOP timed out: a nil reply, not an unknown outcome")
		assert.ErrorIs(t, errOf(pop), rbatch.ErrNil)
	}
}

func TestWaitAOFUnsupportedBeforeRedis72(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.RedisWriteAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSyncAOF(true, 0, time.Second))
		f := b.Bucket("aof:a").SetAsync("1")
		_, err := b.Execute(context.Background())
		assert.ErrorIs(t, err, rbatch.ErrUnsupported)
		assert.ErrorContains(t, err, "7.0")
		assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	}
	stats := srv.CommandStats(t)
	assert.Zero(t, stats["set"])
	assert.Zero(t, stats["multi"])
}

// While the server holds every client (CLIENT PAUSE), replies stop coming:
// the response timeout ends the unanswered INCRs unknown. Once the pause
// ends the server runs each of them exactly once; rbatch never re-sends them,
// even with retries on.
func TestResponseTimeoutNeverAppliesTwice(t *testing.T) {
	fresh(t)
	c := newClient(t)
	pauser := srv.Conn(t)
	_, err := pauser.Do("CLIENT", "PAUSE", 500, "ALL")
	require.NoError(t, err)

	b := c.NewBatch(rbatch.WithResponseTimeout(100*time.Millisecond), rbatch.WithRetry(3, 50*time.Millisecond))
	const n = 100
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		fs[i] = b.AtomicLong("rt:ctr").IncrementAndGetAsync()
	}
	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	applied, unknown := 0, 0
	for _, f := range fs {
		if _, err := f.Get(); err == nil {
			applied++
		} else {
			require.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
			unknown++
		}
	}
	assert.Equal(t, n, applied+unknown)
	assert.Positive(t, unknown)
	time.Sleep(600 * time.Millisecond) // the pause ends
	final, err := redis.Int64(srv.Call("GET", "rt:ctr"))
	if err != redis.ErrNil { // the server dropped the unprocessed INCRs with the connection
		require.NoError(t, err)
	}
	assert.GreaterOrEqual(t, final-int64(applied), int64(0))
	assert.LessOrEqual(t, final-int64(applied), int64(unknown))
	assert.LessOrEqual(t, calls(t, "incr"), int64(n), "no INCR was sent twice")
}

// A server busy with a long script answers BUSY; with retries the batch
// goes through once the script ends.
func TestRetryOnBusy(t *testing.T) {
	s := redistest.Standalone(t, "--busy-reply-threshold", "50")
	c := clientFor(t, s)
	// A script that spins for 400ms (it ends by itself).
	busy := `local t0 = redis.call('TIME'); while true do local t = redis.call('TIME');
		if (t[1]-t0[1])*1000000 + (t[2]-t0[2]) > 400000 then return 1 end end`
	go s.Call("EVAL", busy, 0)
	waitUntil(t, "the script runs", func() bool {
		_, err := s.Call("PING")
		return err != nil
	})

	b := c.NewBatch(rbatch.WithRetry(20, 50*time.Millisecond))
	incr := b.AtomicLong("busy:n").IncrementAndGetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	n, _ := incr.Get()
	assert.Equal(t, int64(1), n)
	assert.Greater(t, res.Nodes[0].Attempts, 1, "rejected with BUSY at least once")

	// Without retries the rejection is the command's error.
	go s.Call("EVAL", busy, 0)
	waitUntil(t, "the script runs", func() bool {
		_, err := s.Call("PING")
		return err != nil
	})
	b = c.NewBatch()
	incr = b.AtomicLong("busy:n").IncrementAndGetAsync()
	_, err = b.Execute(context.Background())
	var re *rbatch.RedisError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "BUSY", re.Prefix())
	require.ErrorAs(t, errOf(incr), &re, "the rejection is the INCR's own outcome")
	assert.Equal(t, "BUSY", re.Prefix())
	waitUntil(t, "the script ends", func() bool {
		_, err := s.Call("PING")
		return err == nil
	})
}

// Batches made without options share one BatchOptions: no mode, stream
// segment or option may change it.
func TestBatchesWithoutOptionsShareUntouchedDefaults(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	for _, opts := range [][]rbatch.Option{
		nil,
		{rbatch.WithMode(rbatch.Streaming), rbatch.WithProgress(time.Millisecond, func(rbatch.Progress) {})},
		{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult()},
		{nil},
	} {
		b := c.NewBatch(opts...)
		for i := range 50 {
			b.AtomicLong(fmt.Sprint("defaults:", i)).IncrementAndGetAsync()
		}
		_, err := b.Execute(ctx)
		require.NoError(t, err)
		plain := c.NewBatch()
		assert.Equal(t, rbatch.BatchOptions{}, plain.Options(), "after a batch with options %v", opts)
		assert.Equal(t, rbatch.BatchOptions{}, rbatch.DefaultOptions())
	}
}

// With WithSkipResult an atomic batch runs with replies off, so Redis's
// EXECABORT for a queue-time error (here SET with one argument) is never
// read: the transaction's mark, read back once replies are on, tells that
// Redis discarded it. Every command is aborted, not skipped, and Execute
// says so; a transaction that ran stays skipped.
func TestSkipResultTransactionDiscardedIsAborted(t *testing.T) {
	s := redistest.Standalone(t)
	shared := clientFor(t, s)
	own := clientFor(t, s, func(cfg *rbatch.Config) { cfg.DisableSharing = true })
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		for name, c := range map[string]*rbatch.Client{"shared": shared, "own": own} {
			s.FlushAll(t)
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
			first := b.AtomicLong("sq:n").IncrementAndGetAsync()
			bad := b.Do("SET", "sq:only")
			last := b.AtomicLong("sq:n").IncrementAndGetAsync()
			res, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrTxAborted, "%v %s", mode, name)
			assert.Contains(t, err.Error(), "EXECABORT", "%v %s", mode, name)
			assert.Equal(t, rbatch.Counts{Aborted: 3}, res.Counts, "%v %s", mode, name)
			for i, e := range []error{errOf(first), errOf(bad), errOf(last)} {
				assert.ErrorIs(t, e, rbatch.ErrTxAborted, "%v %s: command %d", mode, name, i)
			}
			v, err := s.Call("GET", "sq:n")
			require.NoError(t, err)
			assert.Nil(t, v, "%v %s: nothing applied", mode, name)

			ok := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
			ok.AtomicLong("sq:n").IncrementAndGetAsync()
			ok.AtomicLong("sq:n").IncrementAndGetAsync()
			res, err = ok.Execute(context.Background())
			require.NoError(t, err, "%v %s", mode, name)
			assert.Equal(t, rbatch.Counts{Skipped: 2}, res.Counts, "%v %s", mode, name)
			n, err := redis.Int64(s.Call("GET", "sq:n"))
			require.NoError(t, err)
			assert.Equal(t, int64(2), n, "%v %s", mode, name)
		}
	}
}

// A Redis-side batch holds a connection from its first command to EXEC.
// Opened one after another on a pool with one free connection, the first
// gets it, whatever order their sessions' goroutines run in: executed in
// the order opened, each runs as the one before gives the connection back.
func TestRedisSideBatchesTakeConnectionsInOrder(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	for round := range 20 {
		var batches []*rbatch.Batch
		var fs []*rbatch.Future[int64]
		for range 3 {
			b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
			fs = append(fs, b.AtomicLong("order:n").IncrementAndGetAsync())
			batches = append(batches, b)
		}
		for i, b := range batches {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := b.Execute(ctx)
			cancel()
			require.NoError(t, err, "round %d: batch %d", round, i)
		}
		for i, f := range fs {
			v, err := f.Get()
			require.NoError(t, err)
			assert.Equal(t, int64(3*round+i+1), v, "round %d: batch %d ran in its turn", round, i)
		}
	}
}

// WithSync(n, 0) waits for the replicas however long it takes, as WAIT n 0
// does: only the context ends it, in a stream as in one batch, even where
// ReadTimeout is short. Its writes stay applied; the WAIT is unanswered.
func TestWaitForeverEndsOnlyWithTheContext(t *testing.T) {
	c := newClient(t, func(cfg *rbatch.Config) { cfg.ReadTimeout = 200 * time.Millisecond })
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSync(1, 0)) // srv has no replica
		set := b.Bucket("wf:k").SetAsync("v")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		res, err := b.Execute(ctx)
		took := time.Since(start)
		cancel()
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome, mode)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "%s: the context ended the WAIT, not ReadTimeout", mode)
		assert.GreaterOrEqual(t, took, 900*time.Millisecond, mode)
		assert.NoError(t, errOf(set), mode)
		assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts, mode)
	}
}
