package rbatch_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/route"
)

// recorder is a Hook that keeps every event.
type recorder struct {
	mu        sync.Mutex
	starts    []rbatch.BatchInfo
	endInfos  []rbatch.BatchInfo
	ends      []*rbatch.BatchResult
	endErrs   []error
	groups    []rbatch.GroupInfo
	results   []rbatch.GroupResult
	redirects []rbatch.RedirectInfo
	retries   []rbatch.RetryInfo
	waits     []rbatch.ConnWaitInfo
	// ctxSeen records, per event kind, whether the context carried the
	// value BatchStart put in it.
	ctxSeen map[string]bool
}

type ctxKey struct{}

func (r *recorder) note(ctx context.Context, kind string) {
	if r.ctxSeen == nil {
		r.ctxSeen = map[string]bool{}
	}
	r.ctxSeen[kind] = ctx.Value(ctxKey{}) == "batch"
}

func (r *recorder) BatchStart(ctx context.Context, b rbatch.BatchInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, b)
	return context.WithValue(ctx, ctxKey{}, "batch")
}

func (r *recorder) BatchEnd(ctx context.Context, b rbatch.BatchInfo, res *rbatch.BatchResult, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.note(ctx, "BatchEnd")
	r.endInfos = append(r.endInfos, b)
	r.ends, r.endErrs = append(r.ends, res), append(r.endErrs, err)
}

func (r *recorder) GroupStart(ctx context.Context, g rbatch.GroupInfo) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.note(ctx, "GroupStart")
	r.groups = append(r.groups, g)
	return ctx
}

func (r *recorder) GroupEnd(ctx context.Context, _ rbatch.GroupInfo, res rbatch.GroupResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.note(ctx, "GroupEnd")
	r.results = append(r.results, res)
}

// groupsOn returns how many groups ended on the node at addr (its
// connection's; "": on any node) — a stream's parts among them.
func (r *recorder) groupsOn(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.results {
		if addr == "" || g.Addr == addr {
			n++
		}
	}
	return n
}

func (r *recorder) Redirect(_ context.Context, ri rbatch.RedirectInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redirects = append(r.redirects, ri)
}

func (r *recorder) Retry(_ context.Context, ri rbatch.RetryInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, ri)
}

func (r *recorder) ConnWait(_ context.Context, w rbatch.ConnWaitInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, w)
}

func TestHookSeesBatchAndGroups(t *testing.T) {
	fresh(t)
	c := newClient(t)
	rec := &recorder{}
	c.AddHook(rec)

	b := c.NewBatch()
	b.Bucket("hk:a").SetAsync("1")
	b.Bucket("hk:a").GetAsync()
	b.AtomicLong("hk:n").IncrementAndGetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)

	require.Len(t, rec.starts, 1)
	assert.Equal(t, 3, rec.starts[0].Commands)
	assert.Equal(t, "", rec.starts[0].Command, "the commands differ")
	assert.Equal(t, rbatch.InMemory, rec.starts[0].Options.Mode)
	require.Len(t, rec.groups, 1)
	assert.Equal(t, srv.Addr, rec.groups[0].Addr)
	assert.Equal(t, 3, rec.groups[0].Commands)
	assert.Equal(t, 1, rec.groups[0].Attempt)
	require.Len(t, rec.results, 1)
	gr := rec.results[0]
	assert.Equal(t, rbatch.Counts{Applied: 3}, gr.Counts)
	assert.Positive(t, gr.BytesWritten)
	assert.Positive(t, gr.BytesRead)
	assert.Nil(t, gr.ServerError)
	assert.NoError(t, gr.Err)
	require.Len(t, rec.ends, 1)
	assert.Same(t, res, rec.ends[0])
	assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts)
	assert.Equal(t, map[string]bool{"BatchEnd": true, "GroupStart": true, "GroupEnd": true}, rec.ctxSeen,
		"BatchStart's context reaches the groups and BatchEnd")

	// Every command SET: the batch says so. A WRONGTYPE reply is the group's server error.
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("hk:x").SetAsync("1")
	b.Bucket("hk:y").SetAsync("2")
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "SET", rec.starts[1].Command)

	b = c.NewBatch()
	b.List("hk:a").AddAsync("x") // hk:a is a string
	b.Bucket("hk:z").SetAsync("3")
	res, err = b.Execute(context.Background())
	require.Error(t, err)
	gr = rec.results[len(rec.results)-1]
	require.NotNil(t, gr.ServerError)
	assert.Equal(t, "WRONGTYPE", gr.ServerError.Prefix())
	assert.Equal(t, rbatch.Counts{Applied: 1, Failed: 1}, gr.Counts)
	assert.Equal(t, rbatch.Counts{Applied: 1, Failed: 1}, res.Counts)
	assert.Equal(t, err, rec.endErrs[len(rec.endErrs)-1])

	// A queue-time error aborts a transaction: that error is the group's.
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("hk:z").SetAsync("4")
	b.Do("SET", "hk:z") // wrong arity
	_, err = b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrTxAborted)
	gr = rec.results[len(rec.results)-1]
	require.NotNil(t, gr.ServerError, "the abort's cause")
	assert.Equal(t, "ERR", gr.ServerError.Prefix())
	assert.Equal(t, rbatch.Counts{Aborted: 2}, gr.Counts)
}

