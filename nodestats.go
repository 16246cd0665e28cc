package rbatch

import (
	"errors"
	"sync"
)

// nodeStats gathers the NodeResults of a batch, one per node address.
type nodeStats struct {
	mu   sync.Mutex // guards list and wrote
	list []NodeResult
	// wrote tells, for each of list, whether a command may have been
	// applied there: only such a node's WAIT says something of the batch.
	wrote []bool
}

// add counts a group's figures for its node; wrote reports that one of
// its commands may have been applied there (mayHaveApplied).
func (s *nodeStats) add(nr NodeResult, wrote bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.list {
		if p := &s.list[i]; p.Addr == nr.Addr {
			if wrote || !s.wrote[i] { // a later round that applied nothing there says nothing of its sync
				p.SyncedReplicas, p.SyncedLocal = nr.SyncedReplicas, nr.SyncedLocal
			}
			s.wrote[i] = s.wrote[i] || wrote
			p.Commands += nr.Commands
			p.Attempts++
			p.Duration += nr.Duration
			p.ServerErrors += nr.ServerErrors
			p.Moved += nr.Moved
			p.Asked += nr.Asked
			return
		}
	}
	nr.Attempts = 1
	s.list = append(s.list, nr)
	s.wrote = append(s.wrote, wrote)
}

// mayHaveApplied reports whether a command of idx may have been applied by
// the node that answered them: any but one not sent, aborted with its
// transaction, or refused whole by an error reply (redirected with MOVED
// or ASK, WRONGTYPE, …). A script's error reply leaves the writes it made
// before it, and a reply that did not decode was a command's that ran. A
// node that applied nothing (its commands moved to another, in a
// failover) has nothing for its WAIT to acknowledge.
func (b *Batch) mayHaveApplied(idx []int) bool {
	for _, i := range idx {
		switch err := b.q.At(i).Future.(outcome).failure(); {
		case errors.Is(err, ErrNotSent), errors.Is(err, ErrTxAborted), errors.Is(err, ErrDiscarded), errors.Is(err, ErrConditionFailed):
		case asRedisError(err) != nil && !runsScript(b.q.Name(i)):
		default:
			return true
		}
	}
	return false
}

// runsScript reports whether the command runs a script, whose error reply
// does not undo what it wrote before.
func runsScript(name string) bool {
	switch name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		return true
	}
	return false
}
