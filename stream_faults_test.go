package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// In a cluster, a multi-key command of a stream whose keys span slots is
// split per slot at Execute; one that failed at queueing (an argument with
// no codec, or one over the server's proto-max-bulk-len) is never split
// nor sent: no part of it reaches a node, and the stream goes on.
func TestStreamClusterBadMultiKeyFailsAlone(t *testing.T) {
	cl := freshCluster(t)
	for _, p := range cl.Primaries {
		_, err := p.Call("CONFIG", "SET", "proto-max-bulk-len", "1mb")
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, p := range cl.Primaries {
			p.Call("CONFIG", "SET", "proto-max-bulk-len", "512mb")
		}
	})
	c := clusterClient(t, cl) // dialed after the change: it knows the limit
	keys := []string{"bm:a", "bm:b", "bm:c", "bm:d"}
	require.False(t, route.Slot(keys[0]) == route.Slot(keys[1]) && route.Slot(keys[2]) == route.Slot(keys[3]),
		"the keys must span slots for the commands to be split")
	for _, k := range keys {
		_, err := cl.OwnerOf(t, route.Slot(k)).Call("SET", k, "1")
		require.NoError(t, err)
	}
	cl.ResetStats(t)

	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	before := b.Bucket("bm:x").SetAsync("1")
	del := b.Do("DEL", "bm:a", struct{}{}, "bm:b") // no codec for the struct
	mset := b.Buckets().SetAsync(map[string]any{"bm:c": "2", "bm:d": struct{}{}})
	long := b.Buckets().SetAsync(map[string]any{"bm:a": "2", "bm:b": "2", "bm:c": strings.Repeat("x", 2<<20)})
	after := b.Bucket("bm:y").SetAsync("1")
	res, err := b.Execute(context.Background())

	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.Equal(t, rbatch.Counts{Applied: 2, NotSent: 3}, res.Counts)
	assert.ErrorIs(t, errOf(del), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(mset), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(long), rbatch.ErrNotSent)
	assert.NoError(t, errOf(before))
	assert.NoError(t, errOf(after))
	for _, k := range keys {
		v, err := cl.OwnerOf(t, route.Slot(k)).Call("GET", k)
		require.NoError(t, err)
		assert.Equal(t, []byte("1"), v, "%s changed by a command reported not sent", k)
	}
	stats := cl.CommandStats(t)
	assert.Zero(t, stats["del"]+stats["mset"], "no part of a refused command was sent")
	assert.EqualValues(t, 2, stats["set"])
}

// A stream whose connection is killed between two of its segments goes on
// on a new one: the commands queued after the kill are all applied, with
// or without WithRetry, and the ones before it keep their outcome.
func TestStreamGoesOnAfterLostConnection(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 64 << 10 })
			opts := []rbatch.Option{rbatch.WithMode(rbatch.Streaming)}
			if retry {
				opts = append(opts, rbatch.WithRetry(3, 10*time.Millisecond))
			}
			b := c.NewBatch(opts...)
			const n = 5000
			before := make([]*rbatch.Future[int64], n)
			for i := range before {
				before[i] = b.AtomicLong("gl:before").IncrementAndGetAsync()
			}
			for _, f := range before {
				_, err := f.Get()
				require.NoError(t, err)
			}
			killed := srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
			require.EqualValues(t, 1, killed, "the stream's connection")
			after := make([]*rbatch.Future[int64], n)
			for i := range after {
				after[i] = b.AtomicLong("gl:after").IncrementAndGetAsync()
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			assert.Equal(t, rbatch.Counts{Applied: 2 * n}, res.Counts)
			for _, f := range after {
				_, err := f.Get()
				require.NoError(t, err)
			}
			got, _ := redis.Int(srv.MustDo(t, "GET", "gl:after"), nil)
			assert.Equal(t, n, got)
		})
	}
}

