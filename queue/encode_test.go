package queue

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/internal/resp"
)

// command is the RESP array of name and args, written out by hand.
func command(parts ...string) string {
	var sb strings.Builder
	sb.WriteString("*" + strconv.Itoa(len(parts)) + "\r\n")
	for _, p := range parts {
		sb.WriteString("$" + strconv.Itoa(len(p)) + "\r\n" + p + "\r\n")
	}
	return sb.String()
}

// point is a value the queue cannot encode without a codec.
type point struct{ X, Y int }

func TestQueueAddBytes(t *testing.T) {
	var q Queue
	assert.Equal(t, 0, q.Len())
	i0 := q.Add(Command{Name: "SET", Key: "k"}, nil, "k", "v")
	i1 := q.Add(Command{Name: "RPUSH", Key: "l"}, nil, "l", 1)
	assert.Equal(t, 0, i0)
	assert.Equal(t, 1, i1)
	assert.Equal(t, 2, q.Len())
	assert.Equal(t, command("SET", "k", "v"), string(q.Bytes(0)))
	assert.Equal(t, command("RPUSH", "l", "1"), string(q.Bytes(1)))
	assert.Equal(t, "SET", q.Name(0))
	assert.Equal(t, "l", q.Key(1))
	assert.NoError(t, q.Err(0))
}

// The name and routing key are read back from the encoding; a key that is
// not an argument, and the name and key of a command that did not encode,
// are kept aside.
func TestQueueNameAndKey(t *testing.T) {
	var q Queue
	keyed := q.AddKeyed(Command{Name: "SADD", Key: "s"}, nil, "m")
	third := q.Add(Command{Name: "EVALSHA", Key: "k1"}, nil, "abc", 2, "k1", "k2")
	keyless := q.Add(Command{Name: "PING"}, nil)
	elsewhere := q.Add(Command{Name: "CUSTOM.CMD", Key: "routed"}, nil, "x", "y")
	bad := q.Add(Command{Name: "SET", Key: "b"}, nil, "b", point{})

	for _, c := range []struct {
		i         int
		name, key string
	}{{keyed, "SADD", "s"}, {third, "EVALSHA", "k1"}, {keyless, "PING", ""},
		{elsewhere, "CUSTOM.CMD", "routed"}, {bad, "SET", "b"}} {
		assert.Equal(t, c.name, q.Name(c.i), "command %d", c.i)
		assert.Equal(t, c.key, q.Key(c.i), "command %d", c.i)
		assert.Equal(t, c.key != "", q.KeyBytes(c.i) != nil, "command %d", c.i)
		if c.key == "" {
			assert.Nil(t, q.KeyBytes(c.i))
		} else {
			assert.Equal(t, c.key, string(q.KeyBytes(c.i)))
		}
	}
	assert.Equal(t, uint8(3), q.At(third).keyArg, "found among the arguments")
	assert.Equal(t, 4, q.NArgs(third))
	assert.Equal(t, 0, q.NArgs(keyless))
	assert.Equal(t, uint8(0), q.At(elsewhere).keyArg, "kept aside")
	assert.Nil(t, q.Bytes(bad))
	// Names of the command table are shared, not made anew each time.
	assert.Equal(t, unsafe.StringData(q.Name(keyed)), unsafe.StringData(q.Name(keyed)))
	// Queued stays small: it is kept for every command of a batch.
	assert.LessOrEqual(t, unsafe.Sizeof(Queued{}), uintptr(32))
}

