package rbatch_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// A stream's NodeResult counts rounds, not the parts it went in: a bulk
// load of many parts, and one filled slowly (a part per command), both
// report one attempt when nothing was redirected or retried.
func TestStreamNodeAttemptsAreRounds(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 64 << 10 })
	t.Run("bulk", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		const n = 50000
		for i := range n {
			b.Set("na:bulk").AddAsync(i)
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Nodes, 1)
		assert.Equal(t, n, res.Nodes[0].Commands)
		assert.Equal(t, 1, res.Nodes[0].Attempts)
	})
	t.Run("paced", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		start := time.Now()
		for i := range 20 {
			b.Set("na:paced").AddAsync(i)
			time.Sleep(2 * time.Millisecond)
		}
		res, err := b.Execute(context.Background())
		took := time.Since(start)
		require.NoError(t, err)
		require.Len(t, res.Nodes, 1)
		assert.Equal(t, 1, res.Nodes[0].Attempts)
		// The node's time runs from its first part to its last reply, not
		// the parts' times added up.
		assert.LessOrEqual(t, res.Nodes[0].Duration, took)
		assert.GreaterOrEqual(t, res.Nodes[0].Duration, 30*time.Millisecond, "from the first part to the last")
	})
}

// A stream's WithSync waits after its last command; the node's Duration
// runs to that WAIT's reply, as an InMemory batch's does.
func TestStreamNodeDurationCoversWait(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	c := clientFor(t, primary)
	require.NoError(t, syscall.Kill(replica.PID(), syscall.SIGSTOP))
	defer syscall.Kill(replica.PID(), syscall.SIGCONT)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		t.Run(mode.String(), func(t *testing.T) {
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSync(1, 300*time.Millisecond))
			for i := range 3 {
				b.AtomicLong("nd:" + strconv.Itoa(i)).IncrementAndGetAsync()
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			require.Len(t, res.Nodes, 1)
			assert.Zero(t, res.Nodes[0].SyncedReplicas, "the replica is stopped")
			assert.GreaterOrEqual(t, res.Nodes[0].Duration, 250*time.Millisecond, "Duration covers the WAIT")
		})
	}
}

// Discarding a stream while its parts are on the wire: what was answered
// keeps its value, what was written and not answered is unknown, and the
// rest, written or not yet taken by a part, is not sent with ErrDiscarded
// (not a context cancellation the caller never made).
func TestStreamDiscardedMidWaySaysDiscarded(t *testing.T) {
	fresh(t)
	c := newClient(t)
	notSent := 0
	for range 10 {
		srv.ResetStats(t)
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		var fs []*rbatch.Future[int64]
		for j := range 3000 {
			fs = append(fs, b.AtomicLong("sdd:"+strconv.Itoa(j%16)).IncrementAndGetAsync())
		}
		require.NoError(t, b.Discard(context.Background()))
		var got rbatch.Counts
		for i, f := range fs {
			switch _, err := f.Get(); {
			case err == nil:
				got.Applied++
			case errors.Is(err, rbatch.ErrUnknownOutcome):
				got.Unknown++
			case errors.Is(err, rbatch.ErrDiscarded):
				got.NotSent++
			default:
				t.Fatalf("command %d of a discarded stream: %v", i, err)
			}
		}
		incrs := int(calls(t, "incr"))
		assert.GreaterOrEqual(t, incrs, got.Applied)
		assert.LessOrEqual(t, incrs, got.Applied+got.Unknown)
		notSent += got.NotSent
	}
	assert.Positive(t, notSent, "some commands were not sent before the discard")
}

