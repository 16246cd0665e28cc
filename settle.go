package rbatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/route"
	"github.com/rbatch/rbatch/queue"
)

// settle resolves the commands of idx that the group left unresolved, fills
// nr's figures, and says what is left to do.
//
// errs are the error replies among the answers, as they were read: the
// MOVED, ASK and retry decisions are taken from them.
func (b *Batch) settle(idx []int, errs []errReply, r *batch.Result, connErr error, nr *NodeResult) (fu followUp) {
	wrap := func(err error) error { return fmt.Errorf("%s: %w", nr.Addr, err) }
	if connErr != nil { // nothing was written
		if b.c.closed.Load() { // Close came first: the client sends nothing more
			b.resolve(idx, &notSentError{cause: fmt.Errorf("%w: %w", ErrClosed, wrap(connErr))})
			return followUp{}
		}
		b.resolve(idx, &notSentError{cause: wrap(connErr)})
		if _, gaveUp := connErr.(*unreachableError); gaveUp { // its retries are spent
			return followUp{refresh: true, failed: nr.Addr} // a failover may have moved its slots
		}
		return followUp{retry: idx, refresh: true, failed: nr.Addr}
	}
	nr.SyncedReplicas, nr.SyncedLocal = r.Replicas, r.Local
	if r.Err != nil {
		fu.refresh, fu.failed = true, nr.Addr
	}
	p := &b.plan
	switch {
	case r.Unmet: // nothing was sent: the batch is not to be applied
		b.resolve(idx, b.run.unmet)
		fu.err = b.run.unmet
	case r.GuardErr != nil: // WATCH was refused (MOVED, TRYAGAIN, …): nothing else was sent
		b.resolve(idx, &notSentError{cause: wrap(fmt.Errorf("checking the conditions (WATCH and reading their keys, or where the transaction's are) and opening their transaction (MULTI): %w", orRedisError(r.GuardErr)))})
		redirect(&fu, nr, idx, r.GuardErr)
	default:
		b.settleSpans(idx, errs, r, &fu, nr, wrap)
	}
	switch {
	case p.Tail == nil || !b.mayHaveApplied(idx):
		// No WAIT, or nothing here for it to acknowledge: the node
		// redirected its commands (a failover moved them) or refused them.
	case r.SyncErr != nil:
		fu.err = errors.Join(fu.err, wrap(syncFailed(r.SyncErr)))
	case !r.Synced && r.Err != nil:
		// WAIT/WAITAOF was asked for and never answered: how many replicas
		// hold the writes is unknown, which is not "none".
		fu.err = errors.Join(fu.err, wrap(fmt.Errorf("sync not answered: %w", &unknownError{cause: r.Err})))
	}
	if p.Atomic && len(fu.retry) > 0 {
		fu.retry = idx // a transaction goes again whole
	}
	return fu
}

