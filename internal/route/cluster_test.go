package route

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testNode is a node that is only an address.
type testNode struct{ addr string }

func (n *testNode) Addr() string { return n.addr }
func (n *testNode) Close() error { return nil }

var (
	_ Router[*testNode] = (*Cluster[*testNode])(nil)
	_ Router[*testNode] = Single[*testNode]{}
)

// fakeShards is a Fetcher serving a slot map set by the test, counting
// the fetches.
type fakeShards struct {
	mu      sync.Mutex
	shards  []ShardInfo
	down    map[string]bool // addresses that do not answer
	fetches int
}

func (f *fakeShards) fetch(_ context.Context, addr string) ([]ShardInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	if f.down[addr] {
		return nil, errors.New(addr + ": connection refused")
	}
	return append([]ShardInfo(nil), f.shards...), nil
}

func (f *fakeShards) set(shards ...ShardInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards = shards
}

func newTestCluster(t *testing.T, f *fakeShards) *Cluster[*testNode] {
	t.Helper()
	c, err := NewCluster(context.Background(), []string{"seed:1"}, f.fetch, func(addr string) *testNode { return &testNode{addr: addr} })
	require.NoError(t, err)
	return c
}

var threeShards = []ShardInfo{
	{Slots: [][2]int{{0, 5460}}, Primary: "a:1", Replicas: []string{"a:2"}},
	{Slots: [][2]int{{5461, 10922}}, Primary: "b:1"},
	{Slots: [][2]int{{10923, 16383}}, Primary: "c:1"},
}

func TestClusterRoutesBySlot(t *testing.T) {
	f := &fakeShards{}
	f.set(threeShards...)
	c := newTestCluster(t, f)
	for slot, want := range map[int]string{0: "a:1", 5460: "a:1", 5461: "b:1", 16383: "c:1"} {
		n, err := c.RouteSlot(slot)
		require.NoError(t, err)
		assert.Equal(t, want, n.Addr(), "slot %d", slot)
	}
	n, err := c.Route("")
	require.NoError(t, err)
	assert.Contains(t, []string{"a:1", "b:1", "c:1"}, n.Addr(), "a command without a key goes to any primary")
	n, err = c.Route("foo")
	require.NoError(t, err)
	assert.Equal(t, c.owner[Slot("foo")], n)
	a, _ := c.RouteSlot(0)
	assert.Equal(t, "a:2", c.Replica(a).Addr())
	b, _ := c.RouteSlot(6000)
	assert.Nil(t, c.Replica(b), "no replica")
	assert.Same(t, a, c.Node("a:1"), "one node per address")
	assert.Equal(t, "d:1", c.Node("d:1").Addr(), "a redirect's unknown target is made")
	assert.Len(t, c.Nodes(), 5)
}

// A shard without a primary (failed, replica not promoted yet) leaves its
// slots unserved; a refresh after the promotion serves them again.
func TestClusterUnservedSlotUntilRefresh(t *testing.T) {
	f := &fakeShards{}
	f.set(threeShards...)
	c := newTestCluster(t, f)
	gen := c.Generation()
	f.set(ShardInfo{Slots: [][2]int{{0, 5460}}}, threeShards[1], threeShards[2])
	require.NoError(t, c.Refresh(context.Background(), gen))
	_, err := c.RouteSlot(100)
	assert.ErrorIs(t, err, ErrSlotNotServed)
	assert.Contains(t, err.Error(), "slot 100")
	n, err := c.RouteSlot(6000)
	require.NoError(t, err, "the other slots are still served")
	assert.Equal(t, "b:1", n.Addr())

	gen = c.Generation()
	f.set(ShardInfo{Slots: [][2]int{{0, 5460}}, Primary: "a:2"}, threeShards[1], threeShards[2])
	require.NoError(t, c.Refresh(context.Background(), gen))
	n, err = c.RouteSlot(100)
	require.NoError(t, err)
	assert.Equal(t, "a:2", n.Addr(), "the promoted replica serves the slot")
}

// Refresh(gen) is a no-op once the map changed since gen: concurrent
// batches asking for the same refresh share one fetch. A node that does not
// answer is skipped for the next candidate.
func TestClusterRefreshOncePerGeneration(t *testing.T) {
	f := &fakeShards{}
	f.set(threeShards...)
	c := newTestCluster(t, f)
	gen := c.Generation()
	f.mu.Lock()
	f.fetches, f.down = 0, map[string]bool{"a:1": true, "b:1": true}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Refresh(context.Background(), gen))
		}()
	}
	wg.Wait()
	assert.Equal(t, gen+1, c.Generation())
	assert.LessOrEqual(t, f.fetches, 3, "one refresh, trying the candidates in turn")

	f.mu.Lock()
	f.down = map[string]bool{"a:1": true, "b:1": true, "c:1": true, "seed:1": true}
	f.mu.Unlock()
	err := c.Refresh(context.Background(), c.Generation())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	n, err := c.RouteSlot(0)
	require.NoError(t, err, "a failed refresh keeps the old map")
	assert.Equal(t, "a:1", n.Addr())
}

func TestSingleRoutesEverythingToItsNode(t *testing.T) {
	p, r := &testNode{addr: "p"}, &testNode{addr: "r"}
	s := Single[*testNode]{Primary: p}
	n, _ := s.RouteSlot(42)
	assert.Same(t, p, n)
	assert.Nil(t, s.Replica(p))
	assert.Len(t, s.Nodes(), 1)
	s.ReplicaNode = r
	assert.Same(t, r, s.Replica(p))
	assert.Nil(t, s.Replica(r))
	assert.Len(t, s.Nodes(), 2)
}

// The nodes a refresh is told just failed are asked last: any other node
// answers first, whatever the order of the known primaries.
func TestClusterRefreshAsksTheFailedLast(t *testing.T) {
	f := &fakeShards{}
	f.set(threeShards...)
	c := newTestCluster(t, f)
	for range 20 { // the primaries come from a map: any order
		f.mu.Lock()
		f.fetches, f.down = 0, map[string]bool{"a:1": true, "b:1": true}
		f.mu.Unlock()
		require.NoError(t, c.Refresh(context.Background(), c.Generation(), "a:1", "b:1"))
		assert.Equal(t, 1, f.fetches, "c:1 (or the seed) answered at once")
	}
}
