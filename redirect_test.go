package rbatch_test

import (
	"context"
	"strconv"
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

// tagsOn returns n hash tags (without braces) of distinct slots that owner
// serves, each starting with prefix.
func tagsOn(t *testing.T, cl *redistest.Cluster, owner *redistest.Server, prefix string, n int) []string {
	t.Helper()
	var tags []string
	seen := map[int]bool{}
	for i := 0; len(tags) < n && i < 100000; i++ {
		tag := prefix + strconv.Itoa(i)
		if s := route.Slot(tag); !seen[s] && cl.OwnerOf(t, s) == owner {
			seen[s] = true
			tags = append(tags, tag)
		}
	}
	require.Len(t, tags, n)
	return tags
}

// With WithTransactionPerSlot, each slot's transaction stays its own when a
// redirect sends two of them to one node: merged, they would make one MULTI
// over two slots, which EXEC refuses with CROSSSLOT.
func TestClusterPerSlotRedirectsKeepTransactionsApart(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	from, to := cl.Primaries[0], cl.Primaries[1]
	ping := c.NewBatch() // the client loads its slot map now, before the moves
	ping.Do("PING")
	_, err := ping.Execute(context.Background())
	require.NoError(t, err)

	moved := tagsOn(t, cl, from, "mv", 4)
	for _, tag := range moved {
		cl.MigrateSlot(t, route.Slot(tag), from, to)
	}
	asked := tagsOn(t, cl, from, "ak", 2)
	for _, tag := range asked {
		cl.BeginMigration(t, route.Slot(tag), from, to) // keys absent on from: ASK
	}
	cases := []struct {
		name string
		mode rbatch.ExecutionMode
		tags []string
	}{
		{"MOVED InMemoryAtomic", rbatch.InMemoryAtomic, moved[:2]},
		{"MOVED RedisWriteAtomic", rbatch.RedisWriteAtomic, moved[2:]},
		{"ASK InMemoryAtomic", rbatch.InMemoryAtomic, asked},
	}
	for _, tc := range cases {
		cl.ResetStats(t)
		b := c.NewBatch(rbatch.WithMode(tc.mode), rbatch.WithTransactionPerSlot())
		var fs []*rbatch.Future[int64]
		for _, tag := range tc.tags {
			fs = append(fs, b.AtomicLong("{"+tag+"}n").IncrementAndGetAsync(),
				b.AtomicLong("{"+tag+"}n").IncrementAndGetAsync())
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err, tc.name)
		for i, f := range fs {
			v, err := f.Get()
			require.NoError(t, err, "%s: command %d", tc.name, i)
			assert.Equal(t, int64(i%2+1), v, "%s: command %d", tc.name, i)
		}
		assert.Equal(t, rbatch.Counts{Applied: len(fs)}, res.Counts, tc.name)
		st := to.CommandStats(t)
		assert.Equal(t, int64(len(tc.tags)), st["exec"], "%s: one transaction per slot on the new owner", tc.name)
		assert.Equal(t, int64(len(fs)), st["incr"], "%s: each INCR applied once", tc.name)
	}
	for _, tag := range asked {
		cl.FinishMigration(t, route.Slot(tag), from, to)
	}
	for _, tag := range append(moved, asked...) {
		got, err := redis.Int64(to.Call("GET", "{"+tag+"}n"))
		require.NoError(t, err)
		assert.Equal(t, int64(2), got, tag)
	}
}

// With WithTransactionPerSlot, a multi-key command whose keys span slots is
// split in the buffered atomic modes, each part in its slot's transaction
// and its replies joined; the Redis-side modes, which queue it in Redis
// whole, refuse it with ErrCrossSlot and apply nothing.
func TestClusterPerSlotMultiKey(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	set := c.NewBatch()
	set.Buckets().SetAsync(map[string]any{"{a}1": "x", "{b}2": "y", "{a}3": "z"})
	_, err := set.Execute(context.Background())
	require.NoError(t, err)

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithTransactionPerSlot())
	get := b.Bucket("{a}1").GetAsync()
	mget := b.Buckets().GetAsync("{a}1", "{b}2", "{a}3", "{b}none")
	del := b.Keys().DeleteAsync("{a}1", "{b}2")
	after := b.Keys().CountExistsAsync("{a}1", "{b}2", "{a}3")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, err := get.Get()
	require.NoError(t, err)
	assert.Equal(t, "x", v)
	m, err := mget.Get()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"{a}1": "x", "{b}2": "y", "{a}3": "z"}, m)
	n, err := del.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	n, err = after.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the DEL ran before the EXISTS, in each slot's transaction")
	assert.Equal(t, rbatch.Counts{Applied: 4}, res.Counts)
	assert.Len(t, res.Responses, 4)

	// One slot's transaction discarded (its node out of memory: OOM as the
	// MSET's part is queued) while the other's ran: the MSET was applied
	// for some keys, so it is unknown, not aborted; the other commands of
	// the discarded transaction name the MSET as its cause.
	oom := cl.OwnerOf(t, route.Slot("b"))
	require.NotEqual(t, oom, cl.OwnerOf(t, route.Slot("a")))
	oom.MustDo(t, "CONFIG", "SET", "maxmemory", "1")
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithTransactionPerSlot())
	okA := b.Bucket("{a}x").SetAsync("1")
	mset := b.Buckets().SetAsync(map[string]any{"{a}m": "x", "{b}m": "y"})
	setB := b.Bucket("{b}y").SetAsync("1")
	res, err = b.Execute(context.Background())
	oom.MustDo(t, "CONFIG", "SET", "maxmemory", "0")
	require.Error(t, err)
	require.NoError(t, errOf(okA))
	assert.ErrorIs(t, errOf(mset), rbatch.ErrUnknownOutcome)
	assert.NotErrorIs(t, errOf(mset), rbatch.ErrTxAborted, "a part was applied: not aborted")
	assert.ErrorContains(t, errOf(mset), "OOM")
	assert.ErrorIs(t, errOf(setB), rbatch.ErrTxAborted)
	assert.ErrorContains(t, errOf(setB), "command 1 (MSET)", "the abort names the user's command")
	assert.Equal(t, rbatch.Counts{Applied: 1, Unknown: 1, Aborted: 1}, res.Counts)
	got, err := redis.String(cl.OwnerOf(t, route.Slot("a")).Call("GET", "{a}m"))
	require.NoError(t, err)
	assert.Equal(t, "x", got)

	for _, mode := range []rbatch.ExecutionMode{rbatch.RedisWriteAtomic, rbatch.RedisReadAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithTransactionPerSlot())
		first := b.Bucket("{a}3").GetAsync()
		if mode == rbatch.RedisWriteAtomic {
			b.Keys().DeleteAsync("{a}3", "{b}2")
		} else {
			b.Keys().CountExistsAsync("{a}3", "{b}2")
		}
		_, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrCrossSlot, mode)
		assert.Contains(t, err.Error(), `"{b}2"`, "%v: the error names the key", mode)
		_, ferr := first.Get()
		assert.Error(t, ferr, mode)
		got, err := redis.String(cl.OwnerOf(t, route.Slot("a")).Call("GET", "{a}3"))
		require.NoError(t, err)
		assert.Equal(t, "z", got, "%v: nothing applied", mode)
	}
}

