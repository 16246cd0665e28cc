package rbatch

// causes keeps, of the failures a stream does not list (it lists the
// first maxFailuresKept), those that let errors.Is and errors.As on
// Execute's error reach every cause: the first failure in each state
// (failed, aborted, not sent, unknown, applied with ErrDecode), always,
// and then the first of each distinct message, up to maxCausesKept. A
// message costs its Error string, so at most maxCauseLooks are looked at.
type causes struct {
	kept   []CommandError
	states [skipped + 1]bool
	seen   map[cause]struct{}
	looks  int
}

// maxCausesKept bounds the failures kept for their messages, and
// maxCauseLooks how many messages are looked at (for a segment, and for
// the stream).
const (
	maxCausesKept = 32
	maxCauseLooks = 4096
)

// cause tells failures apart: by state and message.
type cause struct {
	st  state
	msg string
}

// message is err's text, without building a RedisError's.
func message(err error) string {
	if re, ok := err.(*RedisError); ok {
		return re.Msg
	}
	return err.Error()
}

// offer keeps c when it tells a cause not kept yet.
func (cs *causes) offer(c CommandError) {
	st := stateOf(c.Err)
	if cs.states[st] && (len(cs.kept) >= maxCausesKept || cs.looks >= maxCauseLooks) {
		return
	}
	cs.looks++
	k := cause{st, message(c.Err)}
	if _, ok := cs.seen[k]; ok {
		return
	}
	if cs.seen == nil {
		cs.seen = map[cause]struct{}{}
	}
	cs.states[st] = true
	cs.seen[k] = struct{}{}
	cs.kept = append(cs.kept, c)
}

// done reports that no later failure can be kept: one in every state
// was, and no more messages are looked at.
func (cs *causes) done() bool {
	if len(cs.kept) < maxCausesKept && cs.looks < maxCauseLooks {
		return false
	}
	for _, st := range []state{applied, failed, aborted, notSent, unknown} {
		if !cs.states[st] {
			return false
		}
	}
	return true
}
