package rbatch_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Under ReadFrom Replica or PreferReplica a batch's reads go to a replica
// only where the batch writes nothing (as Redisson sends a node's commands
// to a replica only when all of them read): a GET queued after a SET of its
// key sees the SET, in every buffered mode and across a stream's parts.
func TestReadFromKeepsReadsWithWrites(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	for _, rf := range []rbatch.ReadFrom{rbatch.Replica, rbatch.PreferReplica} {
		t.Run(strconv.Itoa(int(rf)), func(t *testing.T) {
			primary.MustDo(t, "FLUSHALL")
			primary.MustDo(t, "SET", "ryw:k", "old")
			primary.MustDo(t, "SET", "ryw:other", "o")
			primary.WaitReplicated(t, 1)
			c := clientFor(t, primary, func(cfg *rbatch.Config) {
				cfg.ReadFrom = rf
				cfg.StreamBuffer = 4 << 10 // a stream's parts of ~1 KiB
			})

			for i := range 20 {
				replica.ResetStats(t)
				primary.ResetStats(t)
				want := "new" + strconv.Itoa(i)
				b := c.NewBatch()
				b.Bucket("ryw:k").SetAsync(want)
				got := b.Bucket("ryw:k").GetAsync()
				other := b.Bucket("ryw:other").GetAsync()
				_, err := b.Execute(context.Background())
				require.NoError(t, err)
				v, err := got.Get()
				require.NoError(t, err)
				require.Equal(t, want, v, "batch %d: the GET sees the SET queued before it", i)
				v, _ = other.Get()
				assert.Equal(t, "o", v)
				require.Zero(t, replica.CommandStats(t)["get"], "batch %d: no read of a writing batch on the replica", i)
				require.EqualValues(t, 2, primary.CommandStats(t)["get"])
			}

			// A batch that only reads still goes to the replica.
			primary.WaitReplicated(t, 1)
			replica.ResetStats(t)
			primary.ResetStats(t)
			b := c.NewBatch()
			got := b.Bucket("ryw:k").GetAsync()
			_, err := b.Execute(context.Background())
			require.NoError(t, err)
			v, _ := got.Get()
			assert.Equal(t, "new19", v)
			assert.EqualValues(t, 1, replica.CommandStats(t)["get"], "a read-only batch reads from the replica")
			assert.Zero(t, primary.CommandStats(t)["get"])

			// A stream: its last parts hold only reads, queued after the
			// writes of the first parts.
			replica.ResetStats(t)
			primary.ResetStats(t)
			parts := &recorder{}
			c.AddHook(parts)
			s := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
			s.Bucket("ryw:k").SetAsync("streamed")
			for i := range 300 {
				s.Bucket("ryw:pad:" + strconv.Itoa(i)).SetAsync(i)
			}
			for i := range 100 {
				s.Bucket("ryw:pad:" + strconv.Itoa(i)).GetAsync()
			}
			last := s.Bucket("ryw:k").GetAsync()
			_, err = s.Execute(context.Background())
			require.NoError(t, err)
			assert.Greater(t, parts.groupsOn(""), 1, "the stream went in several parts")
			v, err = last.Get()
			require.NoError(t, err)
			assert.Equal(t, "streamed", v, "a stream's read sees its earlier write")
			assert.Zero(t, replica.CommandStats(t)["get"])
			assert.EqualValues(t, 101, primary.CommandStats(t)["get"])

			// A stream that only reads goes to the replica.
			primary.WaitReplicated(t, 1)
			replica.ResetStats(t)
			r := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
			for i := range 300 {
				r.Bucket("ryw:pad:" + strconv.Itoa(i)).GetAsync()
			}
			_, err = r.Execute(context.Background())
			require.NoError(t, err)
			assert.EqualValues(t, 300, replica.CommandStats(t)["get"])
		})
	}
}

