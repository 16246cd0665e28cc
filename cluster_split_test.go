package rbatch_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// A multi-key command split per slot under WithSkipResult is skipped, as
// a command sent whole is: its parts' replies are read on a cluster, not
// asked for by the caller.
func TestSkipResultSplitCommandIsSkipped(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.Streaming} {
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSkipResult())
		del := b.Keys().DeleteAsync("sk:a", "sk:b") // two slots: split
		set := b.Buckets().SetAsync(map[string]any{"sk:c": "x", "sk:d": "y"})
		one := b.Bucket("sk:e").SetAsync("x")
		res, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		_, derr := del.Get()
		assert.Equal(t, rbatch.ErrResultSkipped, derr, mode)
		assert.ErrorIs(t, errOf(set), rbatch.ErrResultSkipped, mode)
		assert.ErrorIs(t, errOf(one), rbatch.ErrResultSkipped, mode)
		assert.Equal(t, rbatch.Counts{Skipped: 3}, res.Counts, mode)
		v, err := redis.String(cl.OwnerOf(t, route.Slot("sk:d")).Call("GET", "sk:d"))
		require.NoError(t, err)
		assert.Equal(t, "y", v, mode)
	}
}

// A transaction naming, through a script's keys (or MSETNX's), a second
// slot is refused before anything is sent, as one naming it through any
// other command is.
func TestAtomicScriptKeysCrossSlotRefused(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		for name, queue := range map[string]func(b *rbatch.Batch){
			"EvalAsync": func(b *rbatch.Batch) {
				b.Script().EvalAsync("return redis.call('SET', KEYS[2], ARGV[1])", []string{"{sa}k", "{sb}k"}, "v")
			},
			"Do(EVAL)":   func(b *rbatch.Batch) { b.Do("EVAL", "return 1", 2, "{sa}k", "{sb}k") },
			"Do(MSETNX)": func(b *rbatch.Batch) { b.Do("MSETNX", "{sa}k", "1", "{sb}k", "2") },
		} {
			cl.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			set := b.Bucket("{sa}x").SetAsync("v")
			queue(b)
			_, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrCrossSlot, "%v %s", mode, name)
			if mode == rbatch.InMemoryAtomic {
				assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent, "%v %s", mode, name)
				st := cl.CommandStats(t)
				assert.Zero(t, st["multi"]+st["exec"]+st["script|load"], "%v %s: nothing sent", mode, name)
			} else {
				assert.Zero(t, cl.CommandStats(t)["exec"], "%v %s: never run", mode, name)
			}
		}
	}
	// Within one slot a script's keys run as before.
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	f := b.Script().EvalAsync("return redis.call('SET', KEYS[2], ARGV[1])", []string{"{sa}k", "{sa}j"}, "v")
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := f.Get()
	assert.Equal(t, "OK", v)
}

// A write split per slot that one slot refused (OOM) and another applied is
// unknown as a whole, and its error still shows the refusal's prefix.
func TestSplitWritePartlyRefusedShowsTheRefusal(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	full := cl.OwnerOf(t, route.Slot("pr:a"))
	other := "pr:b"
	for k := 0; cl.OwnerOf(t, route.Slot(other)).Addr == full.Addr; k++ {
		other = fmt.Sprint("pr:b", k)
	}
	full.MustDo(t, "CONFIG", "SET", "maxmemory", "1")
	t.Cleanup(func() { full.MustDo(t, "CONFIG", "SET", "maxmemory", "0") })
	b := c.NewBatch()
	f := b.Buckets().SetAsync(map[string]any{"pr:a": "1", other: "2"})
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	assert.ErrorIs(t, errOf(f), rbatch.ErrUnknownOutcome, "applied for one slot, refused for the other")
	var re *rbatch.RedisError
	require.ErrorAs(t, errOf(f), &re)
	assert.Equal(t, "OOM", re.Prefix())
}

