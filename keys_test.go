package rbatch_test

import (
	"context"
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
			b.Script().EvalAsync("return redis.call('GET', KEYS[1])", []string{""})
		}},
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
			if mode == rbatch.RedisWriteAtomic {
				// Queued in Redis's MULTI before "" came: discarded.
				assert.ErrorIs(t, errA, rbatch.ErrTxAborted)
			} else {
				assert.ErrorIs(t, errA, rbatch.ErrNotSent)
			}
			assert.ErrorIs(t, errE, rbatch.ErrNotSent)
			stats := cl.CommandStats(t)
			assert.Zero(t, stats["set"], "nothing applied")
			assert.Zero(t, stats["exec"], "no EXEC")
		})
	}
}
