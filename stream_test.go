package rbatch_test

import (
	"context"
	"errors"
	"runtime"
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
	"github.com/rbatch/rbatch/internal/route"
)

// A Streaming batch sends its commands while it is filled: they reach
// Redis before Execute, the futures resolve, and the result counts them.
func TestStreamSendsWhileQueued(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	assert.Equal(t, "STREAMING", b.Options().Mode.String())
	const n = 50000
	var fs []*rbatch.Future[int64]
	for i := range n {
		fs = append(fs, b.AtomicLong("st:c"+strconv.Itoa(i%100)).IncrementAndGetAsync())
	}
	waitUntil(t, "the commands reach Redis before Execute", func() bool { return calls(t, "incr") > 0 })
	v, err := fs[0].Get() // waits for its part of the stream, never for Execute
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Empty(t, res.Responses, "a stream keeps no responses")
	assert.Equal(t, rbatch.Counts{Applied: n}, res.Counts)
	for i, f := range fs {
		v, err := f.Get()
		require.NoError(t, err)
		require.Equal(t, int64(i/100+1), v, "INCR %d", i)
		require.Equal(t, i, f.Index())
	}
	assert.EqualValues(t, n, calls(t, "incr"))
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, n, res.Nodes[0].Commands)
	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
	assert.ErrorIs(t, errOf(b.Bucket("st:late").SetAsync("x")), rbatch.ErrAlreadyExecuted)
}

// streamSize is the command count of the large stream tests: millions
// without -race, fewer under its instrumentation.
func streamSize() int {
	if raceEnabled {
		return 300_000
	}
	return 2_000_000
}

// peakHeap samples the heap in use every few milliseconds until stop is
// closed, and returns the largest sample.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

// The heap of a multi-million-command stream stays bounded by the stream
// buffer, not by the batch: nothing is kept of a command once answered.
func TestStreamMemoryBounded(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run("skip-result="+strconv.FormatBool(skip), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 1 << 20 })
			opts := []rbatch.Option{rbatch.WithMode(rbatch.Streaming)}
			if skip {
				opts = append(opts, rbatch.WithSkipResult())
			}
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			stop := make(chan struct{})
			peak := peakHeap(stop)
			n := streamSize()
			b := c.NewBatch(opts...)
			for i := range n {
				b.Bucket("sm:" + strconv.Itoa(i%1000)).SetAsync(i) // the futures are dropped at once
			}
			res, err := b.Execute(context.Background())
			close(stop)
			require.NoError(t, err)
			want := rbatch.Counts{Applied: n}
			if skip {
				want = rbatch.Counts{Skipped: n}
			}
			assert.Equal(t, want, res.Counts)
			grew := int64(<-peak) - int64(base.HeapInuse)
			t.Logf("%d commands: heap grew by at most %.1f MB", n, float64(grew)/(1<<20))
			// An InMemory batch holds ~150 B a command until Execute returns:
			// 300 MB for 2M. The stream holds its 1 MB buffer, a few segments
			// and the garbage of those answered.
			assert.Less(t, grew, int64(64<<20), "memory grew with the batch")
			assert.EqualValues(t, n, calls(t, "set"))
		})
	}
}

// The response timeout runs once what a reply answers is written: a
// skip-result batch whose writing takes longer than ReadTimeout is not
// failed for it, in InMemory and in Streaming mode.
func TestSkipResultWritingOutlastsReadTimeout(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.ReadTimeout = 300 * time.Millisecond })
			n := streamSize() / 2
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
			for i := range n {
				b.Bucket("rt:" + strconv.Itoa(i)).SetAsync(i)
			}
			start := time.Now()
			res, err := b.Execute(context.Background())
			took := time.Since(start)
			require.NoError(t, err, "after %v", took)
			assert.Equal(t, rbatch.Counts{Skipped: n}, res.Counts)
			assert.EqualValues(t, n, srv.MustDo(t, "DBSIZE"))
			t.Logf("%d SETs written in %v, ReadTimeout 300ms", n, took)
		})
	}
}

