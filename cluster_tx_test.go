package rbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/route"
)

func TestClusterAtomicOnOneSlot(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		cl.ResetStats(t)
		b := c.NewBatch(rbatch.WithMode(mode))
		added := b.List("{order:42}:items").AddAsync("sku-1")
		stock := b.Map("{order:42}:stock").AddAndGetAsync("sku-1", -1)
		b.Do("PING")
		_, err := b.Execute(context.Background())
		require.NoError(t, err, mode)
		ok, _ := added.Get()
		assert.True(t, ok)
		n, _ := stock.Get()
		assert.Less(t, n, int64(0))
		ownerAddr := cl.OwnerOf(t, route.Slot("order:42")).Addr
		for _, p := range cl.Primaries {
			want := int64(0)
			if p.Addr == ownerAddr {
				want = 1
			}
			stats := p.CommandStats(t)
			assert.Equal(t, want, stats["multi"], "MULTI on %s (%v)", p.Addr, mode)
			assert.Equal(t, want, stats["exec"], "EXEC on %s (%v)", p.Addr, mode)
		}
	}
}

func TestClusterAtomicCrossSlotSendsNothing(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.RedisReadAtomic} {
		multi := cl.CommandStats(t)["multi"]
		b := c.NewBatch(rbatch.WithMode(mode))
		a := b.Bucket("{a}x").GetAsync()
		b.Bucket("{b}y").GetAsync()
		_, err := b.Execute(context.Background())
		require.Error(t, err)
		assert.ErrorIs(t, err, rbatch.ErrCrossSlot, mode)
		assert.ErrorContains(t, err, fmt.Sprintf(`"{a}x" (slot %d)`, route.Slot("a")))
		assert.ErrorContains(t, err, fmt.Sprintf(`"{b}y" (slot %d)`, route.Slot("b")))
		if cl.CommandStats(t)["multi"] > multi { // queued in the Redis-side MULTI, then discarded
			assert.ErrorIs(t, errOf(a), rbatch.ErrTxAborted, mode)
		} else { // InMemoryAtomic, or a Redis-side queue that had no connection yet
			assert.ErrorIs(t, errOf(a), rbatch.ErrNotSent, mode)
		}
	}
	// A multi-key command whose own keys span slots is refused as well.
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	del := b.Keys().DeleteAsync("{a}1", "{b}2")
	_, err := b.Execute(context.Background())
	assert.ErrorIs(t, err, rbatch.ErrCrossSlot)
	assert.ErrorIs(t, errOf(del), rbatch.ErrNotSent)

	stats := cl.CommandStats(t)
	assert.Zero(t, stats["get"]+stats["del"], "no node ran a command")
	assert.Zero(t, stats["exec"], "no transaction ran")
	// The Redis-side modes open MULTI at their first command, once their
	// connection came: a transaction opened is discarded, one refused
	// before its connection came writes nothing. InMemoryAtomic sends
	// nothing at all.
	assert.LessOrEqual(t, stats["multi"], int64(2))
	assert.Equal(t, stats["multi"], stats["discard"], "every MULTI opened is discarded")
}

// Both mode families check every key of a multi-key command against the
// transaction's slot, MSET's pairs included: a transaction whose MSET spans
// slots is refused before it reaches Redis, in a Redis-side queue too.
func TestClusterTransactionKeysOfEveryCommand(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		for _, name := range []string{"DEL", "MSET"} {
			cl.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode))
			var f interface{ Get() (struct{}, error) }
			var cmd *rbatch.Future[int64]
			if name == "DEL" {
				cmd = b.Keys().DeleteAsync("{a}1", "{b}2")
			} else {
				f = b.Buckets().SetAsync(map[string]any{"{a}1": "x", "{b}2": "y"})
			}
			_, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrCrossSlot, "%s in %v", name, mode)
			assert.ErrorContains(t, err, fmt.Sprintf("(slot %d)", route.Slot("b")))
			if cmd != nil {
				assert.ErrorIs(t, errOf(cmd), rbatch.ErrNotSent)
			} else {
				_, ferr := f.Get()
				assert.ErrorIs(t, ferr, rbatch.ErrNotSent)
			}
			stats := cl.CommandStats(t)
			assert.Zero(t, stats["del"]+stats["mset"]+stats["multi"]+stats["exec"], "nothing sent for %s in %v", name, mode)
		}
	}
}

