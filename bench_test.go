package rbatch_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch"
)

// benchSizes are the batch sizes every benchmark runs at.
var benchSizes = []struct {
	name string
	n    int
}{{"1k", 1_000}, {"100k", 100_000}, {"1M", 1_000_000}}

// workload is one benchmark's command, queued through rbatch or sent with
// redigo, and the check that all n of them took effect.
type workload struct {
	queue func(b *rbatch.Batch, i int)
	send  func(c redis.Conn, i int) error
	check func(b *testing.B, n int)
}

// BenchmarkSADD adds n members to one set: rbatch's IN_MEMORY batch against
// a hand-written redigo pipeline (one writer goroutine, one reader).
func BenchmarkSADD(b *testing.B) {
	const key = "bench:sadd"
	runWorkload(b, workload{
		queue: func(bt *rbatch.Batch, i int) { bt.Set(key).AddAsync(i) },
		send:  func(c redis.Conn, i int) error { return c.Send("SADD", key, i) },
		check: func(b *testing.B, n int) {
			if got := srv.MustDo(b, "SCARD", key); got != int64(n) {
				b.Fatalf("SCARD = %v, want %d", got, n)
			}
		},
	})
}

// BenchmarkSET sets n distinct keys.
func BenchmarkSET(b *testing.B) {
	keys := make([]string, benchSizes[len(benchSizes)-1].n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:set:%d", i)
	}
	runWorkload(b, workload{
		queue: func(bt *rbatch.Batch, i int) { bt.Bucket(keys[i]).SetAsync("value") },
		send:  func(c redis.Conn, i int) error { return c.Send("SET", keys[i], "value") },
		check: func(b *testing.B, n int) {
			if got := srv.MustDo(b, "DBSIZE"); got != int64(n) {
				b.Fatalf("DBSIZE = %v, want %d", got, n)
			}
		},
	})
}

// BenchmarkQueueing times queueing alone: n SADDs into one batch, which is
// then discarded untimed (nothing reaches the server). "warm" finds the
// memory the previous iteration freed; "cold" first gives the heap back to
// the system (debug.FreeOSMemory), as a process's first batch finds it.
func BenchmarkQueueing(b *testing.B) {
	c := newClient(b)
	for _, heap := range []string{"warm", "cold"} {
		for _, size := range benchSizes {
			b.Run(heap+"/"+size.name, func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					if heap == "cold" {
						b.StopTimer()
						debug.FreeOSMemory()
						b.StartTimer()
					}
					bt := c.NewBatch()
					s := bt.Set("bench:queueing")
					for i := range size.n {
						s.AddAsync(i)
					}
					b.StopTimer()
					if err := bt.Discard(context.Background()); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size.n), "ns/cmd")
			})
		}
	}
}

func runWorkload(b *testing.B, w workload) {
	b.Run("rbatch", func(b *testing.B) {
		c := newClient(b)
		for _, size := range benchSizes {
			b.Run(size.name, func(b *testing.B) {
				measure(b, size.n, w.check, func() {
					bt := c.NewBatch()
					for i := range size.n {
						w.queue(bt, i)
					}
					if _, err := bt.Execute(context.Background()); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	})
	b.Run("redigo", func(b *testing.B) {
		conn := srv.Conn(b, redis.DialReadTimeout(time.Minute), redis.DialWriteTimeout(time.Minute))
		for _, size := range benchSizes {
			b.Run(size.name, func(b *testing.B) {
				measure(b, size.n, w.check, func() {
					if err := redigoPipeline(conn, size.n, w.send); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	})
}

// redigoPipeline sends n commands from a writer goroutine while the calling
// goroutine receives the n replies, as a careful redigo user would.
func redigoPipeline(conn redis.Conn, n int, send func(c redis.Conn, i int) error) error {
	werr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := send(conn, i); err != nil {
				werr <- err
				return
			}
		}
		werr <- conn.Flush()
	}()
	for range n {
		if _, err := conn.Receive(); err != nil {
			conn.Close() // unblocks the writer
			<-werr
			return err
		}
	}
	return <-werr
}

// measure runs one timed iteration b.N times, each after a FLUSHALL outside
// the timer, checks the result outside the timer too, and reports commands
// per second and heap allocations per command besides the usual figures.
func measure(b *testing.B, n int, check func(b *testing.B, n int), iteration func()) {
	b.ReportAllocs()
	var mallocs uint64
	var ms runtime.MemStats
	b.StopTimer()
	for range b.N {
		srv.FlushAll(b)
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()
		iteration()
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		check(b, n)
	}
	cmds := float64(n) * float64(b.N)
	b.ReportMetric(cmds/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(mallocs)/cmds, "allocs/cmd")
}

// BenchmarkModes sets n keys in each execution mode and with skip-result,
// against redigo's plain pipeline and a redigo MULTI … EXEC pipeline.
func BenchmarkModes(b *testing.B) {
	const maxN = 1_000_000
	keys := make([]string, maxN)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:mode:%d", i)
	}
	check := func(b *testing.B, n int) {
		if got := srv.MustDo(b, "DBSIZE"); got != int64(n) {
			b.Fatalf("DBSIZE = %v, want %d", got, n)
		}
	}
	sizes := benchSizes[1:] // 100k, 1M
	rb := map[string][]rbatch.Option{
		"rbatch-InMemory":         nil,
		"rbatch-InMemoryAtomic":   {rbatch.WithMode(rbatch.InMemoryAtomic)},
		"rbatch-RedisWriteAtomic": {rbatch.WithMode(rbatch.RedisWriteAtomic)},
		"rbatch-SkipResult":       {rbatch.WithSkipResult()},
	}
	for _, name := range []string{"rbatch-InMemory", "rbatch-SkipResult", "rbatch-InMemoryAtomic", "rbatch-RedisWriteAtomic"} {
		b.Run(name, func(b *testing.B) {
			c := newClient(b)
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					measure(b, size.n, check, func() {
						bt := c.NewBatch(rb[name]...)
						for i := range size.n {
							bt.Bucket(keys[i]).SetAsync("value")
						}
						if _, err := bt.Execute(context.Background()); err != nil {
							b.Fatal(err)
						}
					})
				})
			}
		})
	}
	for _, tx := range []bool{false, true} {
		name := "redigo-pipeline"
		if tx {
			name = "redigo-MULTI-EXEC"
		}
		b.Run(name, func(b *testing.B) {
			conn := srv.Conn(b, redis.DialReadTimeout(time.Minute), redis.DialWriteTimeout(time.Minute))
			for _, size := range sizes {
				b.Run(size.name, func(b *testing.B) {
					measure(b, size.n, check, func() {
						if err := redigoBatch(conn, size.n, tx, keys); err != nil {
							b.Fatal(err)
						}
					})
				})
			}
		})
	}
}

// redigoBatch is a careful redigo user's batch: a writer goroutine sends
// (MULTI,) the SETs (, EXEC) while the caller reads every reply.
func redigoBatch(conn redis.Conn, n int, tx bool, keys []string) error {
	extra := 0
	if tx {
		extra = 2
	}
	werr := make(chan error, 1)
	go func() {
		if tx {
			conn.Send("MULTI")
		}
		for i := range n {
			if err := conn.Send("SET", keys[i], "value"); err != nil {
				werr <- err
				return
			}
		}
		if tx {
			conn.Send("EXEC")
		}
		werr <- conn.Flush()
	}()
	for range n + extra {
		if _, err := conn.Receive(); err != nil {
			conn.Close()
			<-werr
			return err
		}
	}
	return <-werr
}
