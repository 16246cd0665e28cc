package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// failoverCounters are INCR counters spread over every primary's slots.
const failoverCounters = 48

// tally is what the batches learnt about each counter's INCRs.
type tally struct {
	mu                        sync.Mutex // guards the slices
	applied, unknown, notSent []int64
	notSentErr                error // the first not-sent cause, for the report
}

func newTally() *tally {
	return &tally{
		applied: make([]int64, failoverCounters),
		unknown: make([]int64, failoverCounters),
		notSent: make([]int64, failoverCounters),
	}
}

func (t *tally) add(fs []*rbatch.Future[int64]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, f := range fs {
		_, err := f.Get()
		switch {
		case err == nil:
			t.applied[k]++
		case errors.Is(err, rbatch.ErrUnknownOutcome):
			t.unknown[k]++
		default:
			t.notSent[k]++
			if t.notSentErr == nil {
				t.notSentErr = err
			}
		}
	}
}

// partialCoverage lets the healthy primaries serve their slots while
// another's have no primary. With Redis's default (full coverage required)
// they answer CLUSTERDOWN instead, which rbatch retries alike.
var partialCoverage = []string{"--cluster-require-full-coverage", "no"}

func counterKey(k int) string { return fmt.Sprintf("failover:%d", k) }

// keysOnAndOff returns a counter key whose slot victim owns and one whose
// slot it does not.
func keysOnAndOff(t *testing.T, cl *redistest.Cluster, victim *redistest.Server) (on, off string) {
	for k := 0; on == "" || off == ""; k++ {
		key := counterKey(k)
		if cl.OwnerOf(t, route.Slot(key)) == victim {
			on = key
		} else {
			off = key
		}
	}
	return on, off
}

// runFailover runs batches of INCRs on every counter from a few goroutines
// while change changes the cluster's topology, and checks what the
// batches said against what the servers hold: no command ends not sent
// while the retry budget lasts, commands for the healthy primaries keep
// being applied during the change, and no INCR is lost or applied twice.
func runFailover(t *testing.T, cl *redistest.Cluster, victim *redistest.Server, change func()) {
	ctx := context.Background()
	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: cl.Addrs()})
	require.NoError(t, err)
	defer c.Close()

	var healthy []int // counters whose slot the victim does not own
	for k := range failoverCounters {
		if cl.OwnerOf(t, route.Slot(counterKey(k))) != victim {
			healthy = append(healthy, k)
		}
	}
	require.NotEmpty(t, healthy)
	require.Less(t, len(healthy), failoverCounters, "some counter lives on the victim")

	tl := newTally()
	stop := make(chan struct{})
	var batches atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second) // bounded whatever happens
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				b := c.NewBatch(rbatch.WithRetry(60, 100*time.Millisecond), rbatch.WithResponseTimeout(2*time.Second))
				fs := make([]*rbatch.Future[int64], failoverCounters)
				for k := range fs {
					fs[k] = b.AtomicLong(counterKey(k)).IncrementAndGetAsync()
				}
				b.Execute(ctx)
				tl.add(fs)
				batches.Add(1)
			}
		}()
	}
	healthySum := func() int64 {
		var sum int64
		for _, k := range healthy {
			n, err := redis.Int64(cl.OwnerOf(t, route.Slot(counterKey(k))).Call("GET", counterKey(k)))
			if err == nil || errors.Is(err, redis.ErrNil) {
				sum += n
			}
		}
		return sum
	}

	time.Sleep(300 * time.Millisecond)
	done := make(chan struct{})
	before := healthySum()
	go func() { defer close(done); change() }()
	// While the victim's slots move, the healthy primaries keep applying.
	grew := false
	for sample := before; !grew; {
		select {
		case <-done: // a change quicker than a sample: its last look is now
			grew = healthySum() > sample
		case <-time.After(200 * time.Millisecond):
			now := healthySum()
			grew, sample = now > sample, now
			continue
		}
		break
	}
	<-done
	time.Sleep(500 * time.Millisecond) // batches reach the new primary
	close(stop)
	wg.Wait()

	var applied, unknown, notSent int64
	for k := range failoverCounters {
		final, err := redis.Int64(cl.OwnerOf(t, route.Slot(counterKey(k))).Call("GET", counterKey(k)))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, final-tl.applied[k], int64(0), "counter %d: no applied INCR lost", k)
		assert.LessOrEqual(t, final-tl.applied[k], tl.unknown[k], "counter %d: nothing applied beyond the unknown ones", k)
		applied, unknown, notSent = applied+tl.applied[k], unknown+tl.unknown[k], notSent+tl.notSent[k]
	}
	t.Logf("%d batches: applied %d, unknown %d, not sent %d", batches.Load(), applied, unknown, notSent)
	assert.Zero(t, notSent, "no command ends not sent while the retry budget lasts: %v", tl.notSentErr)
	assert.True(t, grew, "commands for the healthy primaries were applied while the victim's slots moved")
}

