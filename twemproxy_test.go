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
// the commands plainly and reads their replies, and the data is applied;
// a command Redis refused keeps its error.
func TestTwemproxySkipResultIsApplied(t *testing.T) {
	t.Parallel()
	const n = 2000
	s, p, c := twemproxied(t)
	b := c.NewBatch(rbatch.WithSkipResult())
	futures := make([]*rbatch.Future[struct{}], n)
	for i := range futures {
		futures[i] = b.Bucket(fmt.Sprintf("tws:%d", i)).SetAsync(i)
	}
	wrong := b.List("tws:0").AddAsync("x") // WRONGTYPE
	res, err := b.Execute(shortCtx(t))
	var re *rbatch.RedisError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "WRONGTYPE", re.Prefix())
	assert.Empty(t, res.Responses)
	assert.Equal(t, rbatch.Counts{Skipped: n, Failed: 1}, res.Counts)
	for _, f := range futures {
		_, err = f.Get()
		require.ErrorIs(t, err, rbatch.ErrResultSkipped)
	}
	_, err = wrong.Get()
	require.ErrorAs(t, err, &re)
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

	// Through Do, a script without keys fails alone, not sent; the rest
	// of the batch runs, a script with a key among it.
	b = c.NewBatch()
	b.AtomicLong("twsc:n").IncrementAndGetAsync()
	eval := b.Do("EVAL", "return 1", 0)
	evalsha := b.Do("evalsha", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0")
	keyed := b.Do("EVAL", "return redis.call('INCR', KEYS[1])", 1, "twsc:n")
	b.AtomicLong("twsc:n").IncrementAndGetAsync()
	res, err := b.Execute(shortCtx(t))
	require.ErrorIs(t, err, rbatch.ErrUnsupported)
	for _, f := range []*rbatch.Future[any]{eval, evalsha} {
		ferr := errOf(f)
		assert.ErrorIs(t, ferr, rbatch.ErrNotSent)
		assert.ErrorIs(t, ferr, rbatch.ErrUnsupported)
		assert.Contains(t, ferr.Error(), "without keys")
	}
	v, err := keyed.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(2), v)
	assert.Equal(t, rbatch.Counts{Applied: 3, NotSent: 2}, res.Counts)
	assert.Equal(t, []byte("3"), s.MustDo(t, "GET", "twsc:n"))
}

// A proxy that gives up waiting for Redis answers "ERR Connection timed out"
// for each command in flight, though Redis, only slow, may apply them all:
// they end unknown, never failed (nor skipped), and none is applied beyond
// applied+unknown.
func TestTwemproxyTimeoutIsUnknown(t *testing.T) {
	t.Parallel()
	s := redistest.Standalone(t)
	p := redistest.NewTwemproxyWith(t, redistest.TwemproxyOptions{Timeout: 200 * time.Millisecond}, s)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) {
		cfg.DialTimeout, cfg.ReadTimeout = time.Second, 3*time.Second
	})
	const n = 50
	sent := 0
	for _, opts := range [][]rbatch.Option{nil, {rbatch.WithSkipResult()}} {
		require.NoError(t, syscall.Kill(s.PID(), syscall.SIGSTOP))
		b := c.NewBatch(opts...)
		fs := make([]*rbatch.Future[int64], n)
		for i := range fs {
			fs[i] = b.AtomicLong("tw:slow").IncrementAndGetAsync()
		}
		sent += n
		res, err := b.Execute(shortCtx(t))
		require.NoError(t, syscall.Kill(s.PID(), syscall.SIGCONT))
		require.Error(t, err)

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
		assert.LessOrEqual(t, got, sent, "applied at most once each")
	}
}
