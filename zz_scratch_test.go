package rbatch_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
)

func TestScratchProgress(t *testing.T) {
	fresh(t)
	c := newClient(t)
	srv.MustDo(t, "SET", "pg:str", "x")
	for _, tc := range []struct {
		name string
		opts []rbatch.Option
		n    int
	}{
		{"inmem", nil, 300_000},
		{"skip", []rbatch.Option{rbatch.WithSkipResult()}, 300_000},
		{"stream", []rbatch.Option{rbatch.WithMode(rbatch.Streaming)}, 300_000},
		{"stream-skip", []rbatch.Option{rbatch.WithMode(rbatch.Streaming), rbatch.WithSkipResult()}, 300_000},
		{"atomic", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, 50_000},
		{"rwa", []rbatch.Option{rbatch.WithMode(rbatch.RedisWriteAtomic)}, 50_000},
	} {
		var mu sync.Mutex
		var ps []rbatch.Progress
		var at []time.Time
		opts := append([]rbatch.Option{rbatch.WithProgress(5*time.Millisecond, func(p rbatch.Progress) {
			mu.Lock()
			ps = append(ps, p)
			at = append(at, time.Now())
			mu.Unlock()
		})}, tc.opts...)
		b := c.NewBatch(opts...)
		for i := range tc.n {
			if i == tc.n/2 {
				b.Map("pg:str").FastPutAsync("f", "v") // WRONGTYPE
				continue
			}
			b.Bucket("pg:" + strconv.Itoa(i%1000)).SetAsync(i)
		}
		res, err := b.Execute(context.Background())
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		bad := 0
		for k := 1; k < len(ps); k++ {
			p, q := ps[k-1], ps[k]
			if q.Queued < p.Queued || q.Written < p.Written || q.Answered < p.Answered || q.Failed < p.Failed || q.Elapsed < p.Elapsed {
				bad++
				t.Logf("%s: not monotonic %+v -> %+v", tc.name, p, q)
			}
			if q.Written > q.Queued || q.Answered > q.Written {
				t.Logf("%s: inconsistent %+v", tc.name, q)
			}
			if k < len(ps)-1 && at[k].Sub(at[k-1]) < 4*time.Millisecond {
				t.Logf("%s: calls %v apart", tc.name, at[k].Sub(at[k-1]))
			}
		}
		var counts rbatch.Counts
		if res != nil {
			counts = res.Counts
		}
		t.Logf("%s: %d calls, last %+v, err=%.60v counts=%+v", tc.name, len(ps), ps[len(ps)-1], err, counts)
		mu.Unlock()
	}
}
