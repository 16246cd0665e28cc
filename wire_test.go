package rbatch_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// handshakeStart is what NewClient sends first on its first connection; more
// INFO sections may follow (see checkHandshake).
const handshakeStart = "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n" + "*2\r\n$4\r\nINFO\r\n$7\r\ncluster\r\n"

// plausible answers each command the way Redis could, so that every future
// of the wire tests resolves without error.
func plausible(cmd []string) string {
	switch strings.ToUpper(cmd[0]) {
	case "INFO", "PING":
		return redistest.DefaultReply(cmd)
	case "SET", "LTRIM":
		return "+OK\r\n"
	case "GET":
		return redistest.Bulk("42")
	case "GETSET", "LINDEX", "HGET", "LPOP", "RPOP":
		return redistest.Bulk("v")
	case "INCR", "DECR", "INCRBY", "HINCRBY":
		return ":7\r\n"
	case "LRANGE", "SMEMBERS", "ZRANGE", "ZRANGEBYSCORE":
		return "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
	case "MGET", "HMGET": // a value, then a missing one
		return "*2\r\n$1\r\na\r\n$-1\r\n"
	case "MSET":
		return "+OK\r\n"
	case "XRANGE":
		return "*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
	case "XREAD":
		return "*1\r\n*2\r\n$2\r\nsm\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\ng\r\n$1\r\nw\r\n"
	case "HGETALL":
		return "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n"
	case "ZINCRBY", "ZSCORE":
		return redistest.Bulk("1.5")
	case "XADD":
		return redistest.Bulk("1700000000000-0")
	case "SCRIPT":
		return redistest.Bulk(sha1hex(cmd[2]))
	case "EVALSHA": // the last argument says what the script returns
		switch cmd[len(cmd)-1] {
		case "int":
			return ":9\r\n"
		case "str":
			return "$2\r\nok\r\n"
		}
		return "*2\r\n:9\r\n$2\r\nok\r\n"
	case "ECHO":
		return redistest.Bulk(cmd[1])
	}
	return ":1\r\n" // counts, flags and lengths
}

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fakeClient connects a client to f, which must have seen nothing yet, and
// checks the handshake. It returns the client (closed when the test ends)
// and the number of handshake commands, to skip in f.Commands().
func fakeClient(t *testing.T, f *redistest.Fake) (*rbatch.Client, int) {
	t.Helper()
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{f.Addr}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, checkHandshake(t, f)
}

// checkHandshake asserts that the client's handshake is INFO server, INFO
// cluster, then possibly other INFO sections, CONFIG GETs, the client-name
// probe and PING (nothing that changes the connection), and returns its
// number of commands.
func checkHandshake(t *testing.T, f *redistest.Fake) int {
	t.Helper()
	raw := string(f.Received())
	require.True(t, strings.HasPrefix(raw, handshakeStart), "handshake %q", raw)
	cmds := f.Commands()
	for _, c := range cmds[2:] { // more INFO sections, server limits read with CONFIG GET, CLIENT SETNAME "" and GETNAME
		readsConfig := len(c) == 3 && c[0] == "CONFIG" && c[1] == "GET"
		readsName := c[0] == "CLIENT" && (len(c) == 2 && c[1] == "GETNAME" || len(c) == 3 && c[1] == "SETNAME" && c[2] == "")
		ping := len(c) == 1 && c[0] == "PING"
		require.True(t, readsConfig || readsName || ping || len(c) == 2 && c[0] == "INFO", "handshake command %q", c)
	}
	return len(cmds)
}

