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
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// sharedCluster is started by the first test that needs it and stopped by
// TestMain. Tests that change its topology start their own.
var (
	sharedOnce    sync.Once
	sharedCluster *redistest.Cluster
	sharedErr     error
)

func cluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	sharedOnce.Do(func() { sharedCluster, sharedErr = redistest.StartCluster() })
	require.NoError(t, sharedErr)
	return sharedCluster
}

func closeSharedCluster() {
	if sharedCluster != nil {
		sharedCluster.Close()
	}
}

func clusterClient(t testing.TB, cl *redistest.Cluster, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	cfg := rbatch.Config{Addrs: cl.Addrs()[:1]}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := rbatch.NewClient(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { closeClean(t, c) })
	return c
}

// ownerAndOther returns the primary that owns slot and another primary, to
// move the slot to.
func ownerAndOther(t testing.TB, cl *redistest.Cluster, slot int) (owner, other *redistest.Server) {
	t.Helper()
	owner, other = cl.OwnerOf(t, slot), cl.Primaries[0]
	if other == owner {
		other = cl.Primaries[1]
	}
	return owner, other
}

// midMigration starts moving tag's slot (tag is "{name}") to another
// primary, with keys set to "old" on its owner and the first of them
// already moved: the source then answers ASK for that one, serves the
// others, and answers TRYAGAIN for a command naming both kinds.
func midMigration(t *testing.T, cl *redistest.Cluster, tag string, keys ...string) (from, to *redistest.Server) {
	t.Helper()
	slot := route.Slot(tag[1 : len(tag)-1])
	from, to = ownerAndOther(t, cl, slot)
	for _, k := range keys {
		from.MustDo(t, "SET", tag+k, "old")
	}
	cl.BeginMigration(t, slot, from, to)
	host, port, _ := strings.Cut(to.Addr, ":")
	from.MustDo(t, "MIGRATE", host, port, tag+keys[0], 0, 5000)
	return from, to
}

func freshCluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	cl := cluster(t)
	cl.FlushAll(t)
	cl.ResetStats(t)
	for _, r := range cl.Replicas {
		r.ResetStats(t)
	}
	return cl
}

func TestSlotMatchesServer(t *testing.T) {
	cl := cluster(t)
	p := cl.Primaries[0]
	for i := range 2000 {
		key := fmt.Sprintf("key:%d:{t%d}x", i, i%7)
		if i%3 == 0 {
			key = fmt.Sprintf("plain-%d", i*7919)
		}
		want, err := redis.Int(p.Call("CLUSTER", "KEYSLOT", key))
		require.NoError(t, err)
		require.Equal(t, want, route.Slot(key), "slot of %q", key)
	}
}

// 100,000 mixed commands over keys in every slot: values in submission
// order, one round, and each primary ran exactly its share.
func TestClusterMixedCommands(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	b := c.NewBatch()
	const n = 100_000
	owner := map[int]*redistest.Server{} // slot → primary
	share := map[string]int64{}          // primary addr → commands
	var counters []*rbatch.Future[int64]
	var gets []*rbatch.Future[string]
	for i := range n / 2 {
		key := "mixed:" + strconv.Itoa(i%5000)
		slot := route.Slot(key)
		if owner[slot] == nil {
			owner[slot] = cl.OwnerOf(t, slot)
		}
		share[owner[slot].Addr] += 2
		counters = append(counters, b.AtomicLong(key).IncrementAndGetAsync())
		gets = append(gets, b.Bucket(key).GetAsync())
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Responses, n)
	require.Len(t, res.Nodes, 3)
	for i := range counters {
		want := int64(i/5000 + 1)
		got, err := counters[i].Get()
		require.NoError(t, err)
		require.Equal(t, want, got, "INCR %d", i)
		s, err := gets[i].Get()
		require.NoError(t, err)
		require.Equal(t, strconv.FormatInt(want, 10), s)
		require.Equal(t, want, res.Responses[2*i])
		require.Equal(t, s, res.Responses[2*i+1])
	}
	for _, nr := range res.Nodes {
		assert.Equal(t, 1, nr.Attempts, nr.Addr)
		assert.Equal(t, int(share[nr.Addr]), nr.Commands, nr.Addr)
	}
	for _, p := range cl.Primaries {
		stats := p.CommandStats(t)
		assert.Equal(t, share[p.Addr], stats["incr"]+stats["get"], "commands run on %s", p.Addr)
	}
}