// A migration where a transaction's keys are split between source and
// target makes the source answer ASK and the target TRYAGAIN, in turn, until
// it ends. That is no redirect loop: WithRetry's attempts bound it, and the
// batch goes through once the migration ends within them.
func TestClusterRetriesOutlastMigration(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	type run struct {
		name string
		done *rbatch.Future[*rbatch.BatchResult]
		get  func() (any, error)
		want any
	}
	migrate := func(tag string) (slot int, from, to *redistest.Server) {
		slot = route.Slot(tag)
		from, to = ownerAndOther(t, cl, slot)
		from.MustDo(t, "SET", "{"+tag+"}kept", 1)
		from.MustDo(t, "SET", "{"+tag+"}moved", 100)
		cl.BeginMigration(t, slot, from, to)
		host, port, _ := strings.Cut(to.Addr, ":")
		from.MustDo(t, "MIGRATE", host, port, "{"+tag+"}moved", 0, 5000)
		return slot, from, to
	}
	var runs []run
	var ends []func()
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.InMemory} {
		tag := "rt" + mode.String()
		slot, from, to := migrate(tag)
		ends = append(ends, func() { cl.FinishMigration(t, slot, from, to) })
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithRetry(60, 50*time.Millisecond))
		if mode == rbatch.InMemory {
			// MGET of a migrated key and a missing one: ASK, then TRYAGAIN.
			f := b.Buckets().GetAsync("{"+tag+"}moved", "{"+tag+"}none")
			runs = append(runs, run{mode.String(), b.ExecuteAsync(context.Background()),
				func() (any, error) { return f.Get() }, map[string]string{"{" + tag + "}moved": "100"}})
			continue
		}
		b.AtomicLong("{" + tag + "}kept").IncrementAndGetAsync()
		f := b.AtomicLong("{" + tag + "}moved").IncrementAndGetAsync()
		runs = append(runs, run{mode.String(), b.ExecuteAsync(context.Background()),
			func() (any, error) { return f.Get() }, int64(101)})
	}
	time.Sleep(600 * time.Millisecond) // a dozen ASK-TRYAGAIN turns: more than a redirect bound
	for _, r := range runs {
		select {
		case <-r.done.Done():
			_, err := r.done.Wait(context.Background())
			t.Errorf("%s: ended before the migration did, within its retries: %v", r.name, err)
		default:
		}
	}
	for _, end := range ends {
		end()
	}
	for _, r := range runs {
		_, err := r.done.Wait(context.Background())
		require.NoError(t, err, r.name)
		v, err := r.get()
		require.NoError(t, err, r.name)
		assert.Equal(t, r.want, v, r.name)
	}
}

