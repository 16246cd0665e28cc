package rbatch

import (
	"fmt"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/route"
	"github.com/rbatch/rbatch/queue"
)

// entry is one node's share of a batch for one round: the submission
// indices of the commands routed to it, in submission order.
type entry struct {
	node     pool.Node // where the commands are routed
	fallback pool.Node // the primary, when node is a replica for read-only work
	slot     int       // the transaction's slot (-1: any), for per-slot transactions
	asking   bool      // redirected by ASK: send ASKING first
	reloaded bool      // sent again after NOSCRIPT: a second NOSCRIPT stays
	indices  []int

	session *batch.Session // the Redis-side queue (RedisReadAtomic/RedisWriteAtomic)
	group   batch.Group    // what runGroup runs, kept here so it is not allocated apart
	// q and errs are set while runGroup's group runs: the queue its
	// replies resolve, and the error replies among them as they were read.
	q    *queue.Queue
	errs []errReply
	// again are the EVALSHAs the node answered NOSCRIPT for: their
	// scripts are loaded and they are sent again.
	again []int
	// written and read are the bytes the group's connection took and gave.
	written, read int64
}

// groupByNode splits commands idx into one entry per node, keeping
// submission order within each. In the atomic modes a transaction goes to
// one node — a replica only when every command is read-only — and in a
// cluster its keys must share one slot (or, with WithTransactionPerSlot,
// each slot is its own transaction).
//
// Commands whose slot no primary serves (a primary failed and its replica
// is not promoted yet) are not grouped: they are resolved not sent, with
// ErrSlotNotServed, and returned in unserved, to be retried once the slot
// map is refreshed. The others go ahead. The error is for a batch that
// cannot be sent at all (ErrCrossSlot).
func (b *Batch) groupByNode(idx []int) (entries []*entry, unserved []int, err error) {
	if !b.c.cluster && b.c.readFrom == Primary {
		// One node, whatever the keys: the group is idx itself.
		node, _ := b.c.router.Route("")
		x := b.run
		if x.singles[0] != nil { // a retry round: the first one's entry is done with
			return []*entry{{node: node, slot: -1, indices: idx}}, nil, nil
		}
		x.single = entry{node: node, slot: -1, indices: idx}
		x.singles[0] = &x.single
		return x.singles[:], nil, nil
	}
	atomic := b.opts.Mode.atomic()
	allReadOnly := atomic // a transaction goes to a replica only when all of it reads
	for _, i := range idx {
		if !allReadOnly {
			break
		}
		allReadOnly = b.q.At(i).Flags&queue.ReadOnly != 0
	}
	txSlot := -1 // a cluster transaction's one slot
	if atomic && b.c.cluster && (!b.opts.TransactionPerSlot || len(b.conds) > 0) {
		if txSlot, err = b.singleSlot(idx); err != nil {
			return nil, nil, err
		}
		if _, err := b.c.router.RouteSlot(txSlot); err != nil && txSlot >= 0 {
			b.unserved(idx, err) // the transaction waits whole
			return nil, idx, nil
		}
		if len(idx) == 0 { // only conditions: they are checked where their slot is
			node, _, err := b.routeSlot(txSlot, false)
			if err != nil {
				return nil, nil, err
			}
			return []*entry{{node: node, slot: txSlot}}, nil, nil
		}
	}
	var last *entry // consecutive commands mostly share a node: skip the map
	type groupKey struct {
		node pool.Node
		slot int
	}
	byGroup := make(map[groupKey]*entry)
	for _, i := range idx {
		c := b.q.At(i)
		readOnly, keySlot, slot := c.Flags&queue.ReadOnly != 0, -1, -1
		if b.c.cluster {
			if key := b.q.KeyBytes(i); key != nil {
				keySlot = route.Slot(key)
			}
		}
		if atomic {
			readOnly = allReadOnly
			if txSlot >= 0 {
				keySlot = txSlot // keyless commands go with the transaction
			}
			if b.opts.TransactionPerSlot {
				slot = keySlot
			}
		}
		node, fallback, err := b.routeSlot(keySlot, readOnly)
		if err != nil {
			b.unserved([]int{i}, err)
			unserved = append(unserved, i)
			continue
		}
		e := last
		if e == nil || e.node != node || e.slot != slot {
			e = byGroup[groupKey{node, slot}]
		}
		if e == nil {
			e = &entry{node: node, fallback: fallback, slot: slot}
			if len(byGroup) == 0 {
				e.indices = make([]int, 0, len(idx))
			}
			byGroup[groupKey{node, slot}] = e
			entries = append(entries, e)
		}
		e.indices = append(e.indices, i)
		last = e
	}
	return entries, unserved, nil
}

// unserved resolves commands idx as not sent because no node serves their
// slot (err says which).
func (b *Batch) unserved(idx []int, err error) {
	for _, i := range idx {
		b.q.At(i).Future.(outcome).resolve(nil, &notSentError{cause: &CommandError{Index: i, Command: b.q.Name(i), Err: err}})
	}
}

// singleSlot checks that the keyed commands of idx share one slot and
// returns it (-1 when none has a key).
func (b *Batch) singleSlot(idx []int) (int, error) {
	var first []byte
	firstSlot := -1
	check := func(key []byte) error {
		slot := route.Slot(key)
		if firstSlot < 0 {
			first, firstSlot = key, slot
		} else if slot != firstSlot {
			return crossSlot(string(first), firstSlot, string(key), slot)
		}
		return nil
	}
	for _, cd := range b.conds { // a conditional transaction's keys are the conditions' too
		if err := check([]byte(cd.key)); err != nil {
			return -1, err
		}
	}
	for _, i := range idx {
		if f := b.q.At(i).Flags; f&(queue.MultiKey|queue.KeyValue) != 0 {
			step := 1
			if f&queue.KeyValue != 0 {
				step = 2 // key, value, …
			}
			args := b.q.Args(i)
			for k := 0; k < len(args); k += step {
				if err := check(args[k]); err != nil {
					return -1, err
				}
			}
		} else if key := b.q.KeyBytes(i); key != nil {
			if err := check(key); err != nil {
				return -1, err
			}
		}
	}
	return firstSlot, nil
}

func crossSlot(k1 string, s1 int, k2 string, s2 int) error {
	return fmt.Errorf("rbatch: %q (slot %d) and %q (slot %d): %w", k1, s1, k2, s2, ErrCrossSlot)
}
