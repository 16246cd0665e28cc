package rbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

const sharedUser, sharedPass = "sharer", "sharer-pw"

// sharedServer is a primary with a replica (for WithSync) and a user whose
// connections CLIENT LIST can count.
func sharedServer(t *testing.T) (primary *redistest.Server, conns func() int) {
	t.Helper()
	primary, replica := redistest.PrimaryReplica(t)
	for _, s := range []*redistest.Server{primary, replica} {
		s.MustDo(t, "ACL", "SETUSER", sharedUser, "on", ">"+sharedPass, "~*", "&*", "+@all")
	}
	conns = func() int {
		list, err := redis.String(primary.Call("CLIENT", "LIST"))
		require.NoError(t, err)
		return strings.Count(list, " user="+sharedUser+" ")
	}
	return primary, conns
}

// sharedVariant is one kind of small batch the sharing tests send.
type sharedVariant struct {
	name string
	opts []rbatch.Option
}

var sharedVariants = []sharedVariant{
	{"plain", nil},
	{"atomic", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}},
	{"skip", []rbatch.Option{rbatch.WithSkipResult()}},
	{"atomic-skip", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSkipResult()}},
	{"wait", []rbatch.Option{rbatch.WithSync(1, 2*time.Second)}},
	{"atomic-wait", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithSync(1, 2*time.Second)}},
}