func TestClusterWaitOnEveryPrimary(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	b := c.NewBatch(rbatch.WithSync(1, 5*time.Second))
	for i := range 300 {
		b.Bucket("wait:" + strconv.Itoa(i)).SetAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Nodes, 3)
	assert.Equal(t, 1, res.SyncedReplicas, "the fewest over the primaries, not their sum")
	for _, nr := range res.Nodes {
		assert.Equal(t, 1, nr.SyncedReplicas, nr.Addr)
	}
	assert.Equal(t, int64(3), cl.CommandStats(t)["wait"])
}

// A split command's parts run in its place on each node: a DEL, MSET or
// MGET of keys across slots between two commands on one of its keys runs
// between them, in InMemory and in Streaming mode.
func TestClusterSplitKeepsOrder(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	k, other := "so:k", "so:other" // two slots
	require.NotEqual(t, route.Slot(k), route.Slot(other))
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode))
		b.Bucket(k).SetAsync("old")
		b.Keys().DeleteAsync(k, other)
		b.Bucket(k).SetAsync("new")
		afterDel := b.Bucket(k).GetAsync()
		b.Buckets().SetAsync(map[string]any{k: "m", other: "o"})
		afterSet := b.Bucket(k).GetAsync()
		b.Bucket(k).SetAsync("last")
		_, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		v, err := afterDel.Get()
		require.NoError(t, err, mode)
		assert.Equal(t, "new", v, "%s: the DEL ran after the later SET", mode)
		v, err = afterSet.Get()
		require.NoError(t, err, mode)
		assert.Equal(t, "m", v, "%s: the MSET ran after the later GET", mode)
		got, err := redis.String(cl.OwnerOf(t, route.Slot(k)).Call("GET", k))
		require.NoError(t, err)
		assert.Equal(t, "last", got, mode)
	}
}

func TestClusterKeysSplitPerSlot(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	keys := make([]string, 1000)
	set := c.NewBatch()
	for i := range keys {
		keys[i] = "del:" + strconv.Itoa(i)
		set.Bucket(keys[i]).SetAsync(i)
	}
	_, err := set.Execute(context.Background())
	require.NoError(t, err)

	b := c.NewBatch()
	exists := b.Keys().CountExistsAsync(append(keys, "del:missing")...)
	mget := b.Do("MGET", "del:1", "del:999", "del:missing", "del:500")
	deleted := b.Keys().DeleteAsync(keys...)
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	n, _ := exists.Get()
	assert.Equal(t, int64(1000), n)
	vals, _ := mget.Get()
	assert.Equal(t, []any{"1", "999", nil, "500"}, vals)
	d, _ := deleted.Get()
	assert.Equal(t, int64(1000), d)
	assert.Equal(t, int64(1000), res.Responses[2])
	assert.Len(t, res.Responses, 3)
	for _, p := range cl.Primaries {
		assert.Equal(t, int64(0), p.MustDo(t, "DBSIZE"))
	}
}

func TestClusterReadFromReplica(t *testing.T) {
	cl := freshCluster(t)
	waitReplicasKnown(t, cl)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	w := c.NewBatch()
	for i := range 100 {
		w.Bucket("rr:" + strconv.Itoa(i)).SetAsync(i)
	}
	_, err := w.Execute(context.Background())
	require.NoError(t, err)
	for _, p := range cl.Primaries {
		p.WaitReplicated(t, 1)
	}
	b := c.NewBatch()
	gets := make([]*rbatch.Future[string], 100)
	for i := range gets {
		gets[i] = b.Bucket("rr:" + strconv.Itoa(i)).GetAsync()
	}
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	for i, g := range gets {
		v, err := g.Get()
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(i), v)
	}
	var onReplicas int64
	for _, r := range cl.Replicas {
		onReplicas += r.CommandStats(t)["get"]
	}
	assert.Equal(t, int64(100), onReplicas, "GETs served by replicas")
	assert.Zero(t, cl.CommandStats(t)["get"], "none by primaries")

	ra := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
	one := ra.Bucket("rr:1").GetAsync()
	_, err = ra.Execute(context.Background())
	require.NoError(t, err)
	v, _ := one.Get()
	assert.Equal(t, "1", v)
}

