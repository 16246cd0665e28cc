package rbatch_test

import (
	"context"
	"math"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

type profile struct {
	Name    string  `redis:"name"`
	Age     int     `redis:"age"`
	Score   float64 `redis:"score"`
	Admin   bool    `redis:"admin"`
	Secret  string  `redis:"-"`
	Country string  // no tag: its Go name
}

type address struct {
	City string `json:"city"`
	Zip  string `json:"zip"`
}

// Values come back typed: through the codec for structs, directly for the
// basic types; hashes map onto structs by their tags.
func TestTypedValues(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch(rbatch.WithCodec(rbatch.JSONCodec))
	rbatch.BucketOf[address](b, "ty:addr").SetAsync(address{"Paris", "75001"})
	rbatch.BucketOf[int64](b, "ty:n").SetAsync(42)
	rbatch.HashOf[profile](b, "ty:p").PutAsync(profile{Name: "ada", Age: 36, Score: 9.5, Admin: true, Secret: "x", Country: "UK"})
	addr := rbatch.BucketOf[address](b, "ty:addr").GetAsync()
	n := rbatch.BucketOf[int64](b, "ty:n").GetAsync()
	missing := rbatch.BucketOf[address](b, "ty:none").GetAsync()
	notInt := rbatch.BucketOf[int](b, "ty:addr").GetAsync()
	p := rbatch.HashOf[profile](b, "ty:p").GetAsync()
	noHash := rbatch.HashOf[profile](b, "ty:nohash").GetAsync()
	_, err := b.Execute(context.Background())
	require.Error(t, err, "one value does not decode")

	a, err := addr.Get()
	require.NoError(t, err)
	assert.Equal(t, address{"Paris", "75001"}, a)
	v, err := n.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(42), v)
	_, err = missing.Get()
	assert.ErrorIs(t, err, rbatch.ErrNil)
	_, err = notInt.Get()
	assert.ErrorContains(t, err, "is not a int")
	got, err := p.Get()
	require.NoError(t, err)
	assert.Equal(t, profile{Name: "ada", Age: 36, Score: 9.5, Admin: true, Country: "UK"}, got)
	_, err = noHash.Get()
	assert.ErrorIs(t, err, rbatch.ErrNil)
	assert.Equal(t, map[string]string{"name": "ada", "age": "36", "score": "9.5", "admin": "1", "Country": "UK"},
		hgetall(t, "ty:p"))

	// Without a codec a struct cannot be read back.
	b = c.NewBatch()
	noCodec := rbatch.BucketOf[address](b, "ty:addr").GetAsync()
	b.Execute(context.Background())
	_, err = noCodec.Get()
	assert.ErrorIs(t, err, rbatch.ErrNoCodec)
}

func hgetall(t *testing.T, key string) map[string]string {
	arr := srv.MustDo(t, "HGETALL", key).([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(arr); i += 2 {
		m[string(arr[i].([]byte))] = string(arr[i+1].([]byte))
	}
	return m
}

type (
	sku   string
	blob  []byte
	grams int32
)

// Named basic types are stored as their text and read back into the same
// type, with or without a codec; an empty []byte comes back empty, not nil.
func TestTypedNamedBasicTypes(t *testing.T) {
	fresh(t)
	c := newClient(t)
	for _, opts := range [][]rbatch.Option{nil, {rbatch.WithCodec(rbatch.JSONCodec)}} {
		b := c.NewBatch(opts...)
		rbatch.BucketOf[sku](b, "tn:sku").SetAsync("sku-1")
		rbatch.BucketOf[blob](b, "tn:blob").SetAsync(blob{0, 1, 2})
		rbatch.BucketOf[grams](b, "tn:g").SetAsync(-250)
		rbatch.BucketOf[[]byte](b, "tn:empty").SetAsync([]byte{})
		s := rbatch.BucketOf[sku](b, "tn:sku").GetAsync()
		bl := rbatch.BucketOf[blob](b, "tn:blob").GetAsync()
		g := rbatch.BucketOf[grams](b, "tn:g").GetAsync()
		e := rbatch.BucketOf[[]byte](b, "tn:empty").GetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, err := s.Get()
		require.NoError(t, err)
		assert.Equal(t, sku("sku-1"), v)
		w, err := bl.Get()
		require.NoError(t, err)
		assert.Equal(t, blob{0, 1, 2}, w)
		x, err := g.Get()
		require.NoError(t, err)
		assert.Equal(t, grams(-250), x)
		y, err := e.Get()
		require.NoError(t, err)
		assert.NotNil(t, y)
		assert.Empty(t, y)
	}
	assert.Equal(t, []byte("sku-1"), srv.MustDo(t, "GET", "tn:sku"), "stored as its text")
}

// Floats are written as plain decimals, as go-redis and rueidis write them:
// a whole number stays one that INCRBY takes, and every value reads back
// exactly, the extremes and scores too.
func TestFloatsWrittenAsPlainDecimals(t *testing.T) {
	fresh(t)
	c := newClient(t)
	b := c.NewBatch()
	b.Bucket("fp:million").SetAsync(1e6)
	b.Bucket("fp:f32").SetAsync(float32(2.5e6))
	b.Bucket("fp:small").SetAsync(1e-7)
	b.Bucket("fp:max").SetAsync(math.MaxFloat64)
	b.ScoredSortedSet("fp:z").AddAsync(1.5e9, "m")
	incr := b.Do("INCRBY", "fp:million", 1)
	score := b.ScoredSortedSet("fp:z").GetScoreAsync("m")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	for key, want := range map[string]string{"fp:million": "1000001", "fp:f32": "2500000", "fp:small": "0.0000001"} {
		assert.Equal(t, []byte(want), srv.MustDo(t, "GET", key), key)
	}
	n, err := incr.Get()
	require.NoError(t, err)
	assert.Equal(t, int64(1000001), n, "the float 1e6 was stored as an integer INCRBY takes")
	max, err := redis.Float64(srv.MustDo(t, "GET", "fp:max"), nil)
	require.NoError(t, err)
	assert.Equal(t, math.MaxFloat64, max)
	s, err := score.Get()
	require.NoError(t, err)
	assert.Equal(t, 1.5e9, s)
	assert.Equal(t, []byte("1500000000"), srv.MustDo(t, "ZSCORE", "fp:z", "m"))
}
