package rbatch_test

// Real-server checks of rbatch's per-command promises that the fake-socket tests
// (faults_test.go, wire_test.go) only exercise against scripted replies.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// proxiedClient connects a client to p, with short timeouts.
func proxiedClient(t *testing.T, p *redistest.Proxy, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	timeouts := func(cfg *rbatch.Config) { cfg.DialTimeout, cfg.ReadTimeout = time.Second, 3*time.Second }
	return clientAt(t, p.Addr, append([]func(*rbatch.Config){timeouts}, mods...)...)
}

// rejectedCalls reads how many calls of cmd the server refused (INFO
// commandstats' rejected_calls).
func rejectedCalls(t *testing.T, s *redistest.Server, cmd string) int {
	t.Helper()
	v := s.Info(t, "commandstats")["cmdstat_"+cmd]
	_, rest, ok := strings.Cut(v, "rejected_calls=")
	require.True(t, ok, "cmdstat_%s:%s", cmd, v)
	var n int
	_, err := fmt.Sscanf(rest, "%d", &n)
	require.NoError(t, err, "cmdstat_%s:%s", cmd, v)
	return n
}

// MASTERDOWN is retried after RetryInterval, and RetryAttempts bounds it:
// a replica that refuses stale reads answers MASTERDOWN to 1 + 3 rounds,
// then the command keeps the server's error.
func TestSemanticsMasterDownRetriesAreBounded(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t, "--replica-serve-stale-data", "no")
	primary.MustDo(t, "SET", "md:k", "v")
	primary.WaitReplicated(t, 1)
	c := clientFor(t, primary, func(cfg *rbatch.Config) {
		cfg.ReadFrom = rbatch.Replica
		cfg.DialTimeout = 500 * time.Millisecond
	})

	primary.Stop()
	waitUntil(t, "the replica sees its primary gone", func() bool {
		return replica.Info(t, "replication")["master_link_status"] == "down"
	})
	replica.ResetStats(t)

	b := c.NewBatch(rbatch.WithRetry(3, 20*time.Millisecond))
	get := b.Bucket("md:k").GetAsync()
	res, err := b.Execute(context.Background())
	var re *rbatch.RedisError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "MASTERDOWN", re.Prefix())
	require.ErrorAs(t, errOf(get), &re)
	assert.Equal(t, "MASTERDOWN", re.Prefix())
	assert.NotErrorIs(t, errOf(get), rbatch.ErrUnknownOutcome)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, replica.Addr, res.Nodes[0].Addr, "the GET went to the replica")
	assert.Equal(t, 4, res.Nodes[0].Attempts, "1 attempt + 3 retries")
	assert.Equal(t, 4, rejectedCalls(t, replica, "get"), "the replica refused the GET 4 times")

	// The cleanup PINGs the pooled connections, which the replica refuses
	// (MASTERDOWN) until its primary is back.
	require.NoError(t, primary.Restart())
	waitUntil(t, "the replica is linked again", func() bool {
		return replica.Info(t, "replication")["master_link_status"] == "up"
	})
	// The client's first connection (to the primary) died with the old
	// process: this batch finds it broken and drops it from the pool.
	probe := c.NewBatch()
	probe.Do("DEL", "md:probe")
	_, _ = probe.Execute(context.Background())
}