// A connection killed while a stream is writing: what was on it ends
// unknown or not sent, and the segments after it go on a new connection,
// so the batch as a whole still applies most of its commands; with
// WithRetry the not-sent ones are applied too.
func TestStreamRetriesOnNewConnection(t *testing.T) {
	fresh(t)
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}, StreamBuffer: 64 << 10})
	require.NoError(t, err)
	defer c.Close()
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithRetry(3, 10*time.Millisecond))
	const n = 100_000
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		if i == n/2 {
			srv.MustDo(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
		}
		fs[i] = b.AtomicLong("rn:c").IncrementAndGetAsync()
	}
	res, _ := b.Execute(context.Background())
	assert.Equal(t, n, res.Counts.Total())
	assert.Zero(t, res.Counts.NotSent, "not-sent commands were retried on a new connection")
	applied := 0
	for _, f := range fs {
		if _, err := f.Get(); err == nil {
			applied++
		} else {
			require.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
		}
	}
	assert.Equal(t, res.Counts.Applied, applied)
	got, _ := redis.Int(srv.MustDo(t, "GET", "rn:c"), nil)
	assert.GreaterOrEqual(t, got, applied)
	assert.LessOrEqual(t, got, applied+res.Counts.Unknown)
	t.Logf("counts %+v, counter %d", res.Counts, got)
}

// A server that takes connections and answers nothing: the stream's
// connection ends at the read timeout, and the segments after it do not
// each dial a connection of their own and wait out its handshake (a
// stream of many segments would take that long many times over): the node
// is unreachable for the stream, its later commands end not sent at once.
// A retry round tries it again.
func TestStreamStopsDialingAnUnreachableNode(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			s := redistest.Standalone(t)
			px := redistest.NewProxy(t, s.Addr)
			c := clientAt(t, px.Addr, func(cfg *rbatch.Config) {
				cfg.ReadTimeout = 200 * time.Millisecond
				cfg.StreamBuffer = 16 << 10
				cfg.DisableSharing = true
			})
			received := func() int {
				n, _ := strconv.Atoi(s.Info(t, "stats")["total_connections_received"])
				return n
			}
			opts := []rbatch.Option{rbatch.WithMode(rbatch.Streaming)}
			if retry {
				opts = append(opts, rbatch.WithRetry(2, 10*time.Millisecond))
			}
			px.SetFault(redistest.Fault{Kind: redistest.Stall, Dir: redistest.ToServer})
			before := received()
			b := c.NewBatch(opts...)
			const n = 20_000
			value := strings.Repeat("v", 100)
			for i := range n {
				b.Bucket("un:" + strconv.Itoa(i%100)).SetAsync(value)
			}
			res, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.Equal(t, n, res.Counts.Total())
			assert.Equal(t, n, res.Counts.Unknown+res.Counts.NotSent, "nothing answered: %+v", res.Counts)
			assert.Positive(t, res.Counts.NotSent)
			dials := received() - before
			t.Logf("counts %+v, connections %d", res.Counts, dials)
			// The stream's first connection, the one that found the node
			// unreachable, and with WithRetry one per retry round of the
			// segments that were not sent.
			limit := 2
			if retry {
				limit = 2 + 2 // and one per retry the stream allows
			}
			assert.LessOrEqual(t, dials, limit, "connections the stream opened")
			px.Clear()
		})
	}
}

// An outage longer than a stream's retries: the commands queued during it
// end not sent, and once the node can be reached again (tried a second
// after the last attempt failed) the stream goes on there.
func TestStreamOutlastsAnOutage(t *testing.T) {
	s := redistest.Standalone(t)
	px := redistest.NewProxy(t, s.Addr)
	c := clientAt(t, px.Addr, func(cfg *rbatch.Config) {
		cfg.StreamBuffer = 16 << 10
		cfg.DisableSharing = true
	})
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	const n = 5000
	queue := func(key string) []*rbatch.Future[int64] {
		fs := make([]*rbatch.Future[int64], n)
		for i := range fs {
			fs[i] = b.AtomicLong(key).IncrementAndGetAsync()
		}
		return fs
	}
	first := queue("oo:first")
	for _, f := range first {
		_, err := f.Get()
		require.NoError(t, err)
	}
	px.Refuse()
	during := queue("oo:during")
	for _, f := range during {
		f.Get()
	}
	require.NoError(t, px.Listen())
	time.Sleep(1200 * time.Millisecond) // past the recheck of the last failed attempt
	after := queue("oo:after")
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	t.Logf("counts %+v", res.Counts)
	assert.Equal(t, 3*n, res.Counts.Total())
	for _, f := range after {
		_, err := f.Get()
		require.NoError(t, err, "queued once the node was back")
	}
	assert.Positive(t, res.Counts.NotSent)
	got, _ := redis.Int(s.MustDo(t, "GET", "oo:after"), nil)
	assert.Equal(t, n, got)
}

