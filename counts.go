package rbatch

import "errors"

// Counts tells how many commands ended in each state (see the package doc,
// "Errors"); the six add up to the commands queued.
type Counts struct {
	Applied int // Redis ran it: a value, ErrNil, or a reply that did not decode (ErrDecode)
	Failed  int // Redis answered an error (WRONGTYPE, …)
	Aborted int // its transaction was discarded: ErrTxAborted
	NotSent int // it never reached Redis: ErrNotSent, ErrConditionFailed, ErrDiscarded
	Unknown int // written, not answered: ErrUnknownOutcome
	Skipped int // sent with WithSkipResult: ErrResultSkipped
}

// Total is the number of commands counted.
func (c Counts) Total() int {
	return c.Applied + c.Failed + c.Aborted + c.NotSent + c.Unknown + c.Skipped
}

// add counts a command that ended with err.
func (c *Counts) add(err error) {
	switch {
	case err == nil || err == ErrNil:
		c.Applied++
	case errors.Is(err, ErrDecode):
		c.Applied++ // Redis ran it; only its value was lost
	case err == ErrResultSkipped:
		c.Skipped++
	case errors.Is(err, ErrNotSent), errors.Is(err, ErrConditionFailed):
		c.NotSent++
	case errors.Is(err, ErrTxAborted):
		c.Aborted++
	case errors.Is(err, ErrUnknownOutcome): // (a discarded stream's written commands: unknown)
		c.Unknown++
	case errors.Is(err, ErrDiscarded):
		c.NotSent++
	default:
		c.Failed++
	}
}
