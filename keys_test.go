package rbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/route"
)

// The empty string is a key (slot 0), and a Do key that is not a string is
// routed by its RESP bytes ("42"): each goes straight to its slot's owner,
// with no MOVED on the way.
func TestEmptyAndIntegerKeysRouteToTheirSlot(t *testing.T) {
	const getScript = "return redis.call('GET', KEYS[1])"
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	ctx := context.Background()
	cases := []struct {
		name, key string
		queue     func(b *rbatch.Batch)
	}{
		{"Bucket(\"\")", "", func(b *rbatch.Batch) { b.Bucket("").SetAsync("empty") }},
		{"Do with an integer key", "42", func(b *rbatch.Batch) { b.Do("SET", 42, "int") }},
		{"Do with an empty key", "", func(b *rbatch.Batch) { b.Do("SET", "", "empty") }},
		{"Keys with an empty key", "", func(b *rbatch.Batch) { b.Keys().CountExistsAsync("") }},
		{"a script with an empty key", "", func(b *rbatch.Batch) {
			b.Script().EvalAsync(getScript, []string{""})
		}},
	}
	for _, p := range cl.Primaries { // so that no NOSCRIPT adds a round
		p.MustDo(t, "SCRIPT", "LOAD", getScript)
	}
	for _, tc := range cases {
		for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				owner := cl.OwnerOf(t, route.Slot(tc.key)).Addr
				b := c.NewBatch(rbatch.WithMode(mode))
				tc.queue(b)
				res, err := b.Execute(ctx)
				require.NoError(t, err)
				require.Len(t, res.Nodes, 1)
				assert.Equal(t, owner, res.Nodes[0].Addr, "sent to the owner of slot %d", route.Slot(tc.key))
				assert.Zero(t, res.Nodes[0].Moved, "no MOVED")
				assert.Equal(t, 1, res.Nodes[0].Attempts)
			})
		}
	}
	v, err := redis.String(cl.OwnerOf(t, route.Slot("42")).Call("GET", "42"))
	require.NoError(t, err)
	assert.Equal(t, "int", v)
}

// An atomic batch naming "a" and "" spans two slots: refused before
// anything is sent.
func TestEmptyKeyCrossSlotRefused(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	require.NotEqual(t, route.Slot("a"), route.Slot(""))
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String(), func(t *testing.T) {
			cl.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			fa := b.Bucket("a").SetAsync("1")
			fe := b.Bucket("").SetAsync("2")
			_, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrCrossSlot)
			_, errA := fa.Get()
			_, errE := fe.Get()
			stats := cl.CommandStats(t)
			if stats["multi"] > 0 {
				// Queued in Redis's MULTI before "" came: discarded.
				assert.ErrorIs(t, errA, rbatch.ErrTxAborted)
				assert.Equal(t, stats["multi"], stats["discard"])
			} else { // InMemoryAtomic, or a queue that had no connection yet
				assert.ErrorIs(t, errA, rbatch.ErrNotSent)
			}
			assert.ErrorIs(t, errE, rbatch.ErrNotSent)
			assert.Zero(t, stats["set"], "nothing applied")
			assert.Zero(t, stats["exec"], "no EXEC")
		})
	}
}

// Do routes a command whose first argument cannot be a key by the key it
// names: a script's first key, the first of SINTERCARD's or LMPOP's keys,
// OBJECT's and MEMORY USAGE's key, XREAD's first stream. Routed by the
// script text or the subcommand, an atomic batch of them failed with
// ErrCrossSlot, and the others went by MOVED.
func TestDoRoutesByTheCommandsKey(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	const get = "return redis.call('GET', KEYS[1])"

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("{rk}k").SetAsync("v")
	b.Do("XADD", "{rk}s", "1-1", "f", "x")
	eval := b.Do("EVAL", get, 1, "{rk}k")
	evalText := b.Do("EVAL_RO", get, "1", "{rk}k")
	enc := b.Do("OBJECT", "ENCODING", "{rk}k")
	usage := b.Do("MEMORY", "USAGE", "{rk}k")
	read := b.Do("XREAD", "COUNT", 1, "STREAMS", "{rk}s", "0")
	none := b.Do("EVAL", "return 7", 0)
	b.Do("SADD", "{rk}a", "x", "y")
	b.Do("SADD", "{rk}b", "y")
	card := b.Do("SINTERCARD", 2, "{rk}a", "{rk}b")
	b.Do("RPUSH", "{rk}l", "p")
	popped := b.Do("LMPOP", "1", "{rk}l", "LEFT")
	_, err := b.Execute(context.Background())
	require.NoError(t, err, "one slot: one transaction")
	for _, f := range []*rbatch.Future[any]{eval, evalText} {
		v, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, "v", asString(v))
	}
	v, err := enc.Get()
	require.NoError(t, err)
	assert.Equal(t, "embstr", asString(v))
	v, err = usage.Get()
	require.NoError(t, err)
	assert.Positive(t, v)
	v, err = read.Get()
	require.NoError(t, err)
	assert.NotEmpty(t, v)
	v, err = none.Get()
	require.NoError(t, err)
	assert.EqualValues(t, 7, v)
	v, err = card.Get()
	require.NoError(t, err)
	assert.EqualValues(t, 1, v)
	v, err = popped.Get()
	require.NoError(t, err)
	assert.NotEmpty(t, v)

	// Keys on every node, in one buffered batch: each goes straight to its
	// owner, no MOVED.
	w := c.NewBatch()
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = "rk:" + strconv.Itoa(i)
		w.Bucket(keys[i]).SetAsync(i)
	}
	_, err = w.Execute(context.Background())
	require.NoError(t, err)
	var sha string
	for _, p := range cl.Primaries {
		sha = asString(p.MustDo(t, "SCRIPT", "LOAD", get))
	}
	r := c.NewBatch()
	evals := make([]*rbatch.Future[any], len(keys))
	for i, k := range keys {
		evals[i] = r.Do("EVALSHA_RO", sha, 1, k)
	}
	res, err := r.Execute(context.Background())
	require.NoError(t, err)
	for i, f := range evals {
		v, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(i), asString(v))
	}
	moved := 0
	for _, n := range res.Nodes {
		moved += n.Moved
	}
	assert.Zero(t, moved, "every EVALSHA_RO went to its key's owner")
	assert.Len(t, res.Nodes, len(cl.Primaries))
}

// asString reads a bulk reply, whether it came as a string or as bytes.
func asString(v any) string { return fmt.Sprintf("%s", v) }