// A pool with no connection free for a moment is no unreachable node: the
// parts that found it so end not sent, the later ones run.
func TestStreamBusyPoolIsNotUnreachable(t *testing.T) {
	s := redistest.Standalone(t)
	p := &redis.Pool{MaxActive: 1, Dial: func() (redis.Conn, error) { return redis.Dial("tcp", s.Addr) }}
	defer p.Close()
	c := rbatch.NewClientFromPool(p)
	defer c.Close()
	held := p.Get()
	_, err := held.Do("PING")
	require.NoError(t, err)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	early := b.AtomicLong("bp:k").IncrementAndGetAsync()
	require.ErrorIs(t, errOf(early), rbatch.ErrNotSent, "the pool had none free")
	held.Close()
	late := make([]*rbatch.Future[int64], 100)
	for i := range late {
		late[i] = b.AtomicLong("bp:k").IncrementAndGetAsync()
	}
	_, err = b.Execute(context.Background())
	require.Error(t, err)
	for _, f := range late {
		_, err := f.Get()
		require.NoError(t, err, "queued once the pool had a connection again")
	}
	got, _ := redis.Int(s.MustDo(t, "GET", "bp:k"), nil)
	assert.Equal(t, len(late), got)
}

// A stream's *BatchError lists its first 1,000 failures in submission
// order, whichever part each was in and however the parts ended; Counts
// has them all.
func TestStreamBatchErrorListsFirstFailures(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "RPUSH", "fl:list", "x")
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 16 << 10 })
	parts := &recorder{}
	c.AddHook(parts)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	const n = 6000
	for i := range n {
		if i%2 == 0 {
			b.Bucket("fl:list").GetAsync() // WRONGTYPE
		} else {
			b.AtomicLong("fl:n").IncrementAndGetAsync()
		}
	}
	res, err := b.Execute(context.Background())
	assert.Equal(t, rbatch.Counts{Applied: n / 2, Failed: n / 2}, res.Counts)
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Equal(t, 1000, len(berr.Commands))
	for k, ce := range berr.Commands {
		require.Equal(t, 2*k, ce.Index, "failure %d", k)
		require.Equal(t, "GET", ce.Command)
	}
	assert.Greater(t, parts.groupsOn(""), 1, "the stream went in several parts")
}

// Commands a stream never sent because its context ended are failures
// like the others: listed in the *BatchError (the first 1,000, in order),
// each not sent or unknown.
func TestStreamBatchErrorListsNotSent(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 1 << 20 })
	ctx, cancel := context.WithCancel(context.Background())
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithContext(ctx))
	srv.MustDo(t, "CLIENT", "PAUSE", 3000, "WRITE") // nothing is answered until the context ends
	defer srv.MustDo(t, "CLIENT", "UNPAUSE")
	n := 0
	for ; n < 3000; n++ {
		b.AtomicLong("ns:c").IncrementAndGetAsync()
	}
	cancel()
	res, err := b.Execute(context.Background())
	failures := res.Counts.NotSent + res.Counts.Unknown
	require.Equal(t, n, res.Counts.Total())
	require.Positive(t, failures)
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Equal(t, min(failures, 1000), len(berr.Commands))
	for k, ce := range berr.Commands {
		if k > 0 {
			require.Greater(t, ce.Index, berr.Commands[k-1].Index)
		}
		if !errors.Is(ce.Err, rbatch.ErrNotSent) && !errors.Is(ce.Err, rbatch.ErrUnknownOutcome) {
			t.Fatalf("command %d: %v", ce.Index, ce.Err)
		}
	}
	t.Logf("counts %+v", res.Counts)
}

