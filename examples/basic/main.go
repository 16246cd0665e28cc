// Command basic queues a few typed commands in one rbatch batch, executes it
// against the Redis server at REDIS_ADDR (default 127.0.0.1:6379) and prints
// the results. It exits with status 1 on any error.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rbatch/rbatch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "basic:", err)
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

	b := c.NewBatch()
	// Start from a clean slate so that the output is the same on every run.
	b.Keys().DeleteAsync("basic:greeting", "basic:counter", "basic:list", "basic:map")

	b.Bucket("basic:greeting").SetAsync("hello, rbatch")
	greeting := b.Bucket("basic:greeting").GetAsync()

	b.AtomicLong("basic:counter").SetAsync(40)
	b.AtomicLong("basic:counter").IncrementAndGetAsync()
	counter := b.AtomicLong("basic:counter").AddAndGetAsync(1)

	b.List("basic:list").AddAllAsync("red", "green", "blue")
	size := b.List("basic:list").SizeAsync()
	colors := b.List("basic:list").ReadAllAsync()

	b.Map("basic:map").FastPutAsync("lang", "Go")
	b.Map("basic:map").FastPutAsync("year", 2009)
	fields := b.Map("basic:map").ReadAllMapAsync()

	res, err := b.Execute(ctx)
	if err != nil {
		return err
	}

	g, _ := greeting.Get()
	n, _ := counter.Get()
	l, _ := size.Get()
	cs, _ := colors.Get()
	m, _ := fields.Get()
	fmt.Printf("executed %d commands\n", len(res.Responses))
	fmt.Printf("greeting: %s\n", g)
	fmt.Printf("counter:  %d\n", n)
	fmt.Printf("list:     %d %v\n", l, cs)
	fmt.Printf("map:      %v\n", m) // fmt prints maps in key order
	return nil
}