func TestQueueAddKeepsErrors(t *testing.T) {
	var q Queue
	q.Add(Command{Name: "SET"}, nil, "a", "1")
	bad := q.Add(Command{Name: "SET"}, nil, "b", point{})
	preset := errors.New("refused before encoding")
	refused := q.Add(Command{Name: "ZADD", Err: preset}, nil, "z", 1.0, "m")
	last := q.Add(Command{Name: "SET"}, nil, "c", "3")

	assert.Equal(t, []int{0, 1, 2, 3}, []int{0, bad, refused, last})
	assert.ErrorIs(t, q.Err(bad), resp.ErrNoCodec)
	assert.Contains(t, q.Err(bad).Error(), "argument 2")
	assert.Same(t, preset, q.Err(refused))

	// The failed encoding left nothing behind: the good commands are back to back.
	assert.Equal(t, command("SET", "a", "1"), string(q.Bytes(0)))
	assert.Equal(t, command("SET", "c", "3"), string(q.Bytes(last)))
	b, n := q.Span([]int{0, last})
	assert.Equal(t, 2, n)
	assert.Equal(t, command("SET", "a", "1")+command("SET", "c", "3"), string(b))
}

func TestQueueSpan(t *testing.T) {
	var q Queue
	var want []string
	for i := range 5 {
		q.Add(Command{Name: "SET"}, nil, fmt.Sprint("k", i), i)
		want = append(want, command("SET", fmt.Sprint("k", i), strconv.Itoa(i)))
	}
	cases := []struct {
		idx   []int
		wantN int
	}{
		{[]int{0, 1, 2, 3, 4}, 5},
		{[]int{0}, 1},
		{[]int{1, 2, 3}, 3},
		{[]int{0, 1, 3, 4}, 2}, // a gap stops the span
		{[]int{0, 2}, 1},
		{[]int{3, 2}, 1}, // out of order is not contiguous
		{[]int{4}, 1},
	}
	for _, tc := range cases {
		b, n := q.Span(tc.idx)
		assert.Equal(t, tc.wantN, n, "Span(%v)", tc.idx)
		var exp string
		for _, i := range tc.idx[:tc.wantN] {
			exp += want[i]
		}
		assert.Equal(t, exp, string(b), "Span(%v)", tc.idx)
	}
}

// spans walks idx with Span as a writer does and returns the span sizes and
// the bytes they cover.
func spans(q *Queue, idx []int) (sizes []int, all []byte) {
	for len(idx) > 0 {
		b, n := q.Span(idx)
		sizes = append(sizes, n)
		all = append(all, b...)
		idx = idx[n:]
	}
	return sizes, all
}

func TestQueueSpanStopsAtChunkBoundary(t *testing.T) {
	var q Queue
	value := strings.Repeat("x", 1000)
	one := len(command("SET", "k0000", value))
	// Commands go into the current chunk while it has chunkSlack room left.
	perChunk := (chunkSize-chunkSlack)/one + 1
	// The small first chunk takes two: the second, with more than
	// firstChunkSlack of room left, grows it.
	require.Greater(t, firstChunkSize-one, firstChunkSlack)
	require.Less(t, firstChunkSize-2*one, firstChunkSlack)
	firstN := 2
	total := firstN + 2*perChunk + 10
	idx := make([]int, total)
	var want []byte
	for i := range total {
		idx[i] = q.Add(Command{Name: "SET"}, nil, fmt.Sprintf("k%04d", i), value)
		want = append(want, q.Bytes(i)...)
	}
	require.Len(t, want, total*one)

	sizes, all := spans(&q, idx)
	assert.Equal(t, []int{firstN, perChunk, perChunk, 10}, sizes)
	assert.True(t, bytes.Equal(want, all), "spans cover every command once, in order")
}

