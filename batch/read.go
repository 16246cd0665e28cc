package batch

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
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
	// after returns the frames that follow the commands; asked once has
	// reported the last command.
	after() []frame
}

// reader reads a group's replies frame by frame, in the order the writer
// sent the frames, into res.
type reader struct {
	conn    Conn
	w       *progress // the writer's, when it runs beside the reader (nil: it is done)
	p       Plan
	src     source
	res     *Result
	silent  bool    // CLIENT REPLY OFF took effect: nothing answers until ON
	queued  int     // QUEUED replies (or queue-time errors) inside MULTI
	nPrefix int     // the prefix frame's commands
	l       *layout // the group's frames: frameCheck compares its mark
	// markQueued: the mark's CLIENT SETNAME was answered QUEUED (replies
	// were on: CLIENT REPLY refused), so EXEC's array answers it last.
	markQueued bool
}

// read consumes the replies of a group laid out by l: its head frames, the
// commands, then src.after(), resolving the commands' sinks, and fills
// res. It stops at the first transport error.
func read(conn Conn, p Plan, l *layout, src source, res *Result, w *progress) {
	rd := reader{conn: conn, w: w, p: p, src: src, res: res, nPrefix: len(l.prefix), l: l}
	head := l.before()
	for i := 0; i < len(head); i++ {
		if !rd.frame(head[i]) {
			return
		}
	}
	if !rd.commands() {
		return
	}
	for _, f := range src.after() {
		if !rd.frame(f) {
			return
		}
	}
	res.Clean = res.Err == nil
}

// recv reads one reply within timeout (0: the plan's response timeout).
func (rd *reader) recv(timeout time.Duration) (any, error) {
	if timeout == 0 {
		timeout = rd.p.ResponseTimeout
	}
	if rd.w != nil && rd.w.deferred != nil && !rd.w.written.Load() {
		timeout = -1 // still writing: the writer arms the deadline when done
	}
	r, err := rd.conn.Receive(timeout)
	if err != nil && rd.res.Err == nil {
		rd.res.Err = err
	}
	return r, err
}

// frame reads the replies of one frame other than the commands; false at a
// transport error.
func (rd *reader) frame(f frame) bool {
	res := rd.res
	if rd.silent && f.kind != frameReplyOn {
		return true // replies are off: this frame answers nothing
	}
	switch f.kind {
	case framePrefix:
		for range rd.nPrefix {
			r, err := rd.recv(0)
			if err != nil {
				return false
			}
			res.PrefixReplies = append(res.PrefixReplies, r)
		}
		return true
	case frameReplyOff:
		// Replies are off: the next reply is CLIENT REPLY ON's +OK, unless
		// the server refused OFF, and then every frame answers.
		r, err := rd.recv(0)
		if err != nil {
			return false
		}
		if replyError(r) != nil {
			// Replies stay on, and each command's tells whether it ran:
			// a server busy with a script, or loading, refuses everything
			// for now; one that never allows CLIENT REPLY (an ACL, a
			// renamed command) answers each command, and an error reply
			// is the command's, as without WithSkipResult.
			res.RepliesRead = true
			return true
		}
		rd.silent = true // the frames up to ON answer nothing
		rd.res.Skipped = true
		return true
	case frameReplyOn:
		if rd.silent { // its +OK was read at OFF
			rd.silent = false
			return true
		}
		_, err := rd.recv(0) // refused like OFF
		if err == nil && !res.RepliesRead {
			res.Skipped = true
		}
		return err == nil
	case frameMulti:
		r, err := rd.recv(0)
		if err != nil {
			return false
		}
		// Refused: no transaction; the commands run (or fail) one by one.
		res.MultiRefused = replyError(r)
		return true
	case frameExec, frameDiscard:
		r, err := rd.recv(0)
		if err != nil {
			return false
		}
		if res.MultiRefused == nil {
			return rd.transaction(r, f.kind == frameExec)
		}
		return true
	case frameCheck:
		r, err := rd.recv(0)
		if err != nil {
			res.Skipped = false // whether the transaction ran is not known: unknown, not skipped
			return false
		}
		// (With replies read, EXEC's told, and GETNAME may be refused.)
		if name, _ := r.([]byte); !res.RepliesRead && res.Aborted == nil && string(name) != string(rd.l.mark) {
			// The mark queued last in the transaction did not run: Redis
			// discarded the transaction.
			res.Aborted = &AbortError{Index: -1, Cause: ErrDiscardedUnseen}
		}
		return true
	case frameTail:
		timeout := rd.p.ResponseTimeout
		if rd.p.TailTimeout != 0 {
			timeout = rd.p.TailTimeout
		}
		r, err := rd.recv(timeout)
		if err != nil {
			return false
		}
		parseTail(res, r)
		return true
	default: // frameAsking, and frameMark when replies are on (its QUEUED)
		r, err := rd.recv(0)
		if err == nil && f.kind == frameMark {
			rd.markQueued = replyError(r) == nil
		}
		return err == nil
	}
}

