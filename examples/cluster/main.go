// Command cluster runs batches against the Redis Cluster whose nodes are
// listed in REDIS_CLUSTER_ADDRS (comma-separated host:port; any node will
// do, the others are discovered): a pipelined batch fanned out to every
// primary, a multi-key command split per slot, an atomic batch kept to one
// slot by a hash tag, and one refused because its keys span two slots. It
// exits with status 1 on any error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rbatch/rbatch"
)

const numCounters = 30_000

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	var addrs []string
	for _, a := range strings.Split(os.Getenv("REDIS_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return errors.New("REDIS_CLUSTER_ADDRS is empty: set it to the cluster's nodes, " +
			"comma-separated host:port (scripts/demo.sh starts a cluster and sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: addrs})
	if err != nil {
		return err
	}
	defer c.Close()

	// counter:0 … counter:29999 hash to 12,874 of the 16,384 slots, spread
	// over every primary.
	counters := make([]string, numCounters)
	for i := range counters {
		counters[i] = "counter:" + strconv.Itoa(i)
	}
	user := struct{ name, logins, sessions string }{"{user:7}:name", "{user:7}:logins", "{user:7}:sessions"}

	// Start from a clean slate so that the output is the same on every run.
	// One DEL of many keys is split per slot and the counts summed.
	clean := c.NewBatch()
	clean.Keys().DeleteAsync(counters...)
	clean.Keys().DeleteAsync(user.name, user.logins, user.sessions, "{user:8}:name")
	if _, err := clean.Execute(ctx); err != nil {
		return fmt.Errorf("clean: %w", err)
	}

	if err := incrAll(ctx, c, counters); err != nil {
		return err
	}
	if err := countExists(ctx, c); err != nil {
		return err
	}
	if err := userTx(ctx, c, user.name, user.logins, user.sessions); err != nil {
		return err
	}
	return crossSlotTx(ctx, c)
}

// incrAll pipelines one INCR per counter: rbatch groups the commands by the
// primary that owns their slot and sends the groups at once.
func incrAll(ctx context.Context, c *rbatch.Client, counters []string) error {
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemory))
	incrs := make([]*rbatch.Future[int64], len(counters))
	for i, k := range counters {
		incrs[i] = b.AtomicLong(k).IncrementAndGetAsync()
	}
	res, err := b.Execute(ctx)
	if err != nil {
		return fmt.Errorf("incr: %w", err)
	}
	total := 0
	for _, n := range res.Nodes {
		total += n.Commands
	}
	for i, f := range incrs {
		if n, err := f.Get(); err != nil || n != 1 {
			return fmt.Errorf("incr %s: got %d, %v; want 1", counters[i], n, err)
		}
	}
	fmt.Printf("%v batch: %d INCRs over %d keys\n", b.Options().Mode, len(res.Responses), len(counters))
	fmt.Printf("  nodes: %d, commands sent: %d, every INCR returned 1\n", len(res.Nodes), total)
	return nil
}

// countExists asks how many of 1,000 keys exist: counter:29500 … counter:30499,
// of which the first 500 were created. The one EXISTS is split per slot and
// its counts summed into the one future.
func countExists(ctx context.Context, c *rbatch.Client) error {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "counter:" + strconv.Itoa(numCounters-500+i)
	}
	b := c.NewBatch()
	n := b.Keys().CountExistsAsync(keys...)
	res, err := b.Execute(ctx)
	if err != nil {
		return fmt.Errorf("exists: %w", err)
	}
	count, err := n.Get()
	if err != nil {
		return err
	}
	fmt.Printf("EXISTS over %d keys (counter:%d … counter:%d) on %d nodes: %d exist\n",
		len(keys), numCounters-500, numCounters+499, len(res.Nodes), count)
	return nil
}

// userTx runs an atomic batch: its keys share the hash tag {user:7}, so they
// live in one slot and the transaction can run on the primary owning it.
func userTx(ctx context.Context, c *rbatch.Client, name, logins, sessions string) error {
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket(name).SetAsync("ada")
	got := b.Bucket(name).GetAsync()
	n := b.AtomicLong(logins).IncrementAndGetAsync()
	b.List(sessions).AddAsync("session-1")
	size := b.List(sessions).SizeAsync()
	res, err := b.Execute(ctx)
	if err != nil {
		return fmt.Errorf("user tx: %w", err)
	}
	g, _ := got.Get()
	l, _ := n.Get()
	s, _ := size.Get()
	fmt.Printf("%v batch on {user:7}: %d commands on %d node\n", b.Options().Mode, len(res.Responses), len(res.Nodes))
	fmt.Printf("  name=%s logins=%d sessions=%d\n", g, l, s)
	return nil
}

// crossSlotTx shows what happens to an atomic batch whose keys span two
// slots: Redis would refuse the MULTI (CROSSSLOT), so rbatch refuses it
// first with ErrCrossSlot and sends nothing.
func crossSlotTx(ctx context.Context, c *rbatch.Client) error {
	b := c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("{user:7}:name").SetAsync("bob")
	b.Bucket("{user:8}:name").SetAsync("bob")
	_, err := b.Execute(ctx)
	if !errors.Is(err, rbatch.ErrCrossSlot) {
		return fmt.Errorf("cross-slot tx: want ErrCrossSlot, got %v", err)
	}
	if !errors.Is(err, rbatch.ErrNotSent) {
		return fmt.Errorf("cross-slot tx: want ErrNotSent too, got %v", err)
	}
	fmt.Println("atomic batch on {user:7} and {user:8}: refused with ErrCrossSlot, nothing sent")

	check := c.NewBatch()
	name := check.Bucket("{user:7}:name").GetAsync()
	exists := check.Bucket("{user:8}:name").IsExistsAsync()
	if _, err := check.Execute(ctx); err != nil {
		return fmt.Errorf("cross-slot check: %w", err)
	}
	n, _ := name.Get()
	e, _ := exists.Get()
	fmt.Printf("  {user:7}:name=%s {user:8}:name exists=%v\n", n, e)
	return nil
}
