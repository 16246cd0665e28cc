package rbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/rbatch/rbatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Do routes a command whose first argument cannot be a key by the key it
// names: a script's first key, the first of SINTERCARD's or LMPOP's keys,
// OBJECT's and MEMORY USAGE's key, XREAD's first stream. Routed by the script text or the subcommand, an atomic
// batch of them failed with ErrCrossSlot, and the others went by MOVED.
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
