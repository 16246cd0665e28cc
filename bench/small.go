package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/rbatch/rbatch"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// The small case: many goroutines, each looping on a batch of three
// commands (SET k v, GET k, INCR c; k its own), as web requests send them.
// Every client runs in this process, one after another for each goroutine
// count, so that noise on the machine falls on all of them alike.

var smallGoroutines = []int{8, 128, 512}

// smallRound is how long each client runs in each of smallReps rounds at
// each goroutine count (the rounds interleave the clients, and the median
// round is reported: a burst of other load hits one round of one client,
// not its figure), and smallMaxBatches bounds its batches whatever the speed.
const (
	smallRound      = time.Second
	smallReps       = 3
	smallMaxBatches = 5_000_000
	// smallWarmUp is the untimed run each client gets first, so that no
	// client's round pays for dialing, the process's first heap growth or
	// a cold cache: without it the first round of the run is the slowest.
	smallWarmUp = 500 * time.Millisecond
)

// smallClient runs one 3-command batch for goroutine g.
type smallClient struct {
	name  string
	note  string // how it was set up, when not its defaults
	batch func(ctx context.Context, key string) error
	close func()
}

// smallRow is one client at one goroutine count.
type smallRow struct {
	client      string
	goroutines  int
	batches     int64
	perS        float64
	p50, p99    time.Duration
	allocsBatch float64
	err         string
}

func newSmallClients(ctx context.Context, addr string) ([]*smallClient, []string, error) {
	var out []*smallClient
	var notes []string
	for _, own := range []bool{false, true} {
		rc, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{addr}, DisableSharing: own})
		if err != nil {
			return nil, nil, err
		}
		sc := &smallClient{name: "rbatch", batch: func(ctx context.Context, key string) error {
			b := rc.NewBatch()
			b.Bucket(key).SetAsync("v")
			get := b.Bucket(key).GetAsync()
			b.AtomicLong("small:c").IncrementAndGetAsync()
			if _, err := b.Execute(ctx); err != nil {
				return err
			}
			if v, err := get.Get(); err != nil || v != "v" {
				return fmt.Errorf("GET %s = %q, %v", key, v, err)
			}
			return nil
		}, close: func() { rc.Close() }}
		if own {
			sc.name, sc.note = "rbatch sharing off", "DisableSharing: a pooled connection per batch"
		}
		out = append(out, sc)
	}

	rp := &redigo.Pool{Dial: func() (redigo.Conn, error) { return redigo.Dial("tcp", addr) }, MaxIdle: 512, Wait: true}
	out = append(out, &smallClient{name: "redigo pool loop", note: "MaxIdle 512 (redigo keeps 0 idle by default, which redials every batch)",
		batch: func(ctx context.Context, key string) error {
			c, err := rp.GetContext(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			c.Send("SET", key, "v")
			c.Send("GET", key)
			c.Send("INCR", "small:c")
			if err := c.Flush(); err != nil {
				return err
			}
			for range 3 {
				if _, err := c.Receive(); err != nil {
					return err
				}
			}
			return nil
		}, close: func() { rp.Close() }})

	gr := goredis.NewClient(&goredis.Options{Addr: addr})
	out = append(out, &smallClient{name: "go-redis Pipelined", batch: func(ctx context.Context, key string) error {
		var get *goredis.StringCmd
		_, err := gr.Pipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, key, "v", 0)
			get = p.Get(ctx, key)
			p.Incr(ctx, "small:c")
			return nil
		})
		if err == nil && get.Val() != "v" {
			err = fmt.Errorf("GET %s = %q", key, get.Val())
		}
		return err
	}, close: func() { gr.Close() }})

	rr, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		notes = append(notes, "rueidis: n/a ("+err.Error()+")")
	} else {
		out = append(out, &smallClient{name: "rueidis DoMulti", note: "DisableCache (no client-side caching asked for)",
			batch: func(ctx context.Context, key string) error {
				res := rr.DoMulti(ctx,
					rr.B().Set().Key(key).Value("v").Build(),
					rr.B().Get().Key(key).Build(),
					rr.B().Incr().Key("small:c").Build())
				for _, r := range res {
					if err := r.Error(); err != nil {
						return err
					}
				}
				return nil
			}, close: rr.Close})
	}
	if ap, err := gr.AutoPipeline(); err != nil {
		notes = append(notes, "go-redis AutoPipeline: n/a ("+err.Error()+")")
	} else {
		out = append(out, &smallClient{name: "go-redis AutoPipeline", note: "Client.AutoPipeline() with its default options (experimental in go-redis)",
			batch: func(ctx context.Context, key string) error {
				var get *goredis.StringCmd
				_, err := ap.Pipelined(ctx, func(p goredis.Pipeliner) error {
					p.Set(ctx, key, "v", 0)
					get = p.Get(ctx, key)
					p.Incr(ctx, "small:c")
					return nil
				})
				if err == nil && get.Val() != "v" {
					err = fmt.Errorf("GET %s = %q", key, get.Val())
				}
				return err
			}, close: func() { ap.Close() }})
	}
	return out, notes, nil
}