// A discarded batch calls WithProgress's function once, at its end, in
// every mode: its commands count queued and failed, none answered.
func TestProgressEndsOnDiscard(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.Streaming} {
		t.Run(mode.String(), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			var calls []rbatch.Progress
			var mu sync.Mutex
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithProgress(time.Hour, func(p rbatch.Progress) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, p)
			}))
			var f *rbatch.Future[int64]
			for range 5 {
				f = b.AtomicLong("pd:n").IncrementAndGetAsync()
			}
			if mode == rbatch.Streaming { // its part answered: Get waits for it
				_, err := f.Get()
				require.NoError(t, err)
			}
			require.NoError(t, b.Discard(context.Background()))
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, calls, 1)
			last := calls[0]
			assert.Equal(t, 5, last.Queued)
			if mode == rbatch.Streaming { // sent as queued: answered before the discard
				assert.Equal(t, 5, last.Answered)
			} else {
				assert.Zero(t, last.Answered)
				assert.Equal(t, 5, last.Failed)
			}
		})
	}
}

// Commands on one key keep their order across a lost connection: a part
// whose connection died and that could not get another (its command not
// sent, retried later) is not overtaken by the part after it, which waits
// for it on that node. A hook holds the two parts' groups at their start,
// so that the second is queued while the first has not yet failed, and
// gets its connection after the server can be reached again.
func TestStreamKeepsOrderAcrossLostConnection(t *testing.T) {
	fresh(t)
	p := redistest.NewProxy(t, srv.Addr)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) { cfg.DisableSharing = true })
	h := &holdGroups{hold: map[int64]time.Duration{2: 150 * time.Millisecond, 3: 150 * time.Millisecond}}
	c.AddHook(h)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithRetry(3, 400*time.Millisecond))
	_, err := b.Bucket("ko:x").SetAsync("0").Get() // group 1
	require.NoError(t, err)
	p.Refuse() // the stream's connection is closed, and no new one can be had
	time.Sleep(50 * time.Millisecond)
	first := b.Bucket("ko:x").SetAsync("1") // group 2: finds its connection closed, gets none, retried later
	time.Sleep(30 * time.Millisecond)
	second := b.Bucket("ko:x").SetAsync("2") // group 3: queued before group 2 failed
	time.Sleep(170 * time.Millisecond)
	require.NoError(t, p.Listen()) // group 2 failed meanwhile; group 3 can get a connection now
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts)
	assert.NoError(t, errOf(first))
	assert.NoError(t, errOf(second))
	got, _ := redis.String(srv.MustDo(t, "GET", "ko:x"), nil)
	assert.Equal(t, "2", got, "the later SET was overtaken by the earlier one's retry")
}

// A stream's WithSync counts every node it wrote to: one whose last
// connection failed has nothing to confirm its writes, and Execute says so.
func TestStreamSyncCountsNodeWithLostConnection(t *testing.T) {
	fresh(t)
	p := redistest.NewProxy(t, srv.Addr)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) { cfg.DisableSharing = true })
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSync(0, 10*time.Millisecond))
	_, err := b.Bucket("sl:a").SetAsync("1").Get()
	require.NoError(t, err)
	p.Refuse()
	time.Sleep(50 * time.Millisecond)
	lost := b.Bucket("sl:b").SetAsync("1")
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, errOf(lost), rbatch.ErrNotSent)
	assert.Equal(t, rbatch.Counts{Applied: 1, NotSent: 1}, res.Counts)
	assert.Zero(t, res.SyncedReplicas)
	assert.Contains(t, err.Error(), "nothing can confirm its writes")
}

// holdGroups holds the nth group (counting from 1) at its start for hold[n].
type holdGroups struct {
	rbatch.NopHook
	n    atomic.Int64
	hold map[int64]time.Duration
}

func (h *holdGroups) GroupStart(ctx context.Context, _ rbatch.GroupInfo) context.Context {
	time.Sleep(h.hold[h.n.Add(1)])
	return ctx
}