// commands reads the commands' replies: each resolves its command, or
// inside MULTI is its QUEUED (or queue-time error).
func (rd *reader) commands() bool {
	res := rd.res
	if rd.silent {
		for k := 0; rd.src.has(k); k++ {
		}
		return true
	}
	inTx := rd.p.Atomic && res.MultiRefused == nil
	for k := 0; rd.src.has(k); k++ {
		if rd.p.AskEach {
			if _, err := rd.recv(0); err != nil { // ASKING
				return false
			}
		}
		r, err := rd.recv(0)
		if err != nil {
			return false
		}
		switch {
		case inTx:
			if e := replyError(r); e != nil && res.Aborted == nil {
				res.Aborted = &AbortError{Index: k, Cause: e}
			}
			rd.queued++
		default:
			rd.src.resolve(k, r)
			res.Answered++
		}
	}
	return true
}

// transaction reads EXEC's (exec) or DISCARD's reply, which resolves the
// commands or says why the transaction was discarded. A reply EXEC cannot
// give (an array of another length, or one after a queue-time error, a
// status, an integer) says nothing of what was applied: the commands are
// left unknown, and false stops the reading, as the connection cannot be
// trusted any more.
func (rd *reader) transaction(r any, exec bool) bool {
	res := rd.res
	switch v := r.(type) {
	case []any:
		want := rd.queued
		if rd.markQueued {
			want++
		}
		if exec && len(v) == want && res.Aborted == nil {
			for k, e := range v[:rd.queued] {
				rd.src.resolve(k, e)
			}
			res.Answered = rd.queued
			return true
		}
	case nil:
		if exec {
			res.Aborted = &AbortError{Index: -1, Cause: ErrNilExec}
			return true
		}
	case string: // DISCARD's +OK: the session was discarded
		if !exec {
			if res.Aborted == nil {
				res.Aborted = &AbortError{Index: -1, Cause: ErrDiscardedTx}
			}
			return true
		}
	case redis.Error: // EXECABORT, or DISCARD refused: nothing applied
		if res.Aborted == nil {
			res.Aborted = &AbortError{Index: -1, Cause: v}
		}
		return true
	}
	res.Aborted = nil
	res.Err = fmt.Errorf("%w: %s", errExecReply, describeReply(r))
	return false
}

// describeReply names a reply's kind and, for a short one, its value.
func describeReply(r any) string {
	switch v := r.(type) {
	case []any:
		return fmt.Sprintf("an array of %d", len(v))
	case string:
		return fmt.Sprintf("status %q", v)
	case []byte:
		return fmt.Sprintf("a bulk string of %d bytes", len(v))
	case nil:
		return "nil"
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}

// ErrDiscardedTx is the cause when the transaction ended with DISCARD.
var ErrDiscardedTx = errors.New("transaction discarded")

// errExecReply is the cause when EXEC (or DISCARD) answered what it cannot.
var errExecReply = errors.New("the transaction's end answered an unexpected reply")

// notNow reports whether error reply e says the command was not run, for
// now or not here: the server is busy, loading or without a quorum, or the
// key's slot is moving or elsewhere.
func notNow(e error) bool {
	switch errorPrefix(e) {
	case "BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "MOVED", "ASK":
		return true
	}
	return false
}

// errorPrefix is the first word of error reply e ("" for another error).
func errorPrefix(e error) string {
	var re redis.Error
	if !errors.As(e, &re) {
		return ""
	}
	p, _, _ := strings.Cut(string(re), " ")
	return p
}