// A write split per slot whose later part ends unknown (written, its reply
// cut by the response timeout) is unknown, whatever its first failed part
// says: that part's keys were left alone, but the unknown part's may have
// been written (here they were). Two first parts: one not sent (its slot
// served by no node), one refused with TRYAGAIN (its slot half migrated).
func TestSplitWriteWithAnUnknownPartIsUnknown(t *testing.T) {
	cl := redistest.NewCluster(t, "--cluster-require-full-coverage", "no")
	for _, p := range cl.Primaries { // the slot of {b} served by no node
		p.MustDo(t, "CLUSTER", "DELSLOTS", route.Slot("b"))
	}
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.DisableSharing = true })
	// asleep runs a DEL of first and then of slow's key in one batch while
	// slow's owner sleeps past the batch's response timeout.
	asleep := func(t *testing.T, slowOwner *redistest.Server, slow string, first ...string) (error, rbatch.Counts) {
		t.Helper()
		slowOwner.MustDo(t, "SET", slow, "v")
		warm := c.NewBatch() // the dial is not the response timeout's
		warm.Bucket(slow).GetAsync()
		for _, k := range first {
			warm.Bucket(k).GetAsync()
		}
		_, _ = warm.Execute(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _, _ = slowOwner.Call("DEBUG", "SLEEP", "1") }()
		time.Sleep(100 * time.Millisecond)
		b := c.NewBatch(rbatch.WithResponseTimeout(200 * time.Millisecond))
		del := b.Keys().DeleteAsync(append(first, slow)...)
		res, _ := b.Execute(context.Background())
		<-done
		waitUntil(t, "the DEL of "+slow+" applied once its owner woke", func() bool {
			n, err := redis.Int(slowOwner.Call("EXISTS", slow))
			return err == nil && n == 0
		})
		return errOf(del), res.Counts
	}

	t.Run("first part not sent", func(t *testing.T) {
		err, counts := asleep(t, cl.OwnerOf(t, route.Slot("a")), "{a}1", "{b}1")
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
		assert.NotErrorIs(t, err, rbatch.ErrNotSent)
		assert.Equal(t, rbatch.Counts{Unknown: 1}, counts)
	})

	t.Run("unserved part named as its command", func(t *testing.T) {
		b := c.NewBatch()
		del := b.Keys().DeleteAsync("{b}2", "{a}2")
		res, _ := b.Execute(context.Background())
		err := errOf(del)
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome, "applied for {a}2, not for {b}2")
		assert.Contains(t, err.Error(), "command 0 (DEL)", "the part unsent is named as its command")
		assert.Equal(t, rbatch.Counts{Unknown: 1}, res.Counts)
	})

	t.Run("first part refused", func(t *testing.T) {
		from, to := midMigration(t, cl, "{tq}", "a", "b")
		var third *redistest.Server
		for _, p := range cl.Primaries {
			if p != from && p != to {
				third = p
			}
		}
		slow := ""
		for i := 0; slow == ""; i++ {
			if tag := fmt.Sprintf("x%d", i); cl.OwnerOf(t, route.Slot(tag)) == third {
				slow = "{" + tag + "}1"
			}
		}
		err, counts := asleep(t, third, slow, "{tq}a", "{tq}b")
		assert.ErrorIs(t, err, rbatch.ErrUnknownOutcome)
		assert.Equal(t, rbatch.Counts{Unknown: 1}, counts)
	})
}

// A cluster batch ends by its response timeout when a primary stops: the
// slot map reload that follows asks the nodes that did not fail first, and
// waits no longer than the batch's own bound when none answers.
func TestClusterStoppedPrimaryKeepsTheResponseTimeout(t *testing.T) {
	cl := redistest.NewCluster(t)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.PoolSize = 4 })
	const rt = 300 * time.Millisecond
	run := func() (time.Duration, *rbatch.BatchResult) {
		b := c.NewBatch(rbatch.WithResponseTimeout(rt))
		for i := range 30 { // every primary
			b.AtomicLong(fmt.Sprintf("rf:%d", i)).IncrementAndGetAsync()
		}
		start := time.Now()
		done := make(chan *rbatch.BatchResult, 1)
		go func() { res, _ := b.Execute(context.Background()); done <- res }()
		select {
		case res := <-done:
			return time.Since(start), res
		case <-time.After(1500 * time.Millisecond): // under the cluster's node timeout
			for _, p := range cl.Primaries {
				_ = syscall.Kill(p.PID(), syscall.SIGCONT)
			}
			return time.Since(start), <-done
		}
	}
	_, res := run() // connections up on every node
	require.Equal(t, rbatch.Counts{Applied: 30}, res.Counts)
	for range 3 { // the nodes asked come from a map: any order
		resume := stopServer(t, cl.Primaries[0])
		took, res := run()
		resume()
		assert.Less(t, took, rt+250*time.Millisecond, "one primary stopped")
		// Its commands are unknown, or not sent when its connection was
		// dialed anew (the last one timed out) and never set up.
		n := res.Counts
		assert.Positive(t, n.Applied, "%+v", n)
		assert.Positive(t, n.Unknown+n.NotSent, "%+v", n)
		assert.Equal(t, 30, n.Applied+n.Unknown+n.NotSent, "%+v", n)
		time.Sleep(100 * time.Millisecond)
	}
	resume := stopServer(t, cl.Primaries...)
	took, res := run()
	resume()
	assert.Less(t, took, 2*rt+400*time.Millisecond, "every primary stopped")
	assert.Equal(t, 30, res.Counts.Unknown+res.Counts.NotSent, "%+v", res.Counts)
}
