// Regression tests for library bugs found by TestFaultSoak.
package rbatch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rbatch/rbatch"
	"github.com/rbatch/rbatch/internal/redistest"
)

// Fixed: a WithSync batch whose WAIT reply is lost (the connection drops
// after every command was answered, while WAIT runs) returns a nil error
// unless it is a WithSkipResult batch.
//
// execute.go, settle: the SkipResult case reports the lost sync reply
// (fu.err = "sync: " + unknownError), but the default and atomic cases only
// look at r.Answered: with every command answered, r.Err (the lost WAIT
// reply) is dropped. Execute returns nil, BatchResult.SyncedReplicas is 0 and
// nothing tells the caller that WAIT never answered, which reads as "WAIT
// answered 0": the durability the batch asked for is unknown, not known to
// be absent. NodeResult.SyncedReplicas is that node's WAIT reply (there was
// none); every other sent-but-unanswered frame ends unknown.
// The same fault gives two answers depending on WithSkipResult.
func TestSoakRegressionLostWaitReplyIsReported(t *testing.T) {
	// The handler runs one command at a time: plain state is safe.
	off, multi := false, false // CLIENT REPLY OFF, MULTI in force
	f := redistest.NewFake(t, func(cmd []string) string {
		reply := ":1\r\n" // INCR
		switch strings.ToUpper(strings.Join(cmd, " ")) {
		case "INFO SERVER", "INFO CLUSTER", "INFO REPLICATION":
			return redistest.DefaultReply(cmd)
		case "CLIENT REPLY OFF":
			off = true
		case "CLIENT REPLY ON":
			off = false
			return "+OK\r\n"
		case "MULTI":
			reply, multi = "+OK\r\n", true
		case "EXEC":
			reply, multi = "*1\r\n:1\r\n", false
		case "WAIT 1 100":
			return redistest.Hangup // the connection drops while WAIT runs
		case "WAIT 1 5000":
			return "" // WAIT runs until the context is cancelled
		}
		if multi && reply == ":1\r\n" {
			reply = "+QUEUED\r\n"
		}
		if off {
			return ""
		}
		return reply
	})
	cut := rbatch.WithSync(1, 100*time.Millisecond)
	long := rbatch.WithSync(1, 5*time.Second)
	for _, tc := range []struct {
		name   string
		opts   []rbatch.Option
		cancel bool
	}{
		{"IN_MEMORY+skip", []rbatch.Option{rbatch.WithSkipResult(), cut}, false}, // reported: passes
		{"IN_MEMORY", []rbatch.Option{cut}, false},
		{"IN_MEMORY_ATOMIC", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic), cut}, false},
		{"IN_MEMORY cancelled during WAIT", []rbatch.Option{long}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := rbatch.NewClient(context.Background(), rbatch.Config{Addrs: []string{f.Addr}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				defer time.AfterFunc(100*time.Millisecond, cancel).Stop()
			}
			b := c.NewBatch(tc.opts...)
			b.AtomicLong("k").IncrementAndGetAsync()
			res, err := b.Execute(ctx)
			if err == nil {
				t.Fatalf("WAIT never answered, yet Execute returned nil (SyncedReplicas %d)", res.SyncedReplicas)
			}
			t.Logf("Execute: %v", err)
		})
	}
}
