package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// Orders placed by many buyers at once, each checking the stock first:
// exactly as many orders as there was stock, the stock never below 0.
func TestConditionOrdersNeverOversell(t *testing.T) {
	fresh(t)
	c := newClient(t)
	const stock, buyers, tries = 100, 64, 5
	srv.MustDo(t, "HSET", "ord:{1}:stock", "sku", stock)
	var placed, unmet, aborted atomic.Int64
	var wg sync.WaitGroup
	for g := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range tries {
				// A nil EXEC means another order went through: with as many
				// retries as units, no attempt can run out of them while
				// stock is left, so exactly the stock is sold.
				b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(stock, time.Millisecond))
				held := b.AddCondition(rbatch.HashIntAtLeast("ord:{1}:stock", "sku", 1))
				left := b.Map("ord:{1}:stock").AddAndGetAsync("sku", -1)
				b.List("ord:{1}:orders").AddAsync(fmt.Sprintf("%d-%d", g, k))
				_, err := b.Execute(context.Background())
				switch {
				case err == nil:
					placed.Add(1)
					ok, _ := held.Get()
					assert.True(t, ok)
					n, _ := left.Get()
					assert.GreaterOrEqual(t, n, int64(0), "the stock went below 0")
				case errors.Is(err, rbatch.ErrConditionFailed):
					unmet.Add(1)
					ok, herr := held.Get()
					assert.False(t, ok)
					assert.NoError(t, herr)
					assert.ErrorIs(t, errOf(left), rbatch.ErrConditionFailed)
				case errors.Is(err, rbatch.ErrTxAborted): // a watched key changed, every retry
					aborted.Add(1)
					assert.ErrorIs(t, errOf(left), rbatch.ErrTxAborted)
				default:
					t.Errorf("order %d-%d: %v", g, k, err)
				}
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, stock, placed.Load())
	assert.EqualValues(t, buyers*tries-stock, unmet.Load()+aborted.Load())
	t.Logf("%d placed, %d refused by the condition, %d aborted after retries", placed.Load(), unmet.Load(), aborted.Load())
	assert.Equal(t, "0", string(srv.MustDo(t, "HGET", "ord:{1}:stock", "sku").([]byte)))
	assert.EqualValues(t, stock, srv.MustDo(t, "LLEN", "ord:{1}:orders"))
}

