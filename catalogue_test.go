package rbatch_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// The catalogue of bad input: each case gets a clear error naming the
// problem, sends nothing (the server's commandstats do not move, apart from
// what a case sends on purpose), and leaves the client working (an ordinary
// batch afterwards succeeds and the pool is clean).

// catPassword is the password of the catalogue's cases; no error may show it.
const catPassword = "cat-s3cret-Pa55"

// catEnv is what a case runs with.
type catEnv struct {
	s *redistest.Server
	c *rbatch.Client // nil for cases with noClient
}

type catCase struct {
	name string
	// server starts the case's own server (nil: the shared srv).
	server func(t *testing.T) *redistest.Server
	// cfg adjusts the config of the case's client and of the follow-up
	// client.
	cfg func(*rbatch.Config)
	// noClient: the case makes its own clients (NewClient errors).
	noClient bool
	// clientGone: the case closes its client; the follow-up batch runs on a
	// new one.
	clientGone bool
	// run provokes the error and returns it.
	run func(t *testing.T, env catEnv) error
	// want are substrings of the error's text; is are errors.Is targets.
	want []string
	is   []error
	// sent is what the case sends on purpose (exact calls per command);
	// allow lists commands that may show up any number of times (a
	// Redis-side MULTI sent as the batch was filled, a handshake's AUTH).
	sent  map[string]int64
	allow []string
	// keys is how many keys the case leaves in the database (what it
	// applies on purpose); anything else means a refused batch applied
	// something.
	keys int64
}

func TestBadInputCatalogue(t *testing.T) {
	cases := catCases()
	require.GreaterOrEqual(t, len(cases), 25)
	names := map[string]bool{}
	for _, tc := range cases {
		require.False(t, names[tc.name], "duplicate case %q", tc.name)
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			s := srv
			if tc.server != nil {
				s = tc.server(t)
			}
			s.FlushAll(t)
			env := catEnv{s: s}
			if !tc.noClient {
				env.c = catClient(t, s, tc.cfg)
			}
			before := s.CommandStats(t)

			err := tc.run(t, env)

			require.Error(t, err)
			msg := err.Error()
			t.Logf("error: %s", msg)
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
			for _, target := range tc.is {
				assert.ErrorIs(t, err, target)
			}
			assert.NotContains(t, msg, catPassword, "the password never appears in an error")

			// Nothing was sent but what the case sends on purpose.
			want := map[string]int64{}
			for k, v := range tc.sent {
				want[k] = v
			}
			assert.Equal(t, want, catDelta(before, s.CommandStats(t), tc.allow), "commands that reached the server")
			assert.Equal(t, tc.keys, s.MustDo(t, "DBSIZE"), "keys in the database after the case")

			// Other batches are unharmed.
			c := env.c
			if c == nil || tc.clientGone {
				c = catClient(t, s, tc.cfg)
			}
			catOrdinaryBatch(t, c)
			closeClean(t, c)
			if env.c != nil && env.c != c {
				closeClean(t, env.c)
			}
		})
	}
}

