package rbatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// exampleClient connects to the test server (a real one you would name in
// Config.Addrs) and empties it, so that each example prints the same.
func exampleClient() *rbatch.Client {
	c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{srv.Addr}})
	if err != nil {
		panic(err)
	}
	srv.Call("FLUSHALL")
	return c
}

// An InMemoryAtomic batch is one MULTI … EXEC: other clients see all of it
// or none.
func ExampleWithMode_inMemoryAtomic() {
	c := exampleClient()
	defer c.Close()
	ctx := context.Background()

	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.List("{order:7}:items").AddAllAsync("book", "pen")
	total := b.AtomicLong("{order:7}:total").AddAndGetAsync(25)
	if _, err := b.Execute(ctx); err != nil {
		fmt.Println(err)
		return
	}
	n, _ := total.Get()
	fmt.Println("total", n)
	// Output: total 25
}

// A RedisWriteAtomic batch opens MULTI at its first command and sends each
// command as it is queued; Execute sends EXEC, Discard sends DISCARD.
func ExampleWithMode_redisWriteAtomic() {
	c := exampleClient()
	defer c.Close()
	ctx := context.Background()

	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	b.Bucket("rw:a").SetAsync("1")
	b.Discard(ctx) // nothing queued in MULTI is applied

	b = c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	set := b.Bucket("rw:a").SetAsync("2")
	get := b.Bucket("rw:a").GetAsync()
	b.Execute(ctx)
	_, err := set.Get()
	v, _ := get.Get()
	fmt.Println(err, v)
	// Output: <nil> 2
}

// A Streaming batch sends while it is filled, in bounded memory; the
// result counts what every command did.
func ExampleWithMode_streaming() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming))
	for i := range 100_000 {
		b.Bucket("st:" + strconv.Itoa(i)).SetAsync(i) // futures need not be kept
	}
	res, err := b.Execute(context.Background())
	fmt.Println(err, res.Counts.Applied, len(res.Responses))
	// Output: <nil> 100000 0
}

// With WithSkipResult Redis sends no replies (CLIENT REPLY OFF … ON): the
// commands end skipped, and Execute still fails if the batch could not be sent.
func ExampleWithSkipResult() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch(rbatch.WithSkipResult())
	f := b.Set("skip:set").AddAllAsync("a", "b", "c")
	res, err := b.Execute(context.Background())
	_, ferr := f.Get()
	fmt.Println(err, res.Counts.Skipped, errors.Is(ferr, rbatch.ErrResultSkipped))
	// Output: <nil> 1 true
}

// WithSync waits for replicas after the batch (WAIT); SyncedReplicas is the
// fewest that acknowledged on any node. The test server has none.
func ExampleWithSync() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch(rbatch.WithSync(1, 50*time.Millisecond))
	b.Bucket("sync:a").SetAsync("1")
	res, err := b.Execute(context.Background())
	fmt.Println(err, "acknowledged by", res.SyncedReplicas, "replicas")
	// Output: <nil> acknowledged by 0 replicas
}

// A condition makes an atomic batch apply only if it holds: here the
// second order finds no stock left and applies nothing.
func ExampleBatch_AddCondition() {
	c := exampleClient()
	defer c.Close()
	ctx := context.Background()
	srv.Call("HSET", "stock:{42}", "sku-1", 1)

	for range 2 {
		b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(3, time.Millisecond))
		inStock := b.AddCondition(rbatch.HashIntAtLeast("stock:{42}", "sku-1", 1))
		left := b.Map("stock:{42}").AddAndGetAsync("sku-1", -1)
		_, err := b.Execute(ctx)
		held, _ := inStock.Get()
		n, _ := left.Get()
		fmt.Println(held, n, errors.Is(err, rbatch.ErrConditionFailed))
	}
	// Output:
	// true 0 false
	// false 0 true
}

