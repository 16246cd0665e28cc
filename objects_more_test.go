package rbatch_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

// The objects' multi-key and conditional methods against a real server.
func TestObjectsAgainstServer(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	set := b.Buckets().SetAsync(map[string]any{"ob:a": "1", "ob:b": 2})
	get := b.Buckets().GetAsync("ob:a", "ob:missing", "ob:b")
	try := b.Buckets().TrySetAsync(map[string]any{"ob:a": "x", "ob:c": "3"}) // ob:a exists: none set
	absent := b.Bucket("ob:n").SetIfAbsentAsync("v", time.Minute)
	again := b.Bucket("ob:n").SetIfAbsentAsync("w", 0)
	exists := b.Bucket("ob:n").SetIfExistsAsync("w2", 0)
	notThere := b.Bucket("ob:none").SetIfExistsAsync("x", time.Second)
	ttl := b.Bucket("ob:a").RemainTimeToLiveAsync()
	put := b.Map("ob:h").PutAllAsync(map[string]any{"f": "v", "g": 7})
	hget := b.Map("ob:h").GetAllAsync("f", "nope", "g")
	nx := b.Map("ob:h").FastPutIfAbsentAsync("f", "other")
	nx2 := b.Map("ob:h").FastPutIfAbsentAsync("new", "n")
	zadd := b.ScoredSortedSet("ob:z").AddAllAsync(map[string]float64{"a": 1, "b": 2, "c": 3, "inf": math.Inf(1)})
	zr := b.ScoredSortedSet("ob:z").ValueRangeByScoreAsync(2, math.Inf(1))
	zc := b.ScoredSortedSet("ob:z").CountAsync(math.Inf(-1), 2)
	b.Stream("ob:s").AddAsync("f", "1")
	b.Stream("ob:s").AddAsync("f", "2")
	rng := b.Stream("ob:s").RangeAsync("-", "+", 0)
	rd := b.Stream("ob:s").ReadAsync("0", 1)
	rdNone := b.Stream("ob:s").ReadAsync("99999999999999-0", 10)
	_, err := b.Execute(context.Background())
	require.NoError(t, err)

	assert.NoError(t, errOf(set))
	m, _ := get.Get()
	assert.Equal(t, map[string]string{"ob:a": "1", "ob:b": "2"}, m)
	ok, _ := try.Get()
	assert.False(t, ok)
	assert.EqualValues(t, 0, srv.MustDo(t, "EXISTS", "ob:c"), "MSETNX set nothing")
	for f, want := range map[*rbatch.Future[bool]]bool{absent: true, again: false, exists: true, notThere: false, nx: false, nx2: true} {
		got, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, want, got, "future %d", f.Index())
	}
	left, _ := ttl.Get()
	assert.Equal(t, int64(-1), left, "ob:a has no TTL")
	assert.Equal(t, "w2", string(srv.MustDo(t, "GET", "ob:n").([]byte)))
	assert.EqualValues(t, -1, srv.MustDo(t, "PTTL", "ob:n"), "SET … XX without PX drops the TTL, as SET does")
	assert.NoError(t, errOf(put))
	hm, _ := hget.Get()
	assert.Equal(t, map[string]string{"f": "v", "g": "7"}, hm)
	added, _ := zadd.Get()
	assert.Equal(t, int64(4), added)
	r, _ := zr.Get()
	assert.Equal(t, []string{"b", "c", "inf"}, r)
	n, _ := zc.Get()
	assert.Equal(t, int64(2), n)
	entries, err := rng.Get()
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, map[string]string{"f": "2"}, entries[1].Fields)
	first, err := rd.Get()
	require.NoError(t, err)
	require.Len(t, first, 1)
	assert.Equal(t, entries[0], first[0])
	none, err := rdNone.Get()
	require.NoError(t, err)
	assert.Empty(t, none)
}

// In a cluster MGET and MSET are split per slot and joined; MSETNX must keep
// to one slot, else the batch is refused before anything is sent.
func TestBucketsCluster(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	kv := map[string]any{}
	var keys []string
	for _, k := range []string{"mb:a", "mb:b", "mb:c", "mb:d", "mb:e", "mb:f"} {
		kv[k] = k + "!"
		keys = append(keys, k)
	}
	b := c.NewBatch()
	set := b.Buckets().SetAsync(kv)
	get := b.Buckets().GetAsync(append(keys, "mb:missing")...)
	same := b.Buckets().TrySetAsync(map[string]any{"{mb}1": 1, "{mb}2": 2})
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Greater(t, len(res.Nodes), 1, "the keys span nodes")
	assert.NoError(t, errOf(set))
	m, _ := get.Get()
	want := map[string]string{}
	for k, v := range kv {
		want[k] = v.(string)
	}
	assert.Equal(t, want, m)
	ok, _ := same.Get()
	assert.True(t, ok)

	cl.ResetStats(t)
	b = c.NewBatch()
	cross := b.Buckets().TrySetAsync(map[string]any{"mb:x": 1, "mb:y": 2, "mb:z": 3})
	other := b.Bucket("mb:other").SetAsync("v")
	_, err = b.Execute(context.Background())
	require.ErrorIs(t, err, rbatch.ErrCrossSlot)
	assert.ErrorIs(t, errOf(cross), rbatch.ErrCrossSlot)
	assert.ErrorIs(t, errOf(other), rbatch.ErrNotSent)
	stats := cl.CommandStats(t)
	assert.Zero(t, stats["msetnx"]+stats["set"], "nothing was sent")
}