func TestWireExactBytes(t *testing.T) {
	f := redistest.NewFake(t, plausible)
	c, _ := fakeClient(t, f)
	handshake := string(f.Received())

	b := c.NewBatch()
	set := b.Bucket("k").SetAsync("v")
	add := b.List("list").AddAsync(int64(12))
	score := b.ScoredSortedSet("z").AddAsync(0.1, []byte("m"))
	_, err := b.Execute(context.Background())
	require.NoError(t, err)

	want := handshake +
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" +
		"*3\r\n$5\r\nRPUSH\r\n$4\r\nlist\r\n$2\r\n12\r\n" +
		"*4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n0.1\r\n$1\r\nm\r\n"
	assert.Equal(t, want, string(f.Received()))
	_, err = set.Get()
	assert.NoError(t, err)
	added, err := add.Get()
	assert.NoError(t, err)
	assert.True(t, added)
	isNew, err := score.Get()
	assert.NoError(t, err)
	assert.True(t, isNew)

	// A second batch reuses the pooled connection: no new handshake.
	b = c.NewBatch()
	b.AtomicLong("n").IncrementAndGetAsync()
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	want += "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
	assert.Equal(t, want, string(f.Received()))
	assert.Len(t, f.ReceivedByConn(), 1)
}

// wireCase is one method call and the commands it must send.
type wireCase struct {
	name string // "Type.Method": the coverage check matches it to the method set
	call func(b *rbatch.Batch) func() (any, error)
	sent [][]string
	want any
}

// result adapts a typed future for the table.
func result[T any](f *rbatch.Future[T]) func() (any, error) {
	return func() (any, error) {
		v, err := f.Get()
		return v, err
	}
}

// keyed is what every keyed object has.
type keyed interface {
	DeleteAsync() *rbatch.Future[bool]
	ExpireAsync(ttl time.Duration) *rbatch.Future[bool]
	IsExistsAsync() *rbatch.Future[bool]
	RemainTimeToLiveAsync() *rbatch.Future[int64]
}

// keyedObjects names each keyed object type with its accessor.
var keyedObjects = []struct {
	name string
	get  func(b *rbatch.Batch, key string) keyed
	typ  reflect.Type
}{
	{"Bucket", func(b *rbatch.Batch, k string) keyed { return b.Bucket(k) }, reflect.TypeFor[*rbatch.Bucket]()},
	{"AtomicLong", func(b *rbatch.Batch, k string) keyed { return b.AtomicLong(k) }, reflect.TypeFor[*rbatch.AtomicLong]()},
	{"List", func(b *rbatch.Batch, k string) keyed { return b.List(k) }, reflect.TypeFor[*rbatch.List]()},
	{"Map", func(b *rbatch.Batch, k string) keyed { return b.Map(k) }, reflect.TypeFor[*rbatch.Map]()},
	{"Set", func(b *rbatch.Batch, k string) keyed { return b.Set(k) }, reflect.TypeFor[*rbatch.Set]()},
	{"ScoredSortedSet", func(b *rbatch.Batch, k string) keyed { return b.ScoredSortedSet(k) }, reflect.TypeFor[*rbatch.ScoredSortedSet]()},
	{"Queue", func(b *rbatch.Batch, k string) keyed { return b.Queue(k) }, reflect.TypeFor[*rbatch.Queue]()},
	{"Deque", func(b *rbatch.Batch, k string) keyed { return b.Deque(k) }, reflect.TypeFor[*rbatch.Deque]()},
	{"Stream", func(b *rbatch.Batch, k string) keyed { return b.Stream(k) }, reflect.TypeFor[*rbatch.Stream]()},
	{"HyperLogLog", func(b *rbatch.Batch, k string) keyed { return b.HyperLogLog(k) }, reflect.TypeFor[*rbatch.HyperLogLog]()},
}

// otherTypes are the non-keyed types whose methods queue commands.
var otherTypes = []struct {
	name string
	typ  reflect.Type
}{
	{"Keys", reflect.TypeFor[*rbatch.Keys]()},
	{"Script", reflect.TypeFor[*rbatch.Script]()},
	{"Buckets", reflect.TypeFor[*rbatch.Buckets]()},
}

func cmd(parts ...string) [][]string { return [][]string{parts} }