// A command that cannot be sent fails alone and at once; the stream goes
// on, and Execute reports it with its index.
func TestStreamBadCommandFailsAlone(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	before := b.Bucket("sb:a").SetAsync("1")
	bad := b.Bucket("sb:b").SetAsync(struct{ X int }{1}) // no codec
	forbidden := b.Do("SELECT", 1)
	after := b.AtomicLong("sb:n").IncrementAndGetAsync()
	select {
	case <-bad.Done():
	default:
		t.Fatal("the bad command's future is not resolved at once")
	}
	assert.ErrorIs(t, errOf(bad), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(bad), rbatch.ErrNoCodec)
	assert.ErrorIs(t, errOf(forbidden), rbatch.ErrForbidden)
	res, err := b.Execute(context.Background())
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Len(t, berr.Commands, 2)
	assert.Equal(t, 1, berr.Commands[0].Index)
	assert.Equal(t, 2, berr.Commands[1].Index)
	assert.Equal(t, rbatch.Counts{Applied: 2, NotSent: 2}, res.Counts)
	assert.NoError(t, errOf(before))
	n, err := after.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.EqualValues(t, 1, calls(t, "set"))
	assert.Zero(t, calls(t, "select"))
}

// Connections killed mid-stream: every command ends in one known state,
// the counts add up, and each counter lies within [applied,
// applied+unknown].
func TestStreamConnectionKilled(t *testing.T) {
	fresh(t)
	// Not newClient: the last kills may hit idle connections after the
	// batch, which its pool check would report.
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, StreamBuffer: 256 << 10})
	require.NoError(t, err)
	defer c.Close()
	const counters = 50
	n := streamSize() / 4
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	fs := make([]*rbatch.Future[int64], 0, n)
	stop, killed := make(chan struct{}), make(chan int)
	go func() {
		kills := 0
		defer func() { killed <- kills }()
		waitUntil(t, "the stream is under way", func() bool { return calls(t, "incr") > 0 })
		for {
			srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
			kills++
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	for i := range n {
		fs = append(fs, b.AtomicLong("sk:"+strconv.Itoa(i%counters)).IncrementAndGetAsync())
	}
	res, err := b.Execute(context.Background())
	close(stop)
	kills := <-killed
	require.Error(t, err, "%d kills cut the stream", kills)
	assert.Positive(t, res.Counts.Unknown+res.Counts.NotSent)
	assert.Equal(t, n, res.Counts.Total())
	applied, unknown := make([]int64, counters), make([]int64, counters)
	for i, f := range fs {
		_, ferr := f.Get()
		switch {
		case ferr == nil:
			applied[i%counters]++
		case errors.Is(ferr, rbatch.ErrUnknownOutcome):
			unknown[i%counters]++
		case errors.Is(ferr, rbatch.ErrNotSent):
		default:
			t.Fatalf("INCR %d: %v", i, ferr)
		}
	}
	for k := range counters {
		got, _ := srv.MustDo(t, "GET", "sk:"+strconv.Itoa(k)).([]byte)
		v, _ := strconv.ParseInt(string(got), 10, 64)
		assert.GreaterOrEqual(t, v, applied[k], "counter %d", k)
		assert.LessOrEqual(t, v, applied[k]+unknown[k], "counter %d", k)
	}
	t.Logf("%d kills: counts %+v", kills, res.Counts)
}

// Progress moves forward, from one goroutine at a time, and its last call
// is the batch's counts.
func TestStreamProgress(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 256 << 10 })
	var mu sync.Mutex
	var calls []rbatch.Progress
	inFn := false
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithProgress(2*time.Millisecond, func(p rbatch.Progress) {
		mu.Lock()
		if inFn {
			t.Error("progress called concurrently")
		}
		inFn = true
		calls = append(calls, p)
		mu.Unlock()
		time.Sleep(3 * time.Millisecond) // slower than the interval: ticks are skipped
		mu.Lock()
		inFn = false
		mu.Unlock()
	}))
	n := streamSize() / 4
	for i := range n {
		b.Bucket("sp:" + strconv.Itoa(i%100)).SetAsync(i)
		if i == n/2 {
			b.List("sp:1").AddAsync("x") // WRONGTYPE: one failure
		}
	}
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Greater(t, len(calls), 1)
	for k := 1; k < len(calls); k++ {
		p, q := calls[k-1], calls[k]
		assert.True(t, q.Queued >= p.Queued && q.Written >= p.Written && q.Answered >= p.Answered &&
			q.Failed >= p.Failed && q.Elapsed >= p.Elapsed, "call %d went back: %+v then %+v", k, p, q)
	}
	last := calls[len(calls)-1]
	assert.Equal(t, rbatch.Counts{Applied: n, Failed: 1}, res.Counts)
	assert.Equal(t, rbatch.Progress{Queued: n + 1, Written: n + 1, Answered: n + 1, Failed: 1, Elapsed: last.Elapsed}, last)
	t.Logf("%d progress calls, last %+v", len(calls), last)
}

