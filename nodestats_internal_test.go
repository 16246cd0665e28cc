package rbatch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A node's groups of one round (one transaction per slot) count as one
// attempt as long as the longest, with the fewest acknowledgements of
// those that wrote; a later round that wrote there replaces its sync (its
// WAIT came after the earlier writes), one that wrote nothing does not.
func TestNodeStatsRounds(t *testing.T) {
	var s nodeStats
	s.add(NodeResult{Addr: "a", Commands: 2, Duration: 30 * time.Millisecond, SyncedReplicas: 2, SyncedLocal: true}, 1, true)
	s.add(NodeResult{Addr: "a", Commands: 1, Duration: 50 * time.Millisecond, SyncedReplicas: 1, SyncedLocal: false}, 1, true)
	s.add(NodeResult{Addr: "a", Commands: 1, Duration: 10 * time.Millisecond, SyncedReplicas: 3, SyncedLocal: true}, 1, true)
	s.add(NodeResult{Addr: "b", Commands: 4, Duration: 20 * time.Millisecond, SyncedReplicas: 0}, 1, false)
	a := s.list[0]
	assert.Equal(t, NodeResult{Addr: "a", Commands: 4, Attempts: 1, Duration: 50 * time.Millisecond, SyncedReplicas: 1}, a)

	s.add(NodeResult{Addr: "a", Commands: 1, Duration: 5 * time.Millisecond, SyncedReplicas: 0}, 2, false)
	a = s.list[0]
	assert.Equal(t, 2, a.Attempts)
	assert.Equal(t, 55*time.Millisecond, a.Duration)
	assert.Equal(t, 1, a.SyncedReplicas, "a round that applied nothing says nothing of the sync")

	s.add(NodeResult{Addr: "a", Commands: 1, Duration: 5 * time.Millisecond, SyncedReplicas: 2, SyncedLocal: true}, 3, true)
	a = s.list[0]
	assert.Equal(t, 3, a.Attempts)
	assert.Equal(t, 60*time.Millisecond, a.Duration)
	assert.Equal(t, 2, a.SyncedReplicas, "a later round's WAIT covers the earlier writes")
	assert.True(t, a.SyncedLocal)
	assert.Equal(t, 6, a.Commands)

	s.add(NodeResult{Addr: "b", Commands: 1, Duration: time.Millisecond, SyncedReplicas: 1}, 2, true)
	assert.Equal(t, NodeResult{Addr: "b", Commands: 5, Attempts: 2, Duration: 21 * time.Millisecond, SyncedReplicas: 1}, s.list[1])
}
