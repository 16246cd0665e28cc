package rbatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// aclPassword is the ACL user's password: it must never show in an error.
const aclPassword = "0rders-Pw!#%s"

// aclServer starts a server with a user "orders" that may touch only
// order:* keys (ACL SETUSER orders on >pw ~order:* +@all).
func aclServer(t *testing.T) *redistest.Server {
	t.Helper()
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "orders", "on", ">"+aclPassword, "~order:*", "+@all")
	return s
}

func aclClient(t *testing.T, s *redistest.Server) *rbatch.Client {
	t.Helper()
	return clientFor(t, s, func(cfg *rbatch.Config) { cfg.Username, cfg.Password = "orders", aclPassword })
}

// aclNoPassword asserts that no error text shows the password.
func aclNoPassword(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err == nil {
			continue
		}
		assert.NotContains(t, err.Error(), aclPassword)
		assert.NotContains(t, fmt.Sprintf("%+v", err), aclPassword)
	}
}

// IN_MEMORY: only the commands on keys outside ~order:* fail, with NOPERM;
// the others are applied.
func TestACLNoPermFailsOnlyItsCommands(t *testing.T) {
	s := aclServer(t)
	c := aclClient(t, s)
	b := c.NewBatch()
	set := b.Bucket("order:1").SetAsync("paid")
	denied := b.Bucket("stock:1").SetAsync("0")
	get := b.Bucket("order:1").GetAsync()
	deniedIncr := b.AtomicLong("stock:n").IncrementAndGetAsync()
	hset := b.Map("order:1:items").FastPutAsync("sku", 2)
	deniedMulti := b.Keys().CountExistsAsync("order:1", "stock:1") // one key out of the pattern
	res, err := b.Execute(context.Background())
	require.Error(t, err)

	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	var failed []int
	for _, ce := range berr.Commands {
		failed = append(failed, ce.Index)
	}
	assert.Equal(t, []int{1, 3, 5}, failed, "only the out-of-pattern commands failed")
	for _, f := range []error{errOf(denied), errOf(deniedIncr), errOf(deniedMulti)} {
		var rerr *rbatch.RedisError
		if assert.ErrorAs(t, f, &rerr) {
			assert.Equal(t, "NOPERM", rerr.Prefix())
		}
		assert.NotErrorIs(t, f, rbatch.ErrUnknownOutcome)
	}
	assert.NoError(t, errOf(set))
	v, err2 := get.Get()
	assert.NoError(t, err2)
	assert.Equal(t, "paid", v)
	assert.NoError(t, errOf(hset))
	require.Len(t, res.Responses, 6)
	assert.Equal(t, struct{}{}, res.Responses[0])
	assert.Equal(t, "paid", res.Responses[2])
	assert.Equal(t, true, res.Responses[4])

	assert.Equal(t, []byte("paid"), s.MustDo(t, "GET", "order:1"))
	assert.Equal(t, int64(0), s.MustDo(t, "EXISTS", "stock:1", "stock:n"), "denied commands not applied")
	aclNoPassword(t, err, errOf(denied), errOf(deniedIncr), errOf(deniedMulti))
}