// A read of a stream's part left unknown stays unknown, not read again: a
// later part may have written its key already (here a SET after it ran
// before the cut), and the read would come back with a value from after
// it. (A batch of one round checks that within itself; a stream's parts do
// not see each other.)
func TestStreamUnknownReadIsNotReadAgain(t *testing.T) {
	fresh(t)
	p := redistest.NewProxy(t, srv.Addr)
	// (Not clientAt: the cut leaves a dead idle connection in its pool.)
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{p.Addr}, StreamBuffer: 64 << 10, ReadTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	srv.MustDo(t, "SET", "sr:k", "before")
	// The stream's connection (a new one: the idle one is cut) gets the
	// reply to its PING and no more; the one a read again would take is
	// not stalled.
	p.SetFault(redistest.Fault{Kind: redistest.Stall, Dir: redistest.ToClient, AfterBytes: int64(len("+PONG\r\n")), Scope: redistest.NewConns, Once: true})
	p.CutAll()
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithRetry(2, time.Millisecond))
	pad := strings.Repeat("p", 1000)
	get := b.Bucket("sr:k").GetAsync()
	for i := range 40 { // past a part's size: the GET's part is sealed and written
		b.Bucket("sr:pad:" + strconv.Itoa(i)).SetAsync(pad)
	}
	b.Bucket("sr:k").SetAsync("later")
	for i := range 40 {
		b.Bucket("sr:pad2:" + strconv.Itoa(i)).SetAsync(pad)
	}
	waitUntil(t, "the later SET ran", func() bool { v, _ := redis.String(srv.MustDo(t, "GET", "sr:k"), nil); return v == "later" })
	p.CutAll()
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Positive(t, res.Counts.Unknown)
	v, gerr := get.Get()
	assert.ErrorIs(t, gerr, rbatch.ErrUnknownOutcome, "read again after the later SET, it gave %q", v)
}

// wrongTypeStream is a stream on srv whose first n commands fail with
// WRONGTYPE.
func wrongTypeStream(t *testing.T, n int) *rbatch.Batch {
	fresh(t)
	srv.MustDo(t, "SET", "sc:s", "x")
	b := newClient(t).NewBatch(rbatch.WithMode(rbatch.Streaming))
	for range n {
		b.List("sc:s").AddAsync("y")
	}
	return b
}

// A stream lists its first 1,000 failures, yet errors.Is and errors.As on
// Execute's error reach the causes of those past them: a caller asking
// whether anything ended unknown or not sent gets the truth.
func TestStreamErrorReachesCausesPastTheList(t *testing.T) {
	t.Run("not sent", func(t *testing.T) {
		b := wrongTypeStream(t, 1200)
		b.Bucket("sc:c").SetAsync(user{"ada"}) // no codec: not sent
		res, err := b.Execute(context.Background())
		assert.Equal(t, rbatch.Counts{Failed: 1200, NotSent: 1}, res.Counts)
		var be *rbatch.BatchError
		require.ErrorAs(t, err, &be)
		assert.Len(t, be.Commands, 1000, "the list stops at 1,000")
		assert.ErrorIs(t, err, rbatch.ErrNotSent)
		assert.ErrorIs(t, err, rbatch.ErrNoCodec)
		var ce *rbatch.CommandError
		var found bool
		for _, e := range be.Unwrap() {
			if errors.As(e, &ce) && ce.Index == 1200 {
				found = true
			}
		}
		assert.True(t, found, "the not-sent command is reached with its index")
		assert.Contains(t, err.Error(), "1201 of 1201 commands did not succeed (1200 failed, 1 not sent)")
	})
	t.Run("not sent, past many distinct messages", func(t *testing.T) {
		b := wrongTypeStream(t, 1000)
		for i := range 40 {
			b.Do("EVAL", "return redis.error_reply(ARGV[1])", 0, "ERR custom "+strconv.Itoa(i))
		}
		b.Bucket("sc:c").SetAsync(user{"ada"}) // no codec: not sent
		res, err := b.Execute(context.Background())
		assert.Equal(t, rbatch.Counts{Failed: 1040, NotSent: 1}, res.Counts)
		assert.ErrorIs(t, err, rbatch.ErrNotSent, "the first not-sent command is kept whatever came before")
		assert.ErrorIs(t, err, rbatch.ErrNoCodec)
	})
	t.Run("unknown", func(t *testing.T) {
		f := redistest.NewFake(t, func(cmd []string) string {
			switch cmd[0] {
			case "RPUSH":
				return "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
			case "SET":
				return "" // never answered
			}
			return redistest.DefaultReply(cmd)
		})
		b := clientAt(t, f.Addr).NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithResponseTimeout(200*time.Millisecond))
		for range 1200 {
			b.List("sc:s").AddAsync("y")
		}
		b.Bucket("sc:k").SetAsync("v")
		res, err := b.Execute(context.Background())
		assert.Equal(t, rbatch.Counts{Failed: 1200, Unknown: 1}, res.Counts)
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	})
}
