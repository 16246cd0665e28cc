package rbatch_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// txFake answers a transaction like Redis (+OK, QUEUED…) and hangs up when it
// receives the command named hangAt (its reply is never sent).
func txFake(hangAt string) func(cmd []string) string {
	return func(cmd []string) string {
		name := strings.ToUpper(cmd[0])
		switch {
		case name == hangAt:
			return redistest.Hangup
		case name == "INFO" || name == "PING":
			return redistest.DefaultReply(cmd)
		case name == "MULTI":
			return "+OK\r\n"
		}
		return "+QUEUED\r\n"
	}
}

// The connection drops after EXEC was written: nobody knows whether the
// transaction ran, so every command is unknown.
func TestExecWrittenNotAnsweredIsUnknown(t *testing.T) {
	f := redistest.NewFake(t, txFake("EXEC"))
	c, _ := fakeClient(t, f)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode))
		a := b.AtomicLong("u:a").IncrementAndGetAsync()
		s := b.Bucket("u:b").SetAsync("x")
		_, err := b.Execute(context.Background())
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome, mode)
		assert.ErrorIs(t, errOf(a), rbatch.ErrUnknownOutcome, mode)
		assert.ErrorIs(t, errOf(s), rbatch.ErrUnknownOutcome, mode)
		assert.NotErrorIs(t, errOf(a), rbatch.ErrTxAborted)
	}
}

// EXEC answers what it cannot (a status, an array of another length):
// nothing says whether the transaction ran, so every command is unknown,
// not aborted, and the connection is not used again.
func TestExecUnexpectedReplyIsUnknown(t *testing.T) {
	for _, reply := range []string{"+OK\r\n", "*1\r\n:1\r\n", ":2\r\n"} {
		f := redistest.NewFake(t, func(cmd []string) string {
			if strings.EqualFold(cmd[0], "EXEC") {
				return reply
			}
			return txFake("")(cmd)
		})
		c, _ := fakeClient(t, f)
		for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
			b := c.NewBatch(rbatch.WithMode(mode))
			a := b.AtomicLong("u:a").IncrementAndGetAsync()
			s := b.Bucket("u:b").SetAsync("x")
			res, err := b.Execute(context.Background())
			assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome, "%s %q", mode, reply)
			assert.ErrorIs(t, errOf(a), rbatch.ErrUnknownOutcome, "%s %q", mode, reply)
			assert.ErrorIs(t, errOf(s), rbatch.ErrUnknownOutcome, "%s %q", mode, reply)
			assert.NotErrorIs(t, errOf(a), rbatch.ErrTxAborted)
			assert.Contains(t, err.Error(), "unexpected reply")
			assert.Equal(t, rbatch.Counts{Unknown: 2}, res.Counts)
		}
		for i, raw := range f.ReceivedByConn() {
			assert.LessOrEqual(t, strings.Count(string(raw), "EXEC"), 1, "connection %d carried a batch after the bad EXEC reply (%q)", i, reply)
		}
	}
}

// The connection drops while a Redis-side transaction is being queued, before
// EXEC: Redis discards an unfinished transaction, so every command is aborted
// (not applied), not unknown.
func TestConnectionLostBeforeExecAborts(t *testing.T) {
	var queued atomic.Int32
	f := redistest.NewFake(t, func(cmd []string) string {
		if strings.EqualFold(cmd[0], "INCR") && queued.Add(1) == 2 {
			return redistest.Hangup
		}
		return txFake("")(cmd)
	})
	c, _ := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	fs := []*rbatch.Future[int64]{
		b.AtomicLong("l:a").IncrementAndGetAsync(),
		b.AtomicLong("l:b").IncrementAndGetAsync(),
	}
	waitUntil(t, "the fake hung up", func() bool { return queued.Load() >= 2 })
	time.Sleep(50 * time.Millisecond) // the reader sees the connection end
	fs = append(fs, b.AtomicLong("l:c").IncrementAndGetAsync())
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrTxAborted)
	for _, f := range fs {
		assert.ErrorIs(t, errOf(f), rbatch.ErrTxAborted)
		assert.NotErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome)
	}
	for _, cmd := range f.Commands() {
		assert.NotEqual(t, "EXEC", strings.ToUpper(cmd[0]), "EXEC never reached the server")
	}
}