// catClient connects to s and closes the client, checking its pool is
// clean, at the end of the test.
func catClient(t *testing.T, s *redistest.Server, mod func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	cfg := rbatch.Config{Addrs: []string{s.Addr}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := rbatch.NewClient(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { closeClean(t, c) })
	return c
}

// catOrdinaryBatch runs a small batch that must succeed.
func catOrdinaryBatch(t *testing.T, c *rbatch.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := c.NewBatch()
	echo := b.Do("ECHO", "still fine")
	n := b.AtomicLong("cat:after:n").IncrementAndGetAsync()
	_, err := b.Execute(ctx)
	require.NoError(t, err, "an ordinary batch after the case")
	v, _ := echo.Get()
	assert.Equal(t, "still fine", v)
	got, err := n.Get()
	assert.NoError(t, err)
	assert.Positive(t, got)
}

// catIgnored are the commands the test harness itself sends.
func catIgnored(name string) bool {
	return name == "info" || name == "config|resetstat" || name == "ping" || name == "flushall" ||
		strings.HasPrefix(name, "client|")
}

// catDelta returns the calls per command between two commandstats readings,
// leaving out the harness's commands and those in allow.
func catDelta(before, after map[string]int64, allow []string) map[string]int64 {
	d := map[string]int64{}
	for k, v := range after {
		if catIgnored(k) || containsString(allow, k) {
			continue
		}
		if n := v - before[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// catWait polls cond every 5 ms for up to 5 s.
func catWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func catInfoInt(t *testing.T, s *redistest.Server, section, field string) int {
	t.Helper()
	n, err := strconv.Atoi(s.Info(t, section)[field])
	require.NoError(t, err, "INFO %s %s", section, field)
	return n
}

type catOrder struct {
	ID    int
	Items []string
}

// catQueueOne is the usual shape of an argument case: a good command, then
// the bad one, then another good one; Execute must refuse the whole batch,
// naming the bad command, with every future not sent.
func catQueueOne(opts []rbatch.Option, queue func(b *rbatch.Batch) error) func(t *testing.T, env catEnv) error {
	return func(t *testing.T, env catEnv) error {
		multi := env.s.CommandStats(t)["multi"]
		b := env.c.NewBatch(opts...)
		first := b.Bucket("cat:first").SetAsync("1")
		if err := queue(b); err != nil {
			return err
		}
		last := b.AtomicLong("cat:last").IncrementAndGetAsync()
		_, err := b.Execute(context.Background())
		if env.s.CommandStats(t)["multi"] > multi {
			// Queued in Redis's MULTI before the bad command, then discarded
			// (a Redis-side queue that had its connection by then).
			assert.ErrorIs(t, errOf(first), rbatch.ErrTxAborted)
		} else {
			assert.ErrorIs(t, errOf(first), rbatch.ErrNotSent)
		}
		assert.ErrorIs(t, errOf(last), rbatch.ErrNotSent)
		var berr *rbatch.BatchError
		if assert.ErrorAs(t, err, &berr) && len(berr.Commands) > 0 {
			assert.Equal(t, 1, berr.Commands[0].Index, "the bad command is named")
		}
		return err
	}
}

// catArg is catQueueOne for a bad argument of an object method.
func catArg(queue func(b *rbatch.Batch)) func(t *testing.T, env catEnv) error {
	return catQueueOne(nil, func(b *rbatch.Batch) error { queue(b); return nil })
}

// catDo queues a forbidden command through Do.
func catDo(cmd string, args ...any) func(t *testing.T, env catEnv) error {
	return catQueueOne(nil, func(b *rbatch.Batch) error {
		f := b.Do(cmd, args...)
		_, err := f.Get()
		if !errors.Is(err, rbatch.ErrNotExecuted) {
			return errors.New("Do's future resolved before Execute: " + err.Error())
		}
		return nil
	})
}

// catOption runs a one-command batch with an invalid option.
func catOption(opts ...rbatch.Option) func(t *testing.T, env catEnv) error {
	return func(t *testing.T, env catEnv) error {
		b := env.c.NewBatch(opts...)
		f := b.Bucket("cat:opt").SetAsync("1")
		g := b.Bucket("cat:opt2").GetAsync()
		_, err := b.Execute(context.Background())
		assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
		assert.ErrorIs(t, errOf(g), rbatch.ErrNotSent)
		return err
	}
}

// catNewClient tries to connect with the config mk makes for the case's
// server; the client must not come back.
func catNewClient(mk func(s *redistest.Server) rbatch.Config) func(t *testing.T, env catEnv) error {
	return func(t *testing.T, env catEnv) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		c, err := rbatch.NewClient(ctx, mk(env.s))
		if c != nil {
			c.Close()
			return errors.New("NewClient returned a client")
		}
		assert.Less(t, time.Since(start), 5*time.Second, "NewClient fails promptly")
		return err
	}
}

// catACLServer starts a server with an ACL user "catuser" (password
// catPassword) allowed everything; the default user stays open for the
// harness.
func catACLServer(t *testing.T) *redistest.Server {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "catuser", "on", ">"+catPassword, "~*", "&*", "+@all")
	return s
}

// catBulkServer starts a server with proto-max-bulk-len 1mb.
func catBulkServer(t *testing.T) *redistest.Server {
	s := redistest.Standalone(t, "--proto-max-bulk-len", "1mb")
	require.Equal(t, []any{[]byte("proto-max-bulk-len"), []byte("1048576")},
		s.MustDo(t, "CONFIG", "GET", "proto-max-bulk-len"))
	return s
}

func catAsUser(cfg *rbatch.Config) { cfg.Username, cfg.Password = "catuser", catPassword }

func catCases() []catCase {
	ctx := context.Background()
	var cases []catCase
	add := func(c ...catCase) { cases = append(cases, c...) }

	// The client and the context.
	add(catCase{
		name: "closed client", clientGone: true,
		run: func(t *testing.T, env catEnv) error {
			require.NoError(t, env.c.Close())
			require.NoError(t, env.c.Close(), "Close twice is harmless")
			b := env.c.NewBatch()
			f := b.Bucket("cat:closed").SetAsync("1")
			_, err := b.Execute(ctx)
			assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
			assert.ErrorIs(t, errOf(f), rbatch.ErrClosed)
			return err
		},
		want: []string{"client closed"}, is: []error{rbatch.ErrClosed, rbatch.ErrNotSent},
	}, catCase{
		name: "cancelled context",
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch()
			f := b.Bucket("cat:ctx").SetAsync("1")
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := b.Execute(cctx)
			assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
			assert.ErrorIs(t, errOf(f), context.Canceled)
			return err
		},
		want: []string{"context canceled"}, is: []error{context.Canceled, rbatch.ErrNotSent},
	}, catCase{
		// MULTI and the commands went to Redis as they were queued; a
		// cancelled Execute drops the transaction: nothing applied.
		name: "cancelled context, RedisWriteAtomic", allow: []string{"multi", "discard"},
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
			f := b.Bucket("cat:ctx:rwa").SetAsync("1")
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := b.Execute(cctx)
			assert.NotErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome)
			return err
		},
		want: []string{"context canceled"}, is: []error{context.Canceled},
	})

	// Arguments.
	add(catCase{
		name: "NaN score", run: catArg(func(b *rbatch.Batch) { b.ScoredSortedSet("cat:z").AddAsync(nanScore(), "m") }),
		want: []string{"command 1 (ZADD)", "score is NaN"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "NaN increment", run: catArg(func(b *rbatch.Batch) { b.ScoredSortedSet("cat:z").AddScoreAsync("m", nanScore()) }),
		want: []string{"command 1 (ZINCRBY)", "increment is NaN"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "zero TTL, ExpireAsync", run: catArg(func(b *rbatch.Batch) { b.Bucket("cat:b").ExpireAsync(0) }),
		want: []string{"command 1 (PEXPIRE)", "TTL 0s is not positive"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "negative TTL, ExpireAsync", run: catArg(func(b *rbatch.Batch) { b.Map("cat:m").ExpireAsync(-time.Second) }),
		want: []string{"command 1 (PEXPIRE)", "TTL -1s is not positive"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "zero TTL, SetWithTTLAsync", run: catArg(func(b *rbatch.Batch) { b.Bucket("cat:b").SetWithTTLAsync("v", 0) }),
		want: []string{"command 1 (SET)", "TTL 0s is not positive"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "negative TTL, SetWithTTLAsync", run: catArg(func(b *rbatch.Batch) { b.Bucket("cat:b").SetWithTTLAsync("v", -5*time.Millisecond) }),
		want: []string{"command 1 (SET)", "TTL -5ms is not positive"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		// PX takes milliseconds: 500µs would round to PX 0, which Redis refuses.
		name: "sub-millisecond TTL, SetWithTTLAsync", run: catArg(func(b *rbatch.Batch) { b.Bucket("cat:b").SetWithTTLAsync("v", 500*time.Microsecond) }),
		want: []string{"command 1 (SET)", "TTL 500µs is under a millisecond"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "struct without a codec", run: catArg(func(b *rbatch.Batch) { b.Bucket("cat:b").SetAsync(catOrder{ID: 1}) }),
		want: []string{"command 1 (SET)", "rbatch_test.catOrder", "no codec", "WithCodec"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "nil value", run: catArg(func(b *rbatch.Batch) { b.Set("cat:s").AddAsync(nil) }),
		want: []string{"command 1 (SADD)", "nil value"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "stream entry with an odd number of field arguments",
		run:  catArg(func(b *rbatch.Batch) { b.Stream("cat:x").AddAsync("f1", "v1", "f2") }),
		want: []string{"command 1 (XADD)", "field/value pairs, got 3 arguments"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "Keys().DeleteAsync with no keys", run: catArg(func(b *rbatch.Batch) { b.Keys().DeleteAsync() }),
		want: []string{"command 1 (DEL)", "at least one argument"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		// proto-max-bulk-len 1mb (the least 7.0 accepts), a 2 MiB value: the
		// server would refuse it with a protocol error and close the
		// connection after running what came before it.
		name: "value larger than proto-max-bulk-len", server: catBulkServer,
		run:  catArg(func(b *rbatch.Batch) { b.Bucket("cat:big").SetAsync(make([]byte, 2<<20)) }),
		want: []string{"command 1 (SET)", "argument 2 is 2097152 bytes", "proto-max-bulk-len of 1048576"},
		is:   []error{rbatch.ErrNotSent},
	}, catCase{
		// In a Redis-side transaction the big value is refused as it is
		// queued; the transaction opened for the command before it is
		// dropped.
		name: "value larger than proto-max-bulk-len, RedisWriteAtomic", server: catBulkServer,
		allow: []string{"multi", "discard"},
		run: catQueueOne([]rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, func(b *rbatch.Batch) error {
			b.List("cat:big:l").AddAsync(strings.Repeat("x", 1<<20+1))
			return nil
		}),
		want: []string{"command 1 (RPUSH)", "1048577 bytes", "proto-max-bulk-len"},
		is:   []error{rbatch.ErrNotSent},
	})

	// Commands a batch must not carry.
	add(catCase{
		name: "Do with no command name", run: catDo(""),
		want: []string{"command 1", "empty command name"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "Do with a blank command name", run: catDo("  ", "x"),
		want: []string{"command 1", "empty command name"}, is: []error{rbatch.ErrNotSent},
	})
	for _, d := range []struct {
		args []any
		why  string
	}{
		{[]any{"SUBSCRIBE", "ch"}, "subscriber"},
		{[]any{"psubscribe", "c*"}, "subscriber"},
		{[]any{"MONITOR"}, "monitor"},
		{[]any{"WATCH", "cat:first"}, "execution mode"},
		{[]any{"MULTI"}, "execution mode"},
		{[]any{"exec"}, "execution mode"},
		{[]any{"DISCARD"}, "execution mode"},
		{[]any{"SELECT", 1}, "Config.DB"},
		{[]any{"CLIENT", "REPLY", "OFF"}, "WithSkipResult"},
		// They turn the connection into a replication stream.
		{[]any{"SYNC"}, "replication stream"},
		{[]any{"PSYNC", "?", -1}, "replication stream"},
	} {
		name := strings.ToUpper(d.args[0].(string))
		if name == "CLIENT" {
			name = "CLIENT REPLY"
		}
		add(catCase{
			name: "Do " + name, run: catDo(d.args[0].(string), d.args[1:]...),
			want: []string{"command 1 (", name + " is not allowed in a batch", d.why}, is: []error{rbatch.ErrNotSent},
		})
	}
	add(catCase{
		// A nested MULTI in a Redis-side transaction: the transaction that
		// was opened as the batch filled is dropped, nothing applied.
		name: "Do MULTI in a RedisWriteAtomic batch", allow: []string{"multi", "discard"},
		run: catQueueOne([]rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, func(b *rbatch.Batch) error {
			b.Do("MULTI")
			return nil
		}),
		want: []string{"command 1 (MULTI)", "not allowed in a batch"}, is: []error{rbatch.ErrNotSent},
	}, catCase{
		name: "write command in a RedisReadAtomic batch",
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
			w := b.Bucket("cat:ro").SetAsync("1")
			r := b.Bucket("cat:ro").GetAsync()
			_, err := b.Execute(ctx)
			assert.ErrorIs(t, errOf(w), rbatch.ErrNotSent)
			assert.ErrorIs(t, errOf(r), rbatch.ErrNotSent)
			return err
		},
		want: []string{"command 0 (SET)", "write command in a read-only batch"}, is: []error{rbatch.ErrReadOnlyBatch, rbatch.ErrNotSent},
	})

	// Running a batch more than once.
	add(catCase{
		name: "Execute from two goroutines at once", sent: map[string]int64{"incr": 1}, keys: 1,
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch()
			f := b.AtomicLong("cat:twice").IncrementAndGetAsync()
			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = b.Execute(ctx)
				}()
			}
			close(start)
			wg.Wait()
			n, err := f.Get()
			assert.NoError(t, err)
			assert.Equal(t, int64(1), n, "the batch ran once")
			switch {
			case errs[0] == nil && errs[1] != nil:
				return errs[1]
			case errs[1] == nil && errs[0] != nil:
				return errs[0]
			}
			t.Errorf("want one Execute to run and one to fail: %v, %v", errs[0], errs[1])
			return errors.Join(errs...)
		},
		want: []string{"already executed"}, is: []error{rbatch.ErrAlreadyExecuted},
	}, catCase{
		name: "queueing after Execute", sent: map[string]int64{"set": 1}, keys: 1,
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch()
			b.Bucket("cat:q:a").SetAsync("1")
			_, err := b.Execute(ctx)
			require.NoError(t, err)
			late := b.Bucket("cat:q:b").SetAsync("2")
			lateDo := b.Do("ECHO", "late")
			select {
			case <-late.Done():
			default:
				t.Error("a future queued after Execute is resolved at once")
			}
			assert.Equal(t, -1, late.Index())
			assert.ErrorIs(t, errOf(lateDo), rbatch.ErrAlreadyExecuted)
			assert.Equal(t, 1, b.Len())
			return errOf(late)
		},
		want: []string{"already executed"}, is: []error{rbatch.ErrAlreadyExecuted},
	}, catCase{
		name: "Execute after Discard",
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch()
			f := b.Bucket("cat:d").SetAsync("1")
			require.NoError(t, b.Discard(ctx))
			assert.ErrorIs(t, errOf(f), rbatch.ErrDiscarded)
			_, err := b.Execute(ctx)
			return err
		},
		want: []string{"already executed or discarded"}, is: []error{rbatch.ErrAlreadyExecuted},
	}, catCase{
		name: "Get before Execute",
		run: func(t *testing.T, env catEnv) error {
			b := env.c.NewBatch()
			f := b.Bucket("cat:early").GetAsync()
			err := errOf(f)
			require.NoError(t, b.Discard(ctx))
			return err
		},
		want: []string{"not executed yet"}, is: []error{rbatch.ErrNotExecuted},
	})

	// Options.
	for _, o := range []struct {
		name string
		opts []rbatch.Option
		want string
	}{
		{"WithRetry(-1, …)", []rbatch.Option{rbatch.WithRetry(-1, time.Millisecond)}, "WithRetry attempts -1 is negative"},
		{"WithRetry(1, -1ms)", []rbatch.Option{rbatch.WithRetry(1, -time.Millisecond)}, "WithRetry interval -1ms is negative"},
		{"WithRetry(3, 0)", []rbatch.Option{rbatch.WithRetry(3, 0)}, "needs a positive interval"},
		{"WithResponseTimeout(-1)", []rbatch.Option{rbatch.WithResponseTimeout(-1)}, "WithResponseTimeout -1ns is negative"},
		{"WithSync(-1, …)", []rbatch.Option{rbatch.WithSync(-1, time.Second)}, "WithSync replicas -1 is negative"},
		{"WithSync(1, -1s)", []rbatch.Option{rbatch.WithSync(1, -time.Second)}, "WithSync timeout -1s is negative"},
		{"WithSyncAOF(…, -1, …)", []rbatch.Option{rbatch.WithSyncAOF(true, -1, time.Second)}, "WithSyncAOF replicas -1 is negative"},
		{"WithSyncAOF(…, -1s)", []rbatch.Option{rbatch.WithSyncAOF(true, 0, -time.Second)}, "WithSyncAOF timeout -1s is negative"},
		{"WithSync with WithSyncAOF", []rbatch.Option{rbatch.WithSync(1, time.Second), rbatch.WithSyncAOF(true, 1, time.Second)}, "WithSync and WithSyncAOF together"},
		{"WithProgress(1s, nil)", []rbatch.Option{rbatch.WithProgress(time.Second, nil)}, "WithProgress has a nil function"},
		{"WithProgress(0, nil)", []rbatch.Option{rbatch.WithProgress(0, nil)}, "WithProgress has a nil function"},
		{"unknown execution mode", []rbatch.Option{rbatch.WithMode(rbatch.ExecutionMode(9))}, "unknown execution mode 9"},
		// A Redis-side batch with a bad option must not even send MULTI.
		{"WithRetry(-1, …) in RedisWriteAtomic", []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic), rbatch.WithRetry(-1, time.Millisecond)}, "WithRetry attempts -1 is negative"},
	} {
		add(catCase{name: o.name, run: catOption(o.opts...), want: []string{"invalid option", o.want}, is: []error{rbatch.ErrNotSent}})
	}
	add(catCase{
		name: "WithSyncAOF on a server without WAITAOF", run: catOption(rbatch.WithSyncAOF(true, 0, time.Second)),
		want: []string{"WAITAOF", "7.2"}, is: []error{rbatch.ErrUnsupported, rbatch.ErrNotSent},
	})

	// Connecting.
	add(catCase{
		name: "NewClient with no addresses", noClient: true, run: catNewClient(func(*redistest.Server) rbatch.Config { return rbatch.Config{Password: catPassword} }),
		want: []string{"no addresses"},
	}, catCase{
		name: "NewClient with an empty address", noClient: true, run: catNewClient(func(*redistest.Server) rbatch.Config { return rbatch.Config{Addrs: []string{""}} }),
		want: []string{"empty address"},
	}, catCase{
		name: "NewClient with a negative DB", noClient: true, run: catNewClient(func(s *redistest.Server) rbatch.Config { return rbatch.Config{Addrs: []string{s.Addr}, DB: -1} }),
		want: []string{"DB -1 is negative"},
	}, catCase{
		name: "NewClient with an unreachable address", noClient: true,
		run: catNewClient(func(*redistest.Server) rbatch.Config {
			return rbatch.Config{Addrs: []string{"127.0.0.1:1"}, DialTimeout: time.Second, Password: catPassword}
		}),
		want: []string{"127.0.0.1:1", "connection refused"},
	}, catCase{
		name: "NewClient with a wrong password", noClient: true, server: catACLServer, cfg: catAsUser, allow: []string{"auth"},
		run: catNewClient(func(s *redistest.Server) rbatch.Config {
			return rbatch.Config{Addrs: []string{s.Addr}, Username: "catuser", Password: "wrong-" + catPassword}
		}),
		want: []string{"WRONGPASS", "catuser"},
	}, catCase{
		name: "NewClient with a password the server does not ask for", noClient: true, allow: []string{"auth"},
		run: catNewClient(func(s *redistest.Server) rbatch.Config {
			return rbatch.Config{Addrs: []string{s.Addr}, Password: catPassword}
		}),
		want: []string{"AUTH", "without any password configured"},
	}, catCase{
		name: "NewClient with a cancelled context", noClient: true,
		run: func(t *testing.T, env catEnv) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			c, err := rbatch.NewClient(cctx, rbatch.Config{Addrs: []string{env.s.Addr}, Password: catPassword})
			assert.Nil(t, c)
			return err
		},
		want: []string{"canceled"}, is: []error{context.Canceled},
	})

	// The pool and Close.
	add(catCase{
		name: "pool exhausted until the context deadline", cfg: func(cfg *rbatch.Config) { cfg.PoolSize = 1 },
		sent: map[string]int64{"blpop": 1},
		run: func(t *testing.T, env catEnv) error {
			slow := env.c.NewBatch()
			held := slow.Do("BLPOP", "cat:pool:empty", 1)
			done := slow.ExecuteAsync(ctx)
			catWait(t, "BLPOP holds the only connection", func() bool {
				return catInfoInt(t, env.s, "clients", "blocked_clients") == 1
			})
			b := env.c.NewBatch()
			f := b.Bucket("cat:pool:a").SetAsync("1")
			dctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := b.Execute(dctx)
			assert.Less(t, time.Since(start), 900*time.Millisecond, "gives up at the deadline, not when the connection frees")
			assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent)
			assert.ErrorIs(t, errOf(f), context.DeadlineExceeded)
			_, serr := done.Wait(ctx)
			assert.NoError(t, serr, "the batch holding the connection is unharmed")
			assert.ErrorIs(t, errOf(held), rbatch.ErrNil, "BLPOP timed out empty")
			return err
		},
		want: []string{"context deadline exceeded"}, is: []error{context.DeadlineExceeded, rbatch.ErrNotSent},
	}, catCase{
		// Batches in flight when the client closes finish (their commands
		// were all written); their connections are closed, not pooled; a
		// batch executed afterwards fails with ErrClosed.
		name: "Close while batches are in flight", clientGone: true,
		sent: map[string]int64{"blpop": 3, "incr": 3}, keys: 1,
		run: func(t *testing.T, env catEnv) error {
			base := catInfoInt(t, env.s, "clients", "connected_clients")
			const n = 3
			var runs []*rbatch.Future[*rbatch.BatchResult]
			var incrs []*rbatch.Future[int64]
			for i := range n {
				b := env.c.NewBatch()
				b.Do("BLPOP", "cat:close:empty:"+strconv.Itoa(i), 0.3)
				incrs = append(incrs, b.AtomicLong("cat:close:n").IncrementAndGetAsync())
				runs = append(runs, b.ExecuteAsync(ctx))
			}
			catWait(t, "every batch is in flight", func() bool {
				return catInfoInt(t, env.s, "clients", "blocked_clients") == n
			})
			require.NoError(t, env.c.Close())

			late := env.c.NewBatch()
			lf := late.Bucket("cat:close:late").SetAsync("1")
			_, err := late.Execute(ctx)
			assert.ErrorIs(t, errOf(lf), rbatch.ErrNotSent)

			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for i, r := range runs {
				_, rerr := r.Wait(wctx)
				require.NotErrorIs(t, rerr, context.DeadlineExceeded, "batch %d never finished", i)
				if rerr != nil {
					assert.True(t, errors.Is(rerr, rbatch.ErrUnknownOutcome) || errors.Is(rerr, rbatch.ErrNotSent),
						"batch %d: %v", i, rerr)
				}
				select {
				case <-incrs[i].Done():
				default:
					t.Errorf("future of batch %d unresolved", i)
				}
			}
			var total int64
			for _, f := range incrs {
				if v, err := f.Get(); err == nil {
					total++
					assert.LessOrEqual(t, v, int64(n))
				}
			}
			assert.Equal(t, int64(n), total, "the in-flight batches finished")
			// Their connections were closed, as was the idle one.
			catWait(t, "the client's connections are closed", func() bool {
				return catInfoInt(t, env.s, "clients", "connected_clients") <= base-1
			})
			return err
		},
		want: []string{"client closed"}, is: []error{rbatch.ErrClosed, rbatch.ErrNotSent},
	})
	return cases
}

// The positive side of two catalogue cases: ±Inf are valid scores, and a
// value of exactly proto-max-bulk-len bytes is sent.
func TestCatalogueValidEdges(t *testing.T) {
	t.Run("infinite scores", func(t *testing.T) {
		fresh(t)
		c := newClient(t)
		b := c.NewBatch()
		top := b.ScoredSortedSet("cat:inf").AddAsync(posInf(), "top")
		bottom := b.ScoredSortedSet("cat:inf").AddAsync(-posInf(), "bottom")
		inc := b.ScoredSortedSet("cat:inf").AddScoreAsync("mid", posInf())
		rng := b.ScoredSortedSet("cat:inf").ValueRangeAsync(0, -1)
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		for _, f := range []*rbatch.Future[bool]{top, bottom} {
			ok, err := f.Get()
			assert.NoError(t, err)
			assert.True(t, ok)
		}
		v, err := inc.Get()
		assert.NoError(t, err)
		assert.Equal(t, posInf(), v)
		members, _ := rng.Get()
		assert.Equal(t, []string{"bottom", "mid", "top"}, members)
		stats := srv.CommandStats(t)
		assert.Equal(t, int64(2), stats["zadd"])
		assert.Equal(t, int64(1), stats["zincrby"])
	})
	t.Run("value of exactly proto-max-bulk-len", func(t *testing.T) {
		s := catBulkServer(t)
		c := catClient(t, s, nil)
		b := c.NewBatch()
		set := b.Bucket("cat:limit").SetAsync(make([]byte, 1<<20))
		n := b.AtomicLong("cat:limit:n").IncrementAndGetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		assert.NoError(t, errOf(set))
		v, _ := n.Get()
		assert.Equal(t, int64(1), v)
		assert.Equal(t, int64(1<<20), s.MustDo(t, "STRLEN", "cat:limit"))
	})
}