// In the atomic modes NOPERM is a queue-time error: Redis refuses the
// command while queueing and EXEC answers EXECABORT, so the whole
// transaction is aborted and nothing is applied.
func TestACLNoPermAbortsTransaction(t *testing.T) {
	s := aclServer(t)
	c := aclClient(t, s)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			s.FlushAll(t)
			s.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			fs := []error{}
			set := b.Bucket("order:2").SetAsync("paid")
			denied := b.Bucket("stock:2").SetAsync("0")
			incr := b.AtomicLong("order:n").IncrementAndGetAsync()
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, rbatch.ErrTxAborted)
			fs = append(fs, errOf(set), errOf(denied), errOf(incr))
			for i, f := range fs {
				assert.ErrorIs(t, f, rbatch.ErrTxAborted, "future %d", i)
				assert.NotErrorIs(t, f, rbatch.ErrUnknownOutcome, "future %d", i)
				var rerr *rbatch.RedisError
				if assert.ErrorAs(t, f, &rerr, "future %d carries the cause", i) {
					assert.Equal(t, "NOPERM", rerr.Prefix())
				}
				assert.Contains(t, f.Error(), "command 1 (SET)", "the cause names the refused command")
			}
			stats := s.CommandStats(t)
			assert.Equal(t, int64(1), stats["multi"])
			assert.Zero(t, stats["set"], "no SET ran")
			assert.Zero(t, stats["incr"], "no INCR ran")
			assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing applied")
			aclNoPassword(t, append(fs, err)...)

			// The connection went back clean: the next transaction commits.
			b = c.NewBatch(rbatch.WithMode(mode))
			ok := b.Bucket("order:3").SetAsync("paid")
			_, err = b.Execute(context.Background())
			require.NoError(t, err)
			assert.NoError(t, errOf(ok))
			assert.NoError(t, rbatch.CheckPoolsClean(c))
		})
	}
}

// A RedisReadAtomic batch by the same user: a read of a denied key is
// refused while queueing and aborts the transaction.
func TestACLNoPermInReadAtomic(t *testing.T) {
	s := aclServer(t)
	s.MustDo(t, "SET", "order:r", "v")
	c := aclClient(t, s)
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisReadAtomic))
	ok := b.Bucket("order:r").GetAsync()
	denied := b.Bucket("stock:r").GetAsync()
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrTxAborted)
	assert.ErrorIs(t, errOf(ok), rbatch.ErrTxAborted)
	assert.ErrorIs(t, errOf(denied), rbatch.ErrTxAborted)
	assert.ErrorContains(t, errOf(denied), "NOPERM")
	aclNoPassword(t, err, errOf(ok), errOf(denied))
}

// Wrong credentials fail NewClient naming the user and WRONGPASS, never the
// password (neither the wrong one nor the right one).
func TestACLWrongPassword(t *testing.T) {
	s := aclServer(t)
	ctx := context.Background()
	for name, cfg := range map[string]rbatch.Config{
		"wrong password": {Addrs: []string{s.Addr}, Username: "orders", Password: aclPassword + "x"},
		"unknown user":   {Addrs: []string{s.Addr}, Username: "nobody", Password: aclPassword},
		"disabled user":  {Addrs: []string{s.Addr}, Username: "off", Password: aclPassword},
	} {
		t.Run(name, func(t *testing.T) {
			if cfg.Username == "off" {
				s.MustDo(t, "ACL", "SETUSER", "off", "off", ">"+aclPassword, "~*", "+@all")
			}
			c, err := rbatch.NewClient(ctx, cfg)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), "WRONGPASS")
			assert.Contains(t, err.Error(), cfg.Username)
			aclNoPassword(t, err)
			assert.NotContains(t, err.Error(), cfg.Password)
		})
	}
}

// A user who may not run MULTI: a RedisWriteAtomic batch's commands run one
// by one as they are pushed, and their replies are read while more are
// pushed. Each future gets its own reply.
func TestACLMultiRefusedRedisSide(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "nomulti", "on", ">"+aclPassword, "~*", "+@all", "-multi")
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.Username, cfg.Password = "nomulti", aclPassword })
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	const n = 3 * 4096 // several of the queue's blocks, pushed while replies come in
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		fs[i] = b.AtomicLong(fmt.Sprint("nomulti:", i%7)).IncrementAndGetAsync()
	}
	_, err := b.Execute(context.Background())
	require.Error(t, err, "MULTI was refused")
	assert.ErrorContains(t, err, "NOPERM")
	counts := map[int]int64{}
	for i, f := range fs {
		v, ferr := f.Get()
		require.NoError(t, ferr, "command %d ran on its own", i)
		counts[i%7]++
		assert.Equal(t, counts[i%7], v, "command %d got its own reply", i)
	}
}

