package rbatch_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// srv is the standalone server shared by the tests of this package. Tests
// that read commandstats or DBSIZE flush it first and do not run in parallel.
var srv *redistest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = redistest.StartStandalone("--proto-max-bulk-len", "1mb")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	closeSharedCluster()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newClient connects to srv and closes the client at the end of the test.
func newClient(t testing.TB, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	return clientFor(t, srv, mods...)
}

// closeClean checks that every pooled connection is clean, then closes c.
func closeClean(t testing.TB, c *rbatch.Client) {
	t.Helper()
	assert.NoError(t, rbatch.CheckPoolsClean(c), "pooled connections after the test")
	c.Close()
}

// fresh empties srv and resets its command statistics.
func fresh(t testing.TB) {
	t.Helper()
	srv.FlushAll(t)
	srv.ResetStats(t)
}

func calls(t testing.TB, cmd string) int64 { return srv.CommandStats(t)[cmd] }

// checker verifies one future once the batch ran.
type checker func(t *testing.T, res *rbatch.BatchResult)

// expect returns a checker asserting that f resolved with want, and that the
// result's Responses hold the same value at f's index.
func expect[T any](f *rbatch.Future[T], want T) checker {
	return func(t *testing.T, res *rbatch.BatchResult) {
		got, err := f.Get()
		if !assert.NoError(t, err, "future %d", f.Index()) {
			return
		}
		assert.Equal(t, want, got, "future %d", f.Index())
		assert.Equal(t, any(want), res.Responses[f.Index()], "Responses[%d]", f.Index())
	}
}

// fill queues n commands over all twelve objects on keys private to worker w,
// and returns a checker per command. Each worker's keys are its own, so the
// expected value of each command follows from the worker's earlier commands.
func fill(b *rbatch.Batch, w, n int) []checker {
	k := func(name string) string { return fmt.Sprintf("w%d:%s", w, name) }
	var (
		checks                       []checker
		counter, listLen, mapLen     int64
		setLen, zsetLen, queueLen    int64
		dequeLen, streamLen, hllAdds int64
		queueHead                    string
		scriptText                   = "return {KEYS[1], ARGV[1]}"
	)
	add := func(c checker) { checks = append(checks, c) }
	for i := 0; len(checks) < n; i++ {
		v := fmt.Sprintf("v%d", i)
		switch i % 13 {
		case 0:
			add(expect(b.Bucket(k("b"+v)).SetAsync(v), struct{}{}))
			add(expect(b.Bucket(k("b"+v)).GetAsync(), v))
		case 1:
			counter++
			add(expect(b.AtomicLong(k("ctr")).IncrementAndGetAsync(), counter))
			counter += 5
			add(expect(b.AtomicLong(k("ctr")).AddAndGetAsync(5), counter))
		case 2:
			listLen++
			add(expect(b.List(k("list")).AddAsync(v), true))
			add(expect(b.List(k("list")).GetAsync(listLen-1), v))
			add(expect(b.List(k("list")).SizeAsync(), listLen))
		case 3:
			mapLen++
			add(expect(b.Map(k("map")).FastPutAsync(v, i), true))
			add(expect(b.Map(k("map")).GetAsync(v), fmt.Sprint(i)))
			add(expect(b.Map(k("map")).ContainsKeyAsync(v), true))
			add(expect(b.Map(k("map")).AddAndGetAsync("n", 2), 2*mapLen))
		case 4:
			setLen++
			add(expect(b.Set(k("set")).AddAsync(v), true))
			add(expect(b.Set(k("set")).AddAsync(v), false))
			add(expect(b.Set(k("set")).ContainsAsync(v), true))
			add(expect(b.Set(k("set")).SizeAsync(), setLen))
		case 5:
			zsetLen++
			add(expect(b.ScoredSortedSet(k("zset")).AddAsync(float64(i), v), true))
			add(expect(b.ScoredSortedSet(k("zset")).GetScoreAsync(v), float64(i)))
			add(expect(b.ScoredSortedSet(k("zset")).AddScoreAsync(v, 0.5), float64(i)+0.5))
			add(expect(b.ScoredSortedSet(k("zset")).RankAsync(v), zsetLen-1))
		case 6:
			if queueLen == 0 {
				queueHead = v
			}
			queueLen++
			add(expect(b.Queue(k("queue")).OfferAsync(v), true))
			add(expect(b.Queue(k("queue")).PeekAsync(), queueHead))
			add(expect(b.Queue(k("queue")).SizeAsync(), queueLen))
		case 7:
			add(expect(b.Deque(k("deque")).AddFirstAsync(v+"f"), struct{}{}))
			add(expect(b.Deque(k("deque")).AddLastAsync(v+"l"), struct{}{}))
			add(expect(b.Deque(k("deque")).PollLastAsync(), v+"l"))
			dequeLen++
			add(expect(b.Deque(k("deque")).SizeAsync(), dequeLen))
		case 8:
			streamLen++
			id := b.Stream(k("stream")).AddAsync("field", v)
			checks = append(checks, func(t *testing.T, res *rbatch.BatchResult) {
				got, err := id.Get()
				require.NoError(t, err)
				assert.Regexp(t, `^\d+-\d+$`, got)
				assert.Equal(t, got, res.Responses[id.Index()])
			})
			add(expect(b.Stream(k("stream")).SizeAsync(), streamLen))
		case 9:
			hllAdds++
			b.HyperLogLog(k("hll")).AddAsync(v) // its reply depends on the estimate
			count, want := b.HyperLogLog(k("hll")).CountAsync(), float64(hllAdds)
			add(func(t *testing.T, res *rbatch.BatchResult) {
				got, err := count.Get()
				require.NoError(t, err)
				assert.InDelta(t, want, float64(got), 1+want*0.03, "PFCOUNT after %v adds", want)
			})
		case 10:
			add(expect(b.Keys().CountExistsAsync(k("ctr"), k("nothing")), int64(1)))
		case 11:
			add(expect(b.Script().EvalAsync(scriptText, []string{k("s")}, v), any([]any{k("s"), v})))
		case 12:
			add(expect(b.Bucket(k("t"+v)).TrySetAsync(v), true))
			add(expect(b.Bucket(k("t"+v)).TrySetAsync(v), false))
			add(expect(b.Bucket(k("t"+v)).ExpireAsync(time.Hour), true))
			add(expect(b.Bucket(k("t"+v)).IsExistsAsync(), true))
		}
	}
	return checks
}

