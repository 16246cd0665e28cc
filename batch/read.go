package batch

import (
	"errors"
	"time"
)

// Resolver hands a command its reply: the server's answer in redigo's types
// (int64, []byte, a status string, []any, nil, or a redis.Error value for an
// error reply). index is the command's submission index.
type Resolver interface {
	Resolve(index int, reply any)
}

// ResolverFunc is a func as a Resolver.
type ResolverFunc func(index int, reply any)

// Resolve calls f.
func (f ResolverFunc) Resolve(index int, reply any) { f(index, reply) }

// source tells the reader about the group's commands. For a group sent at
// Execute they are all known at once; for a Redis-side queue they arrive
// while the reader runs.
type source interface {
	// has reports whether the group has a command k, waiting until that is
	// known (the command was pushed, or the group was closed).
	has(k int) bool
	// resolve hands command k its reply; k is one has reported.
	resolve(k int, reply any)
	// tail reports whether a WAIT/WAITAOF follows; asked after the commands.
	tail() bool
}

// read consumes the replies of a group laid out by p, resolving the
// commands' sinks, and fills res. It stops at the first transport error.
func read(conn Conn, p Plan, prefix int, src source, res *Result) {
	recvWithin := func(timeout time.Duration) (any, error) {
		r, err := conn.Receive(timeout)
		if err != nil && res.Err == nil {
			res.Err = err
		}
		return r, err
	}
	recv := func() (any, error) { return recvWithin(p.ResponseTimeout) }
	for range prefix {
		r, err := recv()
		if err != nil {
			return
		}
		res.PrefixReplies = append(res.PrefixReplies, r)
	}
	if p.SkipResult {
		// Replies are off: the first reply is CLIENT REPLY ON's +OK, unless
		// the server refused CLIENT REPLY OFF, and then every frame answers.
		r, err := recv()
		if err != nil {
			return
		}
		if replyError(r) != nil {
			res.ReplyRefused = true
			if !dropReplies(recv, p, src, res) {
				return
			}
			if _, err := recv(); err != nil { // CLIENT REPLY ON, refused like OFF
				return
			}
		}
		res.Skipped = true
	} else if p.DropReplies {
		if !dropReplies(recv, p, src, res) {
			return
		}
		res.Skipped = true
	} else if p.Atomic {
		if p.AskMulti {
			if _, err := recv(); err != nil { // ASKING
				return
			}
		}
		if !readTransaction(recv, src, res) {
			return
		}
	} else if !readEach(recv, src, p.AskEach, answer(src, res)) {
		return
	}
	if src.tail() {
		timeout := p.ResponseTimeout
		if p.TailTimeout != 0 {
			timeout = p.TailTimeout
		}
		r, err := recvWithin(timeout)
		if err != nil {
			return
		}
		parseTail(res, r)
	}
	res.Clean = res.Err == nil
}

// readEach reads one reply for each command of src, after ASKING's +OK
// when askEach, and hands it to each. It is false at a transport error.
func readEach(recv func() (any, error), src source, askEach bool, each func(k int, r any)) bool {
	for k := 0; src.has(k); k++ {
		if askEach {
			if _, err := recv(); err != nil {
				return false
			}
		}
		r, err := recv()
		if err != nil {
			return false
		}
		each(k, r)
	}
	return true
}

// answer hands command k its reply and counts it answered.
func answer(src source, res *Result) func(k int, r any) {
	return func(k int, r any) {
		src.resolve(k, r)
		res.Answered++
	}
}

// readTransaction reads MULTI's reply, one QUEUED (or queue-time error) per
// command, and EXEC's reply, which resolves the commands.
func readTransaction(recv func() (any, error), src source, res *Result) bool {
	r, err := recv()
	if err != nil {
		return false
	}
	if res.MultiRefused = replyError(r); res.MultiRefused != nil {
		// No transaction: the commands ran (or failed) one by one.
		if !readEach(recv, src, false, answer(src, res)) {
			return false
		}
		_, err := recv() // EXEC without MULTI
		return err == nil
	}
	n := 0 // QUEUED replies, or queue-time errors
	if !readEach(recv, src, false, func(k int, r any) {
		if e := replyError(r); e != nil && res.Aborted == nil {
			res.Aborted = &AbortError{Index: k, Cause: e}
		}
		n++
	}) {
		return false
	}
	r, err = recv()
	if err != nil {
		return false
	}
	switch v := r.(type) {
	case []any:
		if len(v) == n && res.Aborted == nil {
			for k, e := range v {
				src.resolve(k, e)
			}
			res.Answered = n
			return true
		}
		if res.Aborted == nil {
			res.Aborted = &AbortError{Index: -1, Cause: errExecLength}
		}
	case nil:
		res.Aborted = &AbortError{Index: -1, Cause: ErrNilExec}
	case string: // DISCARD's +OK: the session was discarded
		if res.Aborted == nil {
			res.Aborted = &AbortError{Index: -1, Cause: ErrDiscardedTx}
		}
	default:
		if res.Aborted == nil {
			res.Aborted = &AbortError{Index: -1, Cause: replyError(r)}
			if res.Aborted.Cause == nil {
				res.Aborted.Cause = errExecLength
			}
		}
	}
	return true
}

// dropReplies reads and drops the replies of the frames from MULTI to EXEC
// (the commands alone outside a transaction), counting the commands' error
// replies: for a server that refused CLIENT REPLY OFF (its error was already
// read; ON's is the caller's to read), or under Plan.DropReplies.
func dropReplies(recv func() (any, error), p Plan, src source, res *Result) bool {
	count := func(r any) {
		if v, ok := r.([]any); ok {
			for _, e := range v {
				count1(res, e)
			}
			return
		}
		count1(res, r)
	}
	if p.Atomic {
		frames := 1 // MULTI
		if p.AskMulti {
			frames++ // ASKING before it
		}
		for range frames {
			if _, err := recv(); err != nil {
				return false
			}
		}
	}
	if !readEach(recv, src, p.AskEach, func(_ int, r any) { count(r) }) {
		return false
	}
	if p.Atomic {
		r, err := recv() // EXEC
		if err != nil {
			return false
		}
		count(r)
	}
	return true
}

func count1(res *Result, r any) {
	if replyError(r) != nil {
		res.ServerErrors++
	}
}

// ErrDiscardedTx is the cause when the transaction ended with DISCARD.
var ErrDiscardedTx = errors.New("transaction discarded")

var errExecLength = errors.New("EXEC answered an unexpected reply")