// While a goroutine moves slots back and forth between two primaries,
// batches of INCRs run: every counter ends equal to the INCRs queued for it
// (none lost, none doubled), and both MOVED and ASK were followed.
func TestClusterReshardingDuringBatches(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.PoolSize = 4 })
	from := cl.Primaries[0]
	to := cl.Primaries[1]
	// Counters whose slots the first primary owns.
	var keys []string
	slots := map[int]bool{}
	for i := 0; len(keys) < 8; i++ {
		k := "reshard:" + strconv.Itoa(i)
		if cl.OwnerOf(t, route.Slot(k)) == from {
			keys = append(keys, k)
			slots[route.Slot(k)] = true
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]int64{}
	var moved, asked, batches int
	var failures []error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b := c.NewBatch(rbatch.WithRetry(10, 20*time.Millisecond))
			fs := map[string][]*rbatch.Future[int64]{}
			for i := range 400 {
				k := keys[i%len(keys)]
				fs[k] = append(fs[k], b.AtomicLong(k).IncrementAndGetAsync())
			}
			res, err := b.Execute(context.Background())
			mu.Lock()
			batches++
			if err != nil {
				failures = append(failures, err)
			}
			for k, list := range fs {
				want[k] += int64(len(list))
			}
			for _, nr := range res.Nodes {
				moved += nr.Moved
				asked += nr.Asked
			}
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for round := 0; round < 6 && time.Now().Before(deadline); round++ {
		src, dst := from, to
		if round%2 == 1 {
			src, dst = to, from
		}
		for s := range slots {
			cl.BeginMigration(t, s, src, dst)
		}
		time.Sleep(150 * time.Millisecond) // batches meet ASK
		for s := range slots {
			cl.FinishMigration(t, s, src, dst)
		}
		time.Sleep(150 * time.Millisecond) // and MOVED
	}
	close(stop)
	wg.Wait()

	require.Empty(t, failures, "every INCR succeeded")
	for _, k := range keys {
		got, err := redis.Int64(cl.OwnerOf(t, route.Slot(k)).Call("GET", k))
		require.NoError(t, err)
		assert.Equal(t, want[k], got, "counter %s: none lost, none doubled", k)
	}
	t.Logf("%d batches, %d commands followed MOVED, %d followed ASK", batches, moved, asked)
	assert.Positive(t, moved, "MOVED path hit")
	assert.Positive(t, asked, "ASK path hit")
}

// A primary is killed while batches of INCRs run: every INCR ends applied,
// failed or unknown, and the counter accounts for each exactly:
// final − applied ∈ [0, unknown].
func TestClusterFailoverDuringBatch(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.DialTimeout = time.Second })
	victim := cl.Primaries[2]
	var key string
	for i := 0; key == ""; i++ {
		if k := "failover:" + strconv.Itoa(i); cl.OwnerOf(t, route.Slot(k)) == victim {
			key = k
		}
	}
	var applied, unknown, failed int64
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b := c.NewBatch(rbatch.WithRetry(3, 100*time.Millisecond), rbatch.WithResponseTimeout(2*time.Second))
			fs := make([]*rbatch.Future[int64], 200)
			for i := range fs {
				fs[i] = b.AtomicLong(key).IncrementAndGetAsync()
			}
			b.Execute(context.Background())
			mu.Lock()
			for _, f := range fs {
				_, err := f.Get()
				switch {
				case err == nil:
					applied++
				case errors.Is(err, rbatch.ErrUnknownOutcome):
					unknown++
				default:
					failed++
				}
			}
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	cl.KillPrimary(t, victim)
	time.Sleep(500 * time.Millisecond) // batches reach the promoted replica
	close(stop)
	wg.Wait()

	final, err := redis.Int64(cl.OwnerOf(t, route.Slot(key)).Call("GET", key))
	require.NoError(t, err)
	t.Logf("applied %d, unknown %d, failed %d, final %d", applied, unknown, failed, final)
	assert.Positive(t, applied)
	assert.GreaterOrEqual(t, final-applied, int64(0), "no applied INCR lost")
	assert.LessOrEqual(t, final-applied, unknown, "nothing applied beyond the unknown ones")
}

