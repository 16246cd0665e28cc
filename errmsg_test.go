package rbatch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rbatch/rbatch"
)

type user struct{ Name string }

// Execute's errors read once: one "rbatch:" prefix, what happened to how
// many commands, each cause once, on one line.
func TestBatchErrorMessages(t *testing.T) {
	cases := []struct {
		name string
		opts []rbatch.Option
		fill func(b *rbatch.Batch)
		want string
	}{
		{"a value without codec refuses the batch", nil, func(b *rbatch.Batch) {
			b.Bucket("em:a").SetAsync("1")
			b.Bucket("em:b").SetAsync(user{"ada"})
		}, "rbatch: 2 commands not sent: command 1 (SET): argument 2: value of type rbatch_test.user: no codec for this value type (set one with WithCodec)"},
		{"a TTL under a millisecond", nil, func(b *rbatch.Batch) {
			b.Bucket("em:a").SetWithTTLAsync("1", 500*time.Microsecond)
		}, "rbatch: 1 command not sent: command 0 (SET): TTL 500µs is under a millisecond, the unit Redis counts TTLs in"},
		{"one error reply", nil, func(b *rbatch.Batch) {
			b.Bucket("em:s").SetAsync("x")
			b.List("em:s").AddAsync("y")
			b.Bucket("em:s").GetAsync()
		}, "rbatch: 1 of 3 commands did not succeed (1 failed): command 1 (RPUSH): server error: WRONGTYPE Operation against a key holding the wrong kind of value"},
		{"the same error reply five times", nil, func(b *rbatch.Batch) {
			b.Bucket("em:s").SetAsync("x")
			for range 5 {
				b.List("em:s").AddAsync("y")
			}
		}, "rbatch: 5 of 6 commands did not succeed (5 failed): commands 1 to 5: server error: WRONGTYPE Operation against a key holding the wrong kind of value"},
		{"the same error reply with successes between", nil, func(b *rbatch.Batch) {
			b.Bucket("em:s").SetAsync("x")
			b.List("em:s").AddAsync("y")
			b.Bucket("em:s").GetAsync()
			b.List("em:s").AddAsync("y")
		}, "rbatch: 2 of 4 commands did not succeed (2 failed): commands 1 and 3: server error: WRONGTYPE Operation against a key holding the wrong kind of value"},
		{"the same error reply many times with successes between", nil, func(b *rbatch.Batch) {
			b.Bucket("em:s").SetAsync("x")
			for range 6 {
				b.List("em:s").AddAsync("y")
				b.Bucket("em:s").GetAsync()
			}
		}, "rbatch: 6 of 13 commands did not succeed (6 failed): 6 commands from 1 to 11: server error: WRONGTYPE Operation against a key holding the wrong kind of value"},
		{"a condition that does not hold", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, func(b *rbatch.Batch) {
			b.AddCondition(rbatch.KeyExists("em:none"))
			b.Bucket("em:a").SetAsync("1")
			b.Bucket("em:b").SetAsync("2")
		}, `rbatch: 2 of 2 commands did not succeed (2 not sent): commands 0 to 1: condition failed: condition 0, KeyExists("em:none"), did not hold: it does not exist`},
		{"a condition that does not hold, one command", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic)}, func(b *rbatch.Batch) {
			b.AddCondition(rbatch.KeyExists("em:none"))
			b.Bucket("em:a").SetAsync("1")
		}, `rbatch: 1 of 1 command did not succeed (1 not sent): command 0 (SET): condition failed: condition 0, KeyExists("em:none"), did not hold: it does not exist`},
		{"an invalid option", []rbatch.Option{rbatch.WithRetry(3, 0)}, func(b *rbatch.Batch) {
			b.Bucket("em:a").SetAsync("1")
		}, "rbatch: 1 command not sent: invalid option: WithRetry with 3 attempts needs a positive interval"},
		{"an invalid option, conditions only", []rbatch.Option{rbatch.WithMode(rbatch.InMemoryAtomic), rbatch.WithRetry(3, 0)}, func(b *rbatch.Batch) {
			b.AddCondition(rbatch.KeyExists("em:a"))
		}, "rbatch: batch not sent: invalid option: WithRetry with 3 attempts needs a positive interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			c := newClient(t)
			b := c.NewBatch(tc.opts...)
			tc.fill(b)
			_, err := b.Execute(context.Background())
			require.Error(t, err)
			msg := err.Error()
			assert.Equal(t, tc.want, msg)
			assert.Equal(t, 1, strings.Count(msg, "rbatch:"), "one prefix")
			assert.NotContains(t, msg, "\n")
		})
	}
}

// A cross-slot transaction is refused in one line, in both atomic families.
func TestCrossSlotMessages(t *testing.T) {
	cl := freshCluster(t)
	c := clusterClient(t, cl)
	for _, mode := range []rbatch.ExecutionMode{rbatch.InMemoryAtomic, rbatch.RedisWriteAtomic} {
		b := c.NewBatch(rbatch.WithMode(mode))
		b.Bucket("a").SetAsync("1")
		b.Bucket("b").SetAsync("2")
		_, err := b.Execute(context.Background())
		require.ErrorIs(t, err, rbatch.ErrCrossSlot)
		msg := err.Error()
		t.Logf("%v: %s", mode, msg)
		assert.Equal(t, 1, strings.Count(msg, "rbatch:"), "one prefix: %s", msg)
		assert.NotContains(t, msg, "\n")
		assert.Equal(t, 1, strings.Count(msg, `"a" (slot 15495) and "b" (slot 3300)`), "the cause once: %s", msg)
	}
}
