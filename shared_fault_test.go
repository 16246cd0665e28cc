package rbatch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// One batch whose context ends while its reply is awaited gives up alone:
// the batches behind it on the same shared connection get their replies,
// and the connection stays up.
func TestSharedCancelLeavesOthers(t *testing.T) {
	fresh(t)
	c := newClient(t, func(cfg *rbatch.Config) { cfg.SharedConns = 1 })
	const busy = `local t0 = redis.call('TIME'); local s = tonumber(t0[1]) * 1e6 + tonumber(t0[2])
while true do local t = redis.call('TIME'); if tonumber(t[1]) * 1e6 + tonumber(t[2]) - s > 300000 then break end end
return redis.call('INCR', KEYS[1])`
	slow := c.NewBatch()
	fs := slow.Script().EvalIntAsync(busy, []string{"shc:slow"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := slow.Execute(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // the script runs on the server
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := c.NewBatch()
			n := b.AtomicLong(fmt.Sprintf("shc:n%d", g)).IncrementAndGetAsync()
			_, err := b.Execute(context.Background())
			assert.NoError(t, err)
			v, _ := n.Get()
			assert.EqualValues(t, 1, v)
		}()
	}
	err := <-done
	took := time.Since(start)
	require.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
	assert.ErrorIs(t, errOf(fs), context.DeadlineExceeded)
	assert.Less(t, took, 250*time.Millisecond, "the cancelled batch returned before its reply came")
	wg.Wait()
	assert.Equal(t, "1", string(srv.MustDo(t, "GET", "shc:slow").([]byte)), "the script ran once")
	st := c.Stats()[0]
	assert.Equal(t, 1, st.Shared)
	assert.Zero(t, st.DiscardedDead+st.DiscardedDirty, "the shared connection stayed up")
}

// TestSharedFaultSoak runs goroutines of small batches on two shared
// connections through a fault-injecting proxy while faults hit them: cuts
// and resets at random bytes in either direction, stalls under a short
// response timeout, CLIENT KILL, and cancelled contexts. Every future ends
// in exactly one state, and each goroutine's counter moved by at least
// what was reported applied and at most that plus what was unknown.
func TestSharedFaultSoak(t *testing.T) {
	primary, err := redistest.StartStandalone()
	require.NoError(t, err)
	defer primary.Close()
	primary.MustDo(t, "ACL", "SETUSER", soakUser, "on", ">"+soakPass, "~*", "&*", "+@all")
	p := redistest.NewProxy(t, primary.Addr)
	cfg := soakConfig(p.Addr)
	cfg.PoolSize, cfg.SharedConns = 8, 2
	cfg.ReadTimeout = soakShortTimeout // a shared connection's one timeout: it closes under the stalls
	c, err := rbatch.NewClient(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()

	const goroutines = 24
	deadline := time.Now().Add(8 * time.Second)
	var batches, faults atomic.Int64
	var states [soakStates]atomic.Int64
	var wg sync.WaitGroup
	stopFaults := make(chan struct{})
	go func() { // the faults
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		kinds := []string{"cut-to-server", "cut-to-client", "reset-to-server", "reset-to-client", "stall", "kill", "cut-all"}
		for {
			select {
			case <-stopFaults:
				return
			case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
			}
			kind := kinds[rng.IntN(len(kinds))]
			faults.Add(1)
			switch kind {
			case "cut-to-server":
				p.SetFault(redistest.Fault{Kind: redistest.Cut, Dir: redistest.ToServer, AfterBytes: rng.Int64N(400), Once: true})
			case "cut-to-client":
				p.SetFault(redistest.Fault{Kind: redistest.Cut, Dir: redistest.ToClient, AfterBytes: rng.Int64N(200), Once: true})
			case "reset-to-server":
				p.SetFault(redistest.Fault{Kind: redistest.Reset, Dir: redistest.ToServer, AfterBytes: rng.Int64N(400), Once: true})
			case "reset-to-client":
				p.SetFault(redistest.Fault{Kind: redistest.Reset, Dir: redistest.ToClient, AfterBytes: rng.Int64N(200), Once: true})
			case "stall":
				p.SetFault(redistest.Fault{Kind: redistest.Stall, Dir: redistest.ToClient, AfterBytes: rng.Int64N(200), Once: true})
				time.Sleep(150 * time.Millisecond) // past the short response timeout
			case "kill":
				primary.Call("CLIENT", "KILL", "USER", soakUser)
			case "cut-all":
				p.CutAll()
			}
			time.Sleep(30 * time.Millisecond)
			p.Clear()
		}
	}()
	applied := make([][2]int64, goroutines) // per goroutine: applied, applied+unknown
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			key := fmt.Sprintf("shs:c%d", g)
			for time.Now().Before(deadline) {
				var opts []rbatch.Option
				atomicMode := rng.IntN(2) == 0
				if atomicMode {
					opts = append(opts, rbatch.WithMode(rbatch.InMemoryAtomic))
				}
				if rng.IntN(4) == 0 {
					opts = append(opts, rbatch.WithSkipResult())
				}
				b := c.NewBatch(opts...)
				deltas := []int64{1, 2, 3}
				fs := make([]*rbatch.Future[int64], len(deltas))
				for i, d := range deltas {
					fs[i] = b.AtomicLong(key).AddAndGetAsync(d)
				}
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(8) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				}
				b.Execute(ctx)
				cancel()
				batches.Add(1)
				for i, f := range fs {
					_, err := f.Get()
					st, ok := soakClassify(err)
					if !ok {
						t.Errorf("goroutine %d: a future in no single state: %v", g, err)
						return
					}
					states[st].Add(1)
					switch st {
					case soakApplied:
						applied[g][0] += deltas[i]
						applied[g][1] += deltas[i]
					case soakUnknown, soakSkipped:
						applied[g][1] += deltas[i]
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stopFaults)
	p.Clear()
	for g := range goroutines {
		got, err := redis.Int64(primary.Call("GET", fmt.Sprintf("shs:c%d", g)))
		if err == redis.ErrNil {
			got, err = 0, nil
		}
		require.NoError(t, err)
		if got < applied[g][0] || got > applied[g][1] {
			t.Errorf("goroutine %d: counter %d outside [applied %d, applied+unknown %d]", g, got, applied[g][0], applied[g][1])
		}
	}
	// After the faults the shared connections work and hold nothing stale.
	for g := range goroutines {
		b := c.NewBatch()
		n := b.AtomicLong(fmt.Sprintf("shs:after%d", g)).IncrementAndGetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, _ := n.Get()
		require.EqualValues(t, 1, v)
	}
	require.NoError(t, rbatch.CheckPoolsClean(c))
	var sum string
	for st := range soakStates {
		sum += fmt.Sprintf(" %s=%d", soakStateNames[st], states[st].Load())
	}
	t.Logf("%d batches, %d faults, futures:%s; %+v", batches.Load(), faults.Load(), sum, c.Stats()[0])
	assert.Positive(t, states[soakUnknown].Load()+states[soakNotSent].Load(), "the faults hit batches")
	assert.Positive(t, states[soakApplied].Load())
}

// A shared connection the server closed while it sat idle is not written
// to, even when its reader has not yet seen the close: the next small
// batch goes on a new connection and applies once, instead of ending
// unknown on the dead one.
func TestSharedClosedWhileIdle(t *testing.T) {
	s := redistest.Standalone(t)
	c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.SharedConns = 1 })
	admin, err := s.Dial()
	require.NoError(t, err)
	defer admin.Close()
	for i := range 40 {
		b := c.NewBatch()
		n := b.AtomicLong("idle:n").IncrementAndGetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err, "batch %d, right after its connection was killed", i)
		v, _ := n.Get()
		require.EqualValues(t, i+1, v, "applied once")
		time.Sleep(3 * time.Millisecond) // idle past the line's recheck
		_, err = admin.Do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
		require.NoError(t, err)
	}
	st := c.Stats()[0]
	assert.Positive(t, st.DiscardedDead, "the killed connections were counted dead")
}