// Execute's context ending stops the stream: what was written and not
// answered is unknown, what was not written is not sent. WithContext
// ending before Execute makes queueing fail at once; Discard drops the
// rest.
func TestStreamCancel(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 256 << 10 })

	ctx, cancel := context.WithCancel(context.Background())
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithContext(ctx))
	for i := range 10000 {
		b.Bucket("sc:" + strconv.Itoa(i)).SetAsync(i)
	}
	cancel()
	late := b.Bucket("sc:late").SetAsync("x")
	assert.ErrorIs(t, errOf(late), rbatch.ErrNotSent, "queueing after the context ended fails at once")
	assert.ErrorIs(t, errOf(late), context.Canceled)
	res, err := b.Execute(context.Background())
	assert.Equal(t, 10001, res.Counts.Total(), "every command queued counts, the late one not sent")
	t.Logf("cancelled before Execute: %+v (%v)", res.Counts, err)

	var mu sync.Mutex
	var last rbatch.Progress
	b = c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithProgress(time.Hour, func(p rbatch.Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
	}))
	fs := make([]*rbatch.Future[struct{}], 0, 50000)
	for i := range 50000 {
		fs = append(fs, b.Bucket("sd:"+strconv.Itoa(i)).SetAsync(i))
	}
	require.NoError(t, b.Discard(context.Background()))
	discarded := 0
	for _, f := range fs {
		if errors.Is(errOf(f), rbatch.ErrDiscarded) {
			discarded++
		}
	}
	t.Logf("Discard mid-stream: %d of %d discarded", discarded, len(fs))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, len(fs), last.Queued, "the discarded commands count as queued")
	assert.GreaterOrEqual(t, last.Failed, discarded, "and as failed")
	assert.ErrorIs(t, errOf(b.Bucket("sd:late").SetAsync("x")), rbatch.ErrAlreadyExecuted)
}

// A cluster stream while slots move back and forth between two primaries:
// commands follow MOVED and ASK, and every counter ends exact.
func TestStreamClusterDuringMigration(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.StreamBuffer = 256 << 10 })
	from, to := cl.Primaries[0], cl.Primaries[1]
	var keys []string
	slots := map[int]bool{}
	for i := 0; len(keys) < 6; i++ {
		k := "smig:" + strconv.Itoa(i)
		if cl.OwnerOf(t, route.Slot(k)) == from {
			keys = append(keys, k)
			slots[route.Slot(k)] = true
		}
	}
	others := []string{"smig:x{a}", "smig:x{b}", "smig:x{c}"}
	all := append(append([]string{}, keys...), others...)

	stop := make(chan struct{})
	moved := make(chan int, 1)
	go func() {
		rounds := 0
		defer func() { moved <- rounds }()
		for src, dst := from, to; ; src, dst = dst, src {
			for s := range slots {
				cl.BeginMigration(t, s, src, dst)
			}
			time.Sleep(20 * time.Millisecond)
			for s := range slots {
				cl.FinishMigration(t, s, src, dst)
			}
			rounds++
			select {
			case <-stop:
				if dst != from { // leave the slots where they were
					for s := range slots {
						cl.MigrateSlot(t, s, dst, from)
					}
				}
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	n := streamSize() / 10
	deadline := time.Now().Add(5 * time.Second)
	queued := 0
	for ; queued < n && time.Now().Before(deadline); queued++ {
		b.AtomicLong(all[queued%len(all)]).IncrementAndGetAsync()
	}
	res, err := b.Execute(context.Background())
	close(stop)
	rounds := <-moved
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: queued}, res.Counts)
	moves := 0
	for _, nr := range res.Nodes {
		moves += nr.Moved + nr.Asked
	}
	for k, key := range all {
		want := int64(queued / len(all))
		if k < queued%len(all) {
			want++
		}
		got, err := redis.Int64(cl.OwnerOf(t, route.Slot(key)).Call("GET", key))
		require.NoError(t, err)
		assert.Equal(t, want, got, "counter %s", key)
	}
	t.Logf("%d INCRs, %d migration rounds, %d commands redirected", queued, rounds, moves)
}

