// Command bulkload loads users into the Redis server at REDIS_ADDR (default
// 127.0.0.1:6379) with one STREAMING batch: BULKLOAD_USERS (default
// 5,000,000) keys user:<i>, each SET with a one-hour TTL, and the index set
// users:index with an SADD per user. The commands are sent while they are
// queued, memory stays bounded however many there are, and a progress line
// (rate, ETA) goes to stderr. It checks the load with DBSIZE and SCARD,
// deletes it with a second stream, and exits with status 1 on any error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rbatch/rbatch"
)

const (
	indexKey = "users:index"
	ttl      = time.Hour
	delChunk = 1000 // keys per DEL when cleaning up
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
	users := 5_000_000
	if v := os.Getenv("BULKLOAD_USERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("BULKLOAD_USERS=%q: want a positive count", v)
		}
		users = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{addr}})
	if err != nil {
		return err
	}
	defer c.Close()

	total := 2 * users // a SET and an SADD per user
	start := time.Now()
	b := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithContext(ctx),
		rbatch.WithProgress(500*time.Millisecond, progressLine(total)))
	index := b.Set(indexKey)
	for i := range users {
		id := strconv.Itoa(i)
		// The futures are not kept: a stream keeps nothing of a command once
		// it is answered, and Execute counts what each one did.
		b.Bucket("user:"+id).SetWithTTLAsync(`{"id":`+id+`,"plan":"free"}`, ttl)
		index.AddAsync(id)
	}
	res, err := b.Execute(ctx)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	took := time.Since(start)
	fmt.Printf("loaded %d users: %d commands applied, %d failed, %d not sent, %d unknown\n",
		users, res.Counts.Applied, res.Counts.Failed, res.Counts.NotSent, res.Counts.Unknown)
	fmt.Fprintf(os.Stderr, "bulkload: %d commands in %v (%.0f commands/s)\n", total, took.Round(time.Millisecond), float64(total)/took.Seconds())

	check := c.NewBatch()
	size := check.Do("DBSIZE")
	members := check.Set(indexKey).SizeAsync()
	withTTL := check.Bucket("user:0").RemainTimeToLiveAsync()
	if _, err := check.Execute(ctx); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	v, _ := size.Get()
	n, _ := v.(int64)
	m, _ := members.Get()
	left, _ := withTTL.Get()
	fmt.Printf("DBSIZE %d, SCARD %s %d, user:0 expires within the hour: %v\n", n, indexKey, m, left > 0 && left <= ttl.Milliseconds())
	if n != int64(users)+1 || m != int64(users) {
		return errors.New("the load is incomplete")
	}

	// Clean up with a second stream: DEL in chunks of keys.
	del := c.NewBatch(rbatch.WithMode(rbatch.Streaming), rbatch.WithContext(ctx))
	keys := make([]string, 0, delChunk)
	for i := range users {
		keys = append(keys, "user:"+strconv.Itoa(i))
		if len(keys) == delChunk || i == users-1 {
			del.Keys().DeleteAsync(keys...)
			keys = keys[:0]
		}
	}
	del.Keys().DeleteAsync(indexKey)
	if res, err = del.Execute(ctx); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	fmt.Printf("deleted the users with %d DEL commands\n", res.Counts.Applied)
	return nil
}

// progressLine returns a WithProgress function printing, on one line of
// stderr, how far the load got, its rate and when it should end.
func progressLine(total int) func(rbatch.Progress) {
	return func(p rbatch.Progress) {
		rate := float64(p.Answered) / p.Elapsed.Seconds()
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(total-p.Answered)/rate) * time.Second).Round(time.Second).String()
		}
		fmt.Fprintf(os.Stderr, "\rqueued %d, answered %d of %d (%.0f%%), %d failed, %.0f/s, ETA %s   ",
			p.Queued, p.Answered, total, 100*float64(p.Answered)/float64(total), p.Failed, rate, eta)
	}
}