func wireCases() []wireCase {
	const script = "return {KEYS[1], ARGV[1]}"
	cases := []wireCase{
		// Bucket
		{"Bucket.GetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Bucket("bk").GetAsync()) },
			cmd("GET", "bk"), "42"},
		{"Bucket.SetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Bucket("bk").SetAsync(3.5)) },
			cmd("SET", "bk", "3.5"), struct{}{}},
		{"Bucket.SetWithTTLAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Bucket("bk").SetWithTTLAsync("v", 2*time.Second))
		}, cmd("SET", "bk", "v", "PX", "2000"), struct{}{}},
		{"Bucket.TrySetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Bucket("bk").TrySetAsync(true)) },
			cmd("SET", "bk", "1", "NX"), true},
		{"Bucket.GetAndSetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Bucket("bk").GetAndSetAsync("new")) },
			cmd("GETSET", "bk", "new"), "v"},

		// AtomicLong
		{"AtomicLong.GetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.AtomicLong("al").GetAsync()) },
			cmd("GET", "al"), int64(42)},
		{"AtomicLong.SetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.AtomicLong("al").SetAsync(-9)) },
			cmd("SET", "al", "-9"), struct{}{}},
		{"AtomicLong.IncrementAndGetAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.AtomicLong("al").IncrementAndGetAsync())
		}, cmd("INCR", "al"), int64(7)},
		{"AtomicLong.DecrementAndGetAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.AtomicLong("al").DecrementAndGetAsync())
		}, cmd("DECR", "al"), int64(7)},
		{"AtomicLong.AddAndGetAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.AtomicLong("al").AddAndGetAsync(-3))
		}, cmd("INCRBY", "al", "-3"), int64(7)},

		// List
		{"List.AddAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").AddAsync("x")) },
			cmd("RPUSH", "ls", "x"), true},
		{"List.AddAllAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").AddAllAsync("x", 2, uint8(3))) },
			cmd("RPUSH", "ls", "x", "2", "3"), true},
		{"List.GetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").GetAsync(-1)) },
			cmd("LINDEX", "ls", "-1"), "v"},
		{"List.RangeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").RangeAsync(1, 5)) },
			cmd("LRANGE", "ls", "1", "5"), []string{"a", "b"}},
		{"List.ReadAllAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").ReadAllAsync()) },
			cmd("LRANGE", "ls", "0", "-1"), []string{"a", "b"}},
		{"List.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").SizeAsync()) },
			cmd("LLEN", "ls"), int64(1)},
		{"List.RemoveAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").RemoveAsync("x", 2)) },
			cmd("LREM", "ls", "2", "x"), true},
		{"List.TrimAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.List("ls").TrimAsync(0, 9)) },
			cmd("LTRIM", "ls", "0", "9"), struct{}{}},

		// Map
		{"Map.FastPutAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").FastPutAsync("f", 10)) },
			cmd("HSET", "mp", "f", "10"), true},
		{"Map.GetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").GetAsync("f")) },
			cmd("HGET", "mp", "f"), "v"},
		{"Map.ReadAllMapAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").ReadAllMapAsync()) },
			cmd("HGETALL", "mp"), map[string]string{"f": "v", "g": "w"}},
		{"Map.AddAndGetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").AddAndGetAsync("n", 4)) },
			cmd("HINCRBY", "mp", "n", "4"), int64(7)},
		{"Map.FastRemoveAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").FastRemoveAsync("f", "g")) },
			cmd("HDEL", "mp", "f", "g"), int64(1)},
		{"Map.ContainsKeyAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").ContainsKeyAsync("f")) },
			cmd("HEXISTS", "mp", "f"), true},
		{"Map.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("mp").SizeAsync()) },
			cmd("HLEN", "mp"), int64(1)},

		// Set
		{"Set.AddAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").AddAsync(int32(5))) },
			cmd("SADD", "st", "5"), true},
		{"Set.AddAllAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").AddAllAsync("a", "b")) },
			cmd("SADD", "st", "a", "b"), true},
		{"Set.RemoveAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").RemoveAsync("a")) },
			cmd("SREM", "st", "a"), true},
		{"Set.ContainsAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").ContainsAsync("a")) },
			cmd("SISMEMBER", "st", "a"), true},
		{"Set.ReadAllAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").ReadAllAsync()) },
			cmd("SMEMBERS", "st"), []string{"a", "b"}},
		{"Set.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Set("st").SizeAsync()) },
			cmd("SCARD", "st"), int64(1)},

		// ScoredSortedSet
		{"ScoredSortedSet.AddAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").AddAsync(-2.25, "m"))
		}, cmd("ZADD", "zs", "-2.25", "m"), true},
		{"ScoredSortedSet.AddScoreAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").AddScoreAsync("m", 1e21))
		}, cmd("ZINCRBY", "zs", "1000000000000000000000", "m"), 1.5},
		{"ScoredSortedSet.GetScoreAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").GetScoreAsync("m"))
		}, cmd("ZSCORE", "zs", "m"), 1.5},
		{"ScoredSortedSet.RankAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").RankAsync("m"))
		}, cmd("ZRANK", "zs", "m"), int64(1)},
		{"ScoredSortedSet.ValueRangeAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").ValueRangeAsync(0, -1))
		}, cmd("ZRANGE", "zs", "0", "-1"), []string{"a", "b"}},
		{"ScoredSortedSet.SizeAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("zs").SizeAsync())
		}, cmd("ZCARD", "zs"), int64(1)},

		// Queue
		{"Queue.OfferAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Queue("qu").OfferAsync("x")) },
			cmd("RPUSH", "qu", "x"), true},
		{"Queue.PollAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Queue("qu").PollAsync()) },
			cmd("LPOP", "qu"), "v"},
		{"Queue.PeekAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Queue("qu").PeekAsync()) },
			cmd("LINDEX", "qu", "0"), "v"},
		{"Queue.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Queue("qu").SizeAsync()) },
			cmd("LLEN", "qu"), int64(1)},

		// Deque: Queue's methods, then its own
		{"Deque.OfferAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").OfferAsync("x")) },
			cmd("RPUSH", "dq", "x"), true},
		{"Deque.PollAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").PollAsync()) },
			cmd("LPOP", "dq"), "v"},
		{"Deque.PeekAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").PeekAsync()) },
			cmd("LINDEX", "dq", "0"), "v"},
		{"Deque.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").SizeAsync()) },
			cmd("LLEN", "dq"), int64(1)},
		{"Deque.AddFirstAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").AddFirstAsync("h")) },
			cmd("LPUSH", "dq", "h"), struct{}{}},
		{"Deque.AddLastAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").AddLastAsync("t")) },
			cmd("RPUSH", "dq", "t"), struct{}{}},
		{"Deque.PollFirstAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").PollFirstAsync()) },
			cmd("LPOP", "dq"), "v"},
		{"Deque.PollLastAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Deque("dq").PollLastAsync()) },
			cmd("RPOP", "dq"), "v"},

		// Stream
		{"Stream.AddAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Stream("sm").AddAsync("f1", "v1", "f2", 2))
		}, cmd("XADD", "sm", "*", "f1", "v1", "f2", "2"), "1700000000000-0"},
		{"Stream.SizeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Stream("sm").SizeAsync()) },
			cmd("XLEN", "sm"), int64(1)},

		// HyperLogLog
		{"HyperLogLog.AddAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.HyperLogLog("hl").AddAsync("e")) },
			cmd("PFADD", "hl", "e"), true},
		{"HyperLogLog.CountAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.HyperLogLog("hl").CountAsync()) },
			cmd("PFCOUNT", "hl"), int64(1)},

		// Keys
		{"Keys.DeleteAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Keys().DeleteAsync("a", "b", "c")) },
			cmd("DEL", "a", "b", "c"), int64(1)},
		{"Keys.CountExistsAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Keys().CountExistsAsync("a", "b")) },
			cmd("EXISTS", "a", "b"), int64(1)},

		// Script: EVALSHA sha numkeys keys args (the script is the group's last command).
		{"Script.EvalAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Script().EvalAsync(script, []string{"k1", "k2"}, "a1", 2))
		}, [][]string{{"EVALSHA", sha1hex(script), "2", "k1", "k2", "a1", "2"}},
			[]any{int64(9), "ok"}},
		{"Script.EvalIntAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Script().EvalIntAsync(script+" -- int", []string{"k1"}, "int"))
		}, [][]string{{"EVALSHA", sha1hex(script + " -- int"), "1", "k1", "int"}}, int64(9)},
		{"Script.EvalStringAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Script().EvalStringAsync(script+" -- str", []string{"k1"}, "str"))
		}, [][]string{{"EVALSHA", sha1hex(script + " -- str"), "1", "k1", "str"}}, "ok"},
		{"Script.EvalStringsAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Script().EvalStringsAsync(script+" -- strs", nil, "a1"))
		}, [][]string{{"EVALSHA", sha1hex(script + " -- strs"), "0", "a1"}},
			[]string{"9", "ok"}},

		// Buckets: MGET, MSET, MSETNX; the maps' keys go in order.
		{"Buckets.GetAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Buckets().GetAsync("a", "b")) },
			cmd("MGET", "a", "b"), map[string]string{"a": "a"}},
		{"Buckets.SetAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Buckets().SetAsync(map[string]any{"b": 2, "a": "x"}))
		}, cmd("MSET", "a", "x", "b", "2"), struct{}{}},
		{"Buckets.TrySetAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Buckets().TrySetAsync(map[string]any{"b": 2, "a": "x"}))
		}, cmd("MSETNX", "a", "x", "b", "2"), true},
		{"Bucket.SetIfAbsentAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Bucket("k").SetIfAbsentAsync("v", 2*time.Second))
		}, cmd("SET", "k", "v", "PX", "2000", "NX"), true},
		{"Bucket.SetIfExistsAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Bucket("k").SetIfExistsAsync("v", 0))
		}, cmd("SET", "k", "v", "XX"), true},
		{"Map.GetAllAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Map("h").GetAllAsync("a", "b")) },
			cmd("HMGET", "h", "a", "b"), map[string]string{"a": "a"}},
		{"Map.PutAllAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Map("h").PutAllAsync(map[string]any{"g": 1, "f": "v"}))
		}, cmd("HSET", "h", "f", "v", "g", "1"), struct{}{}},
		{"Map.FastPutIfAbsentAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.Map("h").FastPutIfAbsentAsync("f", "v"))
		}, cmd("HSETNX", "h", "f", "v"), true},
		{"ScoredSortedSet.AddAllAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("z").AddAllAsync(map[string]float64{"b": 2, "a": 1.5}))
		}, cmd("ZADD", "z", "1.5", "a", "2", "b"), int64(1)},
		{"ScoredSortedSet.ValueRangeByScoreAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("z").ValueRangeByScoreAsync(1, math.Inf(1)))
		}, cmd("ZRANGEBYSCORE", "z", "1", "+Inf"), []string{"a", "b"}},
		{"ScoredSortedSet.CountAsync", func(b *rbatch.Batch) func() (any, error) {
			return result(b.ScoredSortedSet("z").CountAsync(math.Inf(-1), 2.5))
		}, cmd("ZCOUNT", "z", "-Inf", "2.5"), int64(1)},
		{"Stream.RangeAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Stream("sm").RangeAsync("-", "+", 10)) },
			cmd("XRANGE", "sm", "-", "+", "COUNT", "10"), []rbatch.StreamEntry{{ID: "1-0", Fields: map[string]string{"f": "v"}}}},
		{"Stream.ReadAsync", func(b *rbatch.Batch) func() (any, error) { return result(b.Stream("sm").ReadAsync("1-0", 5)) },
			cmd("XREAD", "COUNT", "5", "STREAMS", "sm", "1-0"), []rbatch.StreamEntry{{ID: "2-0", Fields: map[string]string{"g": "w"}}}},

		// Batch.Do: the name is upper-cased, the arguments go as given.
		{"Batch.Do", func(b *rbatch.Batch) func() (any, error) { return result(b.Do("echo", "hi")) },
			cmd("ECHO", "hi"), "hi"},
	}
	for _, o := range keyedObjects {
		cases = append(cases,
			wireCase{o.name + ".DeleteAsync", func(b *rbatch.Batch) func() (any, error) { return result(o.get(b, "key").DeleteAsync()) },
				cmd("DEL", "key"), true},
			wireCase{o.name + ".ExpireAsync", func(b *rbatch.Batch) func() (any, error) {
				return result(o.get(b, "key").ExpireAsync(1500 * time.Millisecond))
			}, cmd("PEXPIRE", "key", "1500"), true},
			wireCase{o.name + ".IsExistsAsync", func(b *rbatch.Batch) func() (any, error) { return result(o.get(b, "key").IsExistsAsync()) },
				cmd("EXISTS", "key"), true},
			wireCase{o.name + ".RemainTimeToLiveAsync", func(b *rbatch.Batch) func() (any, error) {
				return result(o.get(b, "key").RemainTimeToLiveAsync())
			}, cmd("PTTL", "key"), int64(1)},
		)
	}
	return cases
}