// A pipeline cut after some replies: answered commands keep their values,
// the rest are unknown; a read-only command among them is re-sent when
// retries are on (reading twice is harmless), a write never is.
func TestReadOnlyUnknownIsRetried(t *testing.T) {
	var incrs, gets atomic.Int32
	f := redistest.NewFake(t, func(cmd []string) string {
		switch strings.ToUpper(cmd[0]) {
		case "INFO", "PING":
			return redistest.DefaultReply(cmd)
		case "INCR":
			if incrs.Add(1) == 2 {
				return redistest.Hangup
			}
			return ":1\r\n"
		case "GET":
			gets.Add(1)
			return redistest.Bulk("v")
		}
		return "+OK\r\n"
	})
	c, _ := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithRetry(2, 10*time.Millisecond))
	first := b.AtomicLong("r:a").IncrementAndGetAsync()
	second := b.AtomicLong("r:a").IncrementAndGetAsync() // the connection drops here
	get := b.Bucket("r:b").GetAsync()
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	n, err1 := first.Get()
	assert.NoError(t, err1)
	assert.Equal(t, int64(1), n)
	assert.ErrorIs(t, errOf(second), rbatch.ErrUnknownOutcome)
	v, gerr := get.Get()
	assert.NoError(t, gerr, "the GET was read again on a new connection")
	assert.Equal(t, "v", v)
	assert.Equal(t, int32(2), incrs.Load(), "the INCR was never re-sent")
	assert.Equal(t, 2, res.Nodes[0].Attempts)
}

// Against a server that says it is 7.2, WithSyncAOF appends exactly
// WAITAOF numlocal numreplicas timeout, and its [local, replicas] reply
// fills the node's figures.
func TestWaitAOFBytes(t *testing.T) {
	f := redistest.NewFake(t, fake72("*2\r\n:1\r\n:2\r\n"))
	c, hs := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithSyncAOF(true, 2, 1500*time.Millisecond))
	b.Bucket("k").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" +
		"*4\r\n$7\r\nWAITAOF\r\n$1\r\n1\r\n$1\r\n2\r\n$4\r\n1500\r\n"
	assert.Equal(t, want, string(f.Received())[len(handshakeBytes(f, hs)):])
	require.Len(t, res.Nodes, 1)
	assert.True(t, res.Nodes[0].SyncedLocal)
	assert.Equal(t, 2, res.Nodes[0].SyncedReplicas)
	assert.Equal(t, 2, res.SyncedReplicas)
}

// fake72 answers as a Redis 7.2 would: INFO says so, WAITAOF gets
// waitaof, anything else +OK.
func fake72(waitaof string) func(cmd []string) string {
	return func(cmd []string) string {
		switch strings.ToUpper(cmd[0]) {
		case "INFO":
			return redistest.Bulk(strings.Replace(redistest.DefaultInfo, "7.0.15", "7.2.4", 1))
		case "WAITAOF":
			return waitaof
		}
		return "+OK\r\n"
	}
}

// A server that says it is 7.2 but does not know WAITAOF: the commands
// were applied, and Execute's error says the feature is missing
// (ErrUnsupported), not only that the sync failed.
func TestWaitAOFUnknownAfterVersionCheck(t *testing.T) {
	f := redistest.NewFake(t, fake72("-ERR unknown command 'WAITAOF', with args beginning with: '1' '0' '100' \r\n"))
	c, _ := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithSyncAOF(true, 0, 100*time.Millisecond))
	set := b.Bucket("k").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, err, rbatch.ErrUnsupported)
	assert.Contains(t, err.Error(), "unknown command 'WAITAOF'")
	assert.NoError(t, errOf(set), "the SET was applied")
	assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts)
	assert.Zero(t, res.SyncedReplicas)
}

