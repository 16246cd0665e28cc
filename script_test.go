package rbatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// CLIENT REPLY is refused whatever type carries the subcommand: a real
// server would stop replying, stalling the batch.
func TestForbiddenSubcommandWhateverItsType(t *testing.T) {
	type word string
	type blob []byte
	for name, cmd := range map[string][]any{
		"[]byte":                     {"CLIENT", []byte("REPLY"), "OFF"},
		"named string":               {"CLIENT", word("reply"), "OFF"},
		"named []byte":               {"CLIENT", blob("REPLY"), "OFF"},
		"json.RawMessage":            {"CLIENT", json.RawMessage("tracking"), "ON"},
		"named []byte, SCRIPT DEBUG": {"SCRIPT", blob("DEBUG"), "SYNC"},
	} {
		t.Run(name, func(t *testing.T) {
			f := redistest.NewFake(t, plausible)
			c, hs := fakeClient(t, f)
			b := c.NewBatch(rbatch.WithResponseTimeout(200 * time.Millisecond))
			b.Do(cmd[0].(string), cmd[1:]...)
			_, err := b.Execute(context.Background())
			require.Error(t, err, "%v must be refused whatever the argument's type", cmd)
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.Empty(t, f.Commands()[hs:], "nothing may be sent")
		})
	}
}

// A script that does not compile fails its future with the compile error,
// not with the NOSCRIPT its EVALSHA then gets.
func TestScriptCompileErrorReachesItsFuture(t *testing.T) {
	c := newClient(t)
	b := c.NewBatch()
	eval := b.Script().EvalAsync("return +", nil)
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	_, ferr := eval.Get()
	require.Error(t, ferr)
	assert.NotContains(t, ferr.Error(), "NOSCRIPT")
	assert.Contains(t, ferr.Error(), "compiling script")
}

const incrScript = "return redis.call('INCR', KEYS[1])"

// A script that is the last of a batch's commands is sent as EVALSHA; a
// node that does not hold it answers NOSCRIPT and gets it again as EVAL,
// once, and later batches' EVALSHAs find it. A batch with commands after
// its script loads it ahead of them every time.
func TestScriptEvalshaFallsBackToEval(t *testing.T) {
	fresh(t)
	srv.MustDo(t, "SCRIPT", "FLUSH")
	c := newClient(t)
	for n := int64(1); n <= 3; n++ {
		b := c.NewBatch()
		b.Bucket("sc:x").SetAsync("x")
		f := b.Script().EvalIntAsync(incrScript, []string{"sc:n"})
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, n, v)
	}
	assert.EqualValues(t, 3, calls(t, "evalsha"))
	assert.EqualValues(t, 1, calls(t, "eval"), "NOSCRIPT once, answered by EVAL")
	assert.Zero(t, calls(t, "script|load"))

	for range 2 {
		b := c.NewBatch()
		b.Script().EvalIntAsync(incrScript, []string{"sc:n"})
		b.Bucket("sc:n").GetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
	}
	assert.EqualValues(t, 2, calls(t, "script|load"), "a script with commands behind it is loaded ahead of them")
	assert.EqualValues(t, 5, calls(t, "evalsha"))

	// Forgotten, a script that is last is sent again as EVAL, once.
	srv.MustDo(t, "SCRIPT", "FLUSH")
	b := c.NewBatch()
	b.Bucket("sc:x").SetAsync("y")
	f := b.Script().EvalIntAsync(incrScript, []string{"sc:n"})
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, err := f.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(6), v)
	assert.EqualValues(t, 6, calls(t, "evalsha"))
	assert.EqualValues(t, 2, calls(t, "eval"))
	assert.Equal(t, []byte("6"), srv.MustDo(t, "GET", "sc:n"), "the script ran once per batch")
}