// CLUSTER SLOTS (the fallback before Redis 7.0) and CLUSTER SHARDS describe
// the same slot map.
func TestClusterSlotsAndShardsAgree(t *testing.T) {
	cl := cluster(t)
	p := cl.Primaries[0]
	shards, err := route.ParseShards(p.MustDo(t, "CLUSTER", "SHARDS"), false)
	require.NoError(t, err)
	slots, err := route.ParseSlots(p.MustDo(t, "CLUSTER", "SLOTS"))
	require.NoError(t, err)
	owners := func(infos []route.ShardInfo) map[int]string {
		m := map[int]string{}
		for _, s := range infos {
			for _, rg := range s.Slots {
				for slot := rg[0]; slot <= rg[1]; slot++ {
					m[slot] = s.Primary
				}
			}
		}
		return m
	}
	fromShards, fromSlots := owners(shards), owners(slots)
	assert.Len(t, fromSlots, route.NumSlots)
	assert.Equal(t, fromShards, fromSlots)
	for slot, addr := range fromSlots {
		if slot%1000 == 0 {
			assert.Equal(t, cl.OwnerOf(t, slot).Addr, addr, "slot %d", slot)
		}
	}
}

// During a slot migration: a transaction on a key the source no longer
// holds is answered ASK and moves whole to the target, with one ASKING
// before MULTI. Multi-key requests split across source and target — a
// transaction of several keys counts as one on Redis 7.0 — are answered
// TRYAGAIN and, with retries, go through once the migration ends.
func TestClusterMigrationAskAndTryAgain(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	const tag = "{mig}"
	slot := route.Slot("mig")
	from, to := ownerAndOther(t, cl, slot)
	from.MustDo(t, "SET", tag+"kept", "k")
	from.MustDo(t, "SET", tag+"moved", "m")
	cl.BeginMigration(t, slot, from, to)
	host, port, _ := strings.Cut(to.Addr, ":")
	from.MustDo(t, "MIGRATE", host, port, tag+"moved", 0, 5000)
	cl.ResetStats(t)

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	n := b.AtomicLong(tag + "new").IncrementAndGetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := n.Get()
	assert.Equal(t, int64(1), v)
	asked := 0
	for _, nr := range res.Nodes {
		asked += nr.Asked
	}
	assert.Equal(t, 1, asked, "the transaction followed the ASK")
	toStats := to.CommandStats(t)
	assert.Equal(t, int64(1), toStats["asking"], "one ASKING, before MULTI")
	assert.Equal(t, int64(1), toStats["exec"])
	assert.Zero(t, from.CommandStats(t)["incr"])

	// ASKING holds only until the next command outside MULTI: it goes right
	// before MULTI, after the SCRIPT LOAD an EVALSHA brings.
	cl.ResetStats(t)
	sb := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	first := sb.AtomicLong(tag + "other").IncrementAndGetAsync()
	second := sb.Script().EvalAsync("return redis.call('INCR', KEYS[1])", []string{tag + "other"})
	res, err = sb.Execute(context.Background())
	require.NoError(t, err)
	asked = 0
	for _, nr := range res.Nodes {
		asked += nr.Asked
	}
	assert.Equal(t, 2, asked, "both commands followed the ASK once")
	toStats = to.CommandStats(t)
	assert.Equal(t, int64(1), toStats["asking"])
	assert.Equal(t, int64(1), toStats["script|load"])
	assert.Equal(t, int64(1), toStats["exec"])
	v, _ = first.Get()
	assert.Equal(t, int64(1), v)
	got, _ := second.Get()
	assert.Equal(t, int64(2), got)

	tx := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(50, 50*time.Millisecond))
	incr := tx.AtomicLong(tag + "new").IncrementAndGetAsync()
	get := tx.Bucket(tag + "moved").GetAsync()
	txDone := tx.ExecuteAsync(context.Background())
	r := c.NewBatch(rbatch.WithRetry(50, 50*time.Millisecond))
	both := r.Do("MGET", tag+"kept", tag+"moved")
	rDone := r.ExecuteAsync(context.Background())
	time.Sleep(200 * time.Millisecond)
	cl.FinishMigration(t, slot, from, to)

	for _, done := range []*rbatch.Future[*rbatch.BatchResult]{txDone, rDone} {
		res, err := done.Wait(context.Background())
		require.NoError(t, err)
		rounds := 0
		for _, nr := range res.Nodes {
			rounds += nr.Attempts
		}
		assert.Greater(t, rounds, 1, "TRYAGAIN was retried")
	}
	v, _ = incr.Get()
	assert.Equal(t, int64(2), v, "the retried transaction ran once")
	s, _ := get.Get()
	assert.Equal(t, "m", s)
	vals, _ := both.Get()
	assert.Equal(t, []any{"k", "m"}, vals)
}