// The exact layout of an atomic skip-result batch with WAIT.
func TestAtomicSkipResultWaitBytes(t *testing.T) {
	var named atomic.Value // the connection's name, as CLIENT SETNAME set it
	named.Store("")
	f := redistest.NewFake(t, func(cmd []string) string {
		if len(cmd) == 3 && strings.EqualFold(cmd[0]+" "+cmd[1], "CLIENT SETNAME") {
			named.Store(cmd[2])
			if cmd[2] == "" {
				return "+OK\r\n" // the handshake's probe
			}
			return "" // the transaction's mark: replies are off
		}
		switch strings.ToUpper(strings.Join(cmd, " ")) {
		case "INFO SERVER", "INFO CLUSTER", "INFO REPLICATION":
			return redistest.DefaultReply(cmd)
		case "CLIENT REPLY OFF", "MULTI", "SET K V", "EXEC":
			return "" // replies are off
		case "CLIENT REPLY ON":
			return "+OK\r\n"
		case "CLIENT GETNAME":
			return redistest.Bulk(named.Load().(string))
		case "WAIT 1 250":
			return ":1\r\n"
		case "PING":
			return "+PONG\r\n"
		}
		return "-ERR unexpected\r\n"
	})
	c, hs := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult(), rbatch.WithSync(1, 250*time.Millisecond))
	set := b.Bucket("k").SetAsync("v")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped)
	assert.Equal(t, 1, res.SyncedReplicas)
	name := named.Load().(string)
	require.True(t, strings.HasPrefix(name, "rbatch-tx-"), "the transaction named its connection: %q", name)
	want := "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n*1\r\n$5\r\nMULTI\r\n" +
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" +
		"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$" + itoa(len(name)) + "\r\n" + name + "\r\n*1\r\n$4\r\nEXEC\r\n" +
		"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n*2\r\n$6\r\nCLIENT\r\n$7\r\nGETNAME\r\n" +
		"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n250\r\n"
	assert.Equal(t, want, string(f.Received())[len(handshakeBytes(f, hs)):])
}

// handshakeBytes returns the raw bytes of the first hs commands received.
func handshakeBytes(f *redistest.Fake, hs int) string {
	var sb strings.Builder
	for _, cmd := range f.Commands()[:hs] {
		sb.WriteString("*" + itoa(len(cmd)) + "\r\n")
		for _, a := range cmd {
			sb.WriteString("$" + itoa(len(a)) + "\r\n" + a + "\r\n")
		}
	}
	return sb.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// A MOVED that points back to the node that answered it is not followed: the
// command keeps the error and is sent once.
func TestMovedToSelfIsNotFollowed(t *testing.T) {
	var gets atomic.Int32
	var addr atomic.Value
	f := redistest.NewFake(t, func(cmd []string) string {
		if handshakeCmd(cmd) {
			return redistest.DefaultReply(cmd)
		}
		gets.Add(1)
		return "-MOVED 866 " + addr.Load().(string) + "\r\n"
	})
	addr.Store(f.Addr)
	c, _ := fakeClient(t, f)
	b := c.NewBatch()
	get := b.Bucket("k").GetAsync()
	res, err := b.Execute(context.Background())
	var re *rbatch.RedisError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "MOVED", re.Prefix())
	assert.ErrorAs(t, errOf(get), &re)
	assert.Equal(t, int32(1), gets.Load())
	require.Len(t, res.Nodes, 1)
	assert.Zero(t, res.Nodes[0].Moved, "a redirect not followed is not counted")
}

// Redirects are bounded: a node that keeps redirecting ends the command with
// the redirect error after a few rounds instead of looping.
func TestRedirectsAreBounded(t *testing.T) {
	var gets atomic.Int32
	f := redistest.NewFake(t, func(cmd []string) string {
		if handshakeCmd(cmd) {
			return redistest.DefaultReply(cmd)
		}
		if cmd[0] == "ASKING" {
			return "+OK\r\n"
		}
		gets.Add(1)
		return "-ASK 866 127.0.0.1:1\r\n" // a standalone client sends it back to its one node
	})
	c, _ := fakeClient(t, f)
	b := c.NewBatch()
	get := b.Bucket("k").GetAsync()
	res, err := b.Execute(context.Background())
	var re *rbatch.RedisError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "ASK", re.Prefix())
	assert.ErrorAs(t, errOf(get), &re)
	assert.Equal(t, int32(6), gets.Load(), "sent once, then followed 5 times")
	assert.Equal(t, 6, res.Nodes[0].Asked)
}

