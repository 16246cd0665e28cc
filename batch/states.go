package batch

// State is what happened on the wire to one command of a group: the one
// place where a group's frames and how far they got become each command's
// outcome. The layer above maps each state to its future once.
type State uint8

const (
	// Answered: its reply was read and handed to the Resolver (an error
	// reply included).
	Answered State = iota
	// Unknown: written and never answered; it may have been applied.
	Unknown
	// NotSent: never written, so not applied.
	NotSent
	// Aborted: discarded with its transaction (queue-time error,
	// EXECABORT, a nil EXEC, or the connection lost before EXEC); not
	// applied. Result.Aborted says why, when Redis said it.
	Aborted
	// Skipped: written with replies off, as asked; not known.
	Skipped
)

func (s State) String() string {
	return [...]string{"answered", "unknown", "not sent", "aborted", "skipped"}[s]
}

// Span is a run of a group's commands in one state: positions [From, To)
// of the group, in submission order.
type Span struct {
	State    State
	From, To int
}

// Spans says what happened to each of the group's n commands, as at most
// three runs in order, appended to dst (a caller's [3]Span keeps them off
// the heap). queuedBefore says the commands were queued in a
// Redis-side MULTI before the group ran (a Session): a connection lost
// before EXEC then discards them rather than leaving them unsent. A group
// that did not run at all (its connection could not be had, its Guard did
// not hold or was refused) is the caller's to settle.
func (r *Result) Spans(dst []Span, n int, p Plan, queuedBefore bool) []Span {
	out := dst
	add := func(s State, from, to int) {
		if to > from {
			out = append(out, Span{State: s, From: from, To: to})
		}
	}
	sent := min(max(r.Sent, r.Answered), n)
	switch {
	case p.Atomic && r.Sent == 0 && !r.ExecSent && r.Err != nil && !queuedBefore:
		// The connection failed before any command was written (while
		// conditions were read, or at MULTI): none reached Redis.
		add(NotSent, 0, n)
	case p.Atomic && r.Aborted != nil && r.MultiRefused == nil:
		// Discarded: EXECABORT or a nil EXEC read, or the mark of a
		// transaction run with replies off missing.
		add(Aborted, 0, n)
	case r.Skipped:
		add(Skipped, 0, n)
	case p.Atomic && r.MultiRefused == nil && r.Answered < n:
		switch {
		case r.Aborted != nil:
			add(Aborted, 0, n)
		case r.ExecSent:
			add(Unknown, 0, n)
		default: // before EXEC, a lost connection discards the transaction
			add(Aborted, 0, n)
		}
	case p.SkipResult && !r.RepliesRead: // replies were turned off and never back on
		add(Unknown, 0, sent)
		add(NotSent, sent, n)
	default:
		add(Answered, 0, r.Answered)
		add(Unknown, r.Answered, sent)
		add(NotSent, sent, n)
	}
	return out
}