// An atomic skip-result batch of a user who may not name connections (the
// mark a transaction run with replies off carries) has its replies read
// instead: applied, and skipped, whether INFO is allowed or not; a command
// inside EXEC that fails keeps its error.
func TestACLSkipResultTransactionWithoutClientSetname(t *testing.T) {
	for _, rules := range [][]any{{"-client|setname"}, {"-info", "-client"}, {"-client|getname"}} {
		s := redistest.Standalone(t)
		s.MustDo(t, "ACL", append([]any{"SETUSER", "noname", "on", ">" + aclPassword, "~*", "+@all"}, rules...)...)
		c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.Username, cfg.Password = "noname", aclPassword })
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult())
		set := b.Bucket("noname:k").SetAsync("v")
		n := b.AtomicLong("noname:n").IncrementAndGetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err, rules)
		assert.Equal(t, rbatch.Counts{Skipped: 2}, res.Counts, rules)
		assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped, rules)
		assert.ErrorIs(t, errOf(n), rbatch.ErrResultSkipped, rules)
		assert.Equal(t, []byte("v"), s.MustDo(t, "GET", "noname:k"), rules)
		assert.Equal(t, []byte("1"), s.MustDo(t, "GET", "noname:n"), rules)

		b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult())
		b.AtomicLong("noname:n").IncrementAndGetAsync()
		bad := b.List("noname:k").AddAsync("x") // WRONGTYPE inside EXEC
		res, err = b.Execute(context.Background())
		var re *rbatch.RedisError
		require.ErrorAs(t, err, &re, rules)
		assert.Equal(t, "WRONGTYPE", re.Prefix(), rules)
		require.ErrorAs(t, errOf(bad), &re, rules)
		assert.Equal(t, rbatch.Counts{Skipped: 1, Failed: 1}, res.Counts, rules)
		assert.Equal(t, []byte("2"), s.MustDo(t, "GET", "noname:n"), rules)
	}
}

// A WAIT refused (the user may not run it) fails the batch whenever a
// command may have been applied on the node — a script that wrote before
// its error reply included — and not when every command there was refused.
func TestSyncRefusedIsReportedAfterAScriptError(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "nowait", "on", ">"+aclPassword, "~*", "+@all", "-wait")
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.Username, cfg.Password = "nowait", aclPassword })
	s.MustDo(t, "SET", "nw:text", "not a number")

	b := c.NewBatch(rbatch.WithSync(1, 10*time.Millisecond))
	f := b.Script().EvalAsync("redis.call('SET', KEYS[1], 'x'); return redis.call('INCR', KEYS[2])", []string{"nw:k", "nw:text"})
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorContains(t, errOf(f), "not an integer")
	assert.Equal(t, []byte("x"), s.MustDo(t, "GET", "nw:k"), "the script's SET stands")
	assert.ErrorContains(t, err, "sync failed", "its writes are not known to be on a replica")

	b = c.NewBatch(rbatch.WithSync(1, 10*time.Millisecond))
	b.AtomicLong("nw:text").IncrementAndGetAsync() // refused whole: nothing for WAIT to cover
	_, err = b.Execute(context.Background())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "sync failed")
}

