package batch_test

import (
	"context"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/batch"
)

// Every layout a group can take, as the bytes the writer sends and the
// replies the reader walks through the same frames.
func TestLayoutsExactBytes(t *testing.T) {
	load := enc("SCRIPT", "LOAD", "return 1")
	sha := []byte("e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
	asking, wait := string(batch.Asking), string(batch.Wait(1, time.Second))
	waitAOF := string(batch.WaitAOF(true, 1, 2*time.Second))
	queued := []any{"QUEUED", "QUEUED", "QUEUED"}
	execReply := []any{"OK", int64(1), []byte("1")}
	mark := batch.NextMark() // the one case below that runs a transaction with replies off
	cases := []struct {
		name    string
		plan    batch.Plan
		prefix  bool
		wire    string
		replies []any
		check   func(t *testing.T, r batch.Result, got map[int]any)
	}{
		{
			name: "plain", plan: batch.Plan{}, wire: cmdsWire,
			replies: []any{"OK", int64(1), []byte("1")},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.Equal(t, 3, r.Answered)
				assert.Len(t, got, 3)
			},
		},
		{
			name: "atomic with a script prefix", plan: batch.Plan{Atomic: true}, prefix: true,
			wire:    wire(load, multi, cmdsWire, exec),
			replies: append(append([]any{sha, "OK"}, queued...), execReply),
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.Equal(t, []any{sha}, r.PrefixReplies)
				assert.Equal(t, 3, r.Answered)
				assert.Equal(t, []byte("1"), got[2])
			},
		},
		{
			name: "atomic after ASK: ASKING right before MULTI", plan: batch.Plan{Atomic: true, AskMulti: true},
			wire:    wire(asking, multi, cmdsWire, exec),
			replies: append(append([]any{"OK", "OK"}, queued...), execReply),
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.Equal(t, 3, r.Answered)
				assert.Nil(t, r.Aborted)
			},
		},
		{
			name: "skip result, atomic, WAIT", plan: batch.Plan{Atomic: true, SkipResult: true, Tail: batch.Wait(1, time.Second)},
			wire:    wire(replyOff, multi, cmdsWire, enc("CLIENT", "SETNAME", mark), exec, replyOn, getName, wait),
			replies: []any{"OK", []byte(mark), int64(1)},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.True(t, r.Skipped)
				assert.Nil(t, r.Aborted, "the mark was read back: the transaction ran")
				assert.True(t, r.Synced)
				assert.Equal(t, 1, r.Replicas)
				assert.Empty(t, got)
			},
		},
		{
			name: "skip result refused by the server: every frame answers", plan: batch.Plan{SkipResult: true, Tail: batch.Wait(1, time.Second)},
			wire: wire(replyOff, cmdsWire, replyOn, wait),
			replies: []any{redis.Error("ERR unknown command 'CLIENT'"), "OK", redis.Error("WRONGTYPE x"), []byte("1"),
				redis.Error("ERR unknown command 'CLIENT'"), int64(0)},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.True(t, r.RepliesRead, "each command's reply is read, its error kept")
				assert.False(t, r.Skipped)
				assert.Equal(t, 3, r.Answered)
				assert.Equal(t, redis.Error("WRONGTYPE x"), got[1])
				assert.True(t, r.Synced)
			},
		},
		{
			name: "skip result on a busy server: the commands' refusals are read", plan: batch.Plan{SkipResult: true},
			wire: wire(replyOff, cmdsWire, replyOn),
			replies: []any{redis.Error("BUSY Redis is busy running a script."), redis.Error("BUSY Redis is busy running a script."),
				"OK", []byte("1"), "OK"},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.True(t, r.RepliesRead)
				assert.False(t, r.Skipped, "refused, not skipped")
				assert.Equal(t, 3, r.Answered)
				assert.Equal(t, redis.Error("BUSY Redis is busy running a script."), got[0])
				assert.Equal(t, []byte("1"), got[2])
			},
		},
		{
			name: "WAITAOF after a plain pipeline", plan: batch.Plan{Tail: batch.WaitAOF(true, 1, 2*time.Second)},
			wire:    wire(cmdsWire, waitAOF),
			replies: []any{"OK", int64(1), []byte("1"), []any{int64(1), int64(1)}},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.Equal(t, 3, r.Answered)
				assert.True(t, r.Synced)
				assert.True(t, r.Local)
				assert.Equal(t, 1, r.Replicas)
			},
		},
		{
			name: "ASKING before each command, after a prefix", plan: batch.Plan{AskEach: true}, prefix: true,
			wire:    wire(load, asking, enc("SET", "a", "1"), asking, enc("INCR", "n"), asking, enc("GET", "a")),
			replies: []any{sha, "OK", "OK", "OK", int64(1), "OK", []byte("1")},
			check: func(t *testing.T, r batch.Result, got map[int]any) {
				assert.Equal(t, 3, r.Answered)
				assert.Equal(t, map[int]any{0: "OK", 1: int64(1), 2: []byte("1")}, got)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, got := group(tc.plan, three...)
			if tc.prefix {
				g.Prefix = [][]byte{[]byte(load)}
			}
			conn := newFakeConn(tc.replies...)
			r := batch.Run(context.Background(), conn, &g)
			require.NoError(t, r.Err)
			assert.True(t, r.Clean, "every reply read")
			assert.Equal(t, tc.wire, conn.bytes())
			tc.check(t, r, got)
		})
	}
}