// Each kind of condition, holding and not: when one fails, nothing of the
// batch is sent (no MULTI or EXEC reaches the server) and the keys are
// unwatched; when all hold, the batch is applied.
func TestConditionKinds(t *testing.T) {
	setup := func(t *testing.T) {
		srv.MustDo(t, "SET", "ck:s", "v1")
		srv.MustDo(t, "SET", "ck:n", "7")
		srv.MustDo(t, "HSET", "ck:h", "f", "v2", "qty", "3")
		srv.MustDo(t, "RPUSH", "ck:l", "a", "b")
		srv.MustDo(t, "SADD", "ck:set", "m1", "m2", "m3")
		srv.MustDo(t, "ZADD", "ck:z", "1.5", "zm")
	}
	cases := []struct {
		cond rbatch.Condition
		held bool
	}{
		{rbatch.KeyExists("ck:s"), true},
		{rbatch.KeyExists("ck:none"), false},
		{rbatch.KeyNotExists("ck:none"), true},
		{rbatch.KeyNotExists("ck:s"), false},
		{rbatch.StringEqual("ck:s", "v1"), true},
		{rbatch.StringEqual("ck:s", "v9"), false},
		{rbatch.StringEqual("ck:none", ""), false},
		{rbatch.StringEqual("ck:n", 7), true},
		{rbatch.StringNotEqual("ck:s", "v9"), true},
		{rbatch.StringNotEqual("ck:s", "v1"), false},
		{rbatch.HashEqual("ck:h", "f", "v2"), true},
		{rbatch.HashEqual("ck:h", "f", "v1"), false},
		{rbatch.HashEqual("ck:h", "none", "v2"), false},
		{rbatch.HashNotEqual("ck:h", "f", "v1"), true},
		{rbatch.HashNotEqual("ck:h", "f", "v2"), false},
		{rbatch.HashExists("ck:h", "f"), true},
		{rbatch.HashExists("ck:h", "none"), false},
		{rbatch.HashNotExists("ck:h", "none"), true},
		{rbatch.HashNotExists("ck:h", "f"), false},
		{rbatch.IntAtLeast("ck:n", 7), true},
		{rbatch.IntAtLeast("ck:n", 8), false},
		{rbatch.IntAtLeast("ck:none", 0), true},
		{rbatch.IntAtLeast("ck:none", 1), false},
		{rbatch.HashIntAtLeast("ck:h", "qty", 3), true},
		{rbatch.HashIntAtLeast("ck:h", "qty", 4), false},
		{rbatch.HashIntAtLeast("ck:h", "none", -1), true},
		{rbatch.ListLengthEqual("ck:l", 2), true},
		{rbatch.ListLengthEqual("ck:l", 3), false},
		{rbatch.ListLengthEqual("ck:none", 0), true},
		{rbatch.SetLengthEqual("ck:set", 3), true},
		{rbatch.SetLengthEqual("ck:set", 2), false},
		{rbatch.SortedSetLengthEqual("ck:z", 1), true},
		{rbatch.SortedSetLengthEqual("ck:z", 0), false},
		{rbatch.HashLengthEqual("ck:h", 2), true},
		{rbatch.HashLengthEqual("ck:h", 1), false},
		{rbatch.SetContains("ck:set", "m2"), true},
		{rbatch.SetContains("ck:set", "m9"), false},
		{rbatch.SetNotContains("ck:set", "m9"), true},
		{rbatch.SetNotContains("ck:set", "m2"), false},
		{rbatch.SortedSetScoreEqual("ck:z", "zm", 1.5), true},
		{rbatch.SortedSetScoreEqual("ck:z", "zm", 2), false},
		{rbatch.SortedSetScoreEqual("ck:z", "none", 0), false},
	}
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v=%v", tc.cond, tc.held), func(t *testing.T) {
			fresh(t)
			setup(t)
			b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
			held := b.AddCondition(tc.cond)
			set := b.Bucket("ck:out").SetAsync("applied")
			res, err := b.Execute(context.Background())
			ok, herr := held.Get()
			require.NoError(t, herr)
			assert.Equal(t, tc.held, ok)
			stats := srv.CommandStats(t)
			assert.EqualValues(t, 1, stats["watch"])
			if tc.held {
				require.NoError(t, err)
				assert.NoError(t, errOf(set))
				assert.EqualValues(t, 1, stats["exec"])
				assert.Equal(t, "applied", string(srv.MustDo(t, "GET", "ck:out").([]byte)))
				assert.Equal(t, 1, res.Nodes[0].Attempts)
				assert.Equal(t, 1, res.Nodes[0].Commands)
				return
			}
			require.ErrorIs(t, err, rbatch.ErrConditionFailed)
			require.Len(t, res.Nodes, 1)
			assert.Zero(t, res.Nodes[0].Commands, "the conditions kept the command back")
			assert.Contains(t, err.Error(), tc.cond.String(), "the error names the condition")
			assert.ErrorIs(t, errOf(set), rbatch.ErrConditionFailed)
			assert.NotErrorIs(t, errOf(set), rbatch.ErrUnknownOutcome)
			assert.Zero(t, stats["multi"], "nothing of the batch was sent")
			assert.Zero(t, stats["exec"])
			assert.EqualValues(t, 1, stats["unwatch"])
			assert.Nil(t, srv.MustDo(t, "GET", "ck:out"))
			assert.Equal(t, []any{rbatch.ErrConditionFailed}, unwrapSentinel(res.Responses, rbatch.ErrConditionFailed))
		})
	}
}

// unwrapSentinel maps each response that is an error matching target to
// target itself, so a list of responses can be compared whole.
func unwrapSentinel(responses []any, target error) []any {
	out := make([]any, len(responses))
	for i, r := range responses {
		out[i] = r
		if err, ok := r.(error); ok && errors.Is(err, target) {
			out[i] = target
		}
	}
	return out
}

// After a failed condition the connection goes back to the pool with no
// WATCH: a change to the key watched then does not abort the next
// transaction on that connection.
// A condition on a large value fails with a short message: the value
// wanted and the value found are each cut to a few dozen characters.
func TestConditionOnALargeValueSaysLittle(t *testing.T) {
	fresh(t)
	c := newClient(t)
	large := strings.Repeat("a", 500_000)
	srv.MustDo(t, "SET", "cl:found", strings.Repeat("b", 500_000))
	srv.MustDo(t, "SET", "cl:int", strings.Repeat("9", 500_000))
	for _, cond := range []rbatch.Condition{rbatch.StringEqual("cl:found", large), rbatch.IntAtLeast("cl:int", 1)} {
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		b.AddCondition(cond)
		set := b.Bucket("cl:out").SetAsync("x")
		_, err := b.Execute(context.Background())
		require.Error(t, err)
		assert.Less(t, len(err.Error()), 1000, "%.200s", err)
		assert.Less(t, len(errOf(set).Error()), 1000)
		assert.Contains(t, err.Error(), "characters in all", "the message says the value was cut")
	}
	assert.Equal(t, int64(0), srv.MustDo(t, "EXISTS", "cl:out"))
}