// In a cluster the rule is per primary: the reads for a primary the batch
// writes to stay on it, the others go to replicas.
func TestClusterReadFromKeepsReadsWithWrites(t *testing.T) {
	cl, c, written, on, off := readFromCluster(t)
	for _, p := range cl.Primaries {
		p.WaitReplicated(t, 1)
	}
	for _, s := range append(cl.Primaries, cl.Replicas...) {
		s.ResetStats(t)
	}
	b := c.NewBatch()
	b.Bucket(on).SetAsync("new")
	got := b.Bucket(on).GetAsync()
	other := b.Bucket(off).GetAsync()
	_, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := got.Get()
	assert.Equal(t, "new", v)
	v, _ = other.Get()
	assert.Equal(t, "o", v)
	assert.EqualValues(t, 1, written.CommandStats(t)["get"], "the written primary serves its read")
	var onReplicas int64
	for _, r := range cl.Replicas {
		onReplicas += r.CommandStats(t)["get"]
	}
	assert.EqualValues(t, 1, onReplicas, "the other key's read goes to a replica")
}

// A batch that waits for its replicas (WithSync) reads from the primaries
// under ReadFrom Replica: a replica refuses WAIT, and a read-only batch
// with WithSync failed with "WAIT cannot be used with replica instances"
// though its reads had succeeded.
func TestReadFromWithSyncReadsPrimaries(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	primary.MustDo(t, "SET", "rws:k", "v")
	primary.WaitReplicated(t, 1)
	c := clientFor(t, primary, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisReadAtomic, rbatch.Streaming} {
		t.Run(mode.String(), func(t *testing.T) {
			replica.ResetStats(t)
			primary.ResetStats(t)
			b := c.NewBatch(rbatch.WithMode(mode), rbatch.WithSync(1, time.Second))
			got := b.Bucket("rws:k").GetAsync()
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			v, err := got.Get()
			require.NoError(t, err)
			assert.Equal(t, "v", v)
			assert.Equal(t, 1, res.SyncedReplicas)
			assert.Zero(t, replica.CommandStats(t)["get"])
			assert.Zero(t, replica.CommandStats(t)["wait"])
			assert.EqualValues(t, 1, primary.CommandStats(t)["get"])
			assert.EqualValues(t, 1, primary.CommandStats(t)["wait"])
		})
	}
}

// In a cluster, a WithSync batch that writes to one primary and reads a key
// of another sends its WAITs to primaries only.
func TestClusterReadFromWithSync(t *testing.T) {
	cl, c, _, on, off := readFromCluster(t)
	b := c.NewBatch(rbatch.WithSync(1, 2*time.Second))
	b.Bucket(on).SetAsync("new")
	other := b.Bucket(off).GetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	v, _ := other.Get()
	assert.Equal(t, "o", v)
	assert.Equal(t, 1, res.SyncedReplicas)
	for _, r := range cl.Replicas {
		assert.Zero(t, r.CommandStats(t)["wait"], "no WAIT on replica %s", r.Addr)
	}
}

// readFromCluster returns a cluster whose replicas every node knows, a
// ReadFrom Replica client of it, a primary, a key on it and a key off it
// (set to "o").
func readFromCluster(t *testing.T) (cl *redistest.Cluster, c *rbatch.Client, written *redistest.Server, on, off string) {
	cl = freshCluster(t)
	waitReplicasKnown(t, cl)
	written = cl.Primaries[0]
	on, off = keysOnAndOff(t, cl, written)
	cl.OwnerOf(t, route.Slot(off)).MustDo(t, "SET", off, "o")
	c = clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	return cl, c, written, on, off
}