// stopLeavingNoConnection stops s once c's pool holds a connection to it,
// and runs a probe batch: the pool finds that connection closed and drops
// it, so the probe (and the next batch) must dial. It returns the probe's
// error.
func stopLeavingNoConnection(t *testing.T, s *redistest.Server, c *rbatch.Client) error {
	t.Helper()
	warm := c.NewBatch()
	warm.Do("PING")
	_, err := warm.Execute(context.Background())
	require.NoError(t, err)
	s.Stop()
	probe := c.NewBatch()
	probe.Do("PING")
	_, err = probe.Execute(context.Background())
	return err
}

// A server that cannot be reached while the batch starts: nothing was
// written, so the group is retried, and goes through once the server is back.
func TestDialFailureIsRetried(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.DialTimeout = 200 * time.Millisecond })
	// Take the pool's idle connection away, so the batch must dial. The
	// pool sees the stopped server closed it: the probe's PING is not
	// written there, and its dial is refused.
	err := stopLeavingNoConnection(t, s, c)
	require.ErrorIs(t, err, rbatch.ErrNotSent)
	require.NotErrorIs(t, err, rbatch.ErrUnknownOutcome, "the dead idle connection was not used")

	b := c.NewBatch(rbatch.WithRetry(30, 100*time.Millisecond))
	incr := b.AtomicLong("dial:n").IncrementAndGetAsync()
	done := b.ExecuteAsync(context.Background())
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, s.Restart())
	res, err := done.Wait(context.Background())
	require.NoError(t, err)
	n, _ := incr.Get()
	assert.Equal(t, int64(1), n, "applied once")
	assert.Greater(t, res.Nodes[0].Attempts, 1)
}

// A restarted server loading its data refuses commands with LOADING. With
// replies off, a skip-result batch's commands would be refused unseen and
// reported skipped; rbatch finds the server not serving as it connects, so
// the batch is not sent — and with WithRetry it is sent once the data is
// loaded. Every mode sees the same.
func TestBatchWhileServerLoads(t *testing.T) {
	// 50 µs per key, and clients served while it loads.
	s := redistest.Standalone(t, "--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024")
	s.MustDo(t, "DEBUG", "POPULATE", "10000")
	s.MustDo(t, "SAVE")
	c := clientFor(t, s)
	loading := func(t *testing.T) {
		t.Helper()
		require.NoError(t, s.RestartLoading())
		_, err := s.Call("PING")
		require.ErrorContains(t, err, "LOADING", "the server is still loading")
	}
	for _, opts := range [][]rbatch.Option{{rbatch.WithSkipResult()}, {rbatch.WithSkipResult(), rbatch.WithMode(rbatch.Streaming)}, nil} {
		loading(t)
		b := c.NewBatch(append(opts, rbatch.WithRetry(100, 50*time.Millisecond))...)
		for i := range 100 {
			b.Bucket("ld:" + strconv.Itoa(i)).SetAsync(i)
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 100, res.Counts.Applied+res.Counts.Skipped)
		require.Eventually(t, func() bool { _, err := s.Call("PING"); return err == nil }, 10*time.Second, 10*time.Millisecond)
		for i := range 100 {
			assert.Equal(t, []byte(strconv.Itoa(i)), s.MustDo(t, "GET", "ld:"+strconv.Itoa(i)), "command %d applied", i)
		}
		s.MustDo(t, "DEL", "ld:0")
	}

	loading(t) // without retries: not sent, and nothing applied
	b := c.NewBatch(rbatch.WithSkipResult())
	b.Bucket("ld:0").SetAsync("x")
	res, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.Equal(t, rbatch.Counts{NotSent: 1}, res.Counts)
	assert.ErrorContains(t, err, "LOADING")
}

