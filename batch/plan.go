package batch

import (
	"errors"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/resp"
)

// Plan says what goes around a group's commands on the wire; a layout
// (frames.go) turns it into the frames the writer sends and the reader
// walks:
//
//	[CLIENT REPLY OFF] [ASKING] [MULTI] cmd… [EXEC] [CLIENT REPLY ON] [WAIT | WAITAOF]
type Plan struct {
	Atomic     bool // MULTI … EXEC around the commands
	SkipResult bool // CLIENT REPLY OFF … ON around the rest
	// Tail is the encoded WAIT or WAITAOF sent after the group (nil: none).
	Tail []byte
	// ResponseTimeout bounds the wait for each reply (0: the connection's default).
	ResponseTimeout time.Duration
	// TailTimeout bounds the wait for the Tail's reply, which the server
	// holds back until the replicas acknowledged or WAIT's own timeout
	// passed (0: ResponseTimeout; negative: no bound).
	TailTimeout time.Duration
	// AskEach sends ASKING before each command (an ASK redirect outside a
	// transaction).
	AskEach bool
	// AskMulti sends ASKING right before MULTI (an ASK redirect of a
	// transaction): the server forgets ASKING after any other command, and
	// inside MULTI it holds until EXEC.
	AskMulti bool
}

var (
	clientReplyOff = mustEncode("CLIENT", "REPLY", "OFF")
	clientReplyOn  = mustEncode("CLIENT", "REPLY", "ON")
	multi          = mustEncode("MULTI")
	exec           = mustEncode("EXEC")
	discardCmd     = mustEncode("DISCARD")
	clientGetName  = mustEncode("CLIENT", "GETNAME")
	// Asking is the ASKING command, sent before a command redirected by ASK.
	Asking = mustEncode("ASKING")
)

func mustEncode(name string, args ...any) []byte {
	b, err := resp.AppendCommand(nil, nil, name, args...)
	if err != nil {
		panic(err)
	}
	return b
}

// Wait encodes WAIT replicas timeout.
func Wait(replicas int, timeout time.Duration) []byte {
	return mustEncode("WAIT", replicas, timeout.Milliseconds())
}

// WaitAOF encodes WAITAOF numlocal numreplicas timeout.
func WaitAOF(local bool, replicas int, timeout time.Duration) []byte {
	numLocal := 0
	if local {
		numLocal = 1
	}
	return mustEncode("WAITAOF", numLocal, replicas, timeout.Milliseconds())
}

// Result says how far a group got and what its frames answered.
//
// Commands are resolved in three ways: those answered (their sinks got
// their replies), those handed to the connection without an answer (outcome
// unknown), and those never handed to it (not sent). In an atomic group the
// commands are answered only by EXEC's reply.
type Result struct {
	Answered int // commands whose sinks got their reply (the first Answered of the group)
	// PrefixReplies holds the replies to the group's prefix frames.
	PrefixReplies []any
	Sent          int // commands handed to the connection (≥ Answered)
	// Err is why the group stopped early: a transport error, a timeout, or
	// the context's error. Nil when every expected reply was read.
	Err error

	// ExecSent reports that EXEC was handed to the connection.
	ExecSent bool
	// Aborted is set when the transaction was discarded by Redis (nothing
	// applied): the first queue-time error, EXECABORT, or a nil EXEC.
	Aborted *AbortError
	// MultiRefused is MULTI's error reply. The commands then ran on their
	// own, not as a transaction, and were resolved with their own replies.
	MultiRefused error

	// Skipped reports that replies were not asked for: the sent commands'
	// outcomes are unknown to the client by request.
	Skipped bool
	// RepliesRead reports that the server refused CLIENT REPLY OFF (for
	// now: BUSY, LOADING; or for good: an ACL, a renamed command), so
	// replies stayed on and the commands' replies were read and resolved
	// them, as on a cluster.
	RepliesRead bool

	// Synced reports that the tail (WAIT/WAITAOF) answered; Replicas and
	// Local are its figures, SyncErr its error reply.
	Synced   bool
	Replicas int
	Local    bool
	SyncErr  error

	// Unmet reports that the group's Guard did not hold: UNWATCH was sent
	// and nothing of the group. GuardErr is WATCH's error reply (MOVED, …):
	// nothing of the group was sent either.
	Unmet    bool
	GuardErr error

	// Clean reports that the connection holds no pending reply, no open
	// transaction, no WATCH, and has replies on: it may go back to its pool.
	Clean bool
}

// AbortError says why Redis discarded a transaction.
type AbortError struct {
	Index int   // position in the group of the command whose queue-time error aborted it; -1 if none
	Cause error // that error, or EXEC's own error reply
}

func (e *AbortError) Error() string { return e.Cause.Error() }
func (e *AbortError) Unwrap() error { return e.Cause }

// ErrNilExec is the cause when EXEC answered nil (a watched key changed).
var ErrNilExec = errors.New("EXEC answered nil")

// ErrDiscardedUnseen is the cause when a transaction run with replies off
// did not run: Redis discarded it at EXEC for a queue-time error (EXECABORT)
// whose reply was off.
var ErrDiscardedUnseen = errors.New("EXECABORT: Redis discarded the transaction for a queue-time error " +
	"(an unknown command, a wrong number of arguments, a command the user may not run, OOM, …), " +
	"whose error reply was not read, as replies were off")

// replyError turns an error reply into an error.
func replyError(r any) error {
	if e, ok := r.(redis.Error); ok {
		return e
	}
	return nil
}

// parseTail reads WAIT's integer or WAITAOF's [local, replicas] array.
func parseTail(res *Result, r any) {
	switch v := r.(type) {
	case int64:
		res.Synced, res.Replicas = true, int(v)
	case []any:
		if len(v) == 2 {
			local, ok1 := v[0].(int64)
			replicas, ok2 := v[1].(int64)
			if ok1 && ok2 {
				res.Synced, res.Local, res.Replicas = true, local > 0, int(replicas)
				return
			}
		}
		res.SyncErr = fmt.Errorf("unexpected WAITAOF reply %v", v)
	case redis.Error:
		res.SyncErr = v
	default:
		res.SyncErr = fmt.Errorf("unexpected sync reply %T", r)
	}
}