// A primary killed with SIGKILL: until its replica is promoted its slots
// are served by no one; the batches wait for them within WithRetry while
// the commands for the other primaries go ahead.
func TestFailoverKilledPrimary(t *testing.T) {
	cl := redistest.NewCluster(t, partialCoverage...)
	victim := cl.Primaries[1]
	runFailover(t, cl, victim, func() { cl.KillPrimary(t, victim) })
}

// A coordinated CLUSTER FAILOVER: the old primary answers MOVED and the
// batches follow it.
func TestFailoverGraceful(t *testing.T) {
	cl := redistest.NewCluster(t, partialCoverage...)
	victim := cl.Primaries[0]
	runFailover(t, cl, victim, func() { cl.Failover(t, victim) })
}

// Without a retry budget, the commands of an unserved slot end not sent at
// once with ErrSlotNotServed, and those of served slots are applied.
func TestUnservedSlotWithoutRetry(t *testing.T) {
	cl := redistest.NewCluster(t, partialCoverage...)
	victim := cl.Primaries[2]
	ctx := context.Background()
	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: cl.Addrs()})
	require.NoError(t, err)
	defer c.Close()
	onVictim, elsewhere := keysOnAndOff(t, cl, victim)
	victim.Kill()
	// Wait until the other nodes mark the victim failed: from then on its
	// slots have no primary in the slot map (the replica may be promoted
	// soon after, so a batch that finds the slot served again is retried).
	var res []error
	require.Eventually(t, func() bool {
		b := c.NewBatch()
		fv := b.AtomicLong(onVictim).IncrementAndGetAsync()
		fe := b.AtomicLong(elsewhere).IncrementAndGetAsync()
		b.Execute(ctx)
		_, errV := fv.Get()
		_, errE := fe.Get()
		res = []error{errV, errE}
		return errors.Is(errV, rbatch.ErrSlotNotServed)
	}, 20*time.Second, 50*time.Millisecond, "the victim's slot became unserved")
	assert.ErrorIs(t, res[0], rbatch.ErrNotSent)
	assert.NoError(t, res[1], "a command for a served slot went ahead")
}