// A stream's command that changes its connection's state (CLIENT SETNAME)
// closes that connection at the stream's end: a later batch does not
// inherit the name.
func TestStreamConnectionStateNotInherited(t *testing.T) {
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize, cfg.DisableSharing = 1, true })
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	b.Do("CLIENT", "SETNAME", "rbatch-stream")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	nb := c.NewBatch()
	name := nb.Do("CLIENT", "GETNAME")
	_, err = nb.Execute(context.Background())
	require.NoError(t, err)
	got, err := name.Get()
	assert.ErrorIs(t, err, rbatch.ErrNil, "a later batch's connection is named %v", got)
}

// WithSyncAOF on a server without WAITAOF (Redis 7.0 here) refuses a
// stream before anything is sent: every command not sent, ErrUnsupported.
func TestStreamSyncAOFUnsupported(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithSyncAOF(true, 0, 100*time.Millisecond))
	f := b.Bucket("sa:k").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrUnsupported)
	assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
	assert.Equal(t, rbatch.Counts{NotSent: 1}, res.Counts)
	assert.Zero(t, calls(t, "set"))
	assert.Zero(t, calls(t, "waitaof"))
}

// In a cluster stream, a segment routed by a newer slot map than the one
// before it waits for that one to end: otherwise, for a key whose slot
// moved, the later segment's SET goes straight to the new owner while the
// earlier one's reaches it only by MOVED, after it.
func TestStreamClusterKeepsOrderAcrossMoved(t *testing.T) {
	cl := freshCluster(t)
	key := "som:x"
	slot := route.Slot(key)
	from, to := ownerAndOther(t, cl, slot)
	c := clusterClient(t, cl)
	h := &holdMoved{from: from.Addr}
	c.AddHook(h)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	_, err := b.Bucket(key).SetAsync("0").Get() // the first segment, on from
	require.NoError(t, err)
	cl.MigrateSlot(t, slot, from, to) // the client's slot map does not know yet
	t.Cleanup(func() { cl.MigrateSlot(t, slot, to, from) })
	h.holdNext.Store(true)
	first := b.Bucket(key).SetAsync("1") // routed to from by the old map, held at its start
	time.Sleep(30 * time.Millisecond)
	second := b.Bucket(key).SetAsync("2") // the next segment, queued meanwhile
	// Another batch meets the MOVED and reloads the map while first is held:
	// second is routed by the new map.
	o := c.NewBatch()
	o.Bucket(key).GetAsync()
	o.Bucket(key).GetAsync()
	_, err = o.Execute(context.Background())
	require.NoError(t, err)
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts)
	assert.NoError(t, errOf(first))
	assert.NoError(t, errOf(second))
	moved := 0
	for _, nr := range res.Nodes {
		moved += nr.Moved
	}
	assert.Equal(t, 1, moved, "the first SET was to meet the MOVED")
	got, err := redis.String(to.Call("GET", key))
	require.NoError(t, err)
	assert.Equal(t, "2", got, "the later SET was overtaken by the earlier one's redirect")
}

// holdMoved holds, at its start, the stream's one-command group to from
// that follows holdNext being set, and every one-command redirected group
// a little: the hold gives a later segment the time to overtake it.
type holdMoved struct {
	rbatch.NopHook
	from     string
	holdNext atomic.Bool
}

func (h *holdMoved) GroupStart(ctx context.Context, g rbatch.GroupInfo) context.Context {
	switch {
	case g.Commands != 1:
	case g.Attempt == 1 && g.Addr == h.from && h.holdNext.CompareAndSwap(true, false):
		time.Sleep(200 * time.Millisecond)
	case g.Attempt == 2:
		time.Sleep(100 * time.Millisecond)
	}
	return ctx
}

