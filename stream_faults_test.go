package rbatch_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/route"
)

// In a cluster, a multi-key command of a stream whose keys span slots is
// split per slot at Execute; one that failed at queueing (an argument with
// no codec, or one over the server's proto-max-bulk-len) is never split
// nor sent: no part of it reaches a node, and the stream goes on.
func TestStreamClusterBadMultiKeyFailsAlone(t *testing.T) {
	cl := freshCluster(t)
	for _, p := range cl.Primaries {
		_, err := p.Call("CONFIG", "SET", "proto-max-bulk-len", "1mb")
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, p := range cl.Primaries {
			p.Call("CONFIG", "SET", "proto-max-bulk-len", "512mb")
		}
	})
	c := clusterClient(t, cl) // dialed after the change: it knows the limit
	keys := []string{"bm:a", "bm:b", "bm:c", "bm:d"}
	require.False(t, route.Slot(keys[0]) == route.Slot(keys[1]) && route.Slot(keys[2]) == route.Slot(keys[3]),
		"the keys must span slots for the commands to be split")
	for _, k := range keys {
		_, err := cl.OwnerOf(t, route.Slot(k)).Call("SET", k, "1")
		require.NoError(t, err)
	}
	cl.ResetStats(t)

	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	before := b.Bucket("bm:x").SetAsync("1")
	del := b.Do("DEL", "bm:a", struct{}{}, "bm:b") // no codec for the struct
	mset := b.Buckets().SetAsync(map[string]any{"bm:c": "2", "bm:d": struct{}{}})
	long := b.Buckets().SetAsync(map[string]any{"bm:a": "2", "bm:b": "2", "bm:c": strings.Repeat("x", 2<<20)})
	after := b.Bucket("bm:y").SetAsync("1")
	res, err := b.Execute(context.Background())

	var berr *rbatch.BatchError
	require.ErrorAs(t, err, &berr)
	assert.Equal(t, rbatch.Counts{Applied: 2, NotSent: 3}, res.Counts)
	assert.ErrorIs(t, errOf(del), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(mset), rbatch.ErrNotSent)
	assert.ErrorIs(t, errOf(long), rbatch.ErrNotSent)
	assert.NoError(t, errOf(before))
	assert.NoError(t, errOf(after))
	for _, k := range keys {
		v, err := cl.OwnerOf(t, route.Slot(k)).Call("GET", k)
		require.NoError(t, err)
		assert.Equal(t, []byte("1"), v, "%s changed by a command reported not sent", k)
	}
	stats := cl.CommandStats(t)
	assert.Zero(t, stats["del"]+stats["mset"], "no part of a refused command was sent")
	assert.EqualValues(t, 2, stats["set"])
}