func TestConditionLeavesNoWatch(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
	srv.MustDo(t, "SET", "nw:k", "1")
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.AddCondition(rbatch.StringEqual("nw:k", "2"))
	b.Bucket("nw:out").SetAsync("x")
	_, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrConditionFailed)

	srv.MustDo(t, "SET", "nw:k", "changed elsewhere") // would abort a transaction still watching it
	next := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	set := next.Bucket("nw:out").SetAsync("y")
	_, err = next.Execute(context.Background())
	require.NoError(t, err)
	assert.NoError(t, errOf(set))
	assert.Equal(t, "y", string(srv.MustDo(t, "GET", "nw:out").([]byte)))

	// The same after a condition that held and a transaction that ran.
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.AddCondition(rbatch.KeyExists("nw:k"))
	b.Bucket("nw:out").SetAsync("z")
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	srv.MustDo(t, "SET", "nw:k", "changed again")
	next = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	next.Bucket("nw:out").SetAsync("w")
	_, err = next.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "w", string(srv.MustDo(t, "GET", "nw:out").([]byte)))
}

// A condition whose read fails (WRONGTYPE) or whose value is not an integer
// cannot be checked: nothing is applied, the condition's future holds why.
func TestConditionThatCannotBeChecked(t *testing.T) {
	fresh(t)
	c := newClient(t)
	srv.MustDo(t, "HSET", "cc:h", "f", "v")
	srv.MustDo(t, "SET", "cc:s", "not a number")
	for _, cond := range []rbatch.Condition{rbatch.StringEqual("cc:h", "v"), rbatch.IntAtLeast("cc:s", 1)} {
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		held := b.AddCondition(cond)
		set := b.Bucket("cc:out").SetAsync("x")
		_, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrConditionFailed, cond)
		assert.Contains(t, err.Error(), "could not be checked")
		ok, herr := held.Get()
		assert.False(t, ok)
		assert.Error(t, herr)
		assert.ErrorIs(t, errOf(set), rbatch.ErrConditionFailed)
	}
	var re *rbatch.RedisError
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	held := b.AddCondition(rbatch.StringEqual("cc:h", "v"))
	b.Bucket("cc:out").SetAsync("x")
	_, err := b.Execute(context.Background())
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "WRONGTYPE", re.Prefix())
	assert.ErrorAs(t, errOf(held), &re)
	assert.Nil(t, srv.MustDo(t, "GET", "cc:out"))
	assert.Zero(t, calls(t, "exec"))
}

// IntAtLeast reads a value as Redis's INCRBY would: "+5", "05", " 5" and
// "-0" are not integers to it, so the condition cannot be checked rather
// than letting a transaction through whose increment would fail.
func TestIntAtLeastReadsIntegersAsRedisDoes(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for _, v := range []string{"+5", "05", " 5", "5 ", "-0", "5.0"} {
		srv.MustDo(t, "HSET", "ri:stock", "sku", v)
		_, incrErr := srv.Call("HINCRBY", "ri:stock", "sku", 0)
		require.Error(t, incrErr, "Redis takes %q for no integer", v)
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		held := b.AddCondition(rbatch.HashIntAtLeast("ri:stock", "sku", 1))
		dec := b.Map("ri:stock").AddAndGetAsync("sku", -1)
		_, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrConditionFailed, "%q", v)
		assert.ErrorContains(t, err, "not an integer", "%q", v)
		_, herr := held.Get()
		assert.Error(t, herr, "%q", v)
		assert.ErrorIs(t, errOf(dec), rbatch.ErrConditionFailed, "%q", v)
	}
	for v, n := range map[string]int64{"5": 4, "-3": -4, "0": -1, "9223372036854775807": 9223372036854775806} {
		srv.MustDo(t, "SET", "ri:n", v)
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		b.AddCondition(rbatch.IntAtLeast("ri:n", -10))
		dec := b.AtomicLong("ri:n").AddAndGetAsync(-1)
		_, err := b.Execute(context.Background())
		require.NoError(t, err, "%q", v)
		got, _ := dec.Get()
		assert.Equal(t, n, got, "%q", v)
	}
}

