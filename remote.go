package rbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/queue"
)

// The Redis-side queue of RedisReadAtomic and RedisWriteAtomic batches
// (Redisson's "store batched invocations in Redis"): the first command for a
// node opens a batch.Session there, which sends MULTI; each command is pushed
// to it as it is queued. Execute sends EXEC; Discard, or a refusal, DISCARD.

// pushRemote sends command i to its node's Redis-side queue. It runs with
// b.mu held, so commands are pushed in submission order.
func (b *Batch) pushRemote(i int) {
	c := b.q.At(i)
	if b.optErr != nil || b.remoteErr != nil || b.c.closed.Load() {
		return // Execute refuses the batch and discards what was pushed
	}
	if err := b.admit(i); err != nil {
		b.remoteErr = &CommandError{Index: i, Command: b.q.Name(i), Err: err} // the batch is doomed: stop pushing
		return
	}
	readOnly := b.opts.Mode == RedisReadAtomic
	if readOnly && c.Flags&queue.ReadOnly == 0 {
		b.remoteErr = &CommandError{Index: i, Command: b.q.Name(i), Err: ErrReadOnlyBatch}
		return
	}
	tx := &b.remoteTx
	if b.c.cluster {
		if err := b.keepRemote(tx, i); err != nil {
			b.remoteErr = &CommandError{Index: i, Command: b.q.Name(i), Err: err}
			return
		}
	}
	t := b.slots(i, tx)
	slot := t.slot
	var e *entry
	for _, r := range b.remote {
		if r.slot == t.groupSlot {
			e = r // one entry per transaction: per slot, or the batch's one
		}
	}
	if e == nil && b.waitsForSlot(slot) {
		b.remoteWaiting = append(b.remoteWaiting, i)
		return
	}
	if e == nil {
		node, fallback, err := b.routeSlot(slot, readOnly)
		if errors.Is(err, ErrSlotNotServed) {
			// No primary serves the slot now (a failover under way): the
			// transaction waits, to go at Execute within WithRetry.
			b.remoteWaiting, b.remoteWaitSlots = append(b.remoteWaiting, i), append(b.remoteWaitSlots, slot)
			if b.remoteWaitErr == nil {
				b.remoteWaitErr = err
			}
			return
		}
		if err != nil {
			b.remoteErr = &CommandError{Index: i, Command: b.q.Name(i), Err: err}
			return
		}
		if len(b.remote) == 0 && !b.c.hold(b) {
			b.remoteErr = ErrClosed // Close is under way: open nothing
			return
		}
		e = &entry{node: node, fallback: fallback, slot: t.groupSlot}
		if p, ok := node.(*pool.Pool); ok {
			// Batches opened earlier get their connections first, not
			// those whose session goroutines happen to run first.
			e.turn = p.Line()
		}
		hs := b.c.hooks.installed()
		e.session = batch.Open(b.backgroundContext(), b.plan, e.resolveSink,
			func(ctx context.Context) (batch.Lease, error) { return e.acquireLease(ctx, hs) })
		b.remote = append(b.remote, e)
	}
	e.indices = append(e.indices, i)
	e.session.Push(b.q.Bytes(i), c.Future)
	if b.stateful {
		e.session.Taint()
	}
}

// waitsForSlot reports whether commands of slot join the transaction
// waiting for its slot to be served: the one transaction of a batch, or
// with WithTransactionPerSlot that slot's.
func (b *Batch) waitsForSlot(slot int) bool {
	if !b.opts.TransactionPerSlot {
		return len(b.remoteWaitSlots) > 0
	}
	return slices.Contains(b.remoteWaitSlots, slot)
}

// resolveSink hands a Redis-side command its reply through the future it
// was pushed with (replies can come while more commands are queued, and
// the queue is not to be read then), and notes an error reply as it is
// read, for the redirect and retry decisions.
func (e *entry) resolveSink(sink, reply any) {
	o := sink.(outcome)
	o.resolve(reply, nil)
	if re, ok := reply.(redis.Error); ok {
		e.errs = append(e.errs, errReply{index: o.at(), err: re})
	}
}

// keepRemote pins a Redis-side transaction in a cluster to the slot of its
// first key, and checks command i's keys against it (each slot is its own
// transaction with WithTransactionPerSlot).
func (b *Batch) keepRemote(tx *txSlot, i int) error {
	if !tx.pinned && b.q.KeyBytes(i) == nil {
		return fmt.Errorf("rbatch: in a cluster the first command of a %v batch must name a key (it picks the slot)", b.opts.Mode)
	}
	if tx.perSlot {
		// A command is queued in Redis whole, into one slot's transaction,
		// before the batch is complete: its own keys must share that slot
		// (the buffered modes split it per slot instead).
		var own txSlot
		if err := b.keepAll(&own, i); err != nil {
			return err
		}
	}
	return b.keepAll(tx, i)
}

// closeSession sends EXEC (or DISCARD) on e's session and waits for the
// replies; the session gives its connection back. connErr is set when no
// connection could be had: nothing was written.
func (b *Batch) closeSession(ctx context.Context, e *entry, discard bool) (r batch.Result, addr string, connErr error) {
	if discard {
		r = e.session.Discard(ctx)
	} else {
		r = e.session.Exec(ctx)
	}
	conn := e.session.Conn()
	if conn == nil {
		return r, "", r.Err
	}
	if a, ok := conn.(interface{ Addr() string }); ok {
		addr = a.Addr()
	}
	return r, addr, nil
}

// discardRemote drops every Redis-side queue of the batch; one still
// waiting for its connection is dropped at once, without one.
func (b *Batch) discardRemote(ctx context.Context) {
	for _, e := range b.remote {
		_, _, connErr := b.closeSession(ctx, e, true)
		e.unwritten = connErr != nil
	}
}