// A node that forgot a script must not let the commands queued after it run
// first: the batch loads the script ahead of its commands, so the GET sees
// the script's INCR and the SET queued last wins.
func TestScriptForgottenKeepsOrder(t *testing.T) {
	for name, mode := range map[string]rbatch.ExecutionMode{"IN_MEMORY": rbatch.InMemory, "STREAMING": rbatch.Streaming} {
		t.Run(name, func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			warm := c.NewBatch()
			warm.Script().EvalIntAsync(incrScript, []string{"sc:warm"})
			_, err := warm.Execute(context.Background())
			require.NoError(t, err)
			srv.MustDo(t, "SCRIPT", "FLUSH")

			b := c.NewBatch(rbatch.WithMode(mode))
			incr := b.Script().EvalIntAsync(incrScript, []string{"sc:k"})
			get := b.Bucket("sc:k").GetAsync()
			set := b.Bucket("sc:k").SetAsync("100")
			_, err = b.Execute(context.Background())
			require.NoError(t, err)
			v, err := incr.Get()
			require.NoError(t, err)
			assert.Equal(t, int64(1), v)
			got, err := get.Get()
			require.NoError(t, err, "the GET queued after the script sees its write")
			assert.Equal(t, "1", got)
			require.NoError(t, errOf(set))
			assert.Equal(t, []byte("100"), srv.MustDo(t, "GET", "sc:k"), "the SET queued last wins")
		})
	}
}

// After SCRIPT FLUSH the node answers NOSCRIPT: the script did not run, so
// rbatch loads it and sends the command again — each script runs exactly
// once. A transaction and a skip-result batch load their scripts every
// time, so they never see NOSCRIPT.
func TestScriptReloadedAfterFlush(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []rbatch.Option
		loads int64 // SCRIPT LOADs over the three batches
	}{
		{"IN_MEMORY", nil, 3},
		{"IN_MEMORY_ATOMIC", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, 3},
		{"skip-result", []rbatch.Option{rbatch.WithSkipResult()}, 3},
		{"REDIS_WRITE_ATOMIC", []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			run := func() {
				b := c.NewBatch(tc.opts...)
				first := b.Script().EvalIntAsync(incrScript, []string{"sc:a"})
				b.Bucket("sc:b").SetAsync("x")
				second := b.Script().EvalIntAsync(incrScript, []string{"sc:a"})
				_, err := b.Execute(context.Background())
				require.NoError(t, err)
				if v, err := first.Get(); !errors.Is(err, rbatch.ErrResultSkipped) {
					require.NoError(t, err)
					w, err := second.Get()
					require.NoError(t, err)
					assert.Equal(t, v+1, w, "in order")
				}
			}
			run()
			srv.MustDo(t, "SCRIPT", "FLUSH")
			run()
			run()
			assert.Equal(t, []byte("6"), srv.MustDo(t, "GET", "sc:a"), "each script ran once")
			assert.Equal(t, tc.loads, calls(t, "script|load"))
			closeClean(t, c)
		})
	}
}

// Typed results: a reply of another type fails the future, the batch goes on.
func TestScriptTypedResults(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	n := b.Script().EvalIntAsync("return tonumber(ARGV[1]) * 2", nil, 21)
	s := b.Script().EvalStringAsync("return redis.call('GET', KEYS[1])", []string{"sc:missing"})
	s2 := b.Script().EvalStringAsync("return ARGV[1]", nil, "hello")
	list := b.Script().EvalStringsAsync("return {ARGV[1], 7, ARGV[2]}", nil, "a", "b")
	wrong := b.Script().EvalIntAsync("return 'text'", nil)
	_, err := b.Execute(context.Background())
	require.Error(t, err, "one reply had the wrong type")

	v, err := n.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(42), v)
	_, err = s.Get()
	assert.ErrorIs(t, err, rbatch.ErrNil, "Lua false for a missing key")
	str, err := s2.Get()
	require.NoError(t, err)
	assert.Equal(t, "hello", str)
	strs, err := list.Get()
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "7", "b"}, strs)
	_, err = wrong.Get()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "text")
}

