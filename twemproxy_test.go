package rbatch_test

// rbatch through a real proxy: nutcracker (twemproxy) in front of a
// redis-server. It closes the connection on INFO, CONFIG, CLIENT, MULTI,
// WAIT and SCRIPT instead of answering an error.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// twemproxied starts a server and nutcracker in front of it, and connects
// a client through the proxy.
func twemproxied(t *testing.T) (*redistest.Server, *redistest.Twemproxy, *rbatch.Client) {
	t.Helper()
	s := redistest.Standalone(t)
	p := redistest.NewTwemproxy(t, s)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) {
		cfg.DialTimeout, cfg.ReadTimeout = time.Second, 3*time.Second
	})
	return s, p, c
}

// shortCtx bounds a test's batch: a hang fails the test instead of stalling it.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTwemproxyNewClient(t *testing.T) {
	t.Parallel()
	s, p, c := twemproxied(t)
	assert.True(t, rbatch.ServerIsProxy(c), "a server that closes on INFO is a proxy")
	assert.False(t, rbatch.ServerIsProxy(clientFor(t, s)), "redis-server itself is no proxy")
	assert.Contains(t, p.Log(), "unsupported command 'INFO'", "NewClient found out by INFO")
}

func TestTwemproxyInMemory(t *testing.T) {
	t.Parallel()
	s, _, c := twemproxied(t)
	b := c.NewBatch()
	set := b.Bucket("tw:k").SetAsync("v")
	get := b.Bucket("tw:k").GetAsync()
	n := b.AtomicLong("tw:n")
	incr1, incr2 := n.IncrementAndGetAsync(), n.IncrementAndGetAsync()
	res, err := b.Execute(shortCtx(t))
	require.NoError(t, err)
	_, err = set.Get()
	assert.NoError(t, err)
	assert.Equal(t, "v", must(t, get))
	assert.Equal(t, int64(1), must(t, incr1))
	assert.Equal(t, int64(2), must(t, incr2))
	assert.Len(t, res.Responses, 4)
	assert.Equal(t, []byte("2"), s.MustDo(t, "GET", "tw:n"))
}

func must[T any](t *testing.T, f *rbatch.Future[T]) T {
	t.Helper()
	v, err := f.Get()
	require.NoError(t, err, "future %d", f.Index())
	return v
}

// A skip-result batch cannot send CLIENT REPLY through the proxy: it sends
// the commands plainly and drops their replies, and the data is applied.
func TestTwemproxySkipResultIsApplied(t *testing.T) {
	t.Parallel()
	const n = 2000
	s, p, c := twemproxied(t)
	b := c.NewBatch(rbatch.WithSkipResult())
	futures := make([]*rbatch.Future[struct{}], n)
	for i := range futures {
		futures[i] = b.Bucket(fmt.Sprintf("tws:%d", i)).SetAsync(i)
	}
	wrong := b.List("tws:0").AddAsync("x") // WRONGTYPE: dropped, counted
	res, err := b.Execute(shortCtx(t))
	require.NoError(t, err)
	assert.Empty(t, res.Responses)
	require.Len(t, res.Nodes, 1)
	assert.Equal(t, 1, res.Nodes[0].ServerErrors)
	for _, f := range append(futures, nil) {
		if f == nil {
			_, err = wrong.Get()
		} else {
			_, err = f.Get()
		}
		require.ErrorIs(t, err, rbatch.ErrResultSkipped)
	}
	assert.NotContains(t, p.Log(), "unsupported command 'CLIENT'")

	// Read back through the proxy and straight from the server.
	check := c.NewBatch()
	gets := make([]*rbatch.Future[string], n)
	for i := range gets {
		gets[i] = check.Bucket(fmt.Sprintf("tws:%d", i)).GetAsync()
	}
	_, err = check.Execute(shortCtx(t))
	require.NoError(t, err)
	for i, g := range gets {
		require.Equal(t, fmt.Sprint(i), must(t, g))
	}
	assert.Equal(t, int64(n), s.MustDo(t, "DBSIZE"))
	assert.Equal(t, []byte(fmt.Sprint(n-1)), s.MustDo(t, "GET", fmt.Sprintf("tws:%d", n-1)))
}

