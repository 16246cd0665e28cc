package rbatch_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/rbatch/rbatch"
)

// ExampleBatch_Execute queues typed commands, sends them in one round trip,
// and reads each result from its future. It runs against the test server.
func ExampleBatch_Execute() {
	ctx := context.Background()
	c, err := rbatch.NewClient(ctx, rbatch.Config{Addrs: []string{srv.Addr}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	b := c.NewBatch()
	b.Keys().DeleteAsync("example:greeting", "example:visits", "example:list", "example:missing")
	b.Bucket("example:greeting").SetAsync("hello")
	greeting := b.Bucket("example:greeting").GetAsync()
	visits := b.AtomicLong("example:visits").AddAndGetAsync(5)
	b.List("example:list").AddAllAsync("a", "b", "c")
	items := b.List("example:list").ReadAllAsync()
	missing := b.Bucket("example:missing").GetAsync()

	res, err := b.Execute(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	g, _ := greeting.Get()
	n, _ := visits.Get()
	l, _ := items.Get()
	_, err = missing.Get()
	fmt.Println(len(res.Responses), "responses")
	fmt.Println(g, n, l)
	fmt.Println("missing key is ErrNil:", errors.Is(err, rbatch.ErrNil))
	// Output:
	// 7 responses
	// hello 5 [a b c]
	// missing key is ErrNil: true
}
