package route

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var _ Router[*testNode] = (*Standalone[*testNode])(nil)

// A standalone router reads from the replica its last look found, looks
// again in the background once that look is older than Recheck, and keeps
// what it knew when a look fails.
func TestStandaloneLearnsReplicas(t *testing.T) {
	var mu sync.Mutex
	replicas, fetchErr, fetches := []string{}, error(nil), 0
	fetch := func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		return replicas, fetchErr
	}
	made := map[string]*testNode{}
	primary := &testNode{"p:1"}
	s := NewStandalone(primary, nil, fetch, func(addr string) *testNode {
		n := &testNode{addr}
		made[addr] = n
		return n
	})
	assert.Nil(t, s.Replica(primary), "none at first")
	assert.Nil(t, s.Replica(&testNode{"other:1"}), "only the primary has replicas")

	set := func(rs []string, err error) {
		mu.Lock()
		replicas, fetchErr = rs, err
		mu.Unlock()
	}
	set([]string{"r:1"}, nil)
	require.NoError(t, s.Refresh(context.Background(), s.Generation()))
	assert.Equal(t, "r:1", s.Replica(primary).Addr())
	gen := s.Generation()
	require.NoError(t, s.Refresh(context.Background(), gen-1), "an old generation: someone looked since")
	assert.Equal(t, gen, s.Generation())

	set(nil, errors.New("down"))
	s.mu.Lock()
	s.loadedAt = time.Now().Add(-2 * Recheck)
	s.mu.Unlock()
	assert.Equal(t, "r:1", s.Replica(primary).Addr(), "a stale look still answers")
	require.Eventually(t, func() bool { return !s.refreshing.Load() }, time.Second, time.Millisecond)
	assert.Equal(t, "r:1", s.Replica(primary).Addr(), "a failed look keeps what was known")

	set([]string{}, nil) // the replica left
	require.Eventually(t, func() bool { return s.Replica(primary) == nil }, time.Second, time.Millisecond)
	assert.Len(t, s.Nodes(), 2, "the primary and every replica node made, for Stats and Close")
	mu.Lock()
	assert.GreaterOrEqual(t, fetches, 3)
	mu.Unlock()
}