// A shard with no live node (its primary and replica both killed): its
// slot stays unserved. Commands for it end not sent with ErrSlotNotServed
// once the retry budget is spent, while other slots are served; a
// Redis-side transaction queued meanwhile waits for its slot, and runs
// once when the primary comes back within the budget.
func TestUnservedSlotRetryBudget(t *testing.T) {
	cl := redistest.NewCluster(t, partialCoverage...)
	victim := cl.Primaries[0]
	replica := cl.ReplicaOf(t, victim)
	ctx := context.Background()
	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: cl.Addrs()})
	require.NoError(t, err)
	defer c.Close()
	onVictim, elsewhere := keysOnAndOff(t, cl, victim)
	replica.Kill()
	victim.Kill()
	require.Eventually(t, func() bool {
		b := c.NewBatch()
		f := b.AtomicLong(onVictim).IncrementAndGetAsync()
		b.Execute(ctx)
		_, err := f.Get()
		return errors.Is(err, rbatch.ErrSlotNotServed)
	}, 20*time.Second, 50*time.Millisecond, "the victim's slot became unserved")

	t.Run("InMemory: the budget spent, not sent", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithRetry(3, 50*time.Millisecond))
		fv := b.AtomicLong(onVictim).IncrementAndGetAsync()
		fe := b.AtomicLong(elsewhere).IncrementAndGetAsync()
		start := time.Now()
		res, err := b.Execute(ctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, rbatch.ErrSlotNotServed)
		assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "three retries waited")
		_, errV := fv.Get()
		assert.ErrorIs(t, errV, rbatch.ErrNotSent)
		assert.ErrorIs(t, errV, rbatch.ErrSlotNotServed)
		n, errE := fe.Get()
		assert.NoError(t, errE, "the served slot's command went ahead")
		assert.Equal(t, int64(1), n)
		assert.NotEmpty(t, res.Nodes)
	})
	t.Run("RedisWriteAtomic without retry: not sent", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
		f := b.AtomicLong(onVictim).IncrementAndGetAsync()
		_, err := b.Execute(ctx)
		assert.ErrorIs(t, err, rbatch.ErrSlotNotServed)
		_, err = f.Get()
		assert.ErrorIs(t, err, rbatch.ErrNotSent)
	})
	t.Run("RedisWriteAtomic waits for the primary to come back", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithRetry(150, 100*time.Millisecond))
		f1 := b.AtomicLong(onVictim).IncrementAndGetAsync()
		f2 := b.AtomicLong(onVictim).IncrementAndGetAsync()
		done := b.ExecuteAsync(ctx)
		time.Sleep(200 * time.Millisecond)
		require.NoError(t, victim.Restart())
		res, err := done.Wait(ctx)
		require.NoError(t, err)
		v1, _ := f1.Get()
		v2, _ := f2.Get()
		assert.Equal(t, []int64{1, 2}, []int64{v1, v2}, "one transaction, applied once")
		got, err := redis.Int64(victim.Call("GET", onVictim))
		require.NoError(t, err)
		assert.Equal(t, int64(2), got)
		assert.Greater(t, res.Nodes[0].Attempts, 0)
	})
}