// Several conditions: all must hold; the first that fails is named.
func TestConditionsAllMustHold(t *testing.T) {
	fresh(t)
	c := newClient(t)
	srv.MustDo(t, "SET", "ca:a", "1")
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	first := b.AddCondition(rbatch.KeyExists("ca:a"))
	second := b.AddCondition(rbatch.KeyExists("ca:b"))
	third := b.AddCondition(rbatch.KeyNotExists("ca:c"))
	b.Bucket("ca:out").SetAsync("x")
	_, err := b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrConditionFailed)
	assert.Contains(t, err.Error(), `condition 1, KeyExists("ca:b"), did not hold: it does not exist`)
	for f, want := range map[*rbatch.Future[bool]]bool{first: true, second: false, third: true} {
		ok, err := f.Get()
		assert.NoError(t, err)
		assert.Equal(t, want, ok)
	}
	assert.Nil(t, srv.MustDo(t, "GET", "ca:out"))

	// A batch of conditions only checks them: nothing to apply.
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	only := b.AddCondition(rbatch.KeyExists("ca:a"))
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Empty(t, res.Responses)
	ok, err := only.Get()
	require.NoError(t, err)
	assert.True(t, ok)
}

// Conditions need InMemoryAtomic and EXEC's reply: in other modes, with
// WithSkipResult, with a value that does not encode, or the zero Condition,
// the batch is refused and nothing is applied.
func TestConditionRefused(t *testing.T) {
	c := newClient(t)
	type user struct{ Name string }
	cases := []struct {
		name string
		opts []rbatch.Option
		cond rbatch.Condition
		want string
	}{
		{"InMemory", nil, rbatch.KeyExists("cr:k"), "conditions need InMemoryAtomic, the batch is IN_MEMORY"},
		{"RedisWriteAtomic", []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, rbatch.KeyExists("cr:k"), "REDIS_WRITE_ATOMIC"},
		{"RedisReadAtomic", []rbatch.Option{rbatch.WithMode(rbatch.RedisReadAtomic)}, rbatch.KeyExists("cr:k"), "REDIS_READ_ATOMIC"},
		{"skip-result", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult()}, rbatch.KeyExists("cr:k"), "WithSkipResult"},
		{"no codec", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, rbatch.StringEqual("cr:k", user{"a"}), "no codec"},
		{"zero", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, rbatch.Condition{}, "zero Condition"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			b := c.NewBatch(tc.opts...)
			get := b.Bucket("cr:k").GetAsync()
			held := b.AddCondition(tc.cond)
			set := b.Bucket("cr:out").SetAsync("x")
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "invalid condition 0")
			assert.True(t, errors.Is(errOf(set), rbatch.ErrNotSent) || errors.Is(errOf(set), rbatch.ErrTxAborted), errOf(set))
			assert.Error(t, errOf(get))
			_, herr := held.Get()
			assert.Error(t, herr)
			assert.Nil(t, srv.MustDo(t, "GET", "cr:out"))
			stats := srv.CommandStats(t)
			assert.Zero(t, stats["exec"])
			assert.Zero(t, stats["watch"])
		})
	}
}

// A stream cannot be refused whole, nor keep a condition: a condition
// added to it fails, not sent, and so does every command queued after it
// (the writes it was to guard); those queued before it were sent as
// queued. Execute's error says why.
func TestConditionOnStreamFailsAlone(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "HSET", "cs:stock", "sku", 0)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	before := b.Bucket("cs:before").SetAsync("x")
	held := b.AddCondition(rbatch.HashIntAtLeast("cs:stock", "sku", 1))
	_, herr := held.Get()
	require.ErrorIs(t, herr, rbatch.ErrNotSent)
	guarded := b.Map("cs:stock").AddAndGetAsync("sku", -1)
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.Contains(t, err.Error(), "conditions need InMemoryAtomic, the batch is STREAMING")
	assert.Equal(t, rbatch.Counts{Applied: 1, NotSent: 1}, res.Counts)
	assert.NoError(t, errOf(before))
	assert.ErrorIs(t, errOf(guarded), rbatch.ErrNotSent)
	assert.NotContains(t, errOf(guarded).Error(), "not sent: not sent")
	assert.NotContains(t, err.Error(), "not sent: not sent")
	assert.Equal(t, []byte("x"), srv.MustDo(t, "GET", "cs:before"))
	assert.Equal(t, []byte("0"), srv.MustDo(t, "HGET", "cs:stock", "sku"), "the guarded write was not applied")
	assert.Zero(t, calls(t, "hincrby"))
}