// Scripts are sent as EVALSHA, loaded once per node; the typed variants
// decode the reply.
func ExampleScript_EvalIntAsync() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch()
	n := b.Script().EvalIntAsync("return redis.call('INCRBY', KEYS[1], ARGV[1])", []string{"sc:n"}, 5)
	s := b.Script().EvalStringAsync("return ARGV[1] .. '!'", nil, "hi")
	b.Execute(context.Background())
	v, _ := n.Get()
	w, _ := s.Get()
	fmt.Println(v, w)
	// Output: 5 hi!
}

// Every command ends in one known state; errors.Is and errors.As reach
// each cause through the *BatchError.
func ExampleBatchError() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch()
	b.Bucket("err:s").SetAsync("x")
	push := b.List("err:s").AddAsync("y") // err:s holds a string
	_, err := b.Execute(context.Background())

	var berr *rbatch.BatchError
	var re *rbatch.RedisError
	fmt.Println(errors.As(err, &berr), len(berr.Commands), berr.Commands[0].Index)
	fmt.Println(errors.As(err, &re), re.Prefix())
	_, perr := push.Get()
	fmt.Println(errors.Is(perr, rbatch.ErrNotSent), errors.Is(perr, rbatch.ErrUnknownOutcome))
	// Output:
	// true 1 1
	// true WRONGTYPE
	// false false
}

// ExecuteAsync runs the batch in the background; Get on any of its futures
// waits for it.
func ExampleBatch_ExecuteAsync() {
	c := exampleClient()
	defer c.Close()

	b := c.NewBatch()
	n := b.AtomicLong("async:n").IncrementAndGetAsync()
	done := b.ExecuteAsync(context.Background())
	v, err := n.Get() // waits while the batch runs
	_, berr := done.Get()
	fmt.Println(v, err, berr)
	// Output: 1 <nil> <nil>
}

// BucketOf reads values back typed, through the batch's codec.
func ExampleBucketOf() {
	c := exampleClient()
	defer c.Close()
	type point struct{ X, Y int }

	b := c.NewBatch(rbatch.WithCodec(rbatch.JSONCodec))
	rbatch.BucketOf[point](b, "typed:p").SetAsync(point{1, 2})
	p := rbatch.BucketOf[point](b, "typed:p").GetAsync()
	b.Execute(context.Background())
	v, _ := p.Get()
	fmt.Printf("%+v\n", v)
	// Output: {X:1 Y:2}
}

// HashOf maps a hash onto a struct by its redis tags.
func ExampleHashOf() {
	c := exampleClient()
	defer c.Close()
	type user struct {
		Name string `redis:"name"`
		Age  int    `redis:"age"`
	}

	b := c.NewBatch()
	rbatch.HashOf[user](b, "typed:u").PutAsync(user{"ada", 36})
	u := rbatch.HashOf[user](b, "typed:u").GetAsync()
	b.Execute(context.Background())
	v, _ := u.Get()
	fmt.Printf("%+v\n", v)
	// Output: {Name:ada Age:36}
}

// On a Redis Cluster commands go to the primary of their slot; keys that
// share a hash tag share a slot, so a transaction on them is allowed.
func ExampleClient_cluster() {
	sharedOnce.Do(func() { sharedCluster, sharedErr = redistest.StartCluster() })
	if sharedErr != nil {
		fmt.Println(sharedErr)
		return
	}
	ctx := context.Background()
	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: sharedCluster.Addrs()[:1]})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	b := c.NewBatch()
	for i := range 300 {
		b.Bucket("cl:" + strconv.Itoa(i)).SetAsync(i)
	}
	res, _ := b.Execute(ctx)
	fmt.Println("nodes:", len(res.Nodes))

	tx := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	tx.Bucket("{user:7}:name").SetAsync("ada")
	tx.AtomicLong("{user:7}:logins").IncrementAndGetAsync()
	res, err = tx.Execute(ctx)
	fmt.Println("transaction on one node:", err == nil && len(res.Nodes) == 1)

	cross := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	cross.Bucket("{user:7}:name").SetAsync("ada")
	cross.Bucket("{user:8}:name").SetAsync("bob")
	_, err = cross.Execute(ctx)
	fmt.Println("across slots:", errors.Is(err, rbatch.ErrCrossSlot))
	// Output:
	// nodes: 3
	// transaction on one node: true
	// across slots: true
}