// waitReplicasKnown waits until every node's CLUSTER SHARDS shows one
// online replica for every shard: a client may load its slot map from any
// of them, and one that lags would send a shard's reads to its primary.
func waitReplicasKnown(t *testing.T, cl *redistest.Cluster) {
	require.Eventually(t, func() bool {
		for _, n := range cl.Nodes() {
			shards, err := route.ParseShards(n.MustDo(t, "CLUSTER", "SHARDS"), false)
			if err != nil || len(shards) != len(cl.Primaries) {
				return false
			}
			for _, s := range shards {
				if len(s.Replicas) != 1 {
					return false
				}
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "every primary reports every shard's replica online")
}

// shardReplicas lists the online replicas of primary that CLUSTER SHARDS
// reports.
func shardReplicas(t *testing.T, primary *redistest.Server) []string {
	shards, err := route.ParseShards(primary.MustDo(t, "CLUSTER", "SHARDS"), false)
	require.NoError(t, err)
	for _, s := range shards {
		if s.Primary == primary.Addr {
			return s.Replicas
		}
	}
	return nil
}

// A client whose slot map was loaded while a replica was not online (a
// client started with its cluster) learns of it once it is: read-only work
// for ReadFrom Replica that had to go to the primary reloads the map, at
// most once a second.
func TestReadFromReplicaLearnsLateReplicas(t *testing.T) {
	cl := redistest.NewCluster(t)
	primary := cl.Primaries[0]
	replica := cl.ReplicaOf(t, primary)
	key, _ := keysOnAndOff(t, cl, primary)
	primary.MustDo(t, "SET", key, "v")
	replica.Kill()
	require.Eventually(t, func() bool { return len(shardReplicas(t, primary)) == 0 },
		20*time.Second, 50*time.Millisecond, "the primary reports its replica failed")

	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	read := func() string {
		b := c.NewBatch()
		get := b.Bucket(key).GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, _ := get.Get()
		assert.Equal(t, "v", v)
		return res.Nodes[0].Addr
	}
	assert.Equal(t, primary.Addr, read(), "no replica known: the primary serves the read")

	require.NoError(t, replica.Restart())
	require.Eventually(t, func() bool { return len(shardReplicas(t, primary)) == 1 },
		20*time.Second, 50*time.Millisecond, "the replica is online again")
	require.Eventually(t, func() bool { return read() == replica.Addr },
		10*time.Second, 100*time.Millisecond, "reads reach the replica once the client reloaded its map")
}

// After a coordinated failover the client's slot map is stale until a
// MOVED: the old primary, a replica now, redirects the batch's commands to
// the new one. A WithSync batch waits on the node that applied them — the
// old primary's WAIT (refused there: it is a replica) acknowledges nothing
// of the batch — in every mode that sends WAIT.
func TestFailoverStaleMapWithSync(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	victims := slices.Clone(cl.Primaries) // one per mode: a node just failed over to takes a while to fail over again
	want := map[string]int64{}
	incr := func(b *rbatch.Batch, key string) *rbatch.Future[int64] {
		want[key]++
		return b.AtomicLong(key).IncrementAndGetAsync()
	}
	warm := c.NewBatch()
	for k := range failoverCounters {
		incr(warm, counterKey(k))
	}
	_, err := warm.Execute(context.Background())
	require.NoError(t, err)

	for i, tc := range []struct {
		name   string
		mode   rbatch.ExecutionMode
		atomic bool
	}{
		{"IN_MEMORY", rbatch.InMemory, false},
		{"IN_MEMORY_ATOMIC", rbatch.InMemoryAtomic, true},
		{"STREAMING", rbatch.Streaming, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			on, off := keysOnAndOff(t, cl, victims[i])
			keys := []string{on, off}
			if tc.atomic {
				keys = keys[:1]
			}
			cl.Failover(t, victims[i]) // the client still has it as the owner
			b := c.NewBatch(rbatch.WithMode(tc.mode), rbatch.WithSync(1, 2*time.Second))
			fs := map[string]*rbatch.Future[int64]{}
			for _, k := range keys {
				fs[k] = incr(b, k)
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err, "every command applied on its owner, and acknowledged there")
			assert.Equal(t, rbatch.Counts{Applied: len(keys)}, res.Counts)
			assert.Equal(t, 1, res.SyncedReplicas)
			assert.Positive(t, moved(res), "the batch met the stale map")
			for k, f := range fs {
				v, err := f.Get()
				require.NoError(t, err)
				assert.Equal(t, want[k], v, k)
				got, err := redis.Int64(cl.OwnerOf(t, route.Slot(k)).Call("GET", k))
				require.NoError(t, err)
				assert.Equal(t, want[k], got, "%s applied once", k)
			}
		})
	}
}

// Behind a stale slot map, the old primary (a replica now) redirects reads
// as it does writes: a GET queued after a SET in the batch sees the SET,
// and one alone is answered by the new primary, never from the replica's
// copy. Reads sent to a replica on purpose (ReadFrom Replica) still are.
func TestFailoverStaleMapReads(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	victims := slices.Clone(cl.Primaries)
	// Written early: Redis 7.0 lists a replica in CLUSTER SHARDS as online
	// only once gossip carried a replication offset past 0 for it.
	k, _ := keysOnAndOff(t, cl, victims[2])
	_, err := victims[2].Call("SET", k, "r")
	require.NoError(t, err)
	for i, withSet := range []bool{true, false} {
		on, _ := keysOnAndOff(t, cl, victims[i])
		warm := c.NewBatch()
		warm.Bucket(on).SetAsync("old")
		warm.Bucket(on).GetAsync()
		_, err := warm.Execute(context.Background())
		require.NoError(t, err)
		replica := cl.ReplicaOf(t, victims[i])
		require.Eventually(t, func() bool { // a read there would answer "old"
			return replicaGet(t, replica, on) == "old"
		}, 5*time.Second, 10*time.Millisecond)

		cl.Failover(t, victims[i]) // the client still has it as the owner
		b := c.NewBatch()
		if withSet {
			b.Bucket(on).SetAsync("new")
		} else {
			_, err = cl.OwnerOf(t, route.Slot(on)).Call("SET", on, "new")
			require.NoError(t, err)
		}
		victims[i].ResetStats(t)
		get := b.Bucket(on).GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, err := get.Get()
		require.NoError(t, err)
		assert.Equal(t, "new", v, "with a SET before it %v: the read follows the MOVED", withSet)
		assert.Zero(t, victims[i].CommandStats(t)["get"], "the demoted primary answered no read")
		assert.Positive(t, moved(res), "the batch met the stale map")
	}

	// Replica reads still reach a replica.
	replica := cl.ReplicaOf(t, cl.OwnerOf(t, route.Slot(k)))
	require.Eventually(t, func() bool { return replicaGet(t, replica, k) == "r" }, 5*time.Second, 10*time.Millisecond)
	waitReplicasKnown(t, cl) // after two failovers, gossip may lag on a replica's offset
	replica.ResetStats(t)
	replicaReads := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	b := replicaReads.NewBatch()
	get := b.Bucket(k).GetAsync()
	rr, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, replica.Addr, rr.Nodes[0].Addr)
	v, err := get.Get()
	require.NoError(t, err)
	assert.Equal(t, "r", v)
	assert.Positive(t, replica.CommandStats(t)["get"], "ReadFrom Replica reads on the replica")

	// Its shared connection to the primary, taken without READONLY, is
	// retired when a failover makes that node a replica: reads reach it.
	w := replicaReads.NewBatch()
	w.Bucket(k).SetAsync("r1")
	_, err = w.Execute(context.Background())
	require.NoError(t, err)
	cl.Failover(t, victims[2])
	w = replicaReads.NewBatch()
	w.Bucket(k).SetAsync("r2")
	res, err := w.Execute(context.Background())
	require.NoError(t, err)
	assert.Positive(t, moved(res), "the write met the stale map, which was reloaded")
	require.Eventually(t, func() bool { return replicaGet(t, victims[2], k) == "r2" }, 5*time.Second, 10*time.Millisecond)
	victims[2].ResetStats(t)
	for range 3 {
		b := replicaReads.NewBatch()
		get := b.Bucket(k).GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		assert.Zero(t, moved(res), "the read is not redirected")
		v, err := get.Get()
		require.NoError(t, err)
		assert.Equal(t, "r2", v)
	}
	assert.EqualValues(t, 3, victims[2].CommandStats(t)["get"], "the demoted primary serves replica reads")
}

// replicaGet reads key on a cluster replica, as a READONLY connection does.
func replicaGet(t *testing.T, replica *redistest.Server, key string) string {
	conn, err := replica.Dial()
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Do("READONLY")
	require.NoError(t, err)
	v, _ := redis.String(conn.Do("GET", key))
	return v
}

// moved counts the commands res's nodes redirected with MOVED.
func moved(res *rbatch.BatchResult) int {
	n := 0
	for _, nr := range res.Nodes {
		n += nr.Moved
	}
	return n
}

// A replica taken out of the cluster as `redis-cli --cluster del-node`
// takes it (CLUSTER FORGET on every other node, CLUSTER RESET SOFT on it)
// keeps running, answering CLUSTERDOWN for its old slots. A ReadFrom=Replica
// client reloads its slot map on CLUSTERDOWN: the retry reads on the
// primary, and later batches do not go to the removed node.
func TestReadFromReplicaRemovedFromTheCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	waitReplicasKnown(t, cl)
	primary := cl.Primaries[0]
	replica := cl.ReplicaOf(t, primary)
	on, _ := keysOnAndOff(t, cl, primary)
	primary.MustDo(t, "SET", on, "v")
	primary.WaitReplicated(t, 1)
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: cl.Addrs()[:1], ReadFrom: rbatch.Replica})
	require.NoError(t, err)
	defer c.Close()
	read := func(opts ...rbatch.Option) (*rbatch.BatchResult, string, error) {
		b := c.NewBatch(opts...)
		f := b.Bucket(on).GetAsync()
		res, _ := b.Execute(context.Background())
		v, err := f.Get()
		return res, v, err
	}
	res, v, err := read()
	require.NoError(t, err)
	require.Equal(t, "v", v)
	require.Equal(t, replica.Addr, res.Nodes[0].Addr, "read on the replica")

	id := cl.NodeID(replica)
	for _, s := range cl.Nodes() {
		if s != replica {
			s.MustDo(t, "CLUSTER", "FORGET", id)
		}
	}
	replica.MustDo(t, "CLUSTER", "RESET", "SOFT")

	res, v, err = read(rbatch.WithRetry(3, 50*time.Millisecond))
	require.NoError(t, err, "retried after the map was reloaded")
	assert.Equal(t, "v", v)
	for i := range 5 {
		res, v, err = read(rbatch.WithMode(rbatch.RedisReadAtomic))
		require.NoError(t, err, "batch %d", i)
		assert.Equal(t, "v", v)
		assert.NotEqual(t, replica.Addr, res.Nodes[0].Addr, "the removed node is not read from")
	}
}