// A conditional order by a user whose ACL refuses MULTI while another buyer
// takes the stock between the condition's read and the write: none of its
// commands is sent, as WATCH guards only a transaction (before, they ran
// one by one, unguarded, and sold stock that was gone).
func TestACLMultiRefusedStopsAConditionalOrder(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "u", "on", ">"+aclPassword, "~*", "+@all", "-multi")
	p := redistest.NewProxy(t, s.Addr)
	c := clientAt(t, p.Addr, func(cfg *rbatch.Config) { cfg.Username, cfg.Password, cfg.PoolSize = "u", aclPassword, 1 })
	warm := c.NewBatch()
	warm.Bucket("w").GetAsync()
	_, err := warm.Execute(context.Background())
	require.NoError(t, err)
	s.MustDo(t, "HSET", "stock:{14}", "sku-1", 1)
	s.ResetStats(t)
	// Hold back what follows WATCH and the condition's read until the
	// stock was taken elsewhere.
	read := len(respCommand("WATCH", "stock:{14}")) + len(respCommand("HGET", "stock:{14}", "sku-1"))
	p.SetFault(redistest.Fault{Kind: redistest.Stall, Dir: redistest.ToServer, AfterBytes: int64(read), Scope: redistest.ExistingConns})
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	held := b.AddCondition(rbatch.HashIntAtLeast("stock:{14}", "sku-1", 1))
	left := b.Map("stock:{14}").AddAndGetAsync("sku-1", -1)
	b.List("orders:{14}").AddAsync("o")
	done := b.ExecuteAsync(context.Background())
	waitUntil(t, "the condition was read", func() bool { return s.CommandStats(t)["hget"] == 1 })
	s.MustDo(t, "HSET", "stock:{14}", "sku-1", 0) // another buyer took the last unit
	p.Clear()
	res, err := done.Get()
	require.ErrorIs(t, err, rbatch.ErrNotSent)
	assert.ErrorContains(t, err, "NOPERM")
	var re *rbatch.RedisError
	assert.ErrorAs(t, errOf(left), &re, "MULTI's refusal, as it came")
	assert.Equal(t, rbatch.Counts{NotSent: 2}, res.Counts)
	assert.ErrorIs(t, errOf(left), rbatch.ErrNotSent)
	ok, _ := held.Get()
	assert.True(t, ok, "the condition held when it was read")
	assert.Equal(t, "0", string(s.MustDo(t, "HGET", "stock:{14}", "sku-1").([]byte)), "not oversold")
	assert.EqualValues(t, 0, s.MustDo(t, "LLEN", "orders:{14}"), "no order placed without stock")
	assert.Zero(t, s.CommandStats(t)["hincrby"])
	assert.EqualValues(t, 1, s.CommandStats(t)["unwatch"], "the keys unwatched: the connection is reused")
}

// A user who may not run CLIENT REPLY but may name connections: the
// replies are read, and in a transaction EXEC's array carries its
// commands' replies and then the name's +OK. In every mode, on shared
// connections (PoolSize 8) and pooled ones, an error reply fails its
// command and the others end skipped.
func TestACLClientReplyRefusedKeepsErrorReplies(t *testing.T) {
	s := redistest.Standalone(t)
	s.MustDo(t, "ACL", "SETUSER", "noreply", "on", ">"+aclPassword, "~*", "+@all", "-client|reply")
	for _, pool := range []int{1, 8} {
		c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.Username, cfg.Password, cfg.PoolSize = "noreply", aclPassword, pool })
		for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
			s.MustDo(t, "SET", "nr:k", "v")
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
			n := b.AtomicLong("nr:n").IncrementAndGetAsync()
			bad := b.List("nr:k").AddAsync("x") // WRONGTYPE
			res, err := b.Execute(context.Background())
			var re *rbatch.RedisError
			require.ErrorAs(t, err, &re, "%s pool %d", mode, pool)
			assert.Equal(t, "WRONGTYPE", re.Prefix())
			require.ErrorAs(t, errOf(bad), &re, "%s pool %d", mode, pool)
			assert.ErrorIs(t, errOf(n), rbatch.ErrResultSkipped, "%s pool %d", mode, pool)
			assert.Equal(t, rbatch.Counts{Skipped: 1, Failed: 1}, res.Counts, "%s pool %d", mode, pool)
		}
		assertPoolAnswers(t, c, 1)
	}
	assert.Equal(t, []byte("8"), s.MustDo(t, "GET", "nr:n"))
}