func TestWireCommandPerMethod(t *testing.T) {
	f := redistest.NewFake(t, plausible)
	c, _ := fakeClient(t, f)
	for _, tc := range wireCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.Commands())
			b := c.NewBatch()
			get := tc.call(b)
			_, err := b.Execute(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tc.sent, f.Commands()[before:])
			got, err := get()
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestWireCasesCoverEveryMethod fails when an object gains a method that
// queues a command and the table above does not send it.
func TestWireCasesCoverEveryMethod(t *testing.T) {
	covered := make(map[string]bool)
	for _, tc := range wireCases() {
		assert.False(t, covered[tc.name], "duplicate case %s", tc.name)
		covered[tc.name] = true
	}
	types := append([]struct {
		name string
		typ  reflect.Type
	}{{"Batch", reflect.TypeFor[*rbatch.Batch]()}}, otherTypes...)
	for _, o := range keyedObjects {
		types = append(types, struct {
			name string
			typ  reflect.Type
		}{o.name, o.typ})
	}
	n := 0
	for _, ty := range types {
		for i := range ty.typ.NumMethod() {
			m := ty.typ.Method(i)
			if !strings.HasSuffix(m.Name, "Async") && !(ty.name == "Batch" && m.Name == "Do") {
				continue
			}
			if ty.name == "Batch" && m.Name == "ExecuteAsync" {
				continue
			}
			n++
			assert.True(t, covered[ty.name+"."+m.Name], "no wire case for %s.%s", ty.name, m.Name)
		}
	}
	assert.Equal(t, len(covered), n, "every case names an existing method")
}