// A stream's segment that starts while the one before it waits to retry
// (the server answered BUSY) waits for it to end: a later SET of the key
// sent meanwhile would be overtaken by the earlier one's retry.
func TestStreamKeepsOrderAcrossRetry(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "CONFIG", "SET", "busy-reply-threshold", "20")
	t.Cleanup(func() { srv.MustDo(t, "CONFIG", "SET", "busy-reply-threshold", "5000") })
	c := newClient(t, func(cfg *rbatch.Config) { cfg.DisableSharing = true })
	// Groups: 1 the first SET; 2 the second, held so that the third is
	// queued meanwhile and starts as soon as the second is written; 3 the
	// third, held past the script's end.
	c.AddHook(&holdGroups{hold: map[int64]time.Duration{2: 30 * time.Millisecond, 3: 150 * time.Millisecond}})
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithRetry(3, 300*time.Millisecond))
	_, err := b.Bucket("kr:x").SetAsync("0").Get()
	require.NoError(t, err)
	script := make(chan error, 1)
	go func() { // keeps the server busy for 150 ms
		_, err := srv.Call("EVAL", `local s = redis.call('TIME')
			local t0 = s[1] * 1000000 + s[2]
			repeat s = redis.call('TIME') until s[1] * 1000000 + s[2] - t0 > 150000
			return 1`, 0)
		script <- err
	}()
	time.Sleep(50 * time.Millisecond)
	first := b.Bucket("kr:x").SetAsync("1") // answered BUSY, retried 300 ms later
	time.Sleep(10 * time.Millisecond)
	second := b.Bucket("kr:x").SetAsync("2") // the next segment
	res, err := b.Execute(context.Background())
	require.NoError(t, <-script)
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 3}, res.Counts)
	assert.NoError(t, errOf(first))
	assert.NoError(t, errOf(second))
	got, _ := redis.String(srv.MustDo(t, "GET", "kr:x"), nil)
	assert.Equal(t, "2", got, "the later SET was overtaken by the earlier one's retry")
}

// Execute's deadline ending a stream is its commands' cause: the unanswered
// ones are unknown with context.DeadlineExceeded, as in the other modes,
// not context.Canceled.
func TestStreamExecuteDeadlineIsTheCause(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	first := b.AtomicLong("sd:n").IncrementAndGetAsync()
	_, err := first.Get()
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(s.PID(), syscall.SIGSTOP))
	defer func() { _ = syscall.Kill(s.PID(), syscall.SIGCONT) }()
	second := b.AtomicLong("sd:n").IncrementAndGetAsync()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := b.Execute(ctx)
	require.NoError(t, syscall.Kill(s.PID(), syscall.SIGCONT))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, errOf(second), rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, errOf(second), context.DeadlineExceeded)
	assert.NotErrorIs(t, errOf(second), context.Canceled)
	assert.Equal(t, rbatch.Counts{Applied: 1, Unknown: 1}, res.Counts)
}

// A command queued after WithContext's context ended fails at once, not
// sent, and counts: Counts add up to every command queued, and Execute
// reports it.
func TestStreamQueuedAfterContextEndedCounts(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithContext(ctx))
	first := b.AtomicLong("sc:n").IncrementAndGetAsync()
	_, err := first.Get()
	require.NoError(t, err)
	cancel()
	late := b.AtomicLong("sc:n").IncrementAndGetAsync()
	assert.ErrorIs(t, errOf(late), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(late), context.Canceled)
	assert.Equal(t, 1, late.Index())
	assert.Equal(t, 2, b.Len())
	res, err := b.Execute(context.Background())
	var be *rbatch.BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Commands, 1)
	assert.Equal(t, 1, be.Commands[0].Index)
	assert.Equal(t, rbatch.Counts{Applied: 1, NotSent: 1}, res.Counts)
	n, err := redis.Int64(s.Call("GET", "sc:n"))
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

// A stream fed more slowly than its response timeout: each part's replies
// are awaited from when that part was written, not from a deadline the part
// before it left on the connection, so every command is answered.
func TestStreamSlowerThanResponseTimeout(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s)
	for _, skip := range []bool{false, true} {
		opts := []rbatch.Option{rbatch.WithMode(rbatch.Streaming), rbatch.WithResponseTimeout(50 * time.Millisecond)}
		if skip {
			opts = append(opts, rbatch.WithSkipResult())
		}
		key := fmt.Sprint("slowfeed:", skip)
		b := c.NewBatch(opts...)
		for range 4 {
			b.AtomicLong(key).IncrementAndGetAsync()
			time.Sleep(150 * time.Millisecond) // the source is slow
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err, "skip %v", skip)
		assert.Zero(t, res.Counts.Unknown, "skip %v", skip)
		n, _ := redis.Int64(s.Call("GET", key))
		assert.Equal(t, int64(4), n, "skip %v", skip)
	}
}

