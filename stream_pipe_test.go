package rbatch_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

// A stream's segments follow each other on one connection per node, the
// next written while the previous one's replies are read: commands on one
// key still apply in the order they were queued, across hundreds of
// segments, and the stream takes one connection.
func TestStreamSegmentsKeepOrder(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 32 << 10 }) // segments of ~8 KiB
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	const n = 100_000
	fs := make([]*rbatch.Future[int64], n)
	for i := range fs {
		fs[i] = b.AtomicLong("sp:n").IncrementAndGetAsync()
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Equal(t, rbatch.Counts{Applied: n}, res.Counts)
	for i, f := range fs {
		v, err := f.Get()
		require.NoError(t, err)
		if v != int64(i+1) {
			t.Fatalf("INCR %d answered %d: out of order", i, v)
		}
	}
	st := c.Stats()[0]
	assert.LessOrEqual(t, st.Total, 2, "the stream's connection and the client's first: %+v", st)
	assert.Zero(t, st.InUse, "the stream gave its connection back")
	assert.Zero(t, st.DiscardedDead+st.DiscardedDirty, "and clean: %+v", st)
	assert.Equal(t, "100000", string(srv.MustDo(t, "GET", "sp:n").([]byte)))
}