// A raw command's keys beyond its first (RENAME's destination, SINTERSTORE's
// sources, BITOP's, a Lua script's, XREAD's streams) are checked against the
// transaction's slot too: the batch is refused with ErrCrossSlot before
// anything reaches Redis, where MULTI would have been aborted by CROSSSLOT
// (a Redis-side queue already holding commands is discarded). Keys all in
// the one slot go through.
func TestClusterTransactionRawCommandKeys(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	cases := map[string][]any{
		"RENAME":      {"RENAME", "{x}a", "pk:1"},
		"SMOVE":       {"SMOVE", "{x}s", "pk:1", "m"},
		"SINTERSTORE": {"SINTERSTORE", "{x}d", "{x}s", "pk:1"},
		"ZUNIONSTORE": {"ZUNIONSTORE", "{x}d", "2", "{x}z", "pk:1"},
		"BITOP":       {"BITOP", "OR", "{x}d", "{x}a", "pk:1"},
		"SORT":        {"SORT", "{x}l", "ALPHA", "STORE", "pk:1"},
		"XREAD":       {"XREAD", "COUNT", "1", "STREAMS", "{x}st", "pk:1", "0", "0"},
	}
	// One transaction per slot fits none of them either, nor a script
	// whose keys span slots.
	modes := []struct {
		rbatch.ExecutionMode
		perSlot bool
	}{{rbatch.InMemoryAtomic, false}, {rbatch.RedisWriteAtomic, false}, {rbatch.InMemoryAtomic, true}, {rbatch.RedisWriteAtomic, true}}
	cases["EVAL"] = []any{"EVAL", "return redis.call('INCR', KEYS[2])", "2", "{x}n", "pk:1"}
	for _, m := range modes {
		mode := m.ExecutionMode
		for name, cmd := range cases {
			cl.ResetStats(t)
			opts := []rbatch.Option{rbatch.WithMode(mode)}
			if m.perSlot {
				opts = append(opts, rbatch.WithTransactionPerSlot())
				name += " per slot"
			}
			b := c.NewBatch(opts...)
			set := b.Bucket("{x}a").SetAsync("1")
			f := b.Do(cmd[0].(string), cmd[1:]...)
			_, err := b.Execute(context.Background())
			require.ErrorIs(t, err, rbatch.ErrCrossSlot, "%s in %v", name, mode)
			assert.ErrorContains(t, err, fmt.Sprintf("%q (slot %d)", "pk:1", route.Slot("pk:1")), "%s in %v", name, mode)
			assert.ErrorIs(t, errOf(f), rbatch.ErrCrossSlot, "%s in %v", name, mode)
			stats := cl.CommandStats(t)
			if mode == rbatch.InMemoryAtomic {
				assert.ErrorIs(t, errOf(f), rbatch.ErrNotSent, "%s in %v", name, mode)
				assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent, "%s in %v", name, mode)
				assert.Zero(t, stats["multi"]+stats["set"], "nothing sent for %s in %v", name, mode)
				continue
			}
			// A Redis-side queue that holds the SET already is discarded;
			// one that had no connection yet wrote nothing.
			if stats["multi"] > 0 {
				assert.ErrorIs(t, errOf(set), rbatch.ErrTxAborted, "%s in %v", name, mode)
			} else {
				assert.ErrorIs(t, errOf(set), rbatch.ErrNotSent, "%s in %v", name, mode)
			}
			assert.Equal(t, stats["multi"], stats["discard"], "%s in %v", name, mode)
			assert.Zero(t, stats["exec"]+stats["set"], "%s in %v", name, mode)
		}
	}

	// The same commands on keys of one slot run as one transaction.
	cl.FlushAll(t)
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Set("{x}s").AddAsync("m")
	b.Bucket("{x}a").SetAsync("1")
	moved := b.Do("SMOVE", "{x}s", "{x}t", "m")
	renamed := b.Do("RENAME", "{x}a", "{x}b")
	bitop := b.Do("BITOP", "OR", "{x}d", "{x}b", "{x}c")
	group := b.Do("XGROUP", "CREATE", "{x}st", "g", "$", "MKSTREAM") // routed by its key, not CREATE
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	for f, want := range map[*rbatch.Future[any]]any{moved: int64(1), renamed: "OK", bitop: int64(1), group: "OK"} {
		got, err := f.Get()
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
}

func TestClusterTransactionPerSlot(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithTransactionPerSlot())
	tags := []string{"a", "b", "c", "d", "e", "f"}
	for _, tag := range tags {
		b.AtomicLong("{" + tag + "}n").AddAndGetAsync(5)
		b.List("{" + tag + "}l").AddAsync("x")
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Len(t, res.Responses, 2*len(tags))
	assert.Equal(t, int64(len(tags)), cl.CommandStats(t)["exec"], "one EXEC per slot")
	for _, tag := range tags {
		v, err := redis.Int(cl.OwnerOf(t, route.Slot(tag)).Call("GET", "{"+tag+"}n"))
		require.NoError(t, err)
		assert.Equal(t, 5, v)
	}
}

// With one transaction per slot and WAIT, each slot's transaction waits for
// its own writes, side by side with the others: 12 slots over 3 primaries
// whose one replica cannot give the 2 acknowledgements asked for take one
// WAIT timeout, not one per slot. A node's slots count as one attempt,
// lasting as long as the longest, and its SyncedReplicas is the fewest.
func TestClusterTransactionPerSlotWaits(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		cl.ResetStats(t)
		const wait = 300 * time.Millisecond
		b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithTransactionPerSlot(), rbatch.WithSync(2, wait))
		slots := map[int]bool{}
		for i := 0; len(slots) < 12; i++ {
			k := "tpsw" + strconv.Itoa(i)
			if s := route.Slot(k); !slots[s] {
				slots[s] = true
				b.AtomicLong(k).IncrementAndGetAsync()
			}
		}
		start := time.Now()
		res, err := b.Execute(context.Background())
		elapsed := time.Since(start)
		require.NoError(t, err, mode)
		assert.Less(t, elapsed, 3*wait, "%v: the slots' WAITs run side by side", mode)
		assert.Equal(t, int64(len(slots)), cl.CommandStats(t)["wait"], "%v: a WAIT per slot's transaction", mode)
		require.Len(t, res.Nodes, 3, mode)
		assert.Equal(t, 1, res.SyncedReplicas, mode)
		for _, nr := range res.Nodes {
			assert.Equal(t, 1, nr.Attempts, "%v %s: no retry, no redirect", mode, nr.Addr)
			assert.LessOrEqual(t, nr.Duration, elapsed, "%v %s", mode, nr.Addr)
			assert.Equal(t, 1, nr.SyncedReplicas, "%v %s", mode, nr.Addr)
		}
	}
}