// Two streams that reach the same two primaries in opposite order, on a
// client with one connection per node: each holds the connection of the
// node it reached first when it needs the other's. A stream waiting for a
// connection gives back those of other nodes it is not using, so both
// finish, every command applied once; with WithSync, the connection given
// back had its WAIT first, so each node still reports its replica.
func TestStreamsCrossingNodesDoNotDeadlock(t *testing.T) {
	cl := freshCluster(t)
	a, b := cl.Primaries[0], cl.Primaries[1]
	var kA, kB string
	for i := 0; kA == "" || kB == ""; i++ {
		k := fmt.Sprintf("sdl:%d", i)
		switch cl.OwnerOf(t, route.Slot(k)) {
		case a:
			kA = k
		case b:
			kB = k
		}
	}
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	for _, opts := range [][]rbatch.Option{nil, {rbatch.WithSync(1, 5*time.Second)}} {
		s1 := c.NewBatch(append(opts, rbatch.WithMode(rbatch.Streaming))...)
		s2 := c.NewBatch(append(opts, rbatch.WithMode(rbatch.Streaming))...)
		first := []*rbatch.Future[int64]{s1.AtomicLong(kA).IncrementAndGetAsync(), s2.AtomicLong(kB).IncrementAndGetAsync()}
		for _, f := range first {
			_, err := f.Get() // answered: each stream holds its node's only connection
			require.NoError(t, err)
		}
		type end struct {
			res *rbatch.BatchResult
			err error
		}
		done := make(chan end, 2)
		for _, p := range []struct {
			s *rbatch.Batch
			k string
		}{{s1, kB}, {s2, kA}} {
			go func() {
				p.s.AtomicLong(p.k).IncrementAndGetAsync()
				res, err := p.s.Execute(context.Background())
				done <- end{res, err}
			}()
		}
		for range 2 {
			select {
			case e := <-done:
				require.NoError(t, e.err, opts)
				assert.Equal(t, rbatch.Counts{Applied: 2}, e.res.Counts)
				if len(opts) > 0 {
					assert.Equal(t, 1, e.res.SyncedReplicas, "both nodes' writes acknowledged")
					require.Len(t, e.res.Nodes, 2)
					for _, nr := range e.res.Nodes {
						assert.Equal(t, 1, nr.SyncedReplicas, nr.Addr)
					}
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("two streams still running after 10 s: each holds one node's only connection (%v)", opts)
			}
		}
	}
	for k, want := range map[string]int{kA: 4, kB: 4} {
		got, err := redis.Int(cl.OwnerOf(t, route.Slot(k)).Call("GET", k))
		require.NoError(t, err)
		assert.Equal(t, want, got, k)
	}
}

// Streams whose parts reach every primary at once, on a client with one
// connection per node: a part's groups run side by side, so a stream may
// come to hold connections while one of its groups waits for another.
// Every stream finishes, each counter exact.
func TestStreamsSharingOneConnectionPerNode(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.PoolSize = 1; cfg.StreamBuffer = 4 << 10 })
	const streams, n = 4, 5000
	for round := range 3 {
		var wg sync.WaitGroup
		counts := make([]rbatch.Counts, streams)
		errs := make([]error, streams)
		for s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
				for i := range n {
					b.AtomicLong(fmt.Sprintf("sp:%d:%d:%d", round, s, i%97)).IncrementAndGetAsync()
				}
				res, err := b.Execute(context.Background())
				counts[s], errs[s] = res.Counts, err
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: streams still running after 30 s, each holding connections another waits for", round)
		}
		for s := range streams {
			require.NoError(t, errs[s], "round %d stream %d", round, s)
			assert.Equal(t, rbatch.Counts{Applied: n}, counts[s])
		}
	}
	total := 0
	for _, p := range cl.Primaries {
		keys, err := redis.Strings(p.Call("KEYS", "sp:*"))
		require.NoError(t, err)
		for _, k := range keys {
			v, err := redis.Int(p.Call("GET", k))
			require.NoError(t, err)
			total += v
		}
	}
	assert.Equal(t, 3*streams*n, total, "every INCR applied once")
}
