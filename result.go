package rbatch

import "time"

// BatchResult is what Execute returns: every command's outcome in submission
// order, and what each node did.
type BatchResult struct {
	// Responses holds one entry per queued command, in submission order: the
	// command's value, nil for a nil reply, or the command's error. Empty
	// with WithSkipResult.
	Responses []any
	// SyncedReplicas is, with WithSync or WithSyncAOF, the fewest replicas
	// that acknowledged on any node involved: the guarantee every command of
	// the batch has.
	SyncedReplicas int
	// Nodes says what each node involved did.
	Nodes []NodeResult
	// Counts tells how many commands ended in each state.
	Counts Counts
}

// NodeResult is one node's share of a batch.
type NodeResult struct {
	Addr           string        // the node's address
	Commands       int           // commands sent to it (none that its conditions kept back)
	SyncedReplicas int           // its WAIT (or WAITAOF replicas) reply
	SyncedLocal    bool          // WAITAOF: the local AOF was fsynced
	Attempts       int           // rounds (1 without retries or redirects), those that never had a connection included; a round's transactions per slot are one
	Duration       time.Duration // from taking a connection to the last reply, each round's longest group added up
	// Moved and Asked count the commands this node redirected with MOVED or
	// ASK to another node (a cluster resharding); rbatch sent them on there,
	// but for a command redirected past its bound, which keeps the error. A
	// redirect pointing back to this node is not followed, and not counted.
	Moved, Asked int
}
