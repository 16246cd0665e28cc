package rbatch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/internal/route"
	"github.com/rbatch/rbatch/queue"
)

// Routing is one step for every mode: place says where a command goes,
// whether the batch is grouped at Execute (groupByNode) or sent to a
// Redis-side queue as it is queued (pushRemote). A cluster transaction
// keeps to one slot, which a txSlot pins.

// txSlot is the one slot of a cluster transaction: pinned by the first key
// it is shown, after which every other key must share it (unless the
// transaction is split per slot, where it only records the first key).
type txSlot struct {
	key     string // the key that pinned it, for the error naming both
	slot    int
	pinned  bool
	perSlot bool // WithTransactionPerSlot: keys of other slots are fine
}

// keep pins the transaction to key's slot, or checks key against it.
func (t *txSlot) keep(key []byte) error {
	slot := route.Slot(key)
	switch {
	case !t.pinned:
		t.key, t.slot, t.pinned = string(key), slot, true
	case !t.perSlot && slot != t.slot:
		return crossSlot(t.key, t.slot, string(key), slot)
	}
	return nil
}

// oneSlot checks that the keys of command i share a slot (ErrCrossSlot).
func (b *Batch) oneSlot(i int) error {
	var first []byte
	slot := -1
	return b.eachKey(i, func(k []byte) error {
		switch s := route.Slot(k); {
		case slot < 0:
			first, slot = k, s
		case s != slot:
			return crossSlot(string(first), slot, string(k), s)
		}
		return nil
	})
}

// keepAll pins or checks every key of command i.
func (b *Batch) keepAll(t *txSlot, i int) error { return b.eachKey(i, t.keep) }

// eachKey calls fn with every key of command i (each argument of a
// multi-key command, each key of MSET's and MSETNX's pairs, the keys a
// script, RENAME, SINTERSTORE, XREAD … name; see queue.EachKey), up to
// fn's first error.
func (b *Batch) eachKey(i int, fn func(key []byte) error) error {
	name, f := b.q.NameBytes(i), b.q.At(i).Flags
	if queue.KeysKnown(name, f) {
		return queue.EachKey(name, f, b.q.Args(i), fn)
	}
	if key := b.q.KeyBytes(i); key != nil {
		return fn(key)
	}
	return nil
}

// A target is where a command goes: its node (a replica for read-only work
// under ReadFrom, with the primary as fallback), the slot it is routed by
// (-1: standalone, or keyless outside a transaction), and the slot of the
// transaction it belongs to when transactions are split per slot (-1
// otherwise): commands share a group when node and group slot match.
type target struct {
	node, fallback pool.Node
	slot           int
	groupSlot      int
}

// place routes command i. In a transaction tx is its slot (nil outside
// one): a keyless command goes with it, and so does every command unless
// the transaction is split per slot.
func (b *Batch) place(i int, tx *txSlot, readOnly bool) (target, error) {
	t := b.slots(i, tx)
	var err error
	t.node, t.fallback, err = b.routeSlot(t.slot, readOnly)
	return t, err
}

// slots is place without the node: the slot command i is routed by and
// the slot of its group.
func (b *Batch) slots(i int, tx *txSlot) target {
	t := target{slot: -1, groupSlot: -1}
	if b.c.cluster {
		if key := b.q.KeyBytes(i); key != nil {
			t.slot = route.Slot(key)
		}
	}
	if tx != nil {
		if tx.pinned && (t.slot < 0 || !tx.perSlot) {
			t.slot = tx.slot
		}
		if tx.perSlot {
			t.groupSlot = t.slot
		}
	}
	return t
}

// routeSlot returns the node for a command whose key has slot (-1: no key):
// the slot's owner, or for read-only work under ReadFrom, a replica of it
// (with the owner as fallback).
func (b *Batch) routeSlot(slot int, readOnly bool) (node, fallback pool.Node, err error) {
	node, err = b.c.router.RouteSlot(slot)
	if err != nil || !readOnly || b.c.readFrom == Primary || b.syncs() || b.run.wrote.has(node) {
		return node, nil, err
	}
	if r := b.c.router.Replica(node); r != nil {
		return r, node, nil
	}
	b.run.noReplica = true // the map may predate the replicas: see runRounds
	return node, nil, nil
}

// syncs reports whether the batch (or the stream it is a segment of) ends
// in WAIT or WAITAOF: its reads stay on the primaries, since a replica
// refuses both ("WAIT cannot be used with replica instances").
func (b *Batch) syncs() bool { return b.opts.Sync || b.opts.SyncAOF || b.streamSyncs }

