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
	used     pool.Node // the node whose connection ran the group
	slot     int       // the transaction's slot (-1: any), for per-slot transactions
	asking   bool      // redirected by ASK: send ASKING first
	indices  []int

	session *batch.Session // the Redis-side queue (RedisReadAtomic/RedisWriteAtomic)
}

// groupByNode splits commands idx into one entry per node, keeping
// submission order within each. In the atomic modes a transaction goes to
// one node — a replica only when every command is read-only — and in a
// cluster its keys must share one slot (or, with WithTransactionPerSlot,
// each slot is its own transaction).
func (b *Batch) groupByNode(idx []int) ([]*entry, error) {
	if !b.c.cluster && b.c.readFrom == Primary {
		// One node, whatever the keys: the group is idx itself.
		node, _ := b.c.router.Route("")
		return []*entry{{node: node, slot: -1, indices: idx}}, nil
	}
	atomic := b.opts.Mode.atomic()
	allReadOnly := true
	for _, i := range idx {
		if allReadOnly = b.q.At(i).Flags&queue.ReadOnly != 0; !allReadOnly {
			break
		}
	}
	txKey := ""
	if atomic && b.c.cluster && !b.opts.TransactionPerSlot {
		var err error
		if txKey, err = b.singleSlotKey(idx); err != nil {
			return nil, err
		}
	}
	var entries []*entry
	var last *entry // consecutive commands mostly share a node: skip the map
	type groupKey struct {
		node pool.Node
		slot int
	}
	byGroup := make(map[groupKey]*entry)
	for _, i := range idx {
		c := b.q.At(i)
		readOnly, key, slot := c.Flags&queue.ReadOnly != 0, c.Key, -1
		if atomic {
			readOnly = allReadOnly
			if txKey != "" {
				key = txKey // keyless commands go with the transaction
			}
			if b.opts.TransactionPerSlot && b.c.cluster && key != "" {
				slot = route.Slot(key)
			}
		}
		node, fallback, err := b.routeKey(key, readOnly)
		if err != nil {
			return nil, fmt.Errorf("command %d (%s): %w", i, c.Name, err)
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
	return entries, nil
}

// singleSlotKey checks that the keyed commands of idx share one slot and
// returns one of their keys ("" when none has a key).
func (b *Batch) singleSlotKey(idx []int) (string, error) {
	first, firstSlot := "", -1
	check := func(key string) error {
		slot := route.Slot(key)
		if firstSlot < 0 {
			first, firstSlot = key, slot
		} else if slot != firstSlot {
			return crossSlot(first, firstSlot, key, slot)
		}
		return nil
	}
	for _, i := range idx {
		c := b.q.At(i)
		if c.Flags&queue.MultiKey != 0 {
			for _, k := range b.q.Args(i) {
				if err := check(string(k)); err != nil {
					return "", err
				}
			}
		} else if c.Key != "" {
			if err := check(c.Key); err != nil {
				return "", err
			}
		}
	}
	return first, nil
}

func crossSlot(k1 string, s1 int, k2 string, s2 int) error {
	return fmt.Errorf("rbatch: %q (slot %d) and %q (slot %d): %w", k1, s1, k2, s2, ErrCrossSlot)
}
