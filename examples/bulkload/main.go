// Command bulkload loads 200,000 keys into the Redis server at REDIS_ADDR
// (default 127.0.0.1:6379) with one WithSkipResult batch: Redis sends no
// reply per SET (CLIENT REPLY OFF … ON), so the load is one stream of
// writes. It reads DBSIZE back with a second batch and deletes the keys with
// a third. It exits with status 1 on any error.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rbatch/rbatch"
)

const (
	numKeys   = 200_000
	delChunk  = 10_000 // keys per DEL command
	keyPrefix = "bulk:"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkload:", err)
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

	keys := make([]string, numKeys)
	for i := range keys {
		keys[i] = keyPrefix + strconv.Itoa(i)
	}

	// Load. With WithSkipResult the futures end with ErrResultSkipped and
	// BatchResult.Responses is empty; Execute still reports a batch that
	// could not be sent, and NodeResult says how many commands each node got.
	load := c.NewBatch(rbatch.WithSkipResult())
	for i, k := range keys {
		load.Bucket(k).SetAsync(i)
	}
	res, err := load.Execute(ctx)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	sent := 0
	for _, n := range res.Nodes {
		sent += n.Commands
	}
	fmt.Printf("sent %d SET commands, results skipped (%d responses)\n", sent, len(res.Responses))

	// Read back. The load's Execute returned once Redis answered CLIENT
	// REPLY ON, which it runs after the last SET: DBSIZE sees the whole load.
	check := c.NewBatch()
	size := check.Do("DBSIZE")
	if _, err := check.Execute(ctx); err != nil {
		return fmt.Errorf("dbsize: %w", err)
	}
	v, err := size.Get()
	if err != nil {
		return err
	}
	dbsize, ok := v.(int64)
	if !ok {
		return fmt.Errorf("dbsize: unexpected reply %T %v", v, v)
	}
	fmt.Printf("DBSIZE: %d\n", dbsize)
	if dbsize < numKeys {
		return fmt.Errorf("DBSIZE %d: fewer keys than the %d loaded", dbsize, numKeys)
	}
	fmt.Printf("loaded %d keys\n", numKeys)

	// Clean up: one DEL per chunk of keys, all in one batch.
	del := c.NewBatch()
	var dels []*rbatch.Future[int64]
	for from := 0; from < len(keys); from += delChunk {
		dels = append(dels, del.Keys().DeleteAsync(keys[from:min(from+delChunk, len(keys))]...))
	}
	if _, err := del.Execute(ctx); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	var deleted int64
	for _, f := range dels {
		n, err := f.Get()
		if err != nil {
			return err
		}
		deleted += n
	}
	fmt.Printf("deleted %d keys with %d DEL commands of %d keys\n", deleted, len(dels), delChunk)
	return nil
}