// WithContext also bounds a Redis-side batch's work before Execute: when it
// ends, the held connection is dropped, which discards the open MULTI, and
// Execute reports nothing applied.
func TestWithContextEndsRedisSideQueue(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithContext(ctx))
	set := b.Bucket("wc:a").SetAsync("1")
	waitUntil(t, "MULTI is open", func() bool { return calls(t, "multi") == 1 })
	cancel()
	_, err := b.Execute(context.Background())
	t.Logf("Execute: %v; the SET: %v", err, errOf(set))
	require.Error(t, err)
	assert.True(t, errors.Is(errOf(set), rbatch.ErrTxAborted) || errors.Is(errOf(set), rbatch.ErrNotSent), "%v", errOf(set))
	assert.Zero(t, calls(t, "exec"))
	assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", "wc:a"))

	// The one pooled connection is free again.
	b = c.NewBatch()
	ok := b.Bucket("wc:b").SetAsync("2")
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	assert.NoError(t, errOf(ok))
}

// WithSync on a stream waits once, after its last command, however many
// parts it went in; the result's SyncedReplicas is the fewest
// acknowledgements.
func TestStreamWithSync(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 64 << 10 })
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSync(0, 10*time.Millisecond),
		rbatch.WithRetry(2, time.Millisecond), rbatch.WithResponseTimeout(time.Second))
	for i := range 20000 {
		b.Bucket("sy:" + strconv.Itoa(i)).SetAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 20000}, res.Counts)
	assert.Zero(t, res.SyncedReplicas, "the test server has no replica")
	assert.Equal(t, 1, res.Nodes[0].Attempts, "one round: the stream's parts are not rounds")
	assert.EqualValues(t, 1, calls(t, "wait"), "one WAIT, after the last command")
}

// Execute's context ending stops a stream that is still sending: every
// command ends applied, unknown or not sent, and the counts add up.
func TestStreamExecuteContextEnds(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 4 << 20 })
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	n := streamSize() / 4
	fs := make([]*rbatch.Future[int64], 0, n)
	for range n {
		fs = append(fs, b.AtomicLong("se:c").IncrementAndGetAsync())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // ended before Execute waits: what is still in flight stops
	res, err := b.Execute(ctx)
	require.Equal(t, n, res.Counts.Total())
	applied, unknown := int64(0), int64(0)
	for _, f := range fs {
		_, ferr := f.Get()
		switch {
		case ferr == nil:
			applied++
		case errors.Is(ferr, rbatch.ErrUnknownOutcome):
			unknown++
		case errors.Is(ferr, rbatch.ErrNotSent):
		default:
			t.Fatalf("unexpected outcome: %v", ferr)
		}
	}
	assert.Equal(t, int(applied), res.Counts.Applied)
	got, _ := strconv.ParseInt(string(srv.MustDo(t, "GET", "se:c").([]byte)), 10, 64)
	assert.GreaterOrEqual(t, got, applied)
	assert.LessOrEqual(t, got, applied+unknown)
	if res.Counts.Applied < n {
		assert.Error(t, err)
	}
	t.Logf("counts %+v", res.Counts)
}

// In a cluster a stream's WithSync sends one WAIT to each primary it wrote
// to, after everything it wrote there, and each node reports its replica.
func TestStreamWithSyncCluster(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.StreamBuffer = 32 << 10 })
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSync(1, 2*time.Second))
	const n = 6000
	for i := range n {
		b.Bucket("syc:" + strconv.Itoa(i)).SetAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: n}, res.Counts)
	assert.Equal(t, 1, res.SyncedReplicas)
	require.Len(t, res.Nodes, len(cl.Primaries))
	for _, nr := range res.Nodes {
		assert.Equal(t, 1, nr.SyncedReplicas, nr.Addr)
		assert.Equal(t, 1, nr.Attempts, "%s: one round however many parts", nr.Addr)
	}
	for _, p := range cl.Primaries {
		assert.EqualValues(t, 1, p.CommandStats(t)["wait"], "one WAIT on %s", p.Addr)
	}
	// Every key is on the replicas by the time Execute returned.
	keys := 0
	for _, r := range cl.Replicas {
		k, err := redis.Int(r.Call("DBSIZE"))
		require.NoError(t, err)
		keys += k
	}
	assert.Equal(t, n, keys)
}

