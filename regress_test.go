package rbatch_test

// Minimal reproductions of library bugs found by the bad-input catalogue
// and the TLS tests, all fixed; each asserts the right behaviour and runs
// with the rest of the suite. The catalogue (catalogue_test.go) and
// TestTLSCluster cover the same ground more broadly; these stay as the
// smallest cases that failed.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// A value larger than the server's proto-max-bulk-len must fail the batch
// before anything is sent, naming the limit: a value the server cannot take
// is an encode error, and a command that cannot be encoded is not sent.
// rbatch sent it (before db78719): Redis ran the commands before it,
// answered the big one "ERR Protocol error: invalid bulk length" and closed
// the connection, so the commands after it ended unknown. Part of the batch
// was applied.
func TestRegressionValueOverProtoMaxBulkLen(t *testing.T) {
	s := redistest.Standalone(t, "--proto-max-bulk-len", "1mb")
	c := catClient(t, s, nil)
	b := c.NewBatch()
	first := b.Bucket("big:first").SetAsync("1")
	big := b.Bucket("big:value").SetAsync(make([]byte, 2<<20))
	last := b.AtomicLong("big:last").IncrementAndGetAsync()
	_, err := b.Execute(context.Background())
	require.Error(t, err)
	t.Logf("Execute: %v", err)
	t.Logf("futures: first %v; big %v; last %v", errOf(first), errOf(big), errOf(last))

	assert.Contains(t, err.Error(), "proto-max-bulk-len", "the error names the limit")
	assert.ErrorIs(t, err, rbatch.ErrNotSent)
	for name, e := range map[string]error{"first": errOf(first), "big": errOf(big), "last": errOf(last)} {
		assert.ErrorIs(t, e, rbatch.ErrNotSent, name)
	}
	assert.Equal(t, int64(0), s.MustDo(t, "DBSIZE"), "nothing of the batch applied")
	assert.Zero(t, s.CommandStats(t)["set"], "nothing sent")
}

// A TLS-only cluster must be usable with Config.TLSConfig. Its CLUSTER
// SHARDS names each node's "tls-port" and no "port"; route.ParseShards
// (internal/route/parse.go) read only "port" and dropped every node, so
// NewClient succeeded with an empty slot map and every batch failed "slot N:
// slot not served by any node" (before db78719).
func TestRegressionTLSClusterDiscovery(t *testing.T) {
	certs := redistest.NewTLSCerts(t)
	cl := redistest.NewTLSCluster(t, certs)
	t.Logf("CLUSTER SHARDS: %s", tlsFormatReply(cl.Primaries[0].MustDo(t, "CLUSTER", "SHARDS")))

	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: cl.Addrs()[:1], TLSConfig: certs.ClientConfig()})
	require.NoError(t, err)
	defer c.Close()
	b := c.NewBatch()
	for _, k := range []string{"a", "b", "c", "d"} { // slots on all three primaries
		b.Bucket(k).SetAsync(k)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	assert.Len(t, res.Nodes, 3)
}

// SYNC and PSYNC turn the connection into a replication stream, as
// SUBSCRIBE and MONITOR turn it into a subscriber or a monitor: Do must
// refuse them like those (Do's doc: commands that would change the
// connection fail Execute; and only a clean connection goes back to the
// pool).
// queue/commands.go's forbidden list lacks them: alone in a batch, PSYNC is
// answered +FULLRESYNC, Execute returns nil, the connection goes back to the
// pool as clean, and the next ordinary batch on the client fails ("outcome
// unknown: … EOF") or reads the RDB transfer as its replies. SYNC alone waits
// for the RDB until the response timeout and ends unknown.
func TestRegressionPsyncPoisonsThePool(t *testing.T) {
	for _, cmd := range [][]any{{"PSYNC", "?", -1}, {"SYNC"}} {
		t.Run(cmd[0].(string), func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(rbatch.WithResponseTimeout(2 * time.Second))
			f := b.Do(cmd[0].(string), cmd[1:]...)
			_, err := b.Execute(context.Background())
			t.Logf("Execute: %v; future: %v", err, errOf(f))
			assert.Error(t, err, "a replication command must be refused")
			assert.ErrorIs(t, err, rbatch.ErrNotSent)
			assert.ErrorContains(t, err, "not allowed in a batch")
			assert.Zero(t, calls(t, "sync")+calls(t, "psync"), "nothing sent")

			next := c.NewBatch()
			echo := next.Do("ECHO", "still fine")
			_, err = next.Execute(context.Background())
			require.NoError(t, err, "the next batch on the client")
			v, _ := echo.Get()
			assert.Equal(t, "still fine", v)
		})
	}
}