// REDIS_WRITE_ATOMIC: the connection drops while the transaction is being
// queued in Redis, before EXEC. Redis discards an unfinished MULTI, so every
// command is aborted (not applied), never unknown.
func TestSemanticsWriteAtomicCutBeforeExecAborts(t *testing.T) {
	s := redistest.Standalone(t)
	p := redistest.NewProxy(t, s.Addr)
	c := proxiedClient(t, p, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	p.SetFault(redistest.Fault{Kind: redistest.CutAtCommand, Command: "INCR", Nth: 2, Once: true})
	s.ResetStats(t)

	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	fs := []*rbatch.Future[int64]{
		b.AtomicLong("cut:a").IncrementAndGetAsync(),
		b.AtomicLong("cut:b").IncrementAndGetAsync(), // the proxy cuts here
	}
	waitUntil(t, "the proxy cut the connection", func() bool { return p.Fired() == 1 })
	time.Sleep(50 * time.Millisecond) // the batch's reader sees the end
	fs = append(fs, b.AtomicLong("cut:c").IncrementAndGetAsync())
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrTxAborted)
	assert.NotErrorIs(t, err, rbatch.ErrUnknownOutcome)
	for i, f := range fs {
		assert.ErrorIs(t, errOf(f), rbatch.ErrTxAborted, "future %d", i)
		assert.NotErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome, "future %d", i)
	}
	waitUntil(t, "the server closed the cut connection", func() bool { return p.Conns() == 0 })
	stats := s.CommandStats(t)
	assert.Equal(t, int64(1), stats["multi"], "the transaction was opened")
	assert.Zero(t, stats["exec"], "EXEC never reached the server")
	assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing applied")
}

// REDIS_WRITE_ATOMIC: the server closes the connection while the batch,
// its commands queued and answered QUEUED, waits to be executed. The
// closed connection discarded the MULTI: EXEC is not written into it, and
// every command is aborted, not unknown.
func TestSemanticsWriteAtomicKilledWhileWaitingAborts(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	for round := range 10 {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		f := b.AtomicLong("kw:n").IncrementAndGetAsync()
		waitUntil(t, "the INCR is queued in Redis", func() bool {
			return strings.Contains(string(s.MustDo(t, "CLIENT", "LIST").([]byte)), "multi=1")
		})
		time.Sleep(20 * time.Millisecond) // its QUEUED is read
		s.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
		waitUntil(t, "the batch's connection is gone", func() bool {
			return !strings.Contains(string(s.MustDo(t, "CLIENT", "LIST").([]byte)), "multi=1")
		})
		res, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrTxAborted, "round %d", round)
		assert.NotErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome, "round %d", round)
		assert.Equal(t, rbatch.Counts{Aborted: 1}, res.Counts, "round %d", round)
	}
	assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing applied")
}

// executeAborted executes the Redis-side batch b and checks that it ended
// aborted, every one of its futures with it (what names the case).
func executeAborted(t *testing.T, what string, b *rbatch.Batch, futures ...interface{ Get() (string, error) }) {
	t.Helper()
	res, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrTxAborted, what)
	assert.Equal(t, rbatch.Counts{Aborted: len(futures)}, res.Counts, "%s: %v", what, err)
	for _, f := range futures {
		_, ferr := f.Get()
		assert.ErrorIs(t, ferr, rbatch.ErrTxAborted, what)
	}
}

// The same kill, then one more command queued before Execute: the MULTI
// was discarded with the connection, so the command queued into the dead
// connection and the one before it both end aborted, not unknown, and EXEC
// never reaches Redis.
func TestSemanticsRedisSideKilledThenQueuedMoreAborts(t *testing.T) {
	for _, mode := range redisSideModes {
		t.Run(mode.String(), func(t *testing.T) {
			s := redistest.Standalone(t)
			c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			for round := range 5 {
				b := c.NewBatch(rbatch.WithMode(mode))
				first := queueOne(b, mode, "kq:n")
				waitUntil(t, "queued in Redis", func() bool { return clientInMulti(t, s) == 1 })
				time.Sleep(20 * time.Millisecond) // its QUEUED is read
				s.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
				waitUntil(t, "the batch's connection is gone", func() bool { return clientInMulti(t, s) == -1 })
				second := queueOne(b, mode, "kq:n")
				executeAborted(t, fmt.Sprintf("round %d", round), b, first, second)
			}
			assert.Zero(t, s.CommandStats(t)["exec"], "EXEC never reached Redis")
			assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing applied")
		})
	}
}