// An interval so short that the first tick fires as the timer is made:
// progress runs in every mode without a race or a crash, and its last call
// has the batch's counts.
func TestProgressTinyInterval(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		for range 30 {
			var mu sync.Mutex
			var last rbatch.Progress
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithProgress(time.Nanosecond, func(p rbatch.Progress) {
				mu.Lock()
				last = p
				mu.Unlock()
			}))
			b.Bucket("pt:a").SetAsync("1")
			b.Bucket("pt:b").SetAsync("2")
			_, err := b.Execute(context.Background())
			require.NoError(t, err)
			mu.Lock()
			assert.Equal(t, 2, last.Answered, "the last call counts every command")
			mu.Unlock()
		}
	}
}

// A negative interval refuses the batch; its progress function is called
// once, at the end, not on a timer that fires at once over and over.
func TestProgressNegativeIntervalCallsOnce(t *testing.T) {
	fresh(t)
	c := newClient(t)
	var calls atomic.Int64
	b := c.NewBatch(rbatch.WithProgress(-time.Millisecond, func(rbatch.Progress) {
		calls.Add(1)
		time.Sleep(time.Millisecond)
	}))
	f := b.Bucket("pn:a").SetAsync("1")
	_, err := b.Execute(context.Background())
	require.ErrorContains(t, err, "WithProgress interval")
	assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, int64(1), calls.Load())
}

// A stream counts as executed from ExecuteAsync's call on: a command queued
// after it fails with ErrAlreadyExecuted and is not applied.
func TestStreamQueueAfterExecuteAsync(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for range 10 {
		srv.MustDo(t, "DEL", "sa:n")
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		b.AtomicLong("sa:n").IncrementAndGetAsync()
		done := b.ExecuteAsync(context.Background())
		late := b.AtomicLong("sa:n").IncrementAndGetAsync()
		assert.ErrorIs(t, errOf(late), rbatch.ErrAlreadyExecuted)
		res, err := done.Get()
		require.NoError(t, err)
		assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts)
		assert.Equal(t, []byte("1"), srv.MustDo(t, "GET", "sa:n"))
	}
}

// In a cluster stream, a command refused as it was queued (a cross-slot
// MSETNX) after one split per slot (MSET) fails alone: the split parts sit
// where their parent was, and the refused one is left out of every group, so
// the MGET after it gets its own keys' values.
func TestStreamClusterRefusedAfterSplit(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	kv := map[string]any{}
	keys := make([]string, 0, 30)
	for i := range 30 {
		k := "rs:" + strconv.Itoa(i)
		kv[k] = i
		keys = append(keys, k)
	}
	set := b.Buckets().SetAsync(kv)
	refused := b.Buckets().TrySetAsync(map[string]any{"rs:{a}": 1, "rs:{b}": 2})
	get := b.Buckets().GetAsync(keys...)
	del := b.Keys().DeleteAsync(keys[:10]...)
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 3, NotSent: 1}, res.Counts)
	assert.ErrorIs(t, errOf(refused), rbatch.ErrCrossSlot)
	require.NoError(t, errOf(set))
	m, err := get.Get()
	require.NoError(t, err)
	require.Len(t, m, len(keys))
	for k, v := range m {
		assert.Equal(t, strings.TrimPrefix(k, "rs:"), v, "MGET's value of %s", k)
	}
	n, err := del.Get()
	require.NoError(t, err)
	assert.EqualValues(t, 10, n)
	assert.Zero(t, cl.CommandStats(t)["msetnx"])
}

// Progress counts commands written and answered as they are, not only when
// the batch ends: while the server sleeps in the middle of a batch, the
// calls see the commands written and part of the first block answered.
func TestProgressMovesWhileRunning(t *testing.T) {
	fresh(t)
	c := newClient(t)
	const block = 1000
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		var mu sync.Mutex
		var seen []rbatch.Progress
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithProgress(20*time.Millisecond, func(p rbatch.Progress) {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		}))
		for i := range block {
			b.Bucket("pm:" + strconv.Itoa(i)).SetAsync(i)
		}
		b.Do("DEBUG", "SLEEP", "0.4")
		for i := range block {
			b.Bucket("pm:" + strconv.Itoa(i)).SetAsync(i)
		}
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		mu.Lock()
		midway := false
		for _, p := range seen[:len(seen)-1] {
			// Redis sends the replies of the commands it ran before the
			// sleep in the same round only after it, and a stream's part
			// hands out its replies as it ends: some of the first block is
			// answered.
			if p.Written > block && p.Answered > 0 && p.Answered <= block {
				midway = true
			}
		}
		last := seen[len(seen)-1]
		mu.Unlock()
		assert.True(t, midway, "mode %d: a call while the server slept saw the commands written and some answered: %+v", mode, seen)
		assert.Equal(t, 2*block+1, last.Answered)
	}
}