// What the proxy cannot do is refused before anything is sent.
func TestTwemproxyRefusesWhatItCannotDo(t *testing.T) {
	t.Parallel()
	s, p, c := twemproxied(t)
	cases := []struct {
		name string
		opts []rbatch.Option
		why  string
	}{
		{"InMemoryAtomic", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, "MULTI"},
		{"RedisWriteAtomic", []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, "MULTI"},
		{"RedisReadAtomic", []rbatch.Option{rbatch.WithMode(rbatch.RedisReadAtomic)}, "MULTI"},
		{"WithSync", []rbatch.Option{rbatch.WithSync(0, 10*time.Millisecond)}, "WAIT"},
		{"WithSyncAOF", []rbatch.Option{rbatch.WithSyncAOF(true, 0, 10*time.Millisecond)}, "WAITAOF"},
		{"SkipResult+InMemoryAtomic", []rbatch.Option{rbatch.WithSkipResult(), rbatch.WithMode(rbatch.InMemoryAtomic)}, "MULTI"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := shortCtx(t)
			start := time.Now()
			b := c.NewBatch(tc.opts...)
			key := "twr:" + tc.name
			var f *rbatch.Future[string]
			if tc.name == "RedisReadAtomic" {
				f = b.Bucket(key).GetAsync()
			} else {
				b.Bucket(key).SetAsync("applied")
				f = b.Bucket(key).GetAsync()
			}
			_, err := b.Execute(ctx)
			require.ErrorIs(t, err, rbatch.ErrUnsupported)
			assert.Contains(t, err.Error(), tc.why)
			assert.Contains(t, err.Error(), "proxy")
			_, ferr := f.Get()
			assert.ErrorIs(t, ferr, rbatch.ErrNotSent)
			assert.ErrorIs(t, ferr, rbatch.ErrUnsupported)
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", key), "nothing applied")
		})
	}
	log := p.Log()
	for _, cmd := range []string{"MULTI", "WAIT", "WAITAOF", "CLIENT"} {
		assert.NotContains(t, log, "unsupported command '"+cmd+"'", "nothing the proxy refuses was sent")
	}
}

// Scripts go as EVAL by their first key (the proxy closes on SCRIPT LOAD);
// a script without keys cannot be routed and is refused.
func TestTwemproxyScripts(t *testing.T) {
	t.Parallel()
	s, p, c := twemproxied(t)
	b := c.NewBatch()
	r := b.Script().EvalAsync("return redis.call('SET', KEYS[1], ARGV[1])", []string{"twsc:k"}, "v")
	_, err := b.Execute(shortCtx(t))
	require.NoError(t, err)
	_, err = r.Get()
	require.NoError(t, err)
	assert.Equal(t, []byte("v"), s.MustDo(t, "GET", "twsc:k"))
	assert.NotContains(t, p.Log(), "unsupported command 'SCRIPT'")

	b = c.NewBatch()
	b.Bucket("twsc:other").SetAsync("x")
	b.Script().EvalAsync("return 1", nil)
	_, err = b.Execute(shortCtx(t))
	require.ErrorIs(t, err, rbatch.ErrUnsupported)
	assert.True(t, errors.Is(err, rbatch.ErrNotSent) || strings.Contains(err.Error(), "not sent"), "%v", err)
	assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "twsc:other"))
}

