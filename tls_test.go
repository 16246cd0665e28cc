package rbatch_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
	"github.com/rbatch/rbatch/internal/route"
)

// TLS: the servers here listen only for TLS (--port 0 --tls-port N), with a
// CA and server certificate made for the test (redistest.NewTLSCerts:
// crypto/x509, ECDSA P-256, SAN 127.0.0.1, PEM files in t.TempDir()).

func tlsClient(t testing.TB, addrs []string, certs redistest.TLSCerts, mods ...func(*rbatch.Config)) *rbatch.Client {
	t.Helper()
	cfg := rbatch.Config{Addrs: addrs, TLSConfig: &tls.Config{RootCAs: certs.CAPool}}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := rbatch.NewClient(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { closeClean(t, c) })
	return c
}

// Every mode, with and without WithSkipResult, over TLS.
func TestTLSEveryMode(t *testing.T) {
	certs := redistest.NewTLSCerts(t)
	s := redistest.TLSStandalone(t, certs)
	c := tlsClient(t, []string{s.Addr}, certs)

	modes := []rbatch.ExecutionMode{rbatch.InMemory, rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic, rbatch.RedisReadAtomic}
	for _, mode := range modes {
		for _, skip := range []bool{false, true} {
			name := mode.String()
			opts := []rbatch.Option{rbatch.WithMode(mode)}
			if skip {
				name += "+SkipResult"
				opts = append(opts, rbatch.WithSkipResult())
			}
			t.Run(name, func(t *testing.T) {
				s.FlushAll(t)
				s.ResetStats(t)
				if mode == rbatch.RedisReadAtomic {
					tlsReadOnlyBatch(t, s, c, opts, skip)
					return
				}
				b := c.NewBatch(opts...)
				set := b.Bucket("tls:b").SetAsync("v")
				incr := b.AtomicLong("tls:n").AddAndGetAsync(41)
				push := b.List("tls:l").AddAllAsync("x", []byte("y"))
				hset := b.Map("tls:h").FastPutAsync("f", 7)
				zadd := b.ScoredSortedSet("tls:z").AddAsync(1.5, "m")
				xadd := b.Stream("tls:s").AddAsync("f", "v")
				get := b.Bucket("tls:b").GetAsync()
				script := b.Script().EvalAsync("return redis.call('INCR', KEYS[1])", []string{"tls:n"})
				res, err := b.Execute(context.Background())
				require.NoError(t, err)
				if skip {
					assert.Empty(t, res.Responses)
					for _, e := range []error{errOf(set), errOf(incr), errOf(push), errOf(hset), errOf(zadd), errOf(xadd), errOf(get), errOf(script)} {
						assert.ErrorIs(t, e, rbatch.ErrResultSkipped)
					}
				} else {
					require.Len(t, res.Responses, 8)
					assert.NoError(t, errOf(set))
					n, _ := incr.Get()
					assert.Equal(t, int64(41), n)
					ok, _ := push.Get()
					assert.True(t, ok)
					ok, _ = hset.Get()
					assert.True(t, ok)
					ok, _ = zadd.Get()
					assert.True(t, ok)
					id, err := xadd.Get()
					require.NoError(t, err)
					assert.Regexp(t, `^\d+-\d+$`, id)
					v, _ := get.Get()
					assert.Equal(t, "v", v)
					sv, _ := script.Get()
					assert.Equal(t, int64(42), sv)
				}
				stats := s.CommandStats(t)
				wantTx := int64(0)
				if mode != rbatch.InMemory {
					wantTx = 1
				}
				assert.Equal(t, wantTx, stats["multi"], "MULTI calls")
				assert.Equal(t, wantTx, stats["exec"], "EXEC calls")
				assert.Equal(t, int64(1), stats["set"], "SET calls")
				assert.Equal(t, int64(1), stats["get"], "GET calls")
				if skip {
					assert.Equal(t, int64(2), stats["client|reply"], "CLIENT REPLY OFF and ON")
				} else {
					assert.Zero(t, stats["client|reply"])
				}
				// Redis holds what the batch wrote, whatever the mode.
				assert.Equal(t, []byte("42"), s.MustDo(t, "GET", "tls:n"))
				assert.Equal(t, []byte("v"), s.MustDo(t, "GET", "tls:b"))
				assert.Equal(t, int64(2), s.MustDo(t, "LLEN", "tls:l"))
				assert.Equal(t, []byte("7"), s.MustDo(t, "HGET", "tls:h", "f"))
				assert.Equal(t, int64(1), s.MustDo(t, "XLEN", "tls:s"))
				assert.NoError(t, rbatch.CheckPoolsClean(c))
			})
		}
	}
}