// A Streaming batch that cannot start (an invalid option) keeps nothing of
// what it is fed: each command fails at once, not sent, and is counted.
func TestStreamInvalidOptionFailsEachCommandAtOnce(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSync(1, 500*time.Microsecond))
	const n = 10_000
	for i := range n {
		f := b.Bucket("si:" + strconv.Itoa(i)).SetAsync("v")
		if i%1000 == 0 {
			err := errOf(f)
			require.ErrorIs(t, err, rbatch.ErrNotSent, "command %d failed as it was queued", i)
			assert.Contains(t, err.Error(), "WithSync")
			assert.Equal(t, i, f.Index())
		}
	}
	assert.Equal(t, n, b.Len())
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.Contains(t, err.Error(), "WithSync")
	assert.Equal(t, rbatch.Counts{NotSent: n}, res.Counts)
	assert.Zero(t, calls(t, "set"))
}

// A stream's progress counts a command once: a multi-key command split
// over slots is one command written and answered, not one per part, and a
// command refused at queueing is never written. So no call while the
// stream runs says more than its last call, and each figure only grows.
func TestProgressCountsASplitCommandOnce(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	var mu sync.Mutex
	var seen []rbatch.Progress
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithProgress(5*time.Millisecond, func(p rbatch.Progress) {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	}))
	const dels, refused = 200, 50
	for i := range dels {
		keys := make([]string, 5)
		for k := range keys {
			keys[k] = "ps:" + strconv.Itoa(i*5+k) // slots of every node
		}
		b.Keys().DeleteAsync(keys...)
	}
	for range refused {
		b.Bucket("ps:c").SetAsync(struct{ A int }{1}) // no codec: refused at queueing
	}
	b.Do("DEBUG", "SLEEP", "0.2") // the stream runs on while ticks come
	res, _ := b.Execute(context.Background())
	require.Equal(t, rbatch.Counts{Applied: dels + 1, NotSent: refused}, res.Counts)

	mu.Lock()
	defer mu.Unlock()
	require.Greater(t, len(seen), 5, "ticks came while the server slept")
	last := seen[len(seen)-1]
	assert.Equal(t, dels+1, last.Written)
	assert.Equal(t, dels+1, last.Answered)
	for k, p := range seen {
		assert.LessOrEqual(t, p.Written, last.Written, "call %d: %+v", k, p)
		assert.LessOrEqual(t, p.Answered, last.Answered, "call %d: %+v", k, p)
		if k > 0 {
			prev := seen[k-1]
			assert.True(t, p.Written >= prev.Written && p.Answered >= prev.Answered && p.Queued >= prev.Queued,
				"call %d went back: %+v after %+v", k, p, prev)
		}
	}
}

// On a server that refuses CLIENT REPLY a skip-result stream's replies are
// read: each command counts answered once, as its reply comes, not again
// when its part ends.
func TestProgressSkipResultRefusedCountsOnce(t *testing.T) {
	s := redistest.Standalone(t, "--rename-command", "CLIENT", "")
	c := clientFor(t, s)
	var mu sync.Mutex
	var last rbatch.Progress
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSkipResult(),
		rbatch.WithProgress(5*time.Millisecond, func(p rbatch.Progress) { mu.Lock(); last = p; mu.Unlock() }))
	var f *rbatch.Future[int64]
	for range 100 {
		f = b.AtomicLong("pr:n").IncrementAndGetAsync()
	}
	_, err := f.Get() // its part ended
	require.ErrorIs(t, err, rbatch.ErrResultSkipped)
	b.Do("DEBUG", "SLEEP", "0.5")
	for range 200 {
		b.AtomicLong("pr:n").IncrementAndGetAsync()
	}
	time.Sleep(200 * time.Millisecond) // the server sleeps: only the first part is answered
	mu.Lock()
	mid := last
	mu.Unlock()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Skipped: 301}, res.Counts)
	assert.Equal(t, 100, mid.Answered, "mid-stream: %+v", mid)
}