// A proxy that gives up waiting for Redis answers "ERR Connection timed out"
// for each command in flight, though Redis, only slow, may apply them all:
// they end unknown, never failed, and none is applied beyond applied+unknown.
func TestTwemproxyTimeoutIsUnknown(t *testing.T) {
	t.Parallel()
	s := redistest.Standalone(t)
	p := redistest.NewTwemproxyWith(t, redistest.TwemproxyOptions{Timeout: 200 * time.Millisecond}, s)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) {
		cfg.DialTimeout, cfg.ReadTimeout = time.Second, 3*time.Second
	})
	require.NoError(t, syscall.Kill(s.PID(), syscall.SIGSTOP))
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = syscall.Kill(s.PID(), syscall.SIGCONT)
		}
	})
	const n = 50
	b := c.NewBatch()
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		fs[i] = b.AtomicLong("tw:slow").IncrementAndGetAsync()
	}
	res, err := b.Execute(shortCtx(t))
	require.Error(t, err)
	require.NoError(t, syscall.Kill(s.PID(), syscall.SIGCONT))
	stopped = false

	assert.Equal(t, rbatch.Counts{Unknown: n}, res.Counts)
	for i, f := range fs {
		_, ferr := f.Get()
		assert.ErrorIs(t, ferr, rbatch.ErrUnknownOutcome, "command %d", i)
		assert.ErrorContains(t, ferr, "Connection timed out", "command %d names the proxy's error", i)
	}
	require.Eventually(t, func() bool {
		v, _ := s.Call("GET", "tw:slow")
		return v != nil
	}, 5*time.Second, 10*time.Millisecond, "Redis, resumed, applies what the proxy forwarded")
	v, err := s.Call("GET", "tw:slow")
	require.NoError(t, err)
	got, _ := strconv.Atoi(string(v.([]byte)))
	assert.LessOrEqual(t, got, n, "applied at most once each")
}

// twemproxiedShards starts two servers and nutcracker sharding keys over
// them, and connects a client through the proxy.
func twemproxiedShards(t *testing.T) (*redistest.Twemproxy, *rbatch.Client) {
	t.Helper()
	p := redistest.NewTwemproxyWith(t, redistest.TwemproxyOptions{}, redistest.Standalone(t), redistest.Standalone(t))
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) {
		cfg.DialTimeout, cfg.ReadTimeout = time.Second, 3*time.Second
	})
	return p, c
}

// nutcracker sends EXISTS with several keys whole to the server of its first
// key, which counts only its own: rbatch sends one EXISTS per key and sums
// the replies, in the command's place among the others.
func TestTwemproxyCountExistsAcrossShards(t *testing.T) {
	t.Parallel()
	p, c := twemproxiedShards(t)
	keys := make([]string, 40)
	set := c.NewBatch()
	for i := range keys {
		keys[i] = fmt.Sprintf("twx:%d", i)
		set.Bucket(keys[i]).SetAsync(i)
	}
	_, err := set.Execute(shortCtx(t))
	require.NoError(t, err)
	for _, s := range p.Backends {
		n := s.MustDo(t, "DBSIZE").(int64)
		require.True(t, n > 0 && n < int64(len(keys)), "the keys are spread over both servers (%d here)", n)
	}

	b := c.NewBatch()
	all := b.Keys().CountExistsAsync(keys...)
	some := b.Keys().CountExistsAsync("twx:missing", keys[0], keys[0], keys[7], keys[8])
	raw := b.Do("EXISTS", keys[1], keys[2], keys[3], keys[4])
	one := b.Bucket(keys[5]).IsExistsAsync()
	del := b.Keys().DeleteAsync(keys[:10]...)
	after := b.Keys().CountExistsAsync(keys...)
	res, err := b.Execute(shortCtx(t))
	require.NoError(t, err)
	assert.Equal(t, int64(40), must(t, all))
	assert.Equal(t, int64(4), must(t, some), "a key named twice counts twice, as Redis counts it")
	assert.Equal(t, int64(4), must(t, raw), "b.Do's EXISTS too")
	assert.True(t, must(t, one))
	assert.Equal(t, int64(10), must(t, del))
	assert.Equal(t, int64(30), must(t, after), "counted after the DEL before it")
	assert.Equal(t, []any{int64(40), int64(4), int64(4), true, int64(10), int64(30)}, res.Responses)
	assert.Equal(t, rbatch.Counts{Applied: 6}, res.Counts)

	st := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	streamed := st.Keys().CountExistsAsync(keys...)
	_, err = st.Execute(shortCtx(t))
	require.NoError(t, err)
	assert.Equal(t, int64(30), must(t, streamed), "a stream's EXISTS too")

	sk := c.NewBatch(rbatch.WithSkipResult())
	skipped := sk.Keys().CountExistsAsync(keys...)
	_, err = sk.Execute(shortCtx(t))
	require.NoError(t, err)
	_, err = skipped.Get()
	assert.ErrorIs(t, err, rbatch.ErrResultSkipped)
}