// A watched key that changes between the conditions' read and EXEC makes
// EXEC answer nil: nothing was applied, so the conditions are read and the
// transaction sent again, within WithRetry; Attempts shows the rounds.
// Without retries the commands end ErrTxAborted.
func TestConditionRetriedAfterNilExec(t *testing.T) {
	for _, retries := range []int{0, 2} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			fresh(t)
			p := redistest.NewProxy(t, srv.Addr)
			c := clientAt(t, p.Addr, func(cfg *rbatch.Config) { cfg.PoolSize = 1 })
			warm := c.NewBatch()
			warm.Bucket("rx:warm").GetAsync()
			_, err := warm.Execute(context.Background())
			require.NoError(t, err)
			srv.MustDo(t, "SET", "rx:stock", "5")
			srv.ResetStats(t)

			// Hold back what follows the WATCH and the read (MULTI … EXEC)
			// until the key was changed from elsewhere.
			guardBytes := len(respCommand("WATCH", "rx:stock")) + len(respCommand("GET", "rx:stock"))
			p.SetFault(redistest.Fault{Kind: redistest.Stall, Dir: redistest.ToServer, AfterBytes: int64(guardBytes), Scope: redistest.ExistingConns})
			b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(retries, 10*time.Millisecond))
			held := b.AddCondition(rbatch.IntAtLeast("rx:stock", 1))
			dec := b.AtomicLong("rx:stock").AddAndGetAsync(-1)
			done := make(chan struct{})
			var res *rbatch.BatchResult
			go func() {
				defer close(done)
				res, err = b.Execute(context.Background())
			}()
			waitUntil(t, "the condition was read", func() bool { return srv.CommandStats(t)["get"] == 1 })
			srv.MustDo(t, "SET", "rx:stock", "3") // still holds, but the watched key changed
			p.Clear()
			<-done
			stats := srv.CommandStats(t)
			if retries == 0 {
				require.ErrorIs(t, err, rbatch.ErrTxAborted)
				assert.ErrorIs(t, errOf(dec), rbatch.ErrTxAborted)
				assert.Equal(t, "3", string(srv.MustDo(t, "GET", "rx:stock").([]byte)), "nothing applied")
				assert.EqualValues(t, 1, stats["exec"])
				assert.Equal(t, 1, res.Nodes[0].Attempts)
				return
			}
			require.NoError(t, err)
			n, err := dec.Get()
			require.NoError(t, err)
			assert.EqualValues(t, 2, n)
			ok, _ := held.Get()
			assert.True(t, ok)
			assert.EqualValues(t, 2, stats["exec"], "the first EXEC answered nil, the second applied")
			assert.EqualValues(t, 2, stats["watch"])
			assert.Equal(t, 2, res.Nodes[0].Attempts)
		})
	}
}

// respCommand encodes a command as RESP, as rbatch writes it.
func respCommand(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// In a cluster a conditional transaction runs where its slot is, the
// conditions' keys included; a condition on another slot's key refuses the
// batch before anything is sent.
func TestConditionCluster(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	owner := cl.OwnerOf(t, route.Slot([]byte("cl42")))
	owner.MustDo(t, "HSET", "{cl42}:stock", "sku", 1)

	place := func() (*rbatch.Future[bool], error) {
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		held := b.AddCondition(rbatch.HashIntAtLeast("{cl42}:stock", "sku", 1))
		b.Map("{cl42}:stock").AddAndGetAsync("sku", -1)
		b.List("{cl42}:orders").AddAsync("o")
		_, err := b.Execute(context.Background())
		return held, err
	}
	held, err := place()
	require.NoError(t, err)
	ok, _ := held.Get()
	assert.True(t, ok)
	_, err = place()
	require.ErrorIs(t, err, rbatch.ErrConditionFailed, "the stock is gone")
	assert.EqualValues(t, 1, owner.MustDo(t, "LLEN", "{cl42}:orders"))
	assert.EqualValues(t, 2, owner.CommandStats(t)["watch"])
	assert.EqualValues(t, 1, owner.CommandStats(t)["exec"])

	// A condition only on the slot, with keyless commands: it is checked there.
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithTransactionPerSlot())
	only := b.AddCondition(rbatch.KeyExists("{cl42}:stock"))
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	ok, _ = only.Get()
	assert.True(t, ok)

	cl.ResetStats(t)
	for _, opts := range [][]rbatch.Option{
		{rbatch.WithMode(rbatch.InMemoryAtomic)},
		{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithTransactionPerSlot()},
	} {
		b := c.NewBatch(opts...)
		held := b.AddCondition(rbatch.KeyExists("{other}:k"))
		set := b.Bucket("{cl42}:out").SetAsync("x")
		_, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrCrossSlot)
		assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent)
		assert.ErrorIs(t, errOf(held), rbatch.ErrNotSent)
	}
	stats := cl.CommandStats(t)
	assert.Zero(t, stats["watch"]+stats["multi"]+stats["exec"]+stats["set"], "nothing was sent: %v", stats)
}