// A batch with a response timeout of its own keeps a connection of its
// own: under a paused server it ends unknown at its timeout whichever
// batch went before or after it, and the batches on the shared connection
// beside it wait for their replies, which come once the pause ends.
func TestSharedResponseTimeoutIsTheBatchOwn(t *testing.T) {
	for _, timedFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("timed-first=%v", timedFirst), func(t *testing.T) {
			fresh(t)
			c := newClient(t, func(cfg *rbatch.Config) { cfg.SharedConns = 1 })
			warm := c.NewBatch()
			warm.Bucket("srt:warm").GetAsync()
			_, err := warm.Execute(context.Background())
			require.NoError(t, err)
			srv.MustDo(t, "CLIENT", "PAUSE", 400, "WRITE")
			run := func(key string, opts ...rbatch.Option) (time.Duration, *rbatch.Future[int64], error) {
				start := time.Now()
				b := c.NewBatch(opts...)
				f := b.AtomicLong(key).IncrementAndGetAsync()
				_, err := b.Execute(context.Background())
				return time.Since(start), f, err
			}
			var wg sync.WaitGroup
			var timedTook, plainTook time.Duration
			var timedErr, plainErr error
			var plain *rbatch.Future[int64]
			timed := func() {
				defer wg.Done()
				timedTook, _, timedErr = run("srt:timed", rbatch.WithResponseTimeout(100*time.Millisecond))
			}
			untimed := func() {
				defer wg.Done()
				plainTook, plain, plainErr = run("srt:plain")
			}
			wg.Add(2)
			if timedFirst {
				go timed()
				time.Sleep(20 * time.Millisecond)
				go untimed()
			} else {
				go untimed()
				time.Sleep(20 * time.Millisecond)
				go timed()
			}
			wg.Wait()
			assert.ErrorIs(t, timedErr, rbatch.ErrUnknownOutcome)
			assert.Less(t, timedTook, 300*time.Millisecond, "the timed batch waited past its timeout")
			require.NoError(t, plainErr, "the untimed batch beside it")
			assert.Greater(t, plainTook, 300*time.Millisecond, "answered only once the pause ended")
			n, err := plain.Get()
			require.NoError(t, err)
			assert.EqualValues(t, 1, n)
		})
	}
}

