package rbatch_test

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// A stream's NodeResult counts rounds, not the parts it went in: a bulk
// load of many parts, and one filled slowly (a part per command), both
// report one attempt when nothing was redirected or retried.
func TestStreamNodeAttemptsAreRounds(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.StreamBuffer = 64 << 10 })
	t.Run("bulk", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		const n = 50000
		for i := range n {
			b.Set("na:bulk").AddAsync(i)
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Nodes, 1)
		assert.Equal(t, n, res.Nodes[0].Commands)
		assert.Equal(t, 1, res.Nodes[0].Attempts)
	})
	t.Run("paced", func(t *testing.T) {
		b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
		start := time.Now()
		for i := range 20 {
			b.Set("na:paced").AddAsync(i)
			time.Sleep(2 * time.Millisecond)
		}
		res, err := b.Execute(context.Background())
		took := time.Since(start)
		require.NoError(t, err)
		require.Len(t, res.Nodes, 1)
		assert.Equal(t, 1, res.Nodes[0].Attempts)
		// The node's time runs from its first part to its last reply, not
		// the parts' times added up.
		assert.LessOrEqual(t, res.Nodes[0].Duration, took)
		assert.GreaterOrEqual(t, res.Nodes[0].Duration, 30*time.Millisecond, "from the first part to the last")
	})
}

// A stream's WithSync waits after its last command; the node's Duration
// runs to that WAIT's reply, as an InMemory batch's does.
func TestStreamNodeDurationCoversWait(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	c := clientFor(t, primary)
	require.NoError(t, syscall.Kill(replica.PID(), syscall.SIGSTOP))
	defer syscall.Kill(replica.PID(), syscall.SIGCONT)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		t.Run(mode.String(), func(t *testing.T) {
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSync(1, 300*time.Millisecond))
			for i := range 3 {
				b.AtomicLong("nd:" + strconv.Itoa(i)).IncrementAndGetAsync()
			}
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			require.Len(t, res.Nodes, 1)
			assert.Zero(t, res.Nodes[0].SyncedReplicas, "the replica is stopped")
			assert.GreaterOrEqual(t, res.Nodes[0].Duration, 250*time.Millisecond, "Duration covers the WAIT")
		})
	}
}

// groupCounter is a Hook counting the node groups of a client's batches by
// the node that ran them: a stream's parts among them.
type groupCounter struct {
	rbatch.NopHook
	mu     sync.Mutex
	byAddr map[string]int
}

// countGroups installs a groupCounter on c: batches made after it are
// counted.
func countGroups(c *rbatch.Client) *groupCounter {
	g := &groupCounter{byAddr: map[string]int{}}
	c.AddHook(g)
	return g
}

func (g *groupCounter) GroupEnd(_ context.Context, gi rbatch.GroupInfo, r rbatch.GroupResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	addr := r.Addr // the connection's
	if addr == "" {
		addr = gi.Addr
	}
	g.byAddr[addr]++
}

// on returns how many groups went to addr ("": to any node).
func (g *groupCounter) on(addr string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if addr != "" {
		return g.byAddr[addr]
	}
	n := 0
	for _, k := range g.byAddr {
		n += k
	}
	return n
}