// With the replica down, ReadFrom Replica and PreferReplica read from the
// primary in every mode that may read from a replica, a stream too: its
// reads had ended not sent ("connection refused"), even with retries, as
// it dialled the dead replica again each round. A stream whose replica
// dies while it runs goes on on the primary.
func TestReadFromFallsBackWhenReplicaDown(t *testing.T) {
	for _, rf := range []rbatch.ReadFrom{rbatch.Replica, rbatch.PreferReplica} {
		t.Run(rf.String(), func(t *testing.T) {
			primary, replica := redistest.PrimaryReplica(t)
			primary.MustDo(t, "SET", "rfb:k", "v")
			for i := range 300 {
				primary.MustDo(t, "SET", "rfb:pad:"+strconv.Itoa(i), i)
			}
			primary.WaitReplicated(t, 1)
			c := clientFor(t, primary, func(cfg *rbatch.Config) {
				cfg.ReadFrom = rf
				cfg.StreamBuffer = 4 << 10 // a stream's parts of ~1 KiB
			})

			// The stream's first read is answered by the replica; then the
			// replica dies, and the stream's connection to it with it.
			parts := &recorder{}
			c.AddHook(parts)
			s := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
			v, err := s.Bucket("rfb:k").GetAsync().Get()
			require.NoError(t, err)
			require.Equal(t, "v", v)
			replica.Kill()
			primary.ResetStats(t)
			gets := make([]*rbatch.Future[string], 300)
			for i := range gets {
				gets[i] = s.Bucket("rfb:pad:" + strconv.Itoa(i)).GetAsync()
			}
			res, err := s.Execute(context.Background())
			require.NoError(t, err)
			assert.Equal(t, rbatch.Counts{Applied: 301}, res.Counts)
			for i, f := range gets {
				v, err := f.Get()
				require.NoError(t, err, "read %d", i)
				require.Equal(t, strconv.Itoa(i), v, "read %d", i)
			}
			assert.EqualValues(t, 300, primary.CommandStats(t)["get"], "the primary served the reads queued after the replica died")
			byAddr := map[string]rbatch.NodeResult{}
			for _, nr := range res.Nodes {
				byAddr[nr.Addr] = nr
			}
			assert.Equal(t, 1, byAddr[replica.Addr].Commands)
			assert.Equal(t, 300, byAddr[primary.Addr].Commands)
			assert.Greater(t, parts.groupsOn(primary.Addr), 1, "the stream went in several parts")

			for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisReadAtomic, rbatch.Streaming} {
				for _, retry := range []bool{false, true} {
					opts := []rbatch.Option{rbatch.WithMode(mode)}
					if retry {
						opts = append(opts, rbatch.WithRetry(3, 50*time.Millisecond))
					}
					b := c.NewBatch(opts...)
					get := b.Bucket("rfb:k").GetAsync()
					res, err := b.Execute(context.Background())
					require.NoError(t, err, "%s, retry %v", mode, retry)
					v, err := get.Get()
					require.NoError(t, err, "%s, retry %v", mode, retry)
					assert.Equal(t, "v", v, "%s, retry %v", mode, retry)
					assert.Equal(t, rbatch.Counts{Applied: 1}, res.Counts, "%s, retry %v", mode, retry)
					require.Len(t, res.Nodes, 1, "%s, retry %v", mode, retry)
					assert.Equal(t, primary.Addr, res.Nodes[0].Addr, "%s, retry %v: the primary served the read", mode, retry)
				}
			}
		})
	}
}

// A replica whose link to its primary is down and that serves no stale
// data refuses reads with MASTERDOWN: nothing ran there, and the primary
// answers them in the same round, without WithRetry, in the buffered
// modes (in a pipeline, a transaction, on a shared connection or not).
func TestReadFromReplicaMasterDownReadsPrimary(t *testing.T) {
	primary, replica := redistest.PrimaryReplica(t)
	primary.MustDo(t, "SET", "rmd:k", "v")
	primary.WaitReplicated(t, 1)
	for _, pool := range []int{1, 8} {
		c := clientFor(t, primary, func(cfg *rbatch.Config) { cfg.ReadFrom, cfg.PoolSize = rbatch.Replica, pool })
		b := c.NewBatch()
		b.Bucket("rmd:k").GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		require.Equal(t, replica.Addr, res.Nodes[0].Addr, "the replica serves reads while it is linked")

		replica.MustDo(t, "CONFIG", "SET", "replica-serve-stale-data", "no")
		replica.MustDo(t, "REPLICAOF", "127.0.0.1", "1") // a primary that is not there: the link is down
		_, err = replica.Call("GET", "rmd:k")
		require.ErrorContains(t, err, "MASTERDOWN")
		primary.ResetStats(t)
		for _, mode := range []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic} {
			b := c.NewBatch(rbatch.WithMode(mode))
			get := b.Bucket("rmd:k").GetAsync()
			n := b.Keys().CountExistsAsync("rmd:k")
			res, err := b.Execute(context.Background())
			require.NoError(t, err, "%s pool %d", mode, pool)
			v, err := get.Get()
			require.NoError(t, err, mode)
			assert.Equal(t, "v", v, mode)
			m, _ := n.Get()
			assert.EqualValues(t, 1, m, mode)
			assert.Equal(t, rbatch.Counts{Applied: 2}, res.Counts, mode)
			require.Len(t, res.Nodes, 1, mode)
			assert.Equal(t, primary.Addr, res.Nodes[0].Addr, "%s pool %d: the primary served the reads", mode, pool)
		}
		assert.EqualValues(t, 2, primary.CommandStats(t)["get"], "pool %d", pool)
		replica.MustDo(t, "REPLICAOF", "127.0.0.1", primary.Port)
		replica.MustDo(t, "CONFIG", "SET", "replica-serve-stale-data", "yes")
		primary.WaitReplicated(t, 1)
	}
}

