package batch_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch/batch"
)

// deadlineConn is a connection whose read deadline calls are recorded and
// whose first reply comes only once released; the others come at once.
type deadlineConn struct {
	release chan struct{}

	mu      sync.Mutex
	events  []string
	replies int
	writes  strings.Builder
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes.Write(p)
}
func (c *deadlineConn) Flush() error { return nil }
func (c *deadlineConn) Abort()       {}
func (c *deadlineConn) Release(bool) {}

func (c *deadlineConn) Receive(time.Duration) (any, error) {
	c.mu.Lock()
	c.replies++
	first := c.replies == 1
	c.mu.Unlock()
	if first {
		<-c.release
	}
	return "OK", nil
}

func (c *deadlineConn) HoldReadDeadline() { c.note("hold") }
func (c *deadlineConn) ArmReadDeadline(d time.Duration) {
	c.note(fmt.Sprintf("arm %v", d))
}

func (c *deadlineConn) note(e string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

func (c *deadlineConn) seen(f func(events []string, writes string) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(slices.Clone(c.events), c.writes.String())
}

// On a pipe, a group written while the one before it waits for its reply
// (a block) leaves the read deadline alone: armed by its writer then, its
// shorter bound would cut the other group's wait. It is armed for it at
// its own turn to read.
func TestPipeLaterWriterLeavesTheReadDeadline(t *testing.T) {
	conn := &deadlineConn{release: make(chan struct{})}
	p := batch.NewPipe(conn)
	ctx := context.Background()
	blocking, _ := group(batch.Plan{ResponseTimeout: 5 * time.Second}, cmd{"BLPOP", []any{"k", "1"}})
	plain, _ := group(batch.Plan{ResponseTimeout: 100 * time.Millisecond}, cmd{"GET", []any{"a"}})

	var wg sync.WaitGroup
	var first, second batch.Result
	wg.Add(2)
	go func() { defer wg.Done(); first = p.Run(ctx, &blocking) }()
	require.Eventually(t, func() bool {
		return conn.seen(func(ev []string, _ string) bool { return slices.Contains(ev, "hold") })
	}, 5*time.Second, time.Millisecond, "the blocking group reads")
	go func() { defer wg.Done(); second = p.Run(ctx, &plain) }()
	require.Eventually(t, func() bool {
		return conn.seen(func(_ []string, w string) bool { return strings.Contains(w, "GET") })
	}, 5*time.Second, time.Millisecond, "the later group is written")
	time.Sleep(20 * time.Millisecond) // its writer's last step
	conn.seen(func(ev []string, _ string) bool {
		assert.NotContains(t, ev, "arm 100ms", "the later group's writer armed its bound while the block was read: %v", ev)
		return true
	})
	close(conn.release)
	wg.Wait()
	require.NoError(t, first.Err)
	require.NoError(t, second.Err)
	assert.Equal(t, 1, first.Answered)
	assert.Equal(t, 1, second.Answered)
	conn.seen(func(ev []string, _ string) bool {
		assert.Contains(t, ev, "arm 100ms", "armed at the later group's own turn: %v", ev)
		return true
	})
}