// A batch on a shared connection whose context ends while its WAIT blocks
// keeps the answers its commands already had: the INCR answered before
// the WAIT is applied with its value, only the sync is unknown, as on a
// connection of its own; the line goes on for the next batch.
func TestSharedCancelDuringWaitKeepsAnswers(t *testing.T) {
	s := redistest.Standalone(t) // no replica: WAIT 1 blocks for its timeout
	for _, lines := range []int{1, 2} {
		c := clientFor(t, s, func(cfg *rbatch.Config) { cfg.SharedConns = lines })
		b := c.NewBatch(rbatch.WithSync(1, 1500*time.Millisecond))
		n := b.AtomicLong("cw:n" + strconv.Itoa(lines)).IncrementAndGetAsync()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		res, err := b.Execute(ctx)
		cancel()
		require.Error(t, err, "the sync was not answered")
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		v, err := n.Get()
		require.NoError(t, err, "%d lines: the INCR was answered before the WAIT", lines)
		assert.Equal(t, int64(1), v)
		assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts)

		next := c.NewBatch()
		m := next.AtomicLong("cw:m" + strconv.Itoa(lines)).IncrementAndGetAsync()
		_, err = next.Execute(context.Background())
		require.NoError(t, err)
		v, err = m.Get()
		require.NoError(t, err)
		assert.Equal(t, int64(1), v)
	}
}