// A script that is the last of a batch's commands goes as EVALSHA alone
// (a node that does not hold it answers NOSCRIPT, and gets it again as
// EVAL). A batch with commands after a script loads it every time, so that
// a NOSCRIPT sent again cannot run it after them.
func TestWireScriptLoadedOnlyAheadOfCommands(t *testing.T) {
	f := redistest.NewFake(t, plausible)
	c, hs := fakeClient(t, f)
	sha := sha1hex("return 1")
	for round, tc := range []struct {
		scriptLast bool
		want       [][]string
	}{
		{true, [][]string{{"GET", "k"}, {"EVALSHA", sha, "1", "k", "x"}}},
		{true, [][]string{{"GET", "k"}, {"EVALSHA", sha, "1", "k", "x"}}},
		{false, [][]string{{"SCRIPT", "LOAD", "return 1"}, {"EVALSHA", sha, "0"}, {"GET", "k"}}},
	} {
		b := c.NewBatch()
		if tc.scriptLast {
			b.Bucket("k").GetAsync()
			b.Script().EvalAsync("return 1", []string{"k"}, "x")
		} else {
			b.Script().EvalAsync("return 1", nil)
			b.Bucket("k").GetAsync()
		}
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		assert.Equal(t, tc.want, f.Commands()[hs:], "batch %d", round+1)
		hs = len(f.Commands())
	}
}