// tlsReadOnlyBatch runs a RedisReadAtomic batch over TLS on data written
// beforehand.
func tlsReadOnlyBatch(t *testing.T, s *redistest.TLSServer, c *rbatch.Client, opts []rbatch.Option, skip bool) {
	s.MustDo(t, "SET", "tls:r:b", "v")
	s.MustDo(t, "RPUSH", "tls:r:l", "x", "y")
	s.MustDo(t, "HSET", "tls:r:h", "f", "7")
	s.ResetStats(t)
	b := c.NewBatch(opts...)
	get := b.Bucket("tls:r:b").GetAsync()
	all := b.List("tls:r:l").ReadAllAsync()
	hget := b.Map("tls:r:h").GetAsync("f")
	missing := b.Bucket("tls:r:missing").GetAsync()
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	if skip {
		assert.Empty(t, res.Responses)
		for _, e := range []error{errOf(get), errOf(all), errOf(hget), errOf(missing)} {
			assert.ErrorIs(t, e, rbatch.ErrResultSkipped)
		}
	} else {
		assert.Equal(t, []any{"v", []string{"x", "y"}, "7", nil}, res.Responses)
		assert.ErrorIs(t, errOf(missing), rbatch.ErrNil)
	}
	stats := s.CommandStats(t)
	assert.Equal(t, int64(1), stats["multi"])
	assert.Equal(t, int64(1), stats["exec"])
	assert.Equal(t, int64(2), stats["get"])
	assert.NoError(t, rbatch.CheckPoolsClean(c))
}

// A batch big enough to stream (writer and reader at once on the TLS
// connection), with WAIT 0 as the tail.
func TestTLSLargeBatchWithSync(t *testing.T) {
	certs := redistest.NewTLSCerts(t)
	s := redistest.TLSStandalone(t, certs)
	c := tlsClient(t, []string{s.Addr}, certs, func(cfg *rbatch.Config) { cfg.PoolSize = 2 })
	b := c.NewBatch(rbatch.WithSync(0, 100*time.Millisecond))
	const n = 50_000
	for i := range n {
		b.Set("tls:large").AddAsync(i)
	}
	res, err := b.Execute(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Responses, n)
	for i, r := range res.Responses {
		if r != true {
			t.Fatalf("Responses[%d] = %v", i, r)
		}
	}
	assert.Equal(t, int64(n), s.MustDo(t, "SCARD", "tls:large"))
	assert.Equal(t, int64(1), s.CommandStats(t)["wait"])
}

// Misconfigured TLS fails NewClient with a clear error, promptly.
func TestTLSMisconfiguredClient(t *testing.T) {
	certs := redistest.NewTLSCerts(t)
	s := redistest.TLSStandalone(t, certs)
	ctx := context.Background()
	cases := map[string]struct {
		cfg  rbatch.Config
		want string
	}{
		"CA not trusted": {rbatch.Config{Addrs: []string{s.Addr}, TLSConfig: &tls.Config{}}, "certificate"},
		"wrong server name": {rbatch.Config{Addrs: []string{s.Addr},
			TLSConfig: &tls.Config{RootCAs: certs.CAPool, ServerName: "redis.example"}}, "redis.example"},
		"plain TCP to the TLS port": {rbatch.Config{Addrs: []string{s.Addr}, ReadTimeout: 2 * time.Second}, s.Addr},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			c, err := rbatch.NewClient(ctx, tc.cfg)
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, time.Since(start), 5*time.Second)
		})
	}
	// A server that requires a client certificate, and a client with none:
	// the error says so, whether the server's alert or its closing the
	// connection came first.
	strict := redistest.TLSStandalone(t, certs, "--tls-auth-clients", "yes")
	for range 5 {
		_, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{strict.Addr}, TLSConfig: &tls.Config{RootCAs: certs.CAPool}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "certificate")
	}

	// A TLS client to a plain-TCP server fails too.
	start := time.Now()
	_, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}, TLSConfig: certs.ClientConfig(), ReadTimeout: 2 * time.Second, DialTimeout: 2 * time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), srv.Addr)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// On a TLS-only cluster (client, bus and replication over TLS), an
