package rbatch

import (
	"sync"
	"time"
)

// nodeStats gathers the NodeResults of a batch, one per node address.
type nodeStats struct {
	mu   sync.Mutex // guards list and at
	list []NodeResult
	at   []nodeRounds // for each of list, what its rounds added up to
}

// nodeRounds is what a node's NodeResult was made of: a round may run
// several groups there at once (one transaction per slot), which count as
// one attempt lasting as long as the longest. (Small: a batch allocates
// one per node.)
type nodeRounds struct {
	longest   time.Duration // the longest group of the latest round counted (Duration holds the earlier rounds' too)
	round     int32         // that round
	syncRound int32         // the round of the group that wrote whose WAIT the result holds
	// wrote tells whether a command may have been applied there: only such
	// a node's WAIT says something of the batch.
	wrote bool
}

// add counts a group's figures, from round, for its node; wrote reports
// that one of its commands may have been applied there (mayHaveApplied).
func (s *nodeStats) add(nr NodeResult, round int, wrote bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.list {
		p, a := &s.list[i], &s.at[i]
		if p.Addr != nr.Addr {
			continue
		}
		switch {
		case wrote && a.wrote && int(a.syncRound) == round:
			// Groups of one round that ran side by side: each WAIT covers
			// its own, so the node has the fewest.
			p.SyncedReplicas, p.SyncedLocal = min(p.SyncedReplicas, nr.SyncedReplicas), p.SyncedLocal && nr.SyncedLocal
		case wrote || !a.wrote: // a later round that applied nothing there says nothing of its sync
			p.SyncedReplicas, p.SyncedLocal = nr.SyncedReplicas, nr.SyncedLocal
			if wrote {
				a.syncRound = int32(round)
			}
		}
		a.wrote = a.wrote || wrote
		if round != int(a.round) {
			p.Attempts++
			a.longest, a.round = 0, int32(round)
		}
		if nr.Duration > a.longest {
			p.Duration += nr.Duration - a.longest
			a.longest = nr.Duration
		}
		p.Commands += nr.Commands
		p.Moved += nr.Moved
		p.Asked += nr.Asked
		return
	}
	nr.Attempts = 1
	s.list = append(s.list, nr)
	a := nodeRounds{wrote: wrote, round: int32(round), longest: nr.Duration}
	if wrote {
		a.syncRound = int32(round)
	}
	s.at = append(s.at, a)
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
		switch err := b.q.At(i).Future.(outcome).failure(); stateOf(err) {
		case notSent, aborted:
		case failed:
			if asRedisError(err) == nil || runsScript(b.q.Name(i)) {
				return true
			}
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