// settleSpans resolves each command by what its group's wire said
// happened to it (batch.Result.Spans), taking the redirect and retry
// decisions from the error replies as they were read.
func (b *Batch) settleSpans(idx []int, errs []errReply, r *batch.Result, fu *followUp, nr *NodeResult, wrap func(error) error) {
	p := &b.plan
	// Read-only commands left unknown are retried when they ran on their
	// own (not inside a transaction, replies on): reading twice is harmless.
	// Not in a stream's part: a later part may have written their keys
	// already (keepRetriesInOrder sees only this part), and the read would
	// come back with a value from after it.
	rereadable := !p.SkipResult && (!p.Atomic || r.MultiRefused != nil) && !b.segment
	var buf [3]batch.Span
	for _, sp := range r.Spans(buf[:0], len(idx), *p, b.opts.Mode.redisSide()) {
		cmds := idx[sp.From:sp.To]
		switch sp.State {
		case batch.Answered:
			for _, er := range errs {
				redirect(fu, nr, []int{er.index}, er.err)
			}
			if b.skipsRead() || r.RepliesRead {
				b.skipAnswers(cmds, errs)
			}
		case batch.Unknown:
			unknown := &unknownError{cause: wrap(r.Err)}
			for _, i := range cmds {
				b.q.At(i).Future.(outcome).resolve(nil, unknown)
				if rereadable && b.q.At(i).Flags&queue.ReadOnly != 0 {
					fu.retry = append(fu.retry, i)
				}
			}
		case batch.NotSent:
			b.resolve(cmds, &notSentError{cause: wrap(r.Err)})
			fu.retry = append(fu.retry, cmds...)
		case batch.Aborted:
			if r.Aborted == nil { // the connection was lost before EXEC
				b.resolve(cmds, &txAbortedError{cause: wrap(r.Err)})
				continue
			}
			b.resolve(cmds, &txAbortedError{cause: b.abortCause(idx, r.Aborted)})
			redirect(fu, nr, idx, r.Aborted.Cause)
			if b.guard != nil && r.Aborted.Cause == batch.ErrNilExec {
				fu.retry = idx // a watched key changed: nothing applied, check again
			}
		case batch.Skipped:
			b.resolve(cmds, ErrResultSkipped)
		}
	}
	if r.MultiRefused != nil {
		fu.err = errors.Join(fu.err, wrap(fmt.Errorf("MULTI refused, the commands ran without a transaction: %w",
			orRedisError(r.MultiRefused))))
	}
}

// skipsRead reports whether the batch asked for WithSkipResult but has its
// replies read: on a cluster, where a redirect is seen only in a reply.
func (b *Batch) skipsRead() bool {
	return b.opts.SkipResult && !b.plan.SkipResult
}

// skipAnswers gives the answered commands of a skip-result batch whose
// replies were read what skipping gives them, ErrResultSkipped; those
// answered an error reply keep it (not applied, or redirected and sent
// again).
func (b *Batch) skipAnswers(cmds []int, errs []errReply) {
	k := 0 // errs are among cmds, in their order, as they were read
	for _, i := range cmds {
		if k < len(errs) && errs[k].index == i {
			k++
			continue
		}
		b.q.At(i).Future.(outcome).resolve(nil, ErrResultSkipped)
	}
}

// redirect files cmds under what err asks for: a retry (LOADING, BUSY,
// TRYAGAIN, …), a MOVED or an ASK. A MOVED back to the node that answered
// it is not followed: the command keeps the error.
func redirect(fu *followUp, nr *NodeResult, cmds []int, err error) {
	re := asRedisError(err)
	if re == nil {
		return
	}
	if inner, ok := execRefusal(re); ok {
		re = inner // EXEC itself was refused: the transaction goes as its refusal says
	}
	switch re.Prefix() {
	case "LOADING", "BUSY", "TRYAGAIN":
		fu.retry = append(fu.retry, cmds...)
	case "CLUSTERDOWN", "MASTERDOWN":
		// The node serves the slot no more (a replica taken out of the
		// cluster, a primary cut off): the map may route elsewhere now.
		fu.retry = append(fu.retry, cmds...)
		fu.refresh, fu.failed = true, nr.Addr
	case "MOVED":
		if addTo(&fu.moved, redirectAddr(re.Msg), nr.Addr, cmds) {
			nr.Moved += len(cmds)
		}
	case "ASK":
		if addTo(&fu.asked, redirectAddr(re.Msg), nr.Addr, cmds) {
			nr.Asked += len(cmds)
		}
	}
}

// execRefusal returns the error an EXECABORT names when EXEC itself was
// refused ("EXECABORT Transaction discarded because of: BUSY …", a server
// that turned busy, loading or redirecting between MULTI and EXEC), not a
// command queued before it.
func execRefusal(re *RedisError) (*RedisError, bool) {
	const because = "because of: "
	if re.Prefix() != "EXECABORT" {
		return nil, false
	}
	i := strings.Index(re.Msg, because)
	if i < 0 {
		return nil, false
	}
	return &RedisError{Msg: re.Msg[i+len(because):]}, true
}