// hangupAfter returns a handler answering the handshake and then n commands
// plausibly, hanging up on the next one; later connections are answered
// normally. served counts the commands after the handshake.
func hangupAfter(n int32, served *atomic.Int32) func(cmd []string) string {
	return func(cmd []string) string {
		if handshakeCmd(cmd) {
			return plausible(cmd)
		}
		switch k := served.Add(1); {
		case k <= n:
			return plausible(cmd)
		case k == n+1:
			return redistest.Hangup
		}
		return plausible(cmd)
	}
}

func TestWireConnectionLostMidBatch(t *testing.T) {
	const answered = 3
	var served atomic.Int32
	f := redistest.NewFake(t, hangupAfter(answered, &served))
	c, hs := fakeClient(t, f)

	b := c.NewBatch()
	set := b.Bucket("a").SetAsync("1")
	incr := b.AtomicLong("n").IncrementAndGetAsync()
	get := b.Bucket("a").GetAsync()
	lost := []*rbatch.Future[bool]{
		b.List("l").AddAsync("x"),
		b.Set("s").AddAsync("y"),
		b.Map("m").FastPutAsync("f", "z"),
	}
	res, err := b.Execute(context.Background())
	require.Error(t, err)

	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	assert.NotErrorIs(t, err, rbatch.ErrNotSent, "every command was written")
	require.Len(t, berr.Commands, 3)
	for i, ce := range berr.Commands {
		assert.Equal(t, answered+i, ce.Index)
		assert.ErrorIs(t, ce.Err, rbatch.ErrUnknownOutcome)
	}
	assert.Equal(t, []string{"RPUSH", "SADD", "HSET"},
		[]string{berr.Commands[0].Command, berr.Commands[1].Command, berr.Commands[2].Command})

	_, e := set.Get()
	assert.NoError(t, e)
	n, e := incr.Get()
	assert.NoError(t, e)
	assert.Equal(t, int64(7), n)
	v, e := get.Get()
	assert.NoError(t, e)
	assert.Equal(t, "42", v)
	for _, f := range lost {
		_, e := f.Get()
		assert.ErrorIs(t, e, rbatch.ErrUnknownOutcome)
	}
	require.Len(t, res.Responses, 6)
	assert.Equal(t, []any{struct{}{}, int64(7), "42"}, res.Responses[:answered])
	for _, r := range res.Responses[answered:] {
		e, ok := r.(error)
		require.True(t, ok, "response %v", r)
		assert.ErrorIs(t, e, rbatch.ErrUnknownOutcome)
	}
	// The fake read the four commands up to the hangup, nothing after.
	assert.Equal(t, [][]string{{"SET", "a", "1"}, {"INCR", "n"}, {"GET", "a"}, {"RPUSH", "l", "x"}},
		f.Commands()[hs:])

	// The broken connection is not reused: the next batch dials a new one.
	b = c.NewBatch()
	ok := b.Bucket("a").GetAsync()
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	v, e = ok.Get()
	assert.NoError(t, e)
	assert.Equal(t, "42", v)
	assert.Len(t, f.ReceivedByConn(), 2)
}