// runSmallRound runs c from n goroutines for d.
func runSmallRound(c *smallClient, n int, d time.Duration) smallRow {
	row := smallRow{client: c.name, goroutines: n}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var batches atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, n)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("small:k:%d", g)
			for ctx.Err() == nil && batches.Load() < smallMaxBatches {
				t := time.Now()
				if err := c.batch(ctx, key); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err.Error())
					}
					return
				}
				if len(lat[g]) < 100_000 {
					lat[g] = append(lat[g], time.Since(t))
				}
				batches.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	row.batches = batches.Load()
	row.perS = float64(row.batches) / elapsed.Seconds()
	if row.batches > 0 {
		row.allocsBatch = float64(ms1.Mallocs-ms0.Mallocs) / float64(row.batches)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		row.p50, row.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	if e, ok := firstErr.Load().(string); ok {
		row.err = e
	}
	return row
}

// runSmall runs the small case against e's server.
func runSmall(cs caseSpec, e *env, o *options) *caseResult {
	res := &caseResult{spec: cs, n: 3}
	clients, notes, err := newSmallClients(context.Background(), e.addrs()[0])
	if err != nil {
		res.benchErr = err.Error()
		return res
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for _, c := range clients {
		if c.note != "" {
			notes = append(notes, c.name+": "+c.note)
		}
	}
	for _, c := range clients {
		runSmallRound(c, smallGoroutines[0], smallWarmUp)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("| goroutines | client | batches/s | ratio vs rbatch | p50 | p99 | allocs/batch | batches/s min–max (rounds) |\n|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range smallGoroutines {
		waitQuiet(o)
		rounds := make([][]smallRow, len(clients))
		for range smallReps {
			for i, c := range clients {
				logf("  small: %s, %d goroutines", c.name, n)
				rounds[i] = append(rounds[i], runSmallRound(c, n, smallRound))
			}
		}
		rows := make([]smallRow, len(clients))
		for i, rs := range rounds {
			rows[i] = medianRound(rs)
		}
		base := rows[0].perS // rbatch's
		for i, r := range rows {
			ratio := ""
			if base > 0 && r.perS > 0 {
				ratio = fmt.Sprintf("%.2f", r.perS/base)
			}
			lo, hi := spread(rounds[i])
			w("| %d | %s | %s | %s | %v | %v | %.1f | %s–%s (%d) |\n", n, r.client, commas(r.perS), ratio,
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.allocsBatch, commas(lo), commas(hi), len(rounds[i]))
			if r.err != "" {
				notes = append(notes, fmt.Sprintf("%s at %d goroutines stopped: %s", r.client, n, r.err))
			}
		}
	}
	res.table = b.String()
	res.notes = append(res.notes, notes...)
	return res
}

// medianRound returns the round with the median batches/s; a round that
// stopped on an error is reported as such.
func medianRound(rs []smallRow) smallRow {
	for _, r := range rs {
		if r.err != "" {
			return r
		}
	}
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b smallRow) int { return cmp.Compare(a.perS, b.perS) })
	return sorted[len(sorted)/2]
}

// spread returns the lowest and highest batches/s of the rounds.
func spread(rs []smallRow) (lo, hi float64) {
	for i, r := range rs {
		if i == 0 || r.perS < lo {
			lo = r.perS
		}
		hi = max(hi, r.perS)
	}
	return lo, hi
}