// In a cluster, a stream's reads for a primary whose replica is down go
// to the primary, and those for the other primaries still to their
// replicas.
func TestClusterReadFromFallsBackWhenReplicaDown(t *testing.T) {
	cl := redistest.NewCluster(t)
	waitReplicasKnown(t, cl)
	primary := cl.Primaries[0]
	replica := cl.ReplicaOf(t, primary)
	on, off := keysOnAndOff(t, cl, primary)
	primary.MustDo(t, "SET", on, "on")
	other := cl.OwnerOf(t, route.Slot(off))
	other.MustDo(t, "SET", off, "off")
	primary.WaitReplicated(t, 1)
	other.WaitReplicated(t, 1)
	c := clusterClient(t, cl, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.PreferReplica })
	replica.Kill()

	for _, retry := range []bool{false, true} {
		opts := []rbatch.Option{rbatch.WithMode(rbatch.Streaming)}
		if retry {
			opts = append(opts, rbatch.WithRetry(3, 50*time.Millisecond))
		}
		primary.ResetStats(t)
		b := c.NewBatch(opts...)
		getOn := b.Bucket(on).GetAsync()
		getOff := b.Bucket(off).GetAsync()
		res, err := b.Execute(context.Background())
		require.NoError(t, err, "retry %v", retry)
		v, err := getOn.Get()
		require.NoError(t, err, "retry %v", retry)
		assert.Equal(t, "on", v, "retry %v", retry)
		v, err = getOff.Get()
		require.NoError(t, err, "retry %v", retry)
		assert.Equal(t, "off", v, "retry %v", retry)
		assert.Equal(t, rbatch.Counts{Applied: 2}, res.Counts, "retry %v", retry)
		assert.EqualValues(t, 1, primary.CommandStats(t)["get"], "retry %v: the primary served its read", retry)
		assert.Zero(t, other.CommandStats(t)["get"], "retry %v: the other key's read stayed on a replica", retry)
	}
}

// A standalone primary's replicas are looked at again as reads go: one that
// attaches after the client connected is read from, and one promoted with
// REPLICAOF NO ONE (its data going its own way) is no longer read from.
func TestReadFromStandaloneLearnsReplicas(t *testing.T) {
	primary, late := redistest.Standalone(t), redistest.Standalone(t)
	c := clientFor(t, primary, func(cfg *rbatch.Config) { cfg.ReadFrom = rbatch.Replica })
	primary.MustDo(t, "SET", "sl:k", "v1")
	read := func() string {
		b := c.NewBatch()
		get := b.Bucket("sl:k").GetAsync()
		_, err := b.Execute(context.Background())
		require.NoError(t, err)
		v, err := get.Get()
		require.NoError(t, err)
		return v
	}
	assert.Equal(t, "v1", read(), "no replica yet: the primary answers")

	host, port, _ := strings.Cut(primary.Addr, ":")
	late.MustDo(t, "REPLICAOF", host, port)
	primary.WaitReplicated(t, 1)
	late.ResetStats(t)
	waitUntil(t, "reads reach the replica that attached late", func() bool {
		read()
		return late.CommandStats(t)["get"] > 0
	})

	late.MustDo(t, "REPLICAOF", "NO", "ONE")
	primary.MustDo(t, "SET", "sl:k", "v2")
	waitUntil(t, "reads leave the promoted replica", func() bool { return read() == "v2" })
	late.ResetStats(t)
	for range 10 {
		assert.Equal(t, "v2", read())
	}
	assert.Zero(t, late.CommandStats(t)["get"], "the detached server answers no read")
}
