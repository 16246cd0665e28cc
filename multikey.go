package rbatch

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/rbatch/rbatch/internal/route"
	"github.com/rbatch/rbatch/queue"
)

// In a cluster, a command whose arguments are all keys (DEL, EXISTS, UNLINK,
// TOUCH, MGET), or key/value pairs (MSET), and whose keys span slots is
// split at Execute into one part
// per slot. The parts are appended to the queue after the user's commands
// (so submission indices do not move) but sent in the place of the command
// they split, so that on each node they keep its order among the others
// (a DEL of k between two SETs of k runs between them), and their replies
// are joined into the one future: counts summed, MGET's values put back in
// key order. A part that fails fails the command; a write whose other parts
// were applied then ends unknown (ErrUnknownOutcome), as it was applied for
// some of its keys.
//
// Behind a proxy (twemproxy) the commands it sends whole to the server of
// their first key (proxyWhole: EXISTS) are split the same way, into one
// part per key, since rbatch does not know how the proxy shards keys; the
// others it splits per server itself.

// split is one command sent as parts.
type split struct {
	parent int   // the user's command
	parts  []int // queue positions of its parts
	// positions[k] lists, for part k, the indices of its keys among the
	// parent's keys (MGET needs them to put values back in order).
	positions [][]int
}

// part receives a part's reply; the parent is resolved from its parts.
type part struct {
	reply any
	err   error
}

func (p *part) resolve(reply any, err error) {
	if re := redisErrorOf(reply); re != nil && err == nil {
		err = re
	}
	p.reply, p.err = reply, err
}
func (p *part) response() any  { return p.reply }
func (p *part) failure() error { return p.err }

// at is -1: a part has no submission index of its own (the parts of a
// split command go in buffered modes only, resolved through their group).
func (p *part) at() int { return -1 }

// splitMultiKey splits the multi-key commands of a cluster batch, or of a
// batch through a proxy, and returns the queue positions to send, in
// submission order: each split command's parts in its place.
func (b *Batch) splitMultiKey() ([]int, []split) {
	idx := b.allIndices()
	perKey := !b.c.cluster && b.c.info.Proxy && !b.opts.SkipResult // (a skipped count needs no sum)
	if !b.c.cluster && !perKey || (b.opts.Mode.atomic() && !b.perSlot()) {
		// (One transaction's keys share a slot: pinTransaction checks. A
		// proxy takes no transaction.)
		return idx, nil
	}
	var splits []split
	n := len(idx)
	idx = idx[:0]
	bad := b.bad // a stream's commands that failed at queueing: never split, never sent
	for i := 0; i < n; i++ {
		for len(bad) > 0 && bad[0] < i {
			bad = bad[1:]
		}
		c := b.q.At(i)
		if c.Flags&(queue.MultiKey|queue.KeyValue) == 0 || (perKey && !proxyWhole[b.q.Name(i)]) ||
			(len(bad) > 0 && bad[0] == i) {
			idx = append(idx, i)
			continue
		}
		step := 1 // arguments per key
		if c.Flags&queue.KeyValue != 0 {
			step = 2
		}
		if b.q.NArgs(i) < 2*step { // DeleteAsync, IsExistsAsync: one key
			idx = append(idx, i)
			continue
		}
		all := b.q.Args(i)
		keys := all
		if step == 2 {
			keys = make([][]byte, 0, len(all)/2)
			for k := 0; k < len(all); k += 2 {
				keys = append(keys, all[k])
			}
		}
		if !perKey && oneSlot(keys) {
			idx = append(idx, i)
			continue
		}
		byPart := map[int][]int{} // the indices among keys of each part's keys
		var order []int
		for k, key := range keys {
			g := k // behind a proxy, a part per key
			if !perKey {
				g = route.Slot(key)
			}
			if byPart[g] == nil {
				order = append(order, g)
			}
			byPart[g] = append(byPart[g], k)
		}
		sp := split{parent: i}
		for _, g := range order {
			ks := byPart[g]
			args := make([]any, 0, len(ks)*step)
			for _, k := range ks {
				for _, a := range all[k*step : k*step+step] {
					args = append(args, a)
				}
			}
			pos := b.q.Add(queue.Command{Name: b.q.Name(i), KeyArg: 1, Flags: c.Flags, Future: &part{}}, nil, args...)
			sp.parts = append(sp.parts, pos)
			sp.positions = append(sp.positions, ks)
			if b.run.partsFrom == 0 {
				b.run.partsFrom = pos
			}
			b.run.partOf = append(b.run.partOf, i)
		}
		idx = append(idx, sp.parts...)
		splits = append(splits, sp)
	}
	return idx, splits
}

// perSlot reports whether the batch runs a transaction per slot
// (WithTransactionPerSlot, and no conditions: they hold for one
// transaction). Then a multi-key command is split too, each part in the
// transaction of its slot.
func (b *Batch) perSlot() bool { return b.opts.TransactionPerSlot && len(b.conds) == 0 }