// A Redis-side batch whose server stops answering while it is filled ends
// aborted: the response timeout bounds each QUEUED reply once its command
// was written, so the connection is dropped (discarding the MULTI) before
// EXEC is ever sent, even when the server answers again by Execute.
func TestSemanticsRedisSideStallWhileFilledAborts(t *testing.T) {
	for _, mode := range redisSideModes {
		t.Run(mode.String(), func(t *testing.T) {
			s := redistest.Standalone(t)
			c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithResponseTimeout(150*time.Millisecond))
			first := queueOne(b, mode, "ks:n")
			waitUntil(t, "queued in Redis", func() bool { return clientInMulti(t, s) == 1 })
			time.Sleep(20 * time.Millisecond) // its QUEUED is read
			resume := stopServer(t, s)
			second := queueOne(b, mode, "ks:n")
			time.Sleep(600 * time.Millisecond) // four response timeouts
			resume()
			executeAborted(t, "stalled", b, first, second)
			assert.Zero(t, s.CommandStats(t)["exec"], "EXEC never reached Redis")
			assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing applied")
		})
	}
}

// A Redis-side batch filled slowly, with pauses longer than its response
// timeout between commands and before Execute, is not cut by it: the
// timeout bounds each reply once its command is written, not the user's
// pauses.
func TestSemanticsRedisSideSlowFillKeepsItsTimeout(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprintf("skip=%v", skip), func(t *testing.T) {
			s := redistest.Standalone(t)
			c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			opts := []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithResponseTimeout(80 * time.Millisecond)}
			if skip {
				opts = append(opts, rbatch.WithSkipResult())
			}
			b := c.NewBatch(opts...)
			for range 3 {
				b.AtomicLong("slow:n").IncrementAndGetAsync()
				time.Sleep(200 * time.Millisecond)
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			want := rbatch.Counts{Applied: 3}
			if skip {
				want = rbatch.Counts{Skipped: 3}
			}
			assert.Equal(t, want, res.Counts)
			n, _ := redis.Int(s.MustDo(t, "GET", "slow:n"), nil)
			assert.Equal(t, 3, n)

			// Discarded after a pause as long: DISCARD's reply is waited for.
			b = c.NewBatch(opts...)
			f := b.AtomicLong("slow:n").IncrementAndGetAsync()
			time.Sleep(200 * time.Millisecond)
			require.NoError(t, b.Discard(context.Background()))
			assert.ErrorIs(t, errOf(f), rbatch.ErrDiscarded)
			n, _ = redis.Int(s.MustDo(t, "GET", "slow:n"), nil)
			assert.Equal(t, 3, n, "nothing of the discarded batch applied")
			after := c.NewBatch()
			after.Bucket("slow:after").SetAsync("v")
			_, err = after.Execute(context.Background())
			require.NoError(t, err, "the connection is usable after")
		})
	}
}

// A pipeline whose replies stop after the first: the answered INCR keeps its
// value, the unanswered INCR is unknown and never re-sent, and the unanswered
// GET (read-only) is read again on a new connection.
func TestSemanticsReadOnlyUnknownIsResent(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "SET", "ro:b", "v")
	p := redistest.NewProxy(t, s.Addr)
	c := proxiedClient(t, p)
	// The batch runs on the client's first (idle) connection: let the
	// first reply (":1\r\n") through, then cut it. Once: the retry's new
	// connection is not cut.
	p.SetFault(redistest.Fault{Kind: redistest.Cut, Dir: redistest.ToClient, AfterBytes: 4, Once: true})
	s.ResetStats(t)

	b := c.NewBatch(rbatch.WithRetry(2, 10*time.Millisecond))
	first := b.AtomicLong("ro:a").IncrementAndGetAsync()
	second := b.AtomicLong("ro:a").IncrementAndGetAsync()
	get := b.Bucket("ro:b").GetAsync()
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	assert.Equal(t, 1, p.Fired())

	n, ferr := first.Get()
	assert.NoError(t, ferr)
	assert.Equal(t, int64(1), n)
	assert.ErrorIs(t, errOf(second), rbatch.ErrUnknownOutcome)
	v, gerr := get.Get()
	assert.NoError(t, gerr, "the GET was read again")
	assert.Equal(t, "v", v)
	require.Len(t, res.Responses, 3)
	assert.Equal(t, int64(1), res.Responses[0])
	assert.ErrorIs(t, res.Responses[1].(error), rbatch.ErrUnknownOutcome)
	assert.Equal(t, "v", res.Responses[2])

	stats := s.CommandStats(t)
	assert.Equal(t, int64(2), stats["incr"], "the unknown INCR was not re-sent")
	assert.Equal(t, int64(2), stats["get"], "the unknown GET was re-sent once")
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, 2, res.Nodes[0].Attempts)
	assert.Equal(t, []byte("2"), s.MustDo(t, "GET", "ro:a"), "both INCRs ran on the server, once each")
}