func TestWireConnectionLostBeforeAnyReply(t *testing.T) {
	var served atomic.Int32
	f := redistest.NewFake(t, hangupAfter(0, &served))
	c, _ := fakeClient(t, f)
	b := c.NewBatch()
	futures := []*rbatch.Future[struct{}]{b.Bucket("a").SetAsync("1"), b.Bucket("b").SetAsync("2")}
	_, err := b.Execute(context.Background())
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.Len(t, berr.Commands, 2)
	for _, fu := range futures {
		_, e := fu.Get()
		assert.ErrorIs(t, e, rbatch.ErrUnknownOutcome)
	}
}

func TestWireStalledReplyTimesOut(t *testing.T) {
	var served atomic.Int32
	f := redistest.NewFake(t, func(cmd []string) string {
		if handshakeCmd(cmd) || served.Add(1) == 1 {
			return plausible(cmd)
		}
		return "" // stall: no reply from the second command on
	})
	c, _ := fakeClient(t, f)
	b := c.NewBatch(rbatch.WithResponseTimeout(100 * time.Millisecond))
	first := b.Bucket("a").SetAsync("1")
	rest := []*rbatch.Future[string]{b.Bucket("a").GetAsync(), b.Bucket("b").GetAsync()}
	start := time.Now()
	_, err := b.Execute(context.Background())
	assert.Less(t, time.Since(start), 5*time.Second)
	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	_, e := first.Get()
	assert.NoError(t, e)
	for _, fu := range rest {
		_, e := fu.Get()
		assert.ErrorIs(t, e, rbatch.ErrUnknownOutcome)
		assert.False(t, errors.Is(e, rbatch.ErrNotSent))
	}
}