// A thousand goroutines run small batches of every variant on the default
// two shared connections: every value is right, the server never sees more
// connections than configured, and the replica holds every synced write.
func TestSharedThousandGoroutines(t *testing.T) {
	primary, conns := sharedServer(t)
	c := clientAt(t, primary.Addr, func(cfg *rbatch.Config) {
		cfg.Username, cfg.Password = sharedUser, sharedPass
	})
	const goroutines, rounds = 1000, 12
	stop := make(chan struct{})
	var most atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			n := int64(conns())
			if n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, a, b, n := fmt.Sprintf("sh:k:{%d}", g), fmt.Sprintf("sh:a:{%d}", g), fmt.Sprintf("sh:b:{%d}", g), fmt.Sprintf("sh:n:{%d}", g)
			for r := range rounds {
				v := sharedVariants[(g+r)%len(sharedVariants)]
				skip := strings.Contains(v.name, "skip")
				batch := c.NewBatch(v.opts...)
				val := strconv.Itoa(g*1000 + r)
				batch.Bucket(k).SetAsync(val)
				get := batch.Bucket(k).GetAsync()
				ia := batch.AtomicLong(a).IncrementAndGetAsync()
				ib := batch.AtomicLong(b).IncrementAndGetAsync()
				batch.AtomicLong(n).IncrementAndGetAsync()
				res, err := batch.Execute(context.Background())
				if err != nil {
					fail("%s batch of goroutine %d: %v", v.name, g, err)
					return
				}
				if skip {
					continue
				}
				got, _ := get.Get()
				x, _ := ia.Get()
				y, _ := ib.Get()
				if got != val || x != y || x != int64(r+1) {
					fail("%s batch of goroutine %d round %d: GET %q (want %q), INCRs %d and %d (want %d)", v.name, g, r, got, val, x, y, r+1)
					return
				}
				if strings.Contains(v.name, "wait") && res.Nodes[0].SyncedReplicas != 1 {
					fail("%s batch: synced %d replicas", v.name, res.Nodes[0].SyncedReplicas)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	require.Zero(t, failures.Load())
	for _, g := range []int{0, 1, goroutines / 2, goroutines - 1} {
		n, err := redis.Int(primary.Call("GET", fmt.Sprintf("sh:n:{%d}", g)))
		require.NoError(t, err)
		assert.Equal(t, rounds, n, "every batch applied once")
	}
	assert.LessOrEqual(t, most.Load(), int64(2), "connections on the server (CLIENT LIST)")
	assert.Positive(t, most.Load())
	st := c.Stats()
	require.Len(t, st, 1)
	assert.LessOrEqual(t, st[0].Shared, 2)
	assert.Zero(t, st[0].InUse, "%+v", st[0])
	assert.Zero(t, st[0].DiscardedDead+st[0].DiscardedDirty, "%+v", st[0])
	t.Logf("most connections seen: %d; %+v", most.Load(), st[0])
}

// MONITOR shows what each connection carried, in the order the server ran
// it: every MULTI … EXEC and CLIENT REPLY OFF … ON block of a shared
// connection holds one batch's commands only.
func TestSharedFramesContiguous(t *testing.T) {
	fresh(t)
	mon, err := redis.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer mon.Close()
	require.NoError(t, mon.Send("MONITOR"))
	require.NoError(t, mon.Flush())
	ok, err := redis.String(mon.Receive())
	require.NoError(t, err)
	require.Equal(t, "OK", ok)
	lines := make(chan string, 1<<16)
	go func() {
		defer close(lines)
		for {
			s, err := redis.String(mon.Receive())
			if err != nil {
				return
			}
			lines <- s
		}
	}()

	c := newClient(t, func(cfg *rbatch.Config) { cfg.SharedConns = 2 })
	variants := sharedVariants[:4] // no replica here: no WAIT
	var wg sync.WaitGroup
	for g := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 25 {
				id := fmt.Sprintf("b%d.%d", g, r)
				b := c.NewBatch(variants[(g+r)%len(variants)].opts...)
				for i := range 3 {
					b.AtomicLong("shf:" + id + ":" + strconv.Itoa(i)).IncrementAndGetAsync()
				}
				if _, err := b.Execute(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sentinel := c.NewBatch()
	sentinel.Do("ECHO", "shf-end")
	_, err = sentinel.Execute(context.Background())
	require.NoError(t, err)

	// A MONITOR line: 1700000000.000000 [0 127.0.0.1:port] "INCR" "shf:b1.2:0".
	// A block opens at MULTI or CLIENT REPLY OFF and closes at the EXEC or
	// CLIENT REPLY ON that matches how it opened.
	opener := map[string]string{} // client → what opened its block ("": none open)
	owner := map[string]string{}  // client → the batch whose commands the open block holds
	seen := map[string]bool{}     // clients that carried batches
	blocks := 0
	timeout := time.After(20 * time.Second)
	for done := false; !done; {
		var line string
		select {
		case line = <-lines:
		case <-timeout:
			t.Fatal("MONITOR never showed the end")
		}
		i, j := strings.Index(line, "["), strings.Index(line, "]")
		if i < 0 || j < i {
			continue
		}
		client := strings.Fields(line[i+1 : j])[1]
		words := strings.Fields(strings.ToUpper(line[j+1:]))
		cmd := strings.Join(words, " ")
		switch {
		case strings.Contains(cmd, `"SHF-END"`):
			done = true
		case (cmd == `"MULTI"` || cmd == `"CLIENT" "REPLY" "OFF"`) && opener[client] == "":
			opener[client], owner[client] = cmd, ""
		case (cmd == `"EXEC"` && opener[client] == `"MULTI"`) || (cmd == `"CLIENT" "REPLY" "ON"` && opener[client] != ""):
			if owner[client] != "" {
				blocks++
			}
			opener[client] = ""
		case strings.HasPrefix(cmd, `"INCR" "SHF:`):
			seen[client] = true
			id := strings.Split(strings.Trim(words[1], `"`), ":")[1]
			switch {
			case opener[client] == "":
			case owner[client] == "":
				owner[client] = id
			case owner[client] != id:
				t.Fatalf("%s: a command of batch %s inside the block of batch %s", client, id, owner[client])
			}
		}
	}
	assert.LessOrEqual(t, len(seen), 2, "connections that carried batches")
	assert.Greater(t, blocks, 100, "blocks checked")
	t.Logf("%d blocks on %d connections", blocks, len(seen))
}

// A small batch that ends in a WAIT its replicas cannot satisfy holds its
// shared connection until the WAIT times out (Redis answers nothing after
// it meanwhile). Batches without WAIT go on the other shared connection:
// they are answered while the WAIT still blocks.
func TestSharedWaitHoldsUpNoOtherBatch(t *testing.T) {
	s := redistest.Standalone(t) // no replica: WAIT 1 blocks for its timeout
	c := clientFor(t, s)
	blocked := func() int {
		info, err := redis.String(s.Call("INFO", "clients"))
		require.NoError(t, err)
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "blocked_clients:"); ok {
				n, err := strconv.Atoi(v)
				require.NoError(t, err)
				return n
			}
		}
		t.Fatal("no blocked_clients in INFO clients")
		return 0
	}

	type outcome struct {
		res *rbatch.BatchResult
		err error
	}
	waited := make(chan outcome, 1)
	go func() {
		b := c.NewBatch(rbatch.WithSync(1, 4*time.Second))
		b.Bucket("wait:k").SetAsync("v")
		res, err := b.Execute(context.Background())
		waited <- outcome{res, err}
	}()
	require.Eventually(t, func() bool { return blocked() == 1 }, 3*time.Second, 5*time.Millisecond, "the WAIT blocks on the server")

	for i := range 20 {
		b := c.NewBatch()
		set := b.Bucket(fmt.Sprint("plain:", i)).SetAsync("v")
		get := b.Bucket(fmt.Sprint("plain:", i)).GetAsync()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := b.Execute(ctx)
		cancel()
		require.NoError(t, err, "a batch without WAIT is not held up by one that waits")
		_, err = set.Get()
		require.NoError(t, err)
		v, err := get.Get()
		require.NoError(t, err)
		assert.Equal(t, "v", v)
	}
	assert.Equal(t, 1, blocked(), "the WAIT was still blocking while the other batches ran")
	assert.Equal(t, 2, c.Stats()[0].Shared, "one shared connection each")
	w := <-waited
	require.NoError(t, w.err)
	assert.Zero(t, w.res.SyncedReplicas, "WAIT timed out with no replica")
}