func TestQueueLargeCommand(t *testing.T) {
	var q Queue
	big := strings.Repeat("b", chunkSize+chunkSize/2)
	q.Add(Command{Name: "SET"}, nil, "small1", "1")
	q.Add(Command{Name: "SET"}, nil, "big", big)
	q.Add(Command{Name: "SET"}, nil, "small2", "2")
	q.Add(Command{Name: "SET"}, nil, "big2", big) // first in its chunk: it starts when the previous one is full
	q.Add(Command{Name: "SET"}, nil, "small3", "3")

	assert.Equal(t, command("SET", "big", big), string(q.Bytes(1)))
	assert.Equal(t, command("SET", "small2", "2"), string(q.Bytes(2)))
	assert.Equal(t, command("SET", "big2", big), string(q.Bytes(3)))
	assert.Equal(t, command("SET", "small3", "3"), string(q.Bytes(4)))

	sizes, all := spans(&q, []int{0, 1, 2, 3, 4})
	assert.Equal(t, []int{2, 2, 1}, sizes)
	want := command("SET", "small1", "1") + command("SET", "big", big) + command("SET", "small2", "2") +
		command("SET", "big2", big) + command("SET", "small3", "3")
	assert.Equal(t, want, string(all))
}

type lookupCase struct {
	name, sub string
	wantName  string
	flags     Flags
	forbidden bool
}

func TestLookup(t *testing.T) {
	cases := []lookupCase{
		{"GET", "k", "GET", ReadOnly, false},
		{"get", "k", "GET", ReadOnly, false},
		{"  gEt ", "k", "GET", ReadOnly, false},
		{"SET", "k", "SET", 0, false},
		{"set", "k", "SET", 0, false},
		{"EVALSHA", "sha", "EVALSHA", 0, false},
		{"EVALSHA_RO", "sha", "EVALSHA_RO", ReadOnly, false},
		{"PING", "", "PING", ReadOnly | NoKey, false},
		{"FLUSHALL", "", "FLUSHALL", NoKey, false},
		{"CLIENT", "LIST", "CLIENT", NoKey | OwnConn, false},
		{"client", "list", "CLIENT", NoKey | OwnConn, false},
		{"BLPOP", "list", "BLPOP", OwnConn, false},
		{"bzpopmin", "z", "BZPOPMIN", OwnConn, false},
		{"SOMETHINGNEW", "x", "SOMETHINGNEW", 0, false}, // unknown: a keyed write
		{"CLIENT", "REPLY", "CLIENT", 0, true},
		{"client", "reply", "CLIENT", 0, true},
		{"CLIENT", "Reply", "CLIENT", 0, true},
		{"script", "debug", "SCRIPT", 0, true},
		{"SCRIPT", "LOAD", "SCRIPT", FlagsOf("SCRIPT"), false},
	}
	for _, name := range []string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
		"SUNSUBSCRIBE", "MONITOR", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "SWAPDB",
		"AUTH", "HELLO", "RESET", "QUIT", "WAIT", "WAITAOF"} {
		cases = append(cases,
			lookupCase{name, "", name, 0, true},
			lookupCase{strings.ToLower(name), "", name, 0, true})
	}
	for _, tc := range cases {
		t.Run(tc.name+" "+tc.sub, func(t *testing.T) {
			name, flags, err := Lookup(tc.name, tc.sub)
			assert.Equal(t, tc.wantName, name)
			if tc.forbidden {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrForbidden)
				assert.Contains(t, err.Error(), "not allowed in a batch")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.flags, flags)
			assert.Equal(t, FlagsOf(name), flags)
		})
	}
}

func TestLookupEmptyName(t *testing.T) {
	for _, name := range []string{"", "   ", "\t"} {
		_, _, err := Lookup(name, "")
		require.Error(t, err, "%q", name)
		assert.NotErrorIs(t, err, ErrForbidden)
		assert.Contains(t, err.Error(), "empty command name")
	}
}

func TestFlagsOf(t *testing.T) {
	assert.Equal(t, ReadOnly, FlagsOf("GET"))
	assert.Equal(t, Flags(0), FlagsOf("SET"))
	assert.Equal(t, Flags(0), FlagsOf("get"), "FlagsOf takes upper-case names")
	assert.Equal(t, ReadOnly, FlagsOf("LRANGE"))
	assert.Equal(t, Flags(0), FlagsOf("RPUSH"))
	assert.Equal(t, NoKey, FlagsOf("SCRIPT"))
}

