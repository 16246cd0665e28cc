package rbatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch"
)

// smallSizes are the sizes of the batches a web request sends.
var smallSizes = []int{1, 3, 30}

// BenchmarkSmallBatch runs small batches from many goroutines at once
// (RunParallel, GOMAXPROCS×4 of them), each batch a round of SET k v,
// GET k, INCR c: rbatch in IN_MEMORY mode against a redigo pool loop
// (Send each, Flush, Receive each) in the same binary.
func BenchmarkSmallBatch(b *testing.B) {
	for _, n := range smallSizes {
		b.Run(fmt.Sprintf("rbatch/%d", n), func(b *testing.B) {
			smallBatches(b, newClient(b, func(cfg *rbatch.Config) { cfg.PoolSize = 64 }), n)
		})
		b.Run(fmt.Sprintf("redigo/%d", n), func(b *testing.B) {
			p := &redis.Pool{MaxIdle: 64, MaxActive: 64, Wait: true, Dial: func() (redis.Conn, error) { return srv.Dial() }}
			defer p.Close()
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprintf("small:%d", seq.Add(1))
				for pb.Next() {
					conn := p.Get()
					for i := range n {
						switch i % 3 {
						case 0:
							conn.Send("SET", key, "v")
						case 1:
							conn.Send("GET", key)
						default:
							conn.Send("INCR", "small:c")
						}
					}
					conn.Flush()
					for range n {
						if _, err := conn.Receive(); err != nil {
							b.Error(err)
						}
					}
					conn.Close()
				}
			})
		})
	}
}

// smallBatches runs batches of n commands (SET k v, GET k, INCR c, …) on c
// from GOMAXPROCS×4 goroutines.
func smallBatches(b *testing.B, c *rbatch.Client, n int) { smallBatchesPar(b, c, n, 4) }

// smallBatchesPar is smallBatches from GOMAXPROCS×par goroutines.
func smallBatchesPar(b *testing.B, c *rbatch.Client, n, par int) {
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("small:%d", seq.Add(1))
		for pb.Next() {
			bt := c.NewBatch()
			for i := range n {
				switch i % 3 {
				case 0:
					bt.Bucket(key).SetAsync("v")
				case 1:
					bt.Bucket(key).GetAsync()
				default:
					bt.AtomicLong("small:c").IncrementAndGetAsync()
				}
			}
			if _, err := bt.Execute(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSmallBatchHook measures what hooks cost a small batch: none
// installed, and one that does nothing (run with -count to interleave).
func BenchmarkSmallBatchHook(b *testing.B) {
	b.Run("none", func(b *testing.B) {
		smallBatches(b, newClient(b, func(cfg *rbatch.Config) { cfg.PoolSize = 64 }), 3)
	})
	b.Run("nop", func(b *testing.B) {
		c := newClient(b, func(cfg *rbatch.Config) { cfg.PoolSize = 64 })
		c.AddHook(rbatch.NopHook{})
		smallBatches(b, c, 3)
	})
}
