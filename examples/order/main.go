// Command order places an order atomically with a REDIS_WRITE_ATOMIC batch
// against the Redis server at REDIS_ADDR (default 127.0.0.1:6379): the
// order's item, the stock decrement and the status are applied all or none.
// It then shows a transaction that Redis refuses at queue time: every
// command ends with rbatch.ErrTxAborted and nothing is applied. It exits
// with status 1 on any error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rbatch/rbatch"
)

// The keys share the hash tag {order:42}, so they live in one hash slot: in
// a Redis Cluster a transaction must keep to one slot, and this one does.
const (
	itemsKey  = "{order:42}:items"
	stockKey  = "{order:42}:stock"
	statusKey = "{order:42}:status"
	oopsKey   = "{order:42}:oops"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{addr}})
	if err != nil {
		return err
	}
	defer c.Close()

	// Start from a clean slate, in a batch of its own, so that the output is
	// the same on every run: no order yet, 10 of sku-1 in stock.
	setup := c.NewBatch()
	setup.Keys().DeleteAsync(itemsKey, stockKey, statusKey, oopsKey)
	setup.Map(stockKey).FastPutAsync("sku-1", 10)
	if _, err := setup.Execute(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	if err := placeOrder(ctx, c); err != nil {
		return err
	}
	return abortedOrder(ctx, c)
}

// placeOrder queues the order's three writes inside MULTI as they are added
// and commits them with EXEC, followed by WAIT.
func placeOrder(ctx context.Context, c *rbatch.Client) error {
	b := c.NewBatch(
		rbatch.WithMode(rbatch.RedisWriteAtomic),
		// WAIT for 0 replicas: the demo server has none, so asking for more
		// would only wait out the timeout. In production you would ask for 1
		// replica (or more) to know the order survives losing the primary:
		// WithSync(1, 100*time.Millisecond), then check SyncedReplicas.
		rbatch.WithSync(0, 100*time.Millisecond),
	)
	added := b.List(itemsKey).AddAsync("sku-1")
	stock := b.Map(stockKey).AddAndGetAsync("sku-1", -1)
	placed := b.Bucket(statusKey).SetAsync("placed")

	res, err := b.Execute(ctx)
	if err != nil {
		return fmt.Errorf("place order: %w", err)
	}
	ok, err := added.Get()
	if err != nil {
		return err
	}
	left, err := stock.Get()
	if err != nil {
		return err
	}
	if _, err := placed.Get(); err != nil {
		return err
	}
	fmt.Printf("order 42 placed in one %v transaction (%d commands)\n", b.Options().Mode, len(res.Responses))
	fmt.Printf("  item added:      %v\n", ok)
	fmt.Printf("  sku-1 in stock:  %d\n", left)
	fmt.Printf("  status:          placed\n")
	fmt.Printf("  synced replicas: %d\n", res.SyncedReplicas)
	return nil
}

// abortedOrder queues a command with the wrong number of arguments: Redis
// refuses it while queueing, so EXEC answers EXECABORT and discards the
// whole transaction, including the valid commands queued around it.
func abortedOrder(ctx context.Context, c *rbatch.Client) error {
	b := c.NewBatch(rbatch.WithMode(rbatch.RedisWriteAtomic))
	errs := []func() error{
		errOf(b.List(itemsKey).AddAsync("sku-1")),
		errOf(b.Map(stockKey).AddAndGetAsync("sku-1", -1)),
		errOf(b.Do("SET", oopsKey)), // SET needs a value: wrong arity
		errOf(b.Bucket(statusKey).SetAsync("placed twice")),
	}
	_, err := b.Execute(ctx)
	if !errors.Is(err, rbatch.ErrTxAborted) {
		return fmt.Errorf("aborted order: want ErrTxAborted, got %v", err)
	}
	aborted := 0
	for _, e := range errs {
		if errors.Is(e(), rbatch.ErrTxAborted) {
			aborted++
		}
	}
	if aborted != len(errs) {
		return fmt.Errorf("aborted order: only %d of %d futures aborted", aborted, len(errs))
	}
	// ErrTxAborted wraps the first command Redis refused and its reply.
	var cause *rbatch.CommandError
	var reply *rbatch.RedisError
	if first := errs[0](); !errors.As(first, &cause) || !errors.As(first, &reply) {
		return fmt.Errorf("aborted order: no cause in %v", first)
	}
	fmt.Println("second order, with a wrong-arity SET, aborted by Redis:")
	fmt.Printf("  cause: command %d (%s): %s\n", cause.Index, cause.Command, reply.Msg)
	fmt.Printf("  %d of %d futures ended with ErrTxAborted\n", aborted, len(errs))

	// Read everything back: the aborted transaction left no trace.
	r := c.NewBatch()
	items := r.List(itemsKey).SizeAsync()
	stock := r.Map(stockKey).GetAsync("sku-1")
	status := r.Bucket(statusKey).GetAsync()
	oops := r.Bucket(oopsKey).IsExistsAsync()
	if _, err := r.Execute(ctx); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	n, _ := items.Get()
	s, _ := stock.Get()
	st, _ := status.Get()
	o, _ := oops.Get()
	fmt.Printf("  nothing applied: items=%d sku-1=%s status=%s oops exists=%v\n", n, s, st, o)
	return nil
}

// errOf returns a function giving f's error once its batch ran.
func errOf[T any](f *rbatch.Future[T]) func() error {
	return func() error { _, err := f.Get(); return err }
}