func TestMixedCommandsFromGoroutines(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()

	const workers, perWorker = 8, 1250
	checks := make([][]checker, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checks[w] = fill(b, w, perWorker)
		}()
	}
	wg.Wait()
	n := b.Len()
	require.GreaterOrEqual(t, n, workers*perWorker)

	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Responses, n)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, srv.Addr, res.Nodes[0].Addr)
	assert.Equal(t, n, res.Nodes[0].Commands)
	for _, cs := range checks {
		for _, check := range cs {
			check(t, res)
		}
	}

	// Redis holds what the batch wrote.
	for w := range workers {
		key := func(name string) string { return fmt.Sprintf("w%d:%s", w, name) }
		ctr, err := redis.Int64(srv.Call("GET", key("ctr")))
		require.NoError(t, err)
		assert.Positive(t, ctr)
		for name, cmd := range map[string]string{"list": "LLEN", "set": "SCARD", "zset": "ZCARD", "queue": "LLEN", "stream": "XLEN"} {
			size, err := redis.Int64(srv.Call(cmd, key(name)))
			require.NoError(t, err)
			assert.Positive(t, size, "%s %s", cmd, key(name))
		}
	}
	assert.Equal(t, int64(1), calls(t, "script|load"), "one SCRIPT LOAD for the one script")
}

func TestIndicesFollowSubmissionOrder(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	for i := range 100 {
		f := b.Do("ECHO", fmt.Sprint(i))
		require.Equal(t, i, f.Index())
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	for i, r := range res.Responses {
		assert.Equal(t, fmt.Sprint(i), r)
	}
}

func TestWrongTypeFailsOnlyItsCommand(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	set := b.Bucket("wt:str").SetAsync("x")
	push := b.List("wt:str").AddAsync("y") // WRONGTYPE
	get := b.Bucket("wt:str").GetAsync()

	res, err := b.Execute(context.Background())
	require.Error(t, err)

	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Len(t, berr.Commands, 1)
	assert.Equal(t, 1, berr.Commands[0].Index)
	assert.Equal(t, "RPUSH", berr.Commands[0].Command)

	var rerr *rbatch.RedisError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, "WRONGTYPE", rerr.Prefix())

	_, perr := push.Get()
	require.ErrorAs(t, perr, &rerr)
	assert.Equal(t, "WRONGTYPE", rerr.Prefix())
	_, serr := set.Get()
	assert.NoError(t, serr)
	v, gerr := get.Get()
	assert.NoError(t, gerr)
	assert.Equal(t, "x", v)
	assert.Equal(t, struct{}{}, res.Responses[0])
	assert.ErrorAs(t, res.Responses[1].(error), &rerr)
	assert.Equal(t, "x", res.Responses[2])
}