// Commands on one key keep their order when one of them is retried
// (TRYAGAIN) and a later one is redirected (ASK): the later one waits for
// the retry rather than overtaking it on the migration's target.
func TestClusterRetryKeepsKeyOrder(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		tag := "{ko" + mode.String() + "}"
		slot := route.Slot(tag[1 : len(tag)-1])
		from, to := midMigration(t, cl, tag, "a", "b")

		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithRetry(60, 50*time.Millisecond))
		del := b.Keys().DeleteAsync(tag+"a", tag+"b") // keys on both sides: TRYAGAIN
		set := b.Bucket(tag + "a").SetAsync("new")    // key on the target: ASK
		get := b.Bucket(tag + "a").GetAsync()
		done := b.ExecuteAsync(context.Background())
		time.Sleep(300 * time.Millisecond)
		cl.FinishMigration(t, slot, from, to)
		res, err := done.Wait(context.Background())
		require.NoError(t, err, mode)
		n, err := del.Get()
		require.NoError(t, err, mode)
		assert.Equal(t, int64(2), n, "%v: the DEL found both keys: it ran first", mode)
		_, err = set.Get()
		require.NoError(t, err, mode)
		v, err := get.Get()
		require.NoError(t, err, mode)
		assert.Equal(t, "new", v, mode)
		got, err := redis.String(to.Call("GET", tag+"a"))
		require.NoError(t, err, mode)
		assert.Equal(t, "new", got, "%v: the SET queued after the DEL is what stays", mode)
		assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts, mode)
	}
}

// A conditional transaction while its slot migrates, its keys on both
// sides: WATCH of the conditions' keys alone let it run where a key it
// writes was not (a fresh INCR on the target, forking the counter), or read
// a condition's key as missing there. Told by the probe naming every key,
// Redis answers ASK or TRYAGAIN until the keys are together: within its
// retries the transaction then runs once, on the real values.
func TestClusterConditionsDuringMigration(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl)
	split := func(tag string, moved ...string) (finish func()) {
		slot := route.Slot(tag)
		from, to := ownerAndOther(t, cl, slot)
		from.MustDo(t, "SET", "{"+tag+"}flag", "on")
		from.MustDo(t, "SET", "{"+tag+"}ctr", 10)
		cl.BeginMigration(t, slot, from, to)
		host, port, _ := strings.Cut(to.Addr, ":")
		for _, k := range moved {
			from.MustDo(t, "MIGRATE", host, port, "{"+tag+"}"+k, 0, 5000)
		}
		return func() { cl.FinishMigration(t, slot, from, to) }
	}

	// Without retries: refused whole, nothing applied, nothing forked.
	finish := split("cm0", "flag")
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	held := b.AddCondition(rbatch.KeyExists("{cm0}flag"))
	incr := b.AtomicLong("{cm0}ctr").IncrementAndGetAsync()
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, errOf(incr), rbatch.ErrNotSent)
	_, herr := held.Get()
	assert.ErrorIs(t, herr, rbatch.ErrNotSent, "the condition was not read where its keys are")
	finish()
	n, err := redis.Int64(cl.OwnerOf(t, route.Slot("cm0")).Call("GET", "{cm0}ctr"))
	require.NoError(t, err)
	assert.Equal(t, int64(10), n)

	cases := []struct {
		tag   string
		moved []string // keys already on the target
	}{
		{"cm1", []string{"flag"}}, // the condition's key moved, the written one not
		{"cm2", []string{"ctr"}},  // the written key moved, the condition's not
	}
	for _, tc := range cases {
		finish := split(tc.tag, tc.moved...)
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(60, 25*time.Millisecond))
		held := b.AddCondition(rbatch.KeyExists("{" + tc.tag + "}flag"))
		incr := b.AtomicLong("{" + tc.tag + "}ctr").IncrementAndGetAsync()
		done := b.ExecuteAsync(context.Background())
		time.Sleep(300 * time.Millisecond)
		finish()
		_, err := done.Wait(context.Background())
		require.NoError(t, err, tc.tag)
		ok, err := held.Get()
		require.NoError(t, err, tc.tag)
		assert.True(t, ok, "%s: the key exists: the condition holds", tc.tag)
		v, err := incr.Get()
		require.NoError(t, err, tc.tag)
		assert.Equal(t, int64(11), v, "%s: the INCR ran on the counter at 10", tc.tag)
		n, err := redis.Int64(cl.OwnerOf(t, route.Slot(tc.tag)).Call("GET", "{"+tc.tag+"}ctr"))
		require.NoError(t, err)
		assert.Equal(t, int64(11), n, tc.tag)
	}
}