// On a cluster, a skip-result batch has its replies read rather than
// turned off: a command redirected (MOVED after a reshard the client has
// not seen yet, ASK during one) is sent again to the slot's owner, not
// lost while Execute says every command went.
func TestSkipResultClusterFollowsRedirects(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	key := "skr:{t}n"
	slot := route.Slot(key)
	home, other := ownerAndOther(t, cl, slot)
	t.Cleanup(func() {
		if cl.OwnerOf(t, slot) != home {
			cl.MigrateSlot(t, slot, other, home)
		}
	})
	b := c.NewBatch()
	b.AtomicLong(key).SetAsync(10)
	_, err := b.Execute(context.Background())
	require.NoError(t, err)

	from, to := home, other
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		cl.MigrateSlot(t, slot, from, to) // the client's slot map is stale now
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		incr := b.AtomicLong(key).IncrementAndGetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		assert.ErrorIs(t, errOf(incr), rbatch.ErrResultSkipped, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 1}, res.Counts, mode)
		moved := 0
		for _, nr := range res.Nodes {
			moved += nr.Moved
		}
		assert.Equal(t, 1, moved, "%s: the INCR met the MOVED", mode)
		from, to = to, from
	}
	got, err := redis.Int64(from.Call("GET", key))
	require.NoError(t, err)
	assert.EqualValues(t, 12, got, "both INCRs applied, on the slot's owner")

	// During a migration, a key the source does not hold is asked for
	// elsewhere (ASK): the SET goes there.
	cl.BeginMigration(t, slot, from, to)
	b = c.NewBatch(rbatch.WithSkipResult())
	b.Bucket("skr:{t}new").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Skipped: 1}, res.Counts)
	cl.FinishMigration(t, slot, from, to)
	v, err := redis.String(to.Call("GET", "skr:{t}new"))
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	// The replies being read, a command the server rejects is failed, not
	// skipped.
	b = c.NewBatch(rbatch.WithSkipResult())
	set := b.Bucket("skr:{t}s").SetAsync("v")
	push := b.List("skr:{t}s").AddAsync("x")
	res, err = b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped)
	assert.ErrorContains(t, errOf(push), "WRONGTYPE")
	assert.Equal(t, rbatch.Counts{Skipped: 1, Failed: 1}, res.Counts)
}

// A command refused with TRYAGAIN (its keys split by a migration) is not
// sent again once a later command on one of its keys was answered in the
// same round: it would run after it. It keeps its refusal, not applied.
func TestTryAgainNotRetriedPastALaterCommand(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	const tag = "{ovt}"
	slot := route.Slot("ovt")
	from, to := midMigration(t, cl, tag, "a", "b")

	b := c.NewBatch(rbatch.WithRetry(60, 50*time.Millisecond))
	del := b.Keys().DeleteAsync(tag+"a", tag+"b") // TRYAGAIN: a moved, b not
	set := b.Bucket(tag + "b").SetAsync("new")    // b still on the source: answered at once
	done := b.ExecuteAsync(context.Background())
	time.Sleep(200 * time.Millisecond)
	cl.FinishMigration(t, slot, from, to)
	_, err := done.Wait(context.Background())
	require.Error(t, err)
	var re *rbatch.RedisError
	require.ErrorAs(t, errOf(del), &re)
	assert.Equal(t, "TRYAGAIN", re.Prefix())
	require.NoError(t, errOf(set))
	got, err := redis.String(to.Call("GET", tag+"b"))
	require.NoError(t, err)
	assert.Equal(t, "new", got, "the SET queued after the DEL is what stays")
	got, err = redis.String(to.Call("GET", tag+"a"))
	require.NoError(t, err)
	assert.Equal(t, "old", got, "the DEL was not applied")
}