func TestMissingKeyIsErrNil(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	get := b.Bucket("nil:missing").GetAsync()
	hget := b.Map("nil:map").GetAsync("f")
	score := b.ScoredSortedSet("nil:z").GetScoreAsync("m")
	rank := b.ScoredSortedSet("nil:z").RankAsync("m")
	poll := b.Queue("nil:q").PollAsync()
	ctr := b.AtomicLong("nil:ctr").GetAsync()
	doGet := b.Do("GET", "nil:missing")

	res, err := b.Execute(context.Background())
	require.NoError(t, err, "nil replies are not failures")
	for _, e := range []error{errOf(get), errOf(hget), errOf(score), errOf(rank), errOf(poll), errOf(ctr), errOf(doGet)} {
		assert.ErrorIs(t, e, rbatch.ErrNil)
	}
	v, _ := get.Get()
	assert.Equal(t, "", v)
	for i, r := range res.Responses {
		assert.Nil(t, r, "Responses[%d]", i)
	}
}

func errOf[T any](f *rbatch.Future[T]) error {
	_, err := f.Get()
	return err
}

type order struct {
	ID    int      `json:"id"`
	Items []string `json:"items"`
}

func TestStructWithoutCodecSendsNothing(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	first := b.Bucket("codec:a").SetAsync("plain")
	bad := b.Bucket("codec:b").SetAsync(order{ID: 1})
	b.List("codec:c").AddAsync("x")

	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "command 1 (SET)")
	assert.Contains(t, err.Error(), "rbatch_test.order")
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	require.Len(t, berr.Commands, 1)
	assert.Equal(t, 1, berr.Commands[0].Index)
	assert.ErrorIs(t, err, rbatch.ErrNotSent)

	assert.ErrorIs(t, errOf(bad), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(first), rbatch.ErrNotSent)
	require.Len(t, res.Responses, 3)

	assert.Zero(t, calls(t, "set"), "nothing reached Redis")
	assert.Zero(t, calls(t, "rpush"))
	assert.Equal(t, int64(0), srv.MustDo(t, "DBSIZE"))
}

// Every bad command of a refused batch fails with its own cause and is
// listed in the BatchError; the others are not sent because of the first.
func TestEveryBadCommandNamed(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode))
		good := b.Bucket("bad:a").SetAsync("plain")
		noCodec := b.Bucket("bad:b").SetAsync(order{ID: 1})
		noFields := b.Map("bad:m").FastRemoveAsync()
		_, err := b.Execute(context.Background())
		require.Error(t, err, mode)
		var berr *rbatch.BatchError
		require.ErrorAs(t, err, &berr)
		require.Len(t, berr.Commands, 2, mode)
		assert.Equal(t, []int{1, 2}, []int{berr.Commands[0].Index, berr.Commands[1].Index}, mode)
		assert.Contains(t, err.Error(), "command 1 (SET)", mode)
		assert.Contains(t, err.Error(), "command 2 (HDEL)", mode)

		assert.ErrorContains(t, errOf(noCodec), "rbatch_test.order", mode)
		assert.NotContains(t, errOf(noFields).Error(), "rbatch_test.order", "%v: its own cause, not the first's", mode)
		assert.ErrorContains(t, errOf(noFields), "FastRemoveAsync", mode)
		assert.ErrorIs(t, errOf(noFields), rbatch.ErrNotSent, mode)
		assert.ErrorContains(t, errOf(good), "command 1 (SET)", "%v: the others name what refused the batch", mode)
		assert.ErrorIs(t, errOf(good), rbatch.ErrNotSent, mode)
	}
	assert.Zero(t, calls(t, "set")+calls(t, "hdel")+calls(t, "multi"), "nothing reached Redis")
}

