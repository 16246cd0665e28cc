package rbatch_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/route"
)

// A multi-key command split per slot under WithSkipResult is skipped, as
// a command sent whole is: its parts' replies are read on a cluster, not
// asked for by the caller.
func TestSkipResultSplitCommandIsSkipped(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		del := b.Keys().DeleteAsync("sk:a", "sk:b") // two slots: split
		set := b.Buckets().SetAsync(map[string]any{"sk:c": "x", "sk:d": "y"})
		one := b.Bucket("sk:e").SetAsync("x")
		res, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		_, derr := del.Get()
		assert.Equal(t, rbatch.ErrResultSkipped, derr, mode)
		assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped, mode)
		assert.ErrorIs(t, errOf(one), rbatch.ErrResultSkipped, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 3}, res.Counts, mode)
		v, err := redis.String(cl.OwnerOf(t, route.Slot("sk:d")).Call("GET", "sk:d"))
		require.NoError(t, err)
		assert.Equal(t, "y", v, mode)
	}
}

// A transaction naming, through a script's keys (or MSETNX's), a second
// slot is refused before anything is sent, as one naming it through any
// other command is.
func TestAtomicScriptKeysCrossSlotRefused(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		for name, queue := range map[string]func(b *rbatch.Batch){
			"EvalAsync": func(b *rbatch.Batch) {
				b.Script().EvalAsync("return redis.call('SET', KEYS[2], ARGV[1])", []string{"{sa}k", "{sb}k"}, "v")
			},
			"Do(EVAL)":   func(b *rbatch.Batch) { b.Do("EVAL", "return 1", 2, "{sa}k", "{sb}k") },
			"Do(MSETNX)": func(b *rbatch.Batch) { b.Do("MSETNX", "{sa}k", "1", "{sb}k", "2") },
		} {
			cl.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Bucket("{sa}x").SetAsync("v")
			queue(b)
			_, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrCrossSlot, "%v %s", mode, name)
			if mode == rbatch.InMemoryAtomic {
				assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent, "%v %s", mode, name)
				st := cl.CommandStats(t)
				assert.Zero(t, st["multi"]+st["exec"]+st["script|load"], "%v %s: nothing sent", mode, name)
			} else {
				assert.Zero(t, cl.CommandStats(t)["exec"], "%v %s: never run", mode, name)
			}
		}
	}
	// Within one slot a script's keys run as before.
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	f := b.Script().EvalAsync("return redis.call('SET', KEYS[2], ARGV[1])", []string{"{sa}k", "{sa}j"}, "v")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := f.Get()
	assert.Equal(t, "OK", v)
}

// A write split per slot that one slot refused (OOM) and another applied is
// unknown as a whole, and its error still shows the refusal's prefix.
func TestSplitWritePartlyRefusedShowsTheRefusal(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	full := cl.OwnerOf(t, route.Slot("pr:a"))
	other := "pr:b"
	for k := 0; cl.OwnerOf(t, route.Slot(other)).Addr == full.Addr; k++ {
		other = fmt.Sprint("pr:b", k)
	}
	full.MustDo(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { full.MustDo(t, "CONFIG", "SET", "maxmemory", "0") })
	b := c.NewBatch()
	f := b.Buckets().SetAsync(map[string]any{"pr:a": "1", other: "2"})
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome, "applied for one slot, refused for the other")
	var re *rbatch.RedisError
	require.ErrorAs(t, errOf(f), &re)
	assert.Equal(t, "OOM", re.Prefix())
}