// rawKeyArg is the position among args (1: the first; 0: none) of the key
// that routes Do(name, args...): the first argument, but for the commands
// whose first argument is a script, a count of keys, a subcommand or an
// option.
func rawKeyArg(name string, args []any) int {
	switch name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		// script (or function), numkeys, key…
		return numKeysAt(args, 1)
	case "SINTERCARD", "ZINTERCARD", "ZDIFF", "ZINTER", "ZUNION", "LMPOP", "ZMPOP":
		// numkeys, key…
		return numKeysAt(args, 0)
	case "BLMPOP", "BZMPOP":
		// timeout, numkeys, key…
		return numKeysAt(args, 1)
	case "OBJECT", "MEMORY", "XGROUP", "XINFO", "BITOP":
		// OBJECT ENCODING key, MEMORY USAGE key, XGROUP CREATE key …,
		// XINFO STREAM key, BITOP AND destkey key…; HELP takes none
		if len(args) >= 2 {
			return 2
		}
		return 0
	case "XREAD", "XREADGROUP":
		for k, a := range args {
			if strings.EqualFold(argString(a), "STREAMS") && k+1 < len(args) {
				return k + 2
			}
		}
		return 0
	}
	return 1
}

// numKeysAt is the position of the first key of a command whose numkeys
// is args[at] and whose keys follow it (0: no key).
func numKeysAt(args []any, at int) int {
	if len(args) > at+1 {
		if n, ok := argInt(args[at]); ok && n > 0 {
			return at + 2
		}
	}
	return 0
}

// argInt reads a numeric argument given as an integer or its decimal text.
func argInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint:
		return int64(n), true
	case uint64:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	n, err := strconv.ParseInt(argString(v), 10, 64)
	return n, err == nil
}

func crossSlot(k1 string, s1 int, k2 string, s2 int) error {
	return fmt.Errorf("rbatch: %q (slot %d) and %q (slot %d): %w", k1, s1, k2, s2, ErrCrossSlot)
}

// writtenPrimaries are the primaries a batch writes to, under ReadFrom
// Replica or PreferReplica: its read-only commands for them stay on them,
// beside the writes, so that a read queued with a write of its key sees
// it. (Redisson sends a node's commands to a replica only when all of them
// read.) A stream's segments share one, so that a read queued after a
// write stays with it whichever segment each lands in.
type writtenPrimaries struct {
	// nodes is replaced, never changed in place: a read is one load.
	nodes atomic.Pointer[[]pool.Node]
}

func (w *writtenPrimaries) has(n pool.Node) bool {
	if w == nil {
		return false
	}
	if p := w.nodes.Load(); p != nil {
		return slices.Contains(*p, n)
	}
	return false
}

func (w *writtenPrimaries) add(n pool.Node) {
	for {
		old := w.nodes.Load()
		var next []pool.Node
		if old != nil {
			if slices.Contains(*old, n) {
				return
			}
			next = slices.Clip(*old)
		}
		next = append(next, n)
		if w.nodes.CompareAndSwap(old, &next) {
			return
		}
	}
}

// markWrites records the primaries that commands idx write to, when the
// batch also reads under ReadFrom (nothing to keep otherwise).
func (b *Batch) markWrites(idx []int) {
	reads, writes := false, false
	for _, i := range idx {
		if b.q.At(i).Flags&queue.ReadOnly != 0 {
			reads = true
		} else {
			writes = true
		}
	}
	if !writes || (!reads && b.run.wrote == nil) {
		return
	}
	if b.run.wrote == nil {
		b.run.wrote = new(writtenPrimaries)
	}
	var last pool.Node
	for _, i := range idx {
		if b.q.At(i).Flags&queue.ReadOnly != 0 {
			continue
		}
		node, err := b.c.router.RouteSlot(b.slots(i, nil).slot)
		if err != nil || node == last {
			continue // unserved: it is not sent this round
		}
		b.run.wrote.add(node)
		last = node
	}
}

// replicaDown reports that the replica the entry's read-only group went to
// refused all of it with MASTERDOWN: every command, or the transaction.
func (b *Batch) replicaDown(e *entry, r *batch.Result) bool {
	if e.fallback == nil || r.Err != nil || b.opts.Mode.redisSide() {
		return false
	}
	if r.Aborted != nil {
		return masterDown(r.Aborted.Cause)
	}
	if len(e.errs) == 0 || len(e.errs) != len(e.indices) {
		return false
	}
	for _, er := range e.errs {
		if !masterDown(er.err) {
			return false
		}
	}
	return true
}

// masterDown reports whether err is a MASTERDOWN refusal (or an EXECABORT
// for one).
func masterDown(err error) bool {
	re := asRedisError(err)
	if re == nil {
		return false
	}
	if inner, ok := execRefusal(re); ok {
		re = inner
	}
	return re.Prefix() == "MASTERDOWN"
}