func TestCodecEncodesStructs(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithCodec(rbatch.JSONCodec))
	b.Bucket("codec:json").SetAsync(order{ID: 42, Items: []string{"a"}})
	get := b.Bucket("codec:json").GetAsync()
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	raw, _ := get.Get()
	var back order
	require.NoError(t, rbatch.JSONCodec.Decode([]byte(raw), &back))
	assert.Equal(t, order{ID: 42, Items: []string{"a"}}, back)
}

func TestNativeValueKinds(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	type status string
	values := []any{"s", []byte("b"), int(-1), int8(-8), int16(-16), int32(-32), int64(-64),
		uint(1), uint8(8), uint16(16), uint32(32), uint64(1 << 63), float32(1.5), float64(0.1), true, false, status("named")}
	want := []string{"s", "b", "-1", "-8", "-16", "-32", "-64", "1", "8", "16", "32", "9223372036854775808", "1.5", "0.1", "1", "0", "named"}
	gets := make([]*rbatch.Future[string], len(values))
	for i, v := range values {
		b.Bucket(fmt.Sprint("kind:", i)).SetAsync(v)
		gets[i] = b.Bucket(fmt.Sprint("kind:", i)).GetAsync()
	}
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	for i, g := range gets {
		got, err := g.Get()
		require.NoError(t, err)
		assert.Equal(t, want[i], got, "value %T", values[i])
	}
}

func TestDoForbiddenCommandsSendNothing(t *testing.T) {
	for _, cmd := range [][]any{{"SUBSCRIBE", "ch"}, {"psubscribe", "c*"}, {"MONITOR"}, {"MULTI"}, {"EXEC"},
		{"WATCH", "k"}, {"DISCARD"}, {"SELECT", 1}, {"CLIENT", "REPLY", "OFF"}, {"script", "DEBUG", "YES"}, {""}} {
		t.Run(fmt.Sprint(cmd[0]), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch()
			b.Bucket("forbid:a").SetAsync("1")
			f := b.Do(cmd[0].(string), cmd[1:]...)
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
			assert.Contains(t, err.Error(), "command 1")
			assert.Zero(t, calls(t, "set"))
		})
	}
}

func TestBadArgumentsSendNothing(t *testing.T) {
	cases := map[string]func(b *rbatch.Batch){
		"NaN score":       func(b *rbatch.Batch) { b.ScoredSortedSet("bad:z").AddAsync(nanScore(), "m") },
		"zero TTL":        func(b *rbatch.Batch) { b.Bucket("bad:b").SetWithTTLAsync("v", 0) },
		"negative expire": func(b *rbatch.Batch) { b.Bucket("bad:b").ExpireAsync(-time.Second) },
		"odd stream":      func(b *rbatch.Batch) { b.Stream("bad:s").AddAsync("f1", "v1", "f2") },
		"empty AddAll":    func(b *rbatch.Batch) { b.List("bad:l").AddAllAsync() },
		"nil value":       func(b *rbatch.Batch) { b.Set("bad:s").AddAsync(nil) },
		"no keys":         func(b *rbatch.Batch) { b.Keys().DeleteAsync() },
	}
	for name, queue := range cases {
		t.Run(name, func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch()
			b.Bucket("bad:first").SetAsync("1")
			queue(b)
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), "command 1")
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.Zero(t, calls(t, "set"))
			assert.Equal(t, int64(0), srv.MustDo(t, "DBSIZE"))
		})
	}
}

func TestInfiniteScoresAreValid(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	b.ScoredSortedSet("inf:z").AddAsync(posInf(), "top")
	b.ScoredSortedSet("inf:z").AddAsync(-posInf(), "bottom")
	top := b.ScoredSortedSet("inf:z").GetScoreAsync("top")
	rng := b.ScoredSortedSet("inf:z").ValueRangeAsync(0, -1)
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	got, _ := top.Get()
	assert.Equal(t, posInf(), got)
	members, _ := rng.Get()
	assert.Equal(t, []string{"bottom", "top"}, members)
}

func nanScore() float64 { zero := 0.0; return zero / zero }
func posInf() float64   { zero := 0.0; return 1 / zero }