// handshakeCmd reports a command of NewClient's handshake (INFO, CONFIG GET,
// CLIENT SETNAME "" and GETNAME).
func handshakeCmd(cmd []string) bool {
	return cmd[0] == "INFO" || cmd[0] == "PING" && len(cmd) == 1 || cmd[0] == "CONFIG" || len(cmd) >= 2 && cmd[0] == "CLIENT" && (cmd[1] == "GETNAME" || cmd[1] == "SETNAME")
}

// A node that answers NOSCRIPT gets the command once more, as EVAL with
// the script's body, after the rest of its group.
func TestWireNoScriptSentAgainAsEval(t *testing.T) {
	f := redistest.NewFake(t, func(cmd []string) string {
		if cmd[0] == "EVALSHA" {
			return "-NOSCRIPT No matching script. Please use EVAL.\r\n"
		}
		return plausible(cmd)
	})
	c, hs := fakeClient(t, f)
	b := c.NewBatch()
	get := b.Bucket("k").GetAsync()
	ev := b.Script().EvalAsync("return 1", []string{"k"}, "x")
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	_, ferr := ev.Get()
	assert.NoError(t, ferr)
	_, gerr := get.Get()
	assert.NoError(t, gerr)
	assert.Equal(t, 2, res.Nodes[0].Attempts)
	sha := sha1hex("return 1")
	assert.Equal(t, [][]string{
		{"GET", "k"}, {"EVALSHA", sha, "1", "k", "x"},
		{"EVAL", "return 1", "1", "k", "x"},
	}, f.Commands()[hs:])
}

// A server that does not know INFO (renamed away, a minimal stand-in) is
// used as a standalone server of unknown version: the client connects and
// its batches run.
func TestClientWithoutInfo(t *testing.T) {
	f := redistest.NewFake(t, func(cmd []string) string {
		if strings.EqualFold(cmd[0], "INFO") {
			return "-ERR unknown command 'INFO', with args beginning with: 'server' \r\n"
		}
		return redistest.DefaultReply(cmd)
	})
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{f.Addr}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	b := c.NewBatch()
	set := b.Bucket("k").SetAsync("v")
	_, err = b.Execute(context.Background())
	require.NoError(t, err)
	assert.NoError(t, errOf(set))
	// A version check it cannot pass is refused before anything is sent.
	b = c.NewBatch(rbatch.WithSyncAOF(true, 0, 100*time.Millisecond))
	b.Bucket("k").SetAsync("v")
	_, err = b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrUnsupported)
}