// origin is the submission index of the command at queue position i: its
// own, or for a part of a split command, that command's.
func (b *Batch) origin(i int) int {
	if x := &b.run; x.partOf != nil && i >= x.partsFrom {
		return x.partOf[i-x.partsFrom]
	}
	return i
}

// inOrder sorts queue positions into the order they were submitted in.
func (b *Batch) inOrder(idx []int) {
	slices.SortFunc(idx, func(i, j int) int { return cmp.Or(cmp.Compare(b.origin(i), b.origin(j)), cmp.Compare(i, j)) })
}

// oneSlot reports whether keys all hash to one slot.
func oneSlot(keys [][]byte) bool {
	first := route.Slot(keys[0])
	for _, k := range keys[1:] {
		if route.Slot(k) != first {
			return false
		}
	}
	return true
}

// partFailed is a split command's error when its part at pos failed with
// err. A write whose other parts were applied is unknown, not failed: it
// was applied for some of its keys (an error wrapping err would count as
// err's state, which says it was not). So is one with another part
// unknown: that part's keys may have been written.
func (b *Batch) partFailed(sp split, pos int, err error) error {
	key := b.q.KeyBytes(pos)
	if !b.c.cluster { // a part per key, through a proxy
		return fmt.Errorf("key %q: %w", key, err) // (only read-only commands: proxyWhole)
	}
	slot := route.Slot(key)
	if b.q.At(sp.parent).Flags&queue.ReadOnly == 0 {
		unknown := -1
		for _, other := range sp.parts {
			switch e := b.q.At(other).Future.(*part).err; {
			case e == nil || e == ErrResultSkipped: // applied there
				return &partlyAppliedError{cause: partRefused(fmt.Sprintf("for the keys of slot %d: %v", slot, err), err)}
			case unknown < 0 && errors.Is(e, ErrUnknownOutcome):
				unknown = other
			}
		}
		if unknown >= 0 {
			e := b.q.At(unknown).Future.(*part).err
			return fmt.Errorf("keys of slot %d: %w (keys of slot %d: %v)", route.Slot(b.q.KeyBytes(unknown)), e, slot, err)
		}
	}
	return fmt.Errorf("keys of slot %d: %w", slot, err)
}

// partlyAppliedError is the unknown outcome of a split write applied for
// the keys of some slots and refused (or not sent) for others: cause says
// which, and unwraps to the refusal's error reply.
type partlyAppliedError struct{ cause error }

func (e *partlyAppliedError) Error() string {
	return "rbatch: outcome unknown: applied for the keys of some slots, not " + e.cause.Error()
}
func (e *partlyAppliedError) Unwrap() []error { return []error{ErrUnknownOutcome, e.cause} }

// joinSplits resolves each split command from its parts: the first failed
// part's error, else ErrResultSkipped when their replies were skipped, else
// the parts' replies joined.
func (b *Batch) joinSplits(splits []split) {
	for _, sp := range splits {
		parent := b.q.At(sp.parent)
		var values []any
		var sum int64
		var failed error
		skipped := false
		for k, pos := range sp.parts {
			p := b.q.At(pos).Future.(*part)
			if p.err == ErrResultSkipped { // sent, its reply not asked for (read, on a cluster)
				skipped = true
				continue
			}
			if p.err != nil {
				failed = b.partFailed(sp, pos, p.err)
				break
			}
			switch r := p.reply.(type) {
			case int64:
				sum += r
			case string: // MSET's OK
				if r != "OK" {
					failed = fmt.Errorf("rbatch: unexpected reply %q to a part of %s", r, b.q.Name(sp.parent))
				}
			case []any:
				if values == nil {
					values = make([]any, b.q.NArgs(sp.parent))
				}
				for j, v := range r {
					if j < len(sp.positions[k]) {
						values[sp.positions[k][j]] = v
					}
				}
			default:
				failed = fmt.Errorf("rbatch: unexpected reply %T to a part of %s", p.reply, b.q.Name(sp.parent))
			}
		}
		o := parent.Future.(outcome)
		switch {
		case failed != nil:
			o.resolve(nil, failed)
		case skipped:
			o.resolve(nil, ErrResultSkipped)
		case values != nil:
			o.resolve(values, nil)
		case parent.Flags&queue.KeyValue != 0:
			o.resolve("OK", nil)
		default:
			o.resolve(sum, nil)
		}
	}
}

// partRefusal is a split command's error when one part was refused and
// another applied: it reads as msg and unwraps to the refusal's error reply
// only, so that its prefix can be inspected while the command's state
// stays the unknown one around it (not the part's: aborted, not sent).
type partRefusal struct {
	msg string
	re  *RedisError
}

func (e *partRefusal) Error() string { return e.msg }
func (e *partRefusal) Unwrap() error {
	if e.re == nil {
		return nil
	}
	return e.re
}

func partRefused(msg string, err error) error { return &partRefusal{msg: msg, re: asRedisError(err)} }