// addTo files cmds under the redirect's target, unless it points back to the
// node that answered (that would loop: the commands keep the error); it
// reports whether it filed them.
func addTo(m *map[string][]int, addr, from string, cmds []int) bool {
	if addr == "" || addr == from {
		return false
	}
	if *m == nil {
		*m = map[string][]int{}
	}
	(*m)[addr] = append((*m)[addr], cmds...)
	return true
}

// redirectAddr returns the address of "MOVED 3999 127.0.0.1:6381".
func redirectAddr(msg string) string {
	f := strings.Fields(msg)
	if len(f) != 3 {
		return ""
	}
	return f[2]
}

// abortCause names the command whose queue-time error aborted a transaction.
func (b *Batch) abortCause(idx []int, a *batch.AbortError) error {
	cause := orRedisError(a.Cause)
	if a.Index >= 0 && a.Index < len(idx) {
		i := b.origin(idx[a.Index]) // a split command's part is named as the command
		return &CommandError{Index: i, Command: b.q.Name(i), Err: cause}
	}
	return cause
}

// keepRetriesInOrder drops from the retries those a later command on one of
// their keys already overtook in this round (answered while they were
// refused: a TRYAGAIN of a multi-key command whose keys a migration split,
// while the later command's key was still served where it was). Sent
// again, such a command would run after that later one; it keeps its
// refusal instead (not applied).
func (b *Batch) keepRetriesInOrder(n *nextRound, entries []*entry) {
	if len(n.retry) == 0 {
		return
	}
	// The latest submission index answered this round on each retried key
	// (-1: none yet); only those keys are looked up, so a large batch
	// with a few retries allocates for the few.
	last := map[string]int{}
	pending := map[int]bool{} // not answered this round: retried or redirected
	for _, i := range n.retry {
		pending[i] = true
		_ = b.eachKey(i, func(k []byte) error { last[string(k)] = -1; return nil })
	}
	for _, m := range []map[dest][]int{n.moved, n.asked, n.again} {
		for _, idx := range m {
			for _, i := range idx {
				pending[i] = true
			}
		}
	}
	for _, e := range entries {
		for _, j := range e.indices {
			if pending[j] {
				continue
			}
			o := b.origin(j)
			_ = b.eachKey(j, func(k []byte) error {
				if l, ok := last[string(k)]; ok && o > l {
					last[string(k)] = o
				}
				return nil
			})
		}
	}
	kept := n.retry[:0]
	for _, i := range n.retry {
		o, overtaken := b.origin(i), false
		_ = b.eachKey(i, func(k []byte) error {
			overtaken = overtaken || last[string(k)] > o
			return nil
		})
		if !overtaken {
			kept = append(kept, i)
		}
	}
	n.retry = kept
}

// holdBehindRetries keeps the commands on one key in their order when a
// round both retries some (TRYAGAIN, LOADING, not sent, …) and redirects
// others: a redirected command queued after a retried one of its slot
// would otherwise overtake it (sent on at once to the redirect's node
// while the retry waits), so it waits with the retry instead and is
// routed again with it, in submission order.
func (b *Batch) holdBehindRetries(n *nextRound) {
	first := map[int]int{} // slot → the earliest submission index retried there
	for _, i := range n.retry {
		if key := b.q.KeyBytes(i); key != nil {
			s, o := route.Slot(key), b.origin(i)
			if f, ok := first[s]; !ok || o < f {
				first[s] = o
			}
		}
	}
	held := len(n.retry)
	for _, m := range []map[dest][]int{n.moved, n.asked, n.again} {
		for d, idx := range m {
			kept := idx[:0]
			for _, i := range idx {
				key := b.q.KeyBytes(i)
				if key != nil {
					if f, ok := first[route.Slot(key)]; ok && f < b.origin(i) {
						n.retry = append(n.retry, i)
						continue
					}
				}
				kept = append(kept, i)
			}
			m[d] = kept
		}
	}
	if len(n.retry) > held {
		b.inOrder(n.retry)
	}
}
