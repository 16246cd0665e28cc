package rbatch

import (
	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/queue"
)

// entry is one node's share of a batch for one round: the submission
// indices of the commands routed to it, in submission order.
type entry struct {
	node     pool.Node // where the commands are routed
	fallback pool.Node // the primary, when node is a replica for read-only work
	slot     int       // the group slot it was placed by (target.groupSlot): -1 unless split per slot
	asking   bool      // redirected by ASK: send ASKING first
	reloaded bool      // sent again after NOSCRIPT: a second NOSCRIPT stays
	indices  []int

	session *batch.Session // the Redis-side queue (RedisReadAtomic/RedisWriteAtomic)
	// unwritten: the session was discarded before it had a connection, so
	// none of its commands reached Redis.
	unwritten bool
	turn      *pool.Turn  // the session's place in line for its node's connections
	group     batch.Group // what runGroup runs, kept here so it is not allocated apart
	// q and errs are set while runGroup's group runs: the queue its
	// replies resolve, and the error replies among them as they were read.
	q     *queue.Queue
	errs  []errReply
	proxy bool // through a proxy: its own errors end commands unknown (proxyFault)
	// marks count the replies handed out, for WithProgress (nil: none).
	marks *progressMarks
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
		x := &b.run
		if x.singles[0] != nil { // a retry round: the first one's entry is done with
			return []*entry{{node: node, slot: -1, indices: idx}}, nil, nil
		}
		// The first round's entry is zero (the work is zeroed when
		// recycled): set what differs rather than write it all again.
		x.single.node, x.single.slot, x.single.indices = node, -1, idx
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
	var tx *txSlot // a cluster transaction's slot
	if atomic && b.c.cluster {
		// Conditions make one transaction even when split per slot: they
		// hold for all of it.
		tx = &txSlot{perSlot: b.perSlot()}
		if tx.perSlot {
			// Each slot's transaction is atomic on its own: a command
			// whose own keys span slots (a script, RENAME) fits none.
			for _, i := range idx {
				if err := b.oneSlot(i); err != nil {
					return nil, nil, err
				}
			}
		} else {
			if err := b.pinTransaction(tx, idx); err != nil {
				return nil, nil, err
			}
			if _, err := b.c.router.RouteSlot(tx.slot); err != nil && tx.pinned {
				b.unserved(idx, err) // the transaction waits whole
				return nil, idx, nil
			}
			if len(idx) == 0 { // only conditions: they are checked where their slot is
				node, _, err := b.routeSlot(tx.slot, false)
				if err != nil {
					return nil, nil, err
				}
				return []*entry{{node: node, slot: -1}}, nil, nil
			}
		}
	}
	if !atomic && b.c.readFrom != Primary && !b.syncs() { // (else every read stays on its primary)
		b.markWrites(idx)
	}
	var last *entry // consecutive commands mostly share a node: skip the map
	type groupKey struct {
		node pool.Node
		slot int
	}
	byGroup := make(map[groupKey]*entry)
	for _, i := range idx {
		readOnly := b.q.At(i).Flags&queue.ReadOnly != 0
		if atomic {
			readOnly = allReadOnly
		}
		t, err := b.place(i, tx, readOnly)
		if err != nil {
			b.unserved([]int{i}, err)
			unserved = append(unserved, i)
			continue
		}
		k := groupKey{t.node, t.groupSlot}
		e := last
		if e == nil || e.node != k.node || e.slot != k.slot {
			e = byGroup[k]
		}
		if e == nil {
			e = &entry{node: t.node, fallback: t.fallback, slot: t.groupSlot}
			if len(byGroup) == 0 {
				e.indices = make([]int, 0, len(idx))
			}
			byGroup[k] = e
			entries = append(entries, e)
		}
		e.indices = append(e.indices, i)
		last = e
	}
	return entries, unserved, nil
}

// unserved resolves commands idx as not sent because no node serves their
// slot (err says which). A split command's part is named as the command.
func (b *Batch) unserved(idx []int, err error) {
	for _, i := range idx {
		o := b.origin(i)
		b.q.At(i).Future.(outcome).resolve(nil, &notSentError{cause: &CommandError{Index: o, Command: b.q.Name(o), Err: err}})
	}
}

// pinTransaction pins tx to the one slot the keys of the batch's
// conditions and of commands idx share (left unpinned when none has a key).
func (b *Batch) pinTransaction(tx *txSlot, idx []int) error {
	for _, cd := range b.conds { // a conditional transaction's keys are the conditions' too
		if err := tx.keep([]byte(cd.key)); err != nil {
			return err
		}
	}
	for _, i := range idx {
		if err := b.keepAll(tx, i); err != nil {
			return err
		}
	}
	return nil
}