// A transaction whose connection is lost before its EXEC was written was
// discarded by the server: aborted, with replies skipped as without.
func TestSkipResultTransactionLostBeforeExecIsAborted(t *testing.T) {
	s := redistest.Standalone(t)
	const n = 300_000 // some 10 MB: the reset comes long before EXEC
	for _, skip := range []bool{false, true} {
		s.FlushAll(t)
		s.ResetStats(t)
		p := redistest.NewProxy(t, s.Addr)
		c := clientAt(t, p.Addr)
		p.SetFault(redistest.Fault{Kind: redistest.Reset, Dir: redistest.ToServer, AfterBytes: 100_000})
		b := c.NewBatch(modeAndSkip(rbatch.InMemoryAtomic, skip)...)
		first := b.AtomicLong("lostexec:0").IncrementAndGetAsync()
		for i := 1; i < n; i++ {
			b.AtomicLong("lostexec:" + strconv.Itoa(i%10)).IncrementAndGetAsync()
		}
		res, err := b.Execute(context.Background())
		require.Error(t, err)
		assert.Zero(t, s.CommandStats(t)["exec"], "EXEC never reached the server")
		assert.Equal(t, rbatch.Counts{Aborted: n}, res.Counts, "skip %v", skip)
		assert.ErrorIs(t, errOf(first), rbatch.ErrTxAborted, "skip %v", skip)
	}

	// A Redis-side transaction whose held connection died before Execute.
	for _, skip := range []bool{false, true} {
		s.ResetStats(t)
		p := redistest.NewProxy(t, s.Addr)
		c := clientAt(t, p.Addr)
		b := c.NewBatch(modeAndSkip(rbatch.RedisWriteAtomic, skip)...)
		a := b.AtomicLong("lostexec:a").IncrementAndGetAsync()
		waitUntil(t, "the INCR is queued", func() bool { return p.Conns() > 0 && s.CommandStats(t)["multi"] == 1 })
		time.Sleep(50 * time.Millisecond)
		p.CutAll()
		time.Sleep(50 * time.Millisecond)
		later := b.AtomicLong("lostexec:b").IncrementAndGetAsync()
		time.Sleep(100 * time.Millisecond)
		res, err := b.Execute(context.Background())
		require.Error(t, err)
		assert.Zero(t, s.CommandStats(t)["exec"])
		assert.Equal(t, rbatch.Counts{Aborted: 2}, res.Counts, "skip %v", skip)
		assert.ErrorIs(t, errOf(a), rbatch.ErrTxAborted)
		assert.ErrorIs(t, errOf(later), rbatch.ErrTxAborted)
	}
}

// modeAndSkip is WithMode(mode), with WithSkipResult when skip.
func modeAndSkip(mode rbatch.ExecutionMode, skip bool) []rbatch.Option {
	if skip {
		return []rbatch.Option{rbatch.WithMode(mode), rbatch.WithSkipResult()}
	}
	return []rbatch.Option{rbatch.WithMode(mode)}
}

// A server that stops reading: the write that blocks fails at the write
// timeout, and that is what the batch's error names, not the read the
// aborted connection then broke.
func TestWriteTimeoutIsTheCause(t *testing.T) {
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			release := make(chan struct{})
			var stalled atomic.Bool
			f := redistest.NewFake(t, func(cmd []string) string {
				if strings.EqualFold(cmd[0], "SET") && !stalled.Swap(true) {
					<-release // reads nothing more: the client's writes fill the socket
				}
				return redistest.DefaultReply(cmd)
			})
			c := clientAt(t, f.Addr, func(cfg *rbatch.Config) {
				cfg.WriteTimeout = 200 * time.Millisecond
				cfg.ReadTimeout = 5 * time.Second
			})
			t.Cleanup(func() { close(release) })
			b := c.NewBatch(rbatch.WithMode(mode))
			const n = 300_000
			value := strings.Repeat("v", 100)
			for i := range n {
				b.Bucket("wt:" + strconv.Itoa(i)).SetAsync(value)
			}
			start := time.Now()
			res, err := b.Execute(context.Background())
			require.Error(t, err)
			t.Logf("after %v: %.300v", time.Since(start), err)
			assert.Equal(t, n, res.Counts.Total())
			assert.Zero(t, res.Counts.Applied)
			assert.Contains(t, err.Error(), "write")
			assert.Contains(t, err.Error(), "timeout")
			assert.NotContains(t, err.Error(), "use of closed network connection")
		})
	}
}
