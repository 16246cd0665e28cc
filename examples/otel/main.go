// Command otel runs two batches against the Redis server at REDIS_ADDR
// (default 127.0.0.1:6379) with rbatch's OpenTelemetry hook installed, and
// prints their spans with the SDK's stdout exporter: one span per batch, a
// child per node, never one per command. It exits with status 1 on any
// error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/rbatchotel"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "otel:", err)
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

	exporter, err := stdouttrace.New(stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	// A syncer exports each span as it ends, so the output follows the batches.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(context.Background())

	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{addr}})
	if err != nil {
		return err
	}
	defer c.Close()
	c.AddHook(rbatchotel.NewHook(rbatchotel.WithTracerProvider(tp)))

	// 1,000 SETs: two spans, "PIPELINE SET" and its node's.
	b := c.NewBatch()
	for i := range 1000 {
		b.Bucket("otel:k" + strconv.Itoa(i)).SetAsync(i)
	}
	if _, err := b.Execute(ctx); err != nil {
		return err
	}

	// A transaction with a command Redis refuses (WRONGTYPE): its spans carry
	// error.type and db.response.status_code.
	b = c.NewBatch(rbatch.WithMode(rbatch.InMemoryAtomic))
	b.Bucket("otel:k1").GetAsync()
	b.List("otel:k1").AddAsync("x") // otel:k1 holds a string
	_, err = b.Execute(ctx)
	var re *rbatch.RedisError
	if !errors.As(err, &re) || re.Prefix() != "WRONGTYPE" {
		return fmt.Errorf("want a WRONGTYPE reply, got %v", err)
	}
	fmt.Fprintln(os.Stderr, "otel: 2 batches, 1,002 commands, 4 spans printed above")
	return nil
}
