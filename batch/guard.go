package batch

// Guard is what a conditional transaction checks before it is sent, on the
// connection that then sends it: WATCH of the conditions' keys and one read
// per condition, in one round trip. Holds decides from the reads' replies:
// when they hold, the group's head (its scripts' SCRIPT LOAD, ASKING,
// MULTI) goes in a round trip of its own, and once MULTI is taken the
// commands and EXEC follow (EXEC answers nil if a watched key changed in
// between); when not, UNWATCH ends the exchange and nothing of the group
// is sent. A refused MULTI stops the commands too: WATCH guards only an
// EXEC, and commands sent without MULTI would run unguarded.
type Guard struct {
	Watch []byte // the encoded WATCH key…
	// Probe, when set, is sent after WATCH: a command naming every key of
	// the transaction and its conditions (in a cluster), whose error reply
	// (ASK, TRYAGAIN while a migration has them on two nodes) stops the
	// group as WATCH's does. Its other replies are dropped.
	Probe []byte
	Reads [][]byte // one encoded read per condition
	// Holds is given the reads' replies, in order (error replies as
	// redis.Error values).
	Holds func(replies []any) bool
}

var unwatch = mustEncode("UNWATCH")

// guard runs g.Guard on conn, with the group's head after it, and reports
// whether the group's commands are to follow (its head consumed: the rest
// of the group is written and read without it). When they are not, res
// says why: Unmet (a condition did not hold), GuardErr (WATCH's or the
// probe's error reply, such as MOVED, or MULTI's refusal) or Err (the
// connection failed; it is aborted). Then none of the group's commands
// was sent, and the connection, when it answered, holds no WATCH and no
// MULTI.
func guard(conn Conn, g *Group, res *Result) bool {
	gd := g.Guard
	write := func(b []byte) error {
		if g.AskMulti { // an ASK-redirected transaction: each keyed command needs ASKING
			if _, err := conn.Write(Asking); err != nil {
				return err
			}
		}
		_, err := conn.Write(b)
		return err
	}
	err := write(gd.Watch)
	if err == nil && gd.Probe != nil {
		err = write(gd.Probe)
	}
	for _, r := range gd.Reads {
		if err == nil {
			err = write(r)
		}
	}
	if err == nil {
		err = conn.Flush()
	}
	l := &g.layout
	rd := reader{conn: conn, p: g.Plan, res: res, nPrefix: len(l.prefix), l: l}
	next := func() (any, bool) {
		if g.AskMulti {
			if _, err := rd.recv(0); err != nil {
				return nil, false
			}
		}
		r, err := rd.recv(0)
		return r, err == nil
	}
	if err != nil {
		res.Err = err
		conn.Abort()
		return false
	}
	watched, ok := next()
	if !ok {
		conn.Abort()
		return false
	}
	var probed any
	if gd.Probe != nil {
		if probed, ok = next(); !ok {
			conn.Abort()
			return false
		}
	}
	replies := make([]any, len(gd.Reads))
	for k := range replies {
		if replies[k], ok = next(); !ok {
			conn.Abort()
			return false
		}
	}
	if res.GuardErr = replyError(watched); res.GuardErr == nil {
		res.GuardErr = replyError(probed)
	}
	for _, r := range replies {
		if e := replyError(r); res.GuardErr == nil && e != nil && notNow(e) {
			// The server did not read the key (busy, loading, the slot
			// moving): the condition was not checked, and the
			// transaction goes as that refusal says, not as unmet.
			res.GuardErr = e
		}
	}
	if res.GuardErr == nil && gd.Holds(replies) {
		// The head, MULTI last, is written and answered now: the rest of
		// the group goes without it.
		err = l.writeFrames(conn, l.before())
		if err == nil {
			err = conn.Flush()
		}
		if err != nil {
			res.Err = err
			conn.Abort()
			return false
		}
		for _, f := range l.before() {
			if !rd.frame(f) {
				conn.Abort()
				return false
			}
		}
		if res.MultiRefused == nil {
			l.nHead = 0
			return true
		}
		res.GuardErr, res.MultiRefused = res.MultiRefused, nil
	}
	res.Unmet = res.GuardErr == nil
	// Nothing follows: the keys are unwatched so the connection may be reused.
	if _, err = conn.Write(unwatch); err == nil {
		err = conn.Flush()
	}
	if err == nil {
		_, err = rd.recv(0)
	}
	if err != nil {
		res.Err = err
		conn.Abort()
		return false
	}
	res.Clean = true
	return false
}