// Release hands the buffers on cleared of futures, and later queues encode
// into them correctly, whether or not they get the same buffers back.
func TestQueueRelease(t *testing.T) {
	var q Queue
	fut := &struct{ n int }{}
	n := blockSize + 10 // a full block and part of another
	for i := range n {
		q.AddKeyed(Command{Name: "SET", Key: fmt.Sprint("k", i), Future: fut}, nil, "v")
	}
	blocks := q.blocks
	q.Release()
	assert.Equal(t, n, q.Len())
	for _, b := range blocks {
		for i := range b {
			require.Nil(t, b[i].Future, "a released block keeps no future")
		}
	}

	var q2 Queue
	for i := range n {
		q2.AddKeyed(Command{Name: "GET", Key: fmt.Sprint("x", i)}, nil)
	}
	for i := range n {
		require.Equal(t, command("GET", fmt.Sprint("x", i)), string(q2.Bytes(i)))
		require.Nil(t, q2.At(i).Future)
		require.Equal(t, fmt.Sprint("x", i), q2.Key(i))
	}
}

// A queue outgrowing its small first block moves its commands into a full
// one: each keeps its bytes and future, a pointer taken before the move
// still reads what it did, and the old small block keeps no future after
// Release.
func TestQueueOutgrowsFirstBlock(t *testing.T) {
	var q Queue
	futs := make([]*int, firstBlockSize+5)
	var before *Queued
	for i := range futs {
		futs[i] = new(int)
		q.AddKeyed(Command{Name: "SET", Key: fmt.Sprint("k", i), Future: futs[i], Flags: ReadOnly}, nil, "v")
		if i == 0 {
			before = q.At(0)
		}
	}
	require.Equal(t, blockSize, cap(q.blocks[0]), "the first block is a full one now")
	for i, f := range futs {
		require.Same(t, f, q.At(i).Future)
		require.Equal(t, command("SET", fmt.Sprint("k", i), "v"), string(q.Bytes(i)))
	}
	assert.Same(t, futs[0], before.Future)
	assert.Equal(t, ReadOnly, before.Flags&ReadOnly)
	small := q.firstBox
	require.NotNil(t, small)
	q.Release()
	for _, c := range (*small)[:cap(*small)] {
		require.Nil(t, c.Future, "the released small block keeps no future")
	}
}

// A re-encoded command reads back as its new form, is its own span, and
// keeps the commands queued after it out of its buffer; Release hands the
// pooled chunks back and leaves the new encoding alone.
func TestQueueReencode(t *testing.T) {
	var q Queue
	q.Add(Command{Name: "GET", Key: "k"}, nil, "k")
	ev := q.Add(Command{Name: "EVALSHA", KeyArg: 3}, nil, "abc", 1, "k", "x")
	q.Add(Command{Name: "GET", Key: "k"}, nil, "k")

	enc, err := resp.AppendCommand(make([]byte, 0, 4096), nil, "EVAL", "return 1", "1", "k", "x")
	require.NoError(t, err)
	q.Reencode(ev, enc)
	assert.Equal(t, command("EVAL", "return 1", "1", "k", "x"), string(q.Bytes(ev)))
	assert.Equal(t, "EVAL", q.Name(ev))
	assert.Equal(t, "k", q.Key(ev))
	sizes, all := spans(&q, []int{0, 1, 2})
	assert.Equal(t, []int{1, 1, 1}, sizes)
	assert.Equal(t, command("GET", "k")+command("EVAL", "return 1", "1", "k", "x")+command("GET", "k"), string(all))

	later := q.Add(Command{Name: "SET", Key: "j"}, nil, "j", "v")
	assert.Equal(t, command("EVAL", "return 1", "1", "k", "x"), string(q.Bytes(ev)), "not overwritten by a later command")
	assert.Equal(t, command("SET", "j", "v"), string(q.Bytes(later)))
	q.Release()
	assert.Equal(t, 4, q.Len())
}