// nutcracker closes the connection on the stream commands and MSETNX: the
// methods sending them fail alone, not sent, and the rest of the batch runs.
func TestTwemproxyRefusesCommandsItClosesOn(t *testing.T) {
	t.Parallel()
	s, p, c := twemproxied(t)
	cases := []struct {
		cmd  string
		mode rbatch.ExecutionMode
		add  func(b *rbatch.Batch) interface{ Get() (any, error) }
	}{
		{"XADD", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Stream("twc:s").AddAsync("f", "v"))
		}},
		{"XLEN", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Stream("twc:s").SizeAsync())
		}},
		{"XRANGE", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Stream("twc:s").RangeAsync("-", "+", 0))
		}},
		{"XREAD", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Stream("twc:s").ReadAsync("0", 10))
		}},
		{"MSETNX", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Buckets().TrySetAsync(map[string]any{"twc:a": 1, "twc:b": 2}))
		}},
		{"XADD", rbatch.Streaming, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return anyOf(b.Stream("twc:s").AddAsync("f", "v"))
		}},
		{"XLEN", rbatch.InMemory, func(b *rbatch.Batch) interface{ Get() (any, error) } {
			return b.Do("XLEN", "twc:s") // b.Do of a command rbatch knows the proxy closes on
		}},
	}
	const n = 100
	for k, tc := range cases {
		t.Run(fmt.Sprintf("%d:%s/%s", k, tc.cmd, tc.mode), func(t *testing.T) {
			b := c.NewBatch(rbatch.WithMode(tc.mode))
			sets := make([]*rbatch.Future[struct{}], n)
			var refused interface{ Get() (any, error) }
			for i := range sets {
				if i == n/2 {
					refused = tc.add(b)
				}
				sets[i] = b.Bucket(fmt.Sprintf("twc:%d:%d", k, i)).SetAsync(i)
			}
			res, err := b.Execute(shortCtx(t))
			require.ErrorIs(t, err, rbatch.ErrUnsupported)
			assert.Equal(t, rbatch.Counts{Applied: n, NotSent: 1}, res.Counts)
			_, ferr := refused.Get()
			assert.ErrorIs(t, ferr, rbatch.ErrUnsupported)
			assert.ErrorIs(t, ferr, rbatch.ErrNotSent)
			assert.ErrorContains(t, ferr, tc.cmd)
			assert.ErrorContains(t, ferr, "proxy")
			for i, f := range sets {
				_, err := f.Get()
				require.NoError(t, err, "SET %d", i)
			}
			assert.Equal(t, []byte(fmt.Sprint(n-1)), s.MustDo(t, "GET", fmt.Sprintf("twc:%d:%d", k, n-1)))
		})
	}
	assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "twc:s", "twc:a", "twc:b"), "nothing refused was applied")
	log := p.Log()
	for _, tc := range cases {
		assert.NotContains(t, log, "unsupported command '"+tc.cmd+"'", "nothing the proxy closes on was sent")
	}
}

// anyOf views a typed future as one of any.
func anyOf[T any](f *rbatch.Future[T]) interface{ Get() (any, error) } { return anyFuture[T]{f} }

type anyFuture[T any] struct{ f *rbatch.Future[T] }

func (a anyFuture[T]) Get() (any, error) { return a.f.Get() }