// A Redis-side session writes its head at Open and its end at Exec or
// Discard: MULTI … EXEC and the tail, or MULTI … DISCARD without it.
func TestSessionLayouts(t *testing.T) {
	plan := batch.Plan{Atomic: true, Tail: batch.Wait(1, time.Second)}
	for _, tc := range []struct {
		name    string
		discard bool
		wire    string
		replies []any
	}{
		{"exec", false, wire(multi, enc("INCR", "n"), exec, string(batch.Wait(1, time.Second))), []any{"OK", "QUEUED", []any{int64(1)}, int64(1)}},
		{"discard", true, wire(multi, enc("INCR", "n"), string(discardCmd)), []any{"OK", "QUEUED", "OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := newFakeConn(tc.replies...)
			var got []any
			s := batch.Open(context.Background(), plan, func(_, r any) { got = append(got, r) }, func(context.Context) (batch.Lease, error) {
				return leased{conn}, nil
			})
			require.True(t, s.Push([]byte(enc("INCR", "n")), nil))
			// Discarded before its connection came, a session writes nothing.
			require.Eventually(t, func() bool { return s.Conn() != nil }, 5*time.Second, time.Millisecond)
			var r batch.Result
			if tc.discard {
				r = s.Discard(context.Background())
			} else {
				r = s.Exec(context.Background())
			}
			require.NoError(t, r.Err)
			assert.Equal(t, tc.wire, conn.bytes())
			if tc.discard {
				require.NotNil(t, r.Aborted)
				assert.ErrorIs(t, r.Aborted, batch.ErrDiscardedTx)
				assert.False(t, r.Synced, "no WAIT after DISCARD")
			} else {
				assert.Equal(t, []any{int64(1)}, got)
				assert.True(t, r.Synced)
			}
		})
	}
}

// leased is a fake connection as a pool lends it.
type leased struct{ *fakeConn }

func (leased) Release(bool) {}

var (
	discardCmd = enc("DISCARD")
	getName    = enc("CLIENT", "GETNAME")
)

// A transaction run with replies off whose mark is not read back was
// discarded by Redis (a queue-time error, its EXECABORT unread): every
// command is aborted, not skipped.
func TestSkipResultTransactionDiscarded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		getName any
	}{{"no name", nil}, {"an earlier transaction's name", []byte("rbatch-tx-0")}} {
		t.Run(tc.name, func(t *testing.T) {
			g, got := group(batch.Plan{Atomic: true, SkipResult: true}, three...)
			mark := batch.NextMark()
			conn := newFakeConn("OK", tc.getName)
			r := batch.Run(context.Background(), conn, &g)
			require.NoError(t, r.Err)
			assert.Equal(t, wire(replyOff, multi, cmdsWire, enc("CLIENT", "SETNAME", mark), exec, replyOn, getName), conn.bytes())
			require.NotNil(t, r.Aborted)
			assert.ErrorIs(t, r.Aborted, batch.ErrDiscardedUnseen)
			assert.Equal(t, -1, r.Aborted.Index)
			assert.Equal(t, []batch.Span{{State: batch.Aborted, From: 0, To: 3}}, r.Spans(nil, 3, g.Plan, false))
			assert.True(t, r.Clean)
			assert.Empty(t, got)
		})
	}
}

// The connection lost after CLIENT REPLY ON's +OK but before the mark is
// read back: whether the transaction ran is not known, so its commands are
// unknown, not skipped.
func TestSkipResultTransactionMarkUnread(t *testing.T) {
	g, _ := group(batch.Plan{Atomic: true, SkipResult: true}, three...)
	conn := newFakeConn("OK", errConnReset)
	r := batch.Run(context.Background(), conn, &g)
	require.ErrorIs(t, r.Err, errConnReset)
	assert.False(t, r.Skipped)
	assert.Nil(t, r.Aborted)
	assert.True(t, r.ExecSent)
	assert.Equal(t, []batch.Span{{State: batch.Unknown, From: 0, To: 3}}, r.Spans(nil, 3, g.Plan, false))
	assert.False(t, r.Clean)
}
