package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// warmUp runs a batch on c, so that its connection is up before a test
// stops the server.
func warmUp(t *testing.T, c *rbatch.Client, key string) {
	t.Helper()
	b := c.NewBatch()
	b.Bucket(key).SetAsync("1")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
}

// stopServer stops servers (SIGSTOP) until the returned func resumes them;
// the test's end resumes them too.
func stopServer(t *testing.T, servers ...*redistest.Server) (resume func()) {
	t.Helper()
	for _, s := range servers {
		require.NoError(t, syscall.Kill(s.PID(), syscall.SIGSTOP))
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			for _, s := range servers {
				_ = syscall.Kill(s.PID(), syscall.SIGCONT)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// A batch on a shared connection whose server stopped reading returns when
// its context ends, even when it is the one to write and the socket is
// full: the rest of its write goes to the connection's writer, and the
// batch is unknown (or not sent, when none of it left the buffer).
func TestSharedWriterNeverWaitsPastItsContext(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize = 4 })
	warmUp(t, c, "sw:warm")
	resume := stopServer(t, s)
	val := strings.Repeat("v", 30<<10) // small enough to share
	var notSent []string
	var slowest time.Duration
	for i := 0; i < 300; i++ { // ~9 MB: more than the sockets hold
		key := fmt.Sprintf("sw:%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		b := c.NewBatch()
		f := b.Bucket(key).SetAsync(val)
		start := time.Now()
		done := make(chan struct{})
		go func() { defer close(done); _, _ = b.Execute(ctx) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second): // bound the test: let the server go
			resume()
			<-done
			t.Fatalf("batch %d with a 5ms context still running after 3s", i)
		}
		cancel()
		slowest = max(slowest, time.Since(start))
		err := errOf(f)
		require.ErrorIs(t, err, context.DeadlineExceeded, "batch %d", i)
		if errors.Is(err, rbatch.ErrNotSent) {
			notSent = append(notSent, key)
		} else {
			require.ErrorIs(t, err, rbatch.ErrUnknownOutcome, "batch %d", i)
		}
	}
	t.Logf("slowest of 300 batches: %v; %d not sent", slowest, len(notSent))
	assert.Less(t, slowest, time.Second)
	resume()
	assertNeverApplied(t, s, notSent)
}

// assertNeverApplied checks, once the server had time to run what it had
// read, that none of keys was written.
func assertNeverApplied(t *testing.T, s *redistest.Server, keys []string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	conn := s.Conn(t)
	for _, key := range keys {
		_, err := redis.String(conn.Do("GET", key))
		assert.ErrorIs(t, err, redis.ErrNil, "%s was reported not sent", key)
	}
}

// Hundreds of callers giving up at once while their groups wait in the
// buffer of a shared connection whose socket a stopped server left full
// each return at their own context's end, not sent: taking a group back
// costs no more with hundreds queued than with one.
func TestSharedManyWithdrawalsArePrompt(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.PoolSize, cfg.SharedConns = 8, 1 })
	warmUp(t, c, "wd:warm")
	resume := stopServer(t, s)
	val := strings.Repeat("v", 30<<10)
	run := func(n int, key string, wait time.Duration, took []time.Duration, errs []error) *sync.WaitGroup {
		var wg sync.WaitGroup
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				b := c.NewBatch()
				f := b.Bucket(fmt.Sprintf(key, g)).SetAsync(val)
				start := time.Now()
				_, _ = b.Execute(ctx)
				took[g], errs[g] = time.Since(start), errOf(f)
			}()
		}
		return &wg
	}
	// Fill the socket, so that the connection's writer waits for room.
	const fillers, callers = 200, 500
	fillErrs := make([]error, fillers)
	filled := run(fillers, "wd:fill:%d", 10*time.Second, make([]time.Duration, fillers), fillErrs)
	time.Sleep(300 * time.Millisecond)
	took, errs := make([]time.Duration, callers), make([]error, callers)
	run(callers, "wd:%d", 300*time.Millisecond, took, errs).Wait()
	resume()
	filled.Wait()
	var notSent []string
	for g := range callers {
		require.ErrorIs(t, errs[g], context.DeadlineExceeded, "caller %d", g)
		if errors.Is(errs[g], rbatch.ErrNotSent) {
			notSent = append(notSent, fmt.Sprintf("wd:%d", g))
		}
	}
	for g, err := range fillErrs {
		assert.NoError(t, err, "filler %d went through once the server woke", g)
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("%d of %d not sent; p50 %v, slowest %v", len(notSent), callers, sorted[callers/2], sorted[callers-1])
	assert.Len(t, notSent, callers, "the writer waited for room: none of them left the buffer")
	assert.Less(t, sorted[callers-1], 1500*time.Millisecond)
	assertNeverApplied(t, s, notSent)
}

// A shared connection older than the write timeout keeps carrying batches:
// the socket's write deadline moves on as it is written, though its writes
// never wait (the handshake's deadline, left as it was, failed a batch
// once per write timeout).
func TestSharedOutlivesItsWriteTimeout(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.WriteTimeout = 300 * time.Millisecond })
	deadline := time.Now().Add(time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		b := c.NewBatch()
		b.AtomicLong("wt:n").IncrementAndGetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err, "batch %d", i)
		time.Sleep(time.Duration(i%3) * 100 * time.Millisecond) // busy, and idle past the timeout
	}
}