// Hooks are called in the order they were added.
func TestHooksInOrder(t *testing.T) {
	c := newClient(t)
	var order []string
	for _, name := range []string{"first", "second"} {
		c.AddHook(&namedHook{name: name, order: &order})
	}
	b := c.NewBatch()
	b.Bucket("hk:o").SetAsync("1")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"first start", "second start", "first group", "second group",
		"second group end", "first group end", "second end", "first end"}, order)
}

type namedHook struct {
	rbatch.NopHook
	name  string
	order *[]string
}

func (h *namedHook) BatchStart(ctx context.Context, _ rbatch.BatchInfo) context.Context {
	*h.order = append(*h.order, h.name+" start")
	return ctx
}

func (h *namedHook) BatchEnd(context.Context, rbatch.BatchInfo, *rbatch.BatchResult, error) {
	*h.order = append(*h.order, h.name+" end")
}

func (h *namedHook) GroupStart(ctx context.Context, _ rbatch.GroupInfo) context.Context {
	*h.order = append(*h.order, h.name+" group")
	return ctx
}

func (h *namedHook) GroupEnd(context.Context, rbatch.GroupInfo, rbatch.GroupResult) {
	*h.order = append(*h.order, h.name+" group end")
}

// During a slot migration the hook sees the ASK and then the MOVED, with
// the nodes involved; the commands land where the slot lives.
func TestHookSeesRedirects(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	rec := &recorder{}
	c.AddHook(rec)
	key := "hk:migrating"
	slot := route.Slot(key)
	from, to := ownerAndOther(t, cl, slot)
	t.Cleanup(func() { cl.MigrateSlot(t, slot, to, from) })

	cl.BeginMigration(t, slot, from, to)
	b := c.NewBatch()
	set := b.Bucket(key).SetAsync("asked")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.NoError(t, errOf(set))
	cl.FinishMigration(t, slot, from, to)
	b = c.NewBatch()
	get := b.Bucket(key).GetAsync()
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := get.Get()
	assert.Equal(t, "asked", v)

	require.Len(t, rec.redirects, 2)
	assert.Equal(t, rbatch.RedirectInfo{From: from.Addr, To: to.Addr, Kind: "ASK", Commands: 1}, rec.redirects[0])
	assert.Equal(t, rbatch.RedirectInfo{From: from.Addr, To: to.Addr, Kind: "MOVED", Commands: 1}, rec.redirects[1])
	// Each batch: a group on the old owner, then one on the new, attempt 2.
	require.Len(t, rec.groups, 4)
	for k, want := range []rbatch.GroupInfo{{Addr: from.Addr, Attempt: 1}, {Addr: to.Addr, Attempt: 2}} {
		assert.Equal(t, want.Addr, rec.groups[k].Addr)
		assert.Equal(t, want.Attempt, rec.groups[k].Attempt)
	}
	// A redirect followed is no error reply of the group: its command is
	// counted redirected, not in a state.
	assert.Nil(t, rec.results[0].ServerError)
	assert.Equal(t, 1, rec.results[0].Redirected)
	assert.Zero(t, rec.results[0].Counts.Total())
	assert.Equal(t, rbatch.Counts{Applied: 1}, rec.results[1].Counts)
}

// While the server is paused, reads time out and are retried: the hook sees
// each retry, and the pool counts the timeouts and the connections they
// closed.
func TestHookSeesRetriesDuringPause(t *testing.T) {
	fresh(t)
	c := newClient(t)
	rec := &recorder{}
	c.AddHook(rec)
	srv.MustDo(t, "SET", "hk:p", "v")
	srv.MustDo(t, "CLIENT", "PAUSE", 400, "ALL")
	b := c.NewBatch(rbatch.WithResponseTimeout(50*time.Millisecond), rbatch.WithRetry(40, 20*time.Millisecond))
	get := b.Bucket("hk:p").GetAsync()
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := get.Get()
	assert.Equal(t, "v", v)
	require.NotEmpty(t, rec.retries, "the timed-out read was retried")
	for k, r := range rec.retries {
		assert.Equal(t, k+1, r.Attempt)
		assert.Equal(t, 1, r.Commands)
		assert.Equal(t, 20*time.Millisecond, r.Interval)
	}
	assert.Len(t, rec.groups, len(rec.retries)+1, "a group per attempt")
	st := c.Stats()
	require.Len(t, st, 1)
	assert.Positive(t, st[0].Timeouts)
	assert.Positive(t, st[0].DiscardedDead)
	t.Logf("%d retries; stats %+v", len(rec.retries), st[0])
}