// A reply that does not fit its future's type came from a command Redis
// ran: it is counted applied, its error says ErrDecode (not a server error),
// and a retry would run it twice. So is a value written in another shape.
func TestDecodeErrorIsAppliedNotFailed(t *testing.T) {
	fresh(t)
	c := newClient(t)
	srv.MustDo(t, "SET", "dec:json", "not json")
	b := c.NewBatch(rbatch.WithCodec(rbatch.JSONCodec))
	ran := b.Script().EvalIntAsync("redis.call('INCR', KEYS[1]); return 'done'", []string{"dec:n"})
	typed := rbatch.BucketOf[map[string]int](b, "dec:json").GetAsync()
	refused := b.Do("INCR", "dec:json")
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Equal(t, rbatch.Counts{Applied: 2, Failed: 1}, res.Counts)
	assert.Equal(t, []byte("1"), srv.MustDo(t, "GET", "dec:n"), "the script ran once")
	for _, e := range []error{errOf(ran), errOf(typed)} {
		assert.ErrorIs(t, e, rbatch.ErrDecode)
		var re *rbatch.RedisError
		assert.False(t, errors.As(e, &re), "not a server error: %v", e)
	}
	assert.Contains(t, errOf(ran).Error(), `"done" is not an integer`)
	var re *rbatch.RedisError
	require.ErrorAs(t, errOf(refused), &re)
	assert.NotErrorIs(t, errOf(refused), rbatch.ErrDecode)
	assert.ErrorIs(t, err, rbatch.ErrDecode, "Execute's error reaches the cause")
}

// A reply that did not decode fails Execute in every mode, Streaming too
// (where the commands are counted segment by segment), and the message's
// count of commands that did not succeed includes it.
func TestDecodeErrorFailsExecuteInEveryMode(t *testing.T) {
	fresh(t)
	c := newClient(t)
	srv.MustDo(t, "SET", "dec:str", "x")
	for _, m := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.Streaming} {
		t.Run(m.String(), func(t *testing.T) {
			b := c.NewBatch(rbatch.WithMode(m))
			dec := b.Script().EvalIntAsync("return 'not an int'", []string{"dec:k"})
			b.Bucket("dec:ok").SetAsync("v")
			wrong := b.List("dec:str").AddAsync("v") // WRONGTYPE
			res, err := b.Execute(context.Background())
			assert.Equal(t, rbatch.Counts{Applied: 2, Failed: 1}, res.Counts)
			assert.ErrorIs(t, errOf(dec), rbatch.ErrDecode)
			require.Error(t, err)
			assert.ErrorIs(t, err, rbatch.ErrDecode)
			var re *rbatch.RedisError
			assert.True(t, errors.As(err, &re) && re.Prefix() == "WRONGTYPE", "Execute's error reaches the WRONGTYPE too: %v", err)
			assert.ErrorAs(t, errOf(wrong), &re)
			assert.Contains(t, err.Error(), "2 of 3 commands did not succeed (1 failed, 1 applied, reply not decoded)")

			b = c.NewBatch(rbatch.WithMode(m))
			dec = b.Script().EvalIntAsync("return 'not an int'", []string{"dec:k"})
			res, err = b.Execute(context.Background())
			assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts)
			assert.ErrorIs(t, errOf(dec), rbatch.ErrDecode)
			assert.ErrorIs(t, err, rbatch.ErrDecode, "the one command did not succeed")
		})
	}
}

// In a cluster each primary that does not hold a script answers NOSCRIPT
// once and gets it as EVAL; the next batch's EVALSHA finds it there.
func TestScriptFallsBackToEvalPerClusterNode(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	// One key per primary: each node's group has its script last, so it
	// relies on the node's cache.
	var keys []string
	owners := map[string]bool{}
	for c := 'a'; len(keys) < len(cl.Primaries) && c <= 'z'; c++ {
		k := "{" + string(c) + "}n"
		if owner := cl.OwnerOf(t, route.Slot([]byte(k))).Addr; !owners[owner] {
			owners[owner] = true
			keys = append(keys, k)
		}
	}
	for round := 1; round <= 2; round++ {
		b := c.NewBatch()
		var fs []*rbatch.Future[int64]
		for _, k := range keys {
			fs = append(fs, b.Script().EvalIntAsync(incrScript, []string{k}))
		}
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		for _, f := range fs {
			v, err := f.Get()
			require.NoError(t, err)
			assert.Equal(t, int64(round), v)
		}
	}
	for _, p := range cl.Primaries {
		want := int64(0)
		if owners[p.Addr] {
			want = 1
		}
		st := p.CommandStats(t)
		assert.Equal(t, want, st["eval"], "%s: NOSCRIPT once, answered by EVAL", p.Addr)
		assert.Equal(t, 2*want, st["evalsha"], p.Addr)
		assert.Zero(t, st["script|load"], p.Addr)
	}
}
