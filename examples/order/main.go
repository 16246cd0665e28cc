// Command order sells the 10 units of sku-1 in stock to 64 buyers arriving
// at once, against the Redis server at REDIS_ADDR (default 127.0.0.1:6379),
// which should have a replica: each order is an IN_MEMORY_ATOMIC batch with
// a condition (at least one unit in stock), a WAIT for one replica, and a
// check that the replica acknowledged it. Exactly 10 orders are placed, the
// stock never goes below 0, and the other buyers learn that sku-1 sold out.
// It then shows a transaction that Redis refuses at queue time: every
// command ends with rbatch.ErrTxAborted and nothing is applied. It exits
// with status 1 on any error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rbatch/rbatch"
)

// The keys share the hash tag {order:42}, so they live in one hash slot: in
// a Redis Cluster a transaction and its conditions must keep to one slot,
// and these do.
const (
	itemsKey  = "{order:42}:items"
	stockKey  = "{order:42}:stock"
	statusKey = "{order:42}:status"
	oopsKey   = "{order:42}:oops"
)

const (
	buyers = 64
	stock  = 10
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	setup.Map(stockKey).FastPutAsync("sku-1", stock)
	if _, err := setup.Execute(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	if err := sell(ctx, c); err != nil {
		return err
	}
	return abortedOrder(ctx, c)
}

// outcome is how one buyer's order ended.
type outcome int

const (
	placed outcome = iota
	soldOut
	failed
)

// sell runs the buyers at once and checks what they left behind.
func sell(ctx context.Context, c *rbatch.Client) error {
	results := make([]outcome, buyers)
	errs := make([]error, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = placeOrder(ctx, c, "buyer-"+strconv.Itoa(i))
		}()
	}
	wg.Wait()

	count := map[outcome]int{}
	for i, r := range results {
		count[r]++
		if r == failed {
			return fmt.Errorf("buyer-%d: %w", i, errs[i])
		}
	}
	r := c.NewBatch()
	left := r.Map(stockKey).GetAsync("sku-1")
	orders := r.List(itemsKey).SizeAsync()
	if _, err := r.Execute(ctx); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	l, _ := left.Get()
	n, _ := orders.Get()
	fmt.Printf("%d buyers, %d of sku-1 in stock, each order one IN_MEMORY_ATOMIC batch with a condition and WAIT 1:\n", buyers, stock)
	fmt.Printf("  orders placed:            %d (each acknowledged by a replica)\n", count[placed])
	fmt.Printf("  refused, sold out:        %d\n", count[soldOut])
	fmt.Printf("  sku-1 left in stock:      %s\n", l)
	fmt.Printf("  orders list:              %d long\n", n)
	if count[placed] != stock || l != "0" || n != stock {
		return fmt.Errorf("want exactly %d orders placed and none in stock", stock)
	}
	return nil
}

// placeOrder takes one unit of sku-1 for buyer if one is left. The
// condition is read under WATCH: when it holds, the decrement and the order
// run in MULTI … EXEC; when another buyer changed the stock in between, EXEC
// answers nil and rbatch checks again, within WithRetry. Each nil EXEC means
// another order went through, so with 10 units a buyer needs at most 10
// retries to learn whether one is left for it.
func placeOrder(ctx context.Context, c *rbatch.Client, buyer string) (outcome, error) {
	b := c.NewBatch(
		rbatch.WithMode(rbatch.InMemoryAtomic),
		rbatch.WithRetry(stock, time.Millisecond),
		rbatch.WithSync(1, time.Second), // the order survives losing the primary
	)
	inStock := b.AddCondition(rbatch.HashIntAtLeast(stockKey, "sku-1", 1))
	b.Map(stockKey).AddAndGetAsync("sku-1", -1)
	b.List(itemsKey).AddAsync(buyer)

	res, err := b.Execute(ctx)
	if errors.Is(err, rbatch.ErrConditionFailed) {
		held, _ := inStock.Get()
		if held {
			return failed, fmt.Errorf("refused although the stock held: %w", err)
		}
		return soldOut, nil
	}
	if err != nil {
		return failed, err
	}
	if res.SyncedReplicas < 1 {
		// Applied on the primary, not yet on a replica: a failover now
		// could lose it. (make demo starts the server with a replica.)
		return failed, errors.New("order placed but no replica acknowledged it within 1s")
	}
	return placed, nil
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
	fmt.Println("an order with a wrong-arity SET, aborted by Redis:")
	fmt.Printf("  cause: command %d (%s): %s\n", cause.Index, cause.Command, reply.Msg)
	fmt.Printf("  %d of %d futures ended with ErrTxAborted\n", aborted, len(errs))

	// Read everything back: the aborted transaction left no trace.
	r := c.NewBatch()
	items := r.List(itemsKey).SizeAsync()
	left := r.Map(stockKey).GetAsync("sku-1")
	status := r.Bucket(statusKey).IsExistsAsync()
	oops := r.Bucket(oopsKey).IsExistsAsync()
	if _, err := r.Execute(ctx); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	n, _ := items.Get()
	l, _ := left.Get()
	st, _ := status.Get()
	o, _ := oops.Get()
	fmt.Printf("  nothing applied: still %d orders, sku-1=%s, status exists=%v, oops exists=%v\n", n, l, st, o)
	if n != stock || l != "0" || st || o {
		return errors.New("aborted order: something was applied")
	}
	return nil
}

// errOf returns a function giving f's error once its batch ran.
func errOf[T any](f *rbatch.Future[T]) func() error {
	return func() error { _, err := f.Get(); return err }
}