// A batch that finds the only connection held waits for it: the hook sees
// the wait, and Stats count it.
func TestHookSeesConnectionWait(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	rec := &recorder{}
	c.AddHook(rec)
	holder := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic)) // holds the connection in MULTI
	holder.Bucket("hk:w").SetAsync("1")
	waitUntil(t, "the holder has the connection", func() bool { return c.Stats()[0].InUse == 1 })
	done := make(chan error, 1)
	go func() {
		b := c.NewBatch()
		b.Bucket("hk:w2").SetAsync("2")
		_, err := b.Execute(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // the second batch waits
	_, err := holder.Execute(context.Background())
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Len(t, rec.waits, 1)
	assert.Equal(t, srv.Addr, rec.waits[0].Addr)
	assert.GreaterOrEqual(t, rec.waits[0].Duration, 25*time.Millisecond) // the sleep began as the wait did
	assert.NoError(t, rec.waits[0].Err)
	st := c.Stats()[0]
	assert.EqualValues(t, 1, st.Waits)
	assert.GreaterOrEqual(t, st.WaitDuration, 25*time.Millisecond)

	// A wait that its context ends is a wait timeout.
	holder = c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	holder.Bucket("hk:w").SetAsync("1")
	waitUntil(t, "the holder has the connection", func() bool { return c.Stats()[0].InUse == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	b := c.NewBatch()
	f := b.Bucket("hk:w3").SetAsync("3")
	_, err = b.Execute(ctx)
	require.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(f), context.DeadlineExceeded)
	require.Len(t, rec.waits, 2)
	assert.ErrorIs(t, rec.waits[1].Err, context.DeadlineExceeded)
	assert.EqualValues(t, 1, c.Stats()[0].WaitTimeouts)
	require.NoError(t, holder.Discard(context.Background()))
}

// A Redis-side batch that waits for the connection another one holds in
// MULTI is heard by the hook as Stats count it.
func TestHookSeesRedisSideConnectionWait(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	rec := &recorder{}
	c.AddHook(rec)
	holder := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	holder.Bucket("hr:a").SetAsync("1")
	waitUntil(t, "the holder has the connection", func() bool { return c.Stats()[0].InUse == 1 })
	waiter := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	waiter.Bucket("hr:b").SetAsync("2") // its session waits for the connection
	time.Sleep(50 * time.Millisecond)
	_, err := holder.Execute(context.Background())
	require.NoError(t, err)
	_, err = waiter.Execute(context.Background())
	require.NoError(t, err)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.waits, 1)
	assert.Equal(t, srv.Addr, rec.waits[0].Addr)
	assert.GreaterOrEqual(t, rec.waits[0].Duration, 25*time.Millisecond)
	assert.NoError(t, rec.waits[0].Err)
	assert.EqualValues(t, 1, c.Stats()[0].Waits)
}

// Under concurrent batches the figures add up at every moment, and once
// the batches are done every connection is idle.
func TestStatsAddUp(t *testing.T) {
	fresh(t)
	const size = 4
	// Sharing off: every batch takes a pooled connection of its own.
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = size; cfg.DisableSharing = true })
	stop := make(chan struct{})
	var samples atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, st := range c.Stats() {
				samples.Add(1)
				if st.Total != st.Idle+st.InUse || st.InUse > size || st.Total > size || st.Idle < 0 {
					t.Errorf("figures do not add up: %+v", st)
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 50 {
				b := c.NewBatch()
				b.AtomicLong("hk:c" + strconv.Itoa(g)).IncrementAndGetAsync()
				b.Bucket("hk:s").SetAsync(k)
				if _, err := b.Execute(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	st := c.Stats()
	require.Len(t, st, 1)
	assert.Zero(t, st[0].InUse)
	assert.Equal(t, st[0].Total, st[0].Idle)
	assert.LessOrEqual(t, st[0].Total, size)
	assert.Positive(t, st[0].Waits, "32 goroutines on 4 connections wait")
	assert.Zero(t, st[0].DiscardedDead+st[0].DiscardedDirty+st[0].Timeouts)
	t.Logf("%d samples; final %+v", samples.Load(), st[0])
}

// panicHook panics as the next batch starts, once.
type panicHook struct {
	rbatch.NopHook
	armed *atomic.Bool
}

func (h panicHook) BatchStart(ctx context.Context, _ rbatch.BatchInfo) context.Context {
	if h.armed.CompareAndSwap(true, false) {
		panic("hook failed")
	}
	return ctx
}

func armedPanicHook() panicHook {
	h := panicHook{armed: new(atomic.Bool)}
	h.armed.Store(true)
	return h
}

// A hook that panics unwinds Execute, and the panic reaches the caller;
// the batch's futures then say their outcome is unknown, never a success.
func TestHookPanicLeavesFuturesUnknown(t *testing.T) {
	c := newClient(t)
	c.AddHook(armedPanicHook())
	b := c.NewBatch()
	n := b.AtomicLong("hp:n").IncrementAndGetAsync()
	get := b.Bucket("hp:k").GetAsync()
	assert.PanicsWithValue(t, "hook failed", func() { _, _ = b.Execute(context.Background()) })
	for i, err := range []error{errOf(n), errOf(get)} {
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome, "command %d", i)
		assert.ErrorContains(t, err, "panicked", "command %d", i)
	}
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrAlreadyExecuted)
}

// A panic unwinding Execute of a Redis-side batch discards its open MULTI:
// nothing queued is applied, and its connection goes back to the pool for
// the next batch.
func TestHookPanicDiscardsRedisSideQueue(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	c.AddHook(armedPanicHook())
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	set := b.Bucket("hpr:k").SetAsync("v")
	assert.Panics(t, func() { _, _ = b.Execute(context.Background()) })
	assert.ErrorIs(t, errOf(set), rbatch.ErrUnknownOutcome)
	assert.Zero(t, c.Stats()[0].InUse, "the connection went back")

	next := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	n := next.AtomicLong("hpr:n").IncrementAndGetAsync()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := next.Execute(ctx)
	require.NoError(t, err, "the next batch gets the connection")
	v, err := n.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	exists, err := redis.Int64(srv.Call("EXISTS", "hpr:k"))
	require.NoError(t, err)
	assert.Zero(t, exists, "the discarded MULTI applied nothing")
}

// The connection a shared line or a stream brings up is waited for as any
// group's is: the hook hears of each wait that Stats counts.
func TestHookSeesSharedAndStreamConnectionWaits(t *testing.T) {
	fresh(t)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 2 }) // one shared line
		rec := &recorder{}
		c.AddHook(rec)
		var holders []*rbatch.Batch
		for k := range 2 { // both connections held in MULTI
			h := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
			h.Bucket("hs:hold" + strconv.Itoa(k)).SetAsync("1")
			holders = append(holders, h)
		}
		waitUntil(t, "the holders have the connections", func() bool { return c.Stats()[0].InUse == 2 })
		done := make(chan error, 1)
		go func() {
			b := c.NewBatch(rbatch.WithMode(mode))
			b.Bucket("hs:k").SetAsync("v")
			_, err := b.Execute(context.Background())
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // it waits
		_, err := holders[0].Execute(context.Background())
		require.NoError(t, err)
		require.NoError(t, <-done, mode)
		_, err = holders[1].Execute(context.Background())
		require.NoError(t, err)
		rec.mu.Lock()
		require.Len(t, rec.waits, 1, mode)
		assert.Equal(t, srv.Addr, rec.waits[0].Addr, mode)
		assert.GreaterOrEqual(t, rec.waits[0].Duration, 25*time.Millisecond, mode)
		rec.mu.Unlock()
		assert.EqualValues(t, 1, c.Stats()[0].Waits, mode)
	}
}

// A Streaming batch's commands are not known when it starts: BatchEnd's
// BatchInfo has them counted, and named when every one is the same.
func TestHookStreamInfoAtEnd(t *testing.T) {
	fresh(t)
	c := newClient(t)
	rec := &recorder{}
	c.AddHook(rec)
	for _, mixed := range []bool{false, true} {
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		for i := range 5 {
			b.Bucket("hs:" + strconv.Itoa(i)).SetAsync(i)
		}
		if mixed {
			b.AtomicLong("hs:n").IncrementAndGetAsync()
		}
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
	}
	require.Len(t, rec.starts, 2)
	require.Len(t, rec.endInfos, 2)
	for _, start := range rec.starts {
		assert.Zero(t, start.Commands, "unknown when the stream starts")
		assert.Empty(t, start.Command)
	}
	assert.Equal(t, 5, rec.endInfos[0].Commands)
	assert.Equal(t, "SET", rec.endInfos[0].Command)
	assert.Equal(t, 6, rec.endInfos[1].Commands)
	assert.Empty(t, rec.endInfos[1].Command, "the commands differ")
	assert.Equal(t, rec.starts[0].Start, rec.endInfos[0].Start)
}
