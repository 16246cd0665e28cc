package rbatch

import "errors"

// Counts tells how many commands ended in each state (see the package doc,
// "Errors"); the six add up to the commands queued.
type Counts struct {
	Applied int // Redis ran it: a value, ErrNil, or a reply that did not decode (ErrDecode)
	Failed  int // Redis answered an error (WRONGTYPE, …); a script's error can follow writes it made, which stay
	Aborted int // its transaction was discarded: ErrTxAborted
	NotSent int // it never reached Redis: ErrNotSent, ErrConditionFailed, ErrDiscarded
	Unknown int // written, not answered: ErrUnknownOutcome
	Skipped int // sent with WithSkipResult: ErrResultSkipped
}

// Total is the number of commands counted.
func (c Counts) Total() int {
	return c.Applied + c.Failed + c.Aborted + c.NotSent + c.Unknown + c.Skipped
}

// state is one of the states a command ends in (see the package doc, "Errors").
type state int8

const (
	applied state = iota
	failed
	aborted
	notSent
	unknown
	skipped
)

// stateOf tells the state of a command that ended with err. The order
// matters: a reply that did not decode may wrap an error element of it
// (applied all the same), and a written command of a discarded stream
// wraps the discard as well (unknown, not not sent).
func stateOf(err error) state {
	if _, ok := err.(*notSentError); ok { // most of a cancelled bulk load: no chain to walk
		return notSent
	}
	switch {
	case err == nil || err == ErrNil, errors.Is(err, ErrDecode):
		return applied
	case err == ErrResultSkipped:
		return skipped
	case errors.Is(err, ErrNotSent), errors.Is(err, ErrConditionFailed):
		return notSent
	case errors.Is(err, ErrTxAborted):
		return aborted
	case errors.Is(err, ErrUnknownOutcome):
		return unknown
	case errors.Is(err, ErrDiscarded):
		return notSent
	}
	return failed
}

// add counts a command that ended with err.
func (c *Counts) add(err error) {
	switch stateOf(err) {
	case applied:
		c.Applied++
	case failed:
		c.Failed++
	case aborted:
		c.Aborted++
	case notSent:
		c.NotSent++
	case unknown:
		c.Unknown++
	case skipped:
		c.Skipped++
	}
}