// A server that cannot be dialed, with no retries: nothing was written, so
// every command ends not sent (safe to retry), none unknown, none applied.
func TestSemanticsDialFailureIsNotSent(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.DialTimeout = 200 * time.Millisecond })
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			require.Error(t, stopLeavingNoConnection(t, s, c))

			b := c.NewBatch(rbatch.WithMode(mode))
			incr := b.AtomicLong("nd:n").IncrementAndGetAsync()
			set := b.Bucket("nd:s").SetAsync("x")
			get := b.Bucket("nd:s").GetAsync()
			res, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.NotErrorIs(t, err, rbatch.ErrUnknownOutcome)
			assert.NotErrorIs(t, err, rbatch.ErrTxAborted)
			for i, e := range []error{errOf(incr), errOf(set), errOf(get)} {
				assert.ErrorIs(t, e, rbatch.ErrNotSent, "command %d", i)
				assert.NotErrorIs(t, e, rbatch.ErrUnknownOutcome, "command %d", i)
			}
			for _, nr := range res.Nodes {
				assert.Equal(t, 1, nr.Attempts, "no retries asked for")
			}

			require.NoError(t, s.Restart())
			assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "nd:n", "nd:s"), "nothing applied")
			assert.Zero(t, s.CommandStats(t)["incr"])
		})
	}
}

// BatchResult.SyncedReplicas is the fewest replicas that acknowledged on any
// node involved: one primary whose replica cannot acknowledge (paused) drags
// the batch's figure to 0 while the others report 1.
func TestSemanticsSyncedReplicasIsTheMinimum(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)

	// One key per primary.
	keys := map[*redistest.Server]string{}
	for i := 0; len(keys) < len(cl.Primaries); i++ {
		k := fmt.Sprintf("sync:%d", i)
		owner := cl.OwnerOf(t, route.Slot(k))
		if _, ok := keys[owner]; !ok {
			keys[owner] = k
		}
		require.Less(t, i, 1000)
	}
	slow := cl.Primaries[0]
	paused := cl.ReplicaOf(t, slow)
	for _, p := range cl.Primaries {
		p.WaitReplicated(t, 1) // nothing outstanding before the batch
	}
	paused.MustDo(t, "CLIENT", "PAUSE", 3000, "WRITE")
	t.Cleanup(func() { paused.MustDo(t, "CLIENT", "UNPAUSE") })

	b := c.NewBatch(rbatch.WithSync(1, 300*time.Millisecond))
	sets := map[string]*rbatch.Future[struct{}]{}
	for _, p := range cl.Primaries {
		sets[p.Addr] = b.Bucket(keys[p]).SetAsync(p.Addr)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err, "too few replicas is a figure, not an error")
	for addr, f := range sets {
		assert.NoError(t, errOf(f), addr)
	}
	require.Len(t, res.Nodes, 3)
	for _, nr := range res.Nodes {
		want := 1
		if nr.Addr == slow.Addr {
			want = 0
		}
		assert.Equal(t, want, nr.SyncedReplicas, "node %s (paused replica under %s)", nr.Addr, slow.Addr)
	}
	assert.Equal(t, 0, res.SyncedReplicas, "the minimum over the nodes, not the sum (2) or the maximum (1)")

	// Unpaused, the replica catches up: it was only slow, and WAIT said so.
	paused.MustDo(t, "CLIENT", "UNPAUSE")
	slow.WaitReplicated(t, 1)
}