// IN_MEMORY batch across slots reaches all three primaries, and an atomic
// batch on one hash tag runs as one transaction.
func TestTLSCluster(t *testing.T) {
	certs := redistest.NewTLSCerts(t)
	cl := redistest.NewTLSCluster(t, certs)
	// In a TLS cluster CLUSTER SHARDS names each node's "tls-port" and no "port".
	shards := cl.Primaries[0].MustDo(t, "CLUSTER", "SHARDS")
	t.Logf("CLUSTER SHARDS on %s: %s", cl.Primaries[0].Addr, tlsFormatReply(shards))

	c := tlsClient(t, cl.Addrs()[:1], certs)
	tlsClusterBatches(t, c, func(slot int) string { return cl.OwnerOf(t, slot).Addr },
		func() map[string]int64 { return cl.CommandStats(t) }, func() { cl.FlushAll(t); cl.ResetStats(t) })
}

// tlsClusterBatches runs the cluster batches of TestTLSCluster. owner names the primary of a slot, stats sums the
// primaries' commandstats, reset empties the cluster and its statistics.
func tlsClusterBatches(t *testing.T, c *rbatch.Client, owner func(slot int) string, stats func() map[string]int64, reset func()) {
	t.Run("IN_MEMORY across slots", func(t *testing.T) {
		reset()
		b := c.NewBatch()
		const n = 3000
		perNode := map[string]int{}
		var fs []*rbatch.Future[int64]
		for i := range n {
			key := "tls:k:" + strconv.Itoa(i%300)
			perNode[owner(route.Slot(key))]++
			fs = append(fs, b.AtomicLong(key).IncrementAndGetAsync())
		}
		res, err := b.Execute(context.Background())
		require.NoError(t, err)
		require.Len(t, res.Nodes, 3, "every primary took part")
		for _, nr := range res.Nodes {
			assert.Equal(t, perNode[nr.Addr], nr.Commands, nr.Addr)
		}
		for i, f := range fs {
			v, err := f.Get()
			require.NoError(t, err)
			require.Equal(t, int64(i/300+1), v, "INCR %d", i)
		}
		assert.Equal(t, int64(n), stats()["incr"])
	})
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		t.Run(mode.String()+" on a hash tag", func(t *testing.T) {
			reset()
			b := c.NewBatch(rbatch.WithMode(mode))
			items := b.List("{tls:order:42}:items").AddAllAsync("a", "b")
			stock := b.Map("{tls:order:42}:stock").AddAndGetAsync("sku", -1)
			total := b.AtomicLong("{tls:order:42}:total").AddAndGetAsync(10)
			res, err := b.Execute(context.Background())
			require.NoError(t, err)
			require.Len(t, res.Nodes, 1)
			assert.Equal(t, owner(route.Slot("{tls:order:42}")), res.Nodes[0].Addr)
			ok, _ := items.Get()
			assert.True(t, ok)
			left, _ := stock.Get()
			assert.Equal(t, int64(-1), left)
			n, _ := total.Get()
			assert.Equal(t, int64(10), n)
			st := stats()
			assert.Equal(t, int64(1), st["multi"])
			assert.Equal(t, int64(1), st["exec"])
		})
	}
	t.Run("atomic across slots is refused", func(t *testing.T) {
		reset()
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
		b.Bucket("tls:x").SetAsync("1")
		b.Bucket("tls:y").SetAsync("1")
		_, err := b.Execute(context.Background())
		assert.ErrorIs(t, err, rbatch.ErrCrossSlot)
		assert.Zero(t, stats()["set"])
	})
}

// tlsFormatReply prints a RESP2 reply as Redis would show it: bulk strings
// quoted, integers as numbers, arrays in brackets.
func tlsFormatReply(v any) string {
	switch v := v.(type) {
	case []byte:
		return strconv.Quote(string(v))
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case nil:
		return "nil"
	case redis.Error:
		return "-" + string(v)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = tlsFormatReply(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%v", v)
}
