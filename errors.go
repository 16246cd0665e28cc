package rbatch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/resp"
	"github.com/rbatch/rbatch/internal/route"
	"github.com/rbatch/rbatch/queue"
)

// Sentinel errors. Each says when it happens and whether the command may have
// run on the server. Match them with errors.Is; never compare message text.
var (
	// ErrNil is a nil reply: the key, field or member does not exist. The
	// command ran; a future resolved with ErrNil is not a failure of the batch.
	ErrNil = errors.New("rbatch: nil reply")

	// ErrNotExecuted is returned by Future.Get for a batch that was never
	// executed (nor discarded): Get waits for a batch that is running, and
	// for a Streaming batch's command, sent as it was queued.
	ErrNotExecuted = errors.New("rbatch: batch not executed yet")

	// ErrAlreadyExecuted is returned when Execute, ExecuteAsync or Discard is
	// called a second time, and by futures queued after that. Nothing was sent.
	ErrAlreadyExecuted = errors.New("rbatch: batch already executed or discarded")

	// ErrDiscarded resolves the futures of a discarded batch. Nothing was applied.
	ErrDiscarded = errors.New("rbatch: batch discarded")

	// ErrResultSkipped resolves the futures of a WithSkipResult batch: the
	// command was sent, and no reply was asked for.
	ErrResultSkipped = errors.New("rbatch: result skipped")

	// ErrCrossSlot fails an atomic batch whose keys span more than one slot in
	// a cluster, and a command that must run on one slot but names keys of
	// several (Buckets.TrySetAsync's MSETNX). Nothing was sent.
	ErrCrossSlot = errors.New("rbatch: keys that must share a slot span more than one")

	// ErrTxAborted resolves every command of a transaction that Redis discarded
	// (EXECABORT, or a nil EXEC). Nothing of the transaction was applied.
	ErrTxAborted = errors.New("rbatch: transaction aborted")

	// ErrUnknownOutcome resolves a command that was written but not answered
	// (connection lost, response timeout, context cancelled): it may or may not
	// have been applied. rbatch never re-sends such a write by itself.
	ErrUnknownOutcome = errors.New("rbatch: outcome unknown: sent but not answered")

	// ErrReadOnlyBatch fails a write command queued in a RedisReadAtomic batch:
	// the write is never sent, and the batch is discarded at Execute, so
	// nothing of it is applied. Commands queued before the write were
	// already in Redis's MULTI: they end aborted (ErrTxAborted wrapping
	// ErrReadOnlyBatch); those queued after it, not sent.
	ErrReadOnlyBatch = errors.New("rbatch: write command in a read-only batch")

	// ErrUnsupported fails a batch that asks for a feature the server lacks
	// (WAITAOF before Redis 7.2; MULTI, WAIT or a keyless script through a
	// proxy such as twemproxy, …), or, alone, a command such a proxy closes
	// the connection on (XADD, MSETNX, DBSIZE, …). Nothing was sent.
	ErrUnsupported = errors.New("rbatch: unsupported by the server")

	// ErrClosed is returned when the Client was closed before the batch, or
	// while its commands waited for a connection. Nothing was sent.
	ErrClosed = errors.New("rbatch: client closed")

	// ErrSlotNotServed is the cause of a command not sent because no primary
	// of the cluster served its slot (a primary failed and no replica was
	// promoted yet) for as long as WithRetry allowed: the slot map is
	// reloaded every RetryInterval, up to RetryAttempts times, while the
	// commands for other slots go ahead. Nothing was sent; safe to retry.
	ErrSlotNotServed = route.ErrSlotNotServed

	// ErrNoCodec fails a command with a value of a type rbatch does not
	// encode by itself (a struct, a map, …) in a batch without WithCodec.
	// Nothing of the batch was sent.
	ErrNoCodec = resp.ErrNoCodec

	// ErrForbidden fails a command that a batch may not carry: one that
	// changes the connection (SUBSCRIBE, MONITOR, SELECT, …) or that the
	// modes own (MULTI, EXEC, WATCH, CLIENT REPLY). Nothing was sent.
	ErrForbidden = queue.ErrForbidden

	// ErrNotSent resolves the futures of a batch that was refused as a whole
	// before anything was written (a bad argument, a cancelled context): the
	// cause is wrapped alongside. Safe to retry.
	ErrNotSent = errors.New("rbatch: not sent")

	// ErrDecode is wrapped by the error of a command whose reply came back
	// but does not fit its future's type (a script returning a string to
	// EvalIntAsync, a value another codec wrote): Redis ran the command,
	// and it counts as applied; only its value is lost.
	ErrDecode = errors.New("rbatch: reply does not decode")
)

// decodeError is a reply that ran but did not decode: it reads as the
// decoder's own message and unwraps to ErrDecode and that error.
type decodeError struct{ err error }

func (e *decodeError) Error() string   { return e.err.Error() }
func (e *decodeError) Unwrap() []error { return []error{ErrDecode, e.err} }

// RedisError is an error reply from the server, such as "WRONGTYPE Operation
// against a key holding the wrong kind of value". The command was rejected
// (or, inside EXEC, failed on its own while the others were applied).
type RedisError struct {
	Msg string // the whole reply, without the leading '-'
}

func (e *RedisError) Error() string { return "rbatch: server error: " + e.Msg }

// Prefix is the reply's first word: "WRONGTYPE", "MOVED", "ERR", …
func (e *RedisError) Prefix() string {
	if i := strings.IndexByte(e.Msg, ' '); i >= 0 {
		return e.Msg[:i]
	}
	return e.Msg
}

// CommandError is one failed command of a batch.
type CommandError struct {
	Index   int    // submission index
	Command string // command name, such as "SET"
	Err     error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("command %d (%s): %v", e.Index, e.Command, e.Err)
}

func (e *CommandError) Unwrap() error { return e.Err }

// BatchError is Execute's error when not every command succeeded. It lists the
// failed commands in submission order, plus Err for a failure of the batch as
// a whole (nil when each failure belongs to its own command). errors.Is and
// errors.As reach every cause.
type BatchError struct {
	Err      error
	Commands []CommandError

	// beyond are failures past the listed ones (a stream lists at most
	// maxFailuresKept), one of each distinct cause, for Unwrap only.
	beyond []CommandError

	// counts, when set, say how every command of the batch ended; refused
	// says that nothing of it was sent because of Err.
	counts *Counts
	// unsucceeded is how many commands did not succeed: those of counts
	// that are neither applied nor skipped, and the applied ones whose reply
	// did not decode (ErrDecode).
	unsucceeded int
	refused     bool
	// errSaid: Err only repeats the listed commands' cause (a Redis-side
	// batch refused for one bad command): Error leaves it out.
	errSaid bool

	unwrapped atomic.Pointer[[]error] // Unwrap's slice, built once
}

// maxListed bounds how many command failures Error spells out.
const maxListed = 3

// Error reads once: one "rbatch:" prefix, what happened to how many
// commands, then the causes, each said once, on one line.
// namedIndices is how many indices a message lists before it says only
// how many commands there are and where they lie.
const namedIndices = 5

// sameCommands names the listed commands, which all failed alike: as a
// range when they are contiguous, else by their indices, or by how many
// lie between the first and the last when they are many (a range would
// claim the commands between that succeeded).
func (e *BatchError) sameCommands(sb *strings.Builder) {
	cs := e.Commands
	n, first, last := len(cs), cs[0].Index, cs[len(cs)-1].Index
	switch {
	case last-first+1 == n:
		fmt.Fprintf(sb, "commands %d to %d", first, last)
	case n <= namedIndices:
		sb.WriteString("commands ")
		for i, c := range cs {
			switch {
			case i == n-1:
				sb.WriteString(" and ")
			case i > 0:
				sb.WriteString(", ")
			}
			sb.WriteString(strconv.Itoa(c.Index))
		}
	default:
		fmt.Fprintf(sb, "%d commands from %d to %d", n, first, last)
	}
}

func (e *BatchError) Error() string {
	var sb strings.Builder
	sb.WriteString("rbatch: ")
	n := len(e.Commands)
	switch {
	case e.refused:
		total := n
		if e.counts != nil {
			total = e.counts.Total()
		}
		if total == 0 { // conditions only: nothing else was queued
			sb.WriteString("batch not sent: ")
		} else {
			fmt.Fprintf(&sb, "%s not sent: ", commands(total))
		}
		switch cause := e.Err; {
		case n > 0: // the bad commands, the first of which refused the batch
			e.listCommands(&sb)
		case cause != nil:
			if ns, ok := cause.(*notSentError); ok {
				cause = ns.cause // "not sent" is said already
			}
			sb.WriteString(bare(cause))
		}
		return oneLine(sb.String())
	case n == 0 && e.Err != nil:
		if c := e.counts; c != nil && e.unsucceeded > 0 {
			fmt.Fprintf(&sb, "%d of %s did not succeed (%s): ", e.unsucceeded, commands(c.Total()), e.states())
		}
		sb.WriteString(bare(e.Err))
		return oneLine(sb.String())
	}
	if c := e.counts; c != nil {
		fmt.Fprintf(&sb, "%d of %s did not succeed", e.unsucceeded, commands(c.Total()))
		if st := e.states(); st != "" {
			sb.WriteString(" (" + st + ")")
		}
	} else {
		fmt.Fprintf(&sb, "%s did not succeed", commands(n))
	}
	said := e.errSaid
	if n > 0 {
		sb.WriteString(": ")
		first := bare(e.Commands[0].Err)
		same := true
		for i := 1; i < n && same; i++ {
			same = bare(e.Commands[i].Err) == first
		}
		// The batch's cause, when it is every command's, is said once.
		said = said || same && e.Err != nil && bare(e.Err) == first
		if same && n > 1 {
			e.sameCommands(&sb)
			sb.WriteString(": " + first)
		} else {
			e.listCommands(&sb)
		}
	}
	if e.Err != nil && !said {
		sb.WriteString("; " + bare(e.Err))
	}
	return oneLine(sb.String())
}

// listCommands spells out the first maxListed failed commands, and how
// many more there are.
func (e *BatchError) listCommands(sb *strings.Builder) {
	n := len(e.Commands)
	for i := 0; i < n && i < maxListed; i++ {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(bare(&e.Commands[i]))
	}
	if n > maxListed {
		fmt.Fprintf(sb, "; and %d more", n-maxListed)
	}
}

// commands says "1 command" or "N commands".
func commands(n int) string {
	if n == 1 {
		return "1 command"
	}
	return strconv.Itoa(n) + " commands"
}

// states names the states other than applied and skipped, with counts, and
// the applied commands whose reply did not decode.
func (e *BatchError) states() string {
	c := e.counts
	var parts []string
	for _, s := range []struct {
		n    int
		name string
	}{{c.Failed, "failed"}, {c.Aborted, "aborted"}, {c.NotSent, "not sent"}, {c.Unknown, "unknown"},
		{e.unsucceeded - (c.Total() - c.Applied - c.Skipped), "applied, reply not decoded"}} {
		if s.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", s.n, s.name))
		}
	}
	return strings.Join(parts, ", ")
}

// bare is err's message without the "rbatch: " prefixes its layers added:
// the batch's message has one.
func bare(err error) string { return strings.ReplaceAll(err.Error(), "rbatch: ", "") }

// oneLine joins the lines errors.Join makes.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Unwrap returns the batch-wide error (if any) and every command's error.
// The slice is built once: errors.Is on a batch of a million failed
// commands does not rebuild it at every call.
func (e *BatchError) Unwrap() []error {
	if p := e.unwrapped.Load(); p != nil {
		return *p
	}
	errs := make([]error, 0, len(e.Commands)+len(e.beyond)+1)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	for i := range e.Commands {
		errs = append(errs, &e.Commands[i])
	}
	for i := range e.beyond {
		errs = append(errs, &e.beyond[i])
	}
	e.unwrapped.Store(&errs)
	return errs
}

// notSent wraps a batch-wide refusal so that it matches both ErrNotSent and the cause.
type notSentError struct{ cause error }

func (e *notSentError) Error() string {
	return "rbatch: not sent: " + strings.TrimPrefix(e.cause.Error(), "rbatch: ")
}
func (e *notSentError) Unwrap() []error { return []error{ErrNotSent, e.cause} }

// errNilContext refuses a nil context, before anything is done.
var errNilContext = errors.New("rbatch: nil context (pass context.Background() for none)")

// errPanicked is the cause of every future of a batch whose Execute
// panicked (in a hook, say): it says nothing of what reached Redis.
var errPanicked = errors.New("rbatch: Execute panicked before the batch ended")

// unknownError is ErrUnknownOutcome with its cause.
type unknownError struct{ cause error }

func (e *unknownError) Error() string {
	return "rbatch: outcome unknown: sent but not answered: " + e.cause.Error()
}
func (e *unknownError) Unwrap() []error { return []error{ErrUnknownOutcome, e.cause} }

// txAbortedError is ErrTxAborted with its cause.
type txAbortedError struct{ cause error }

func (e *txAbortedError) Error() string {
	return "rbatch: transaction aborted: " + strings.TrimPrefix(e.cause.Error(), "rbatch: ")
}
func (e *txAbortedError) Unwrap() []error { return []error{ErrTxAborted, e.cause} }

// asRedisError returns the server error reply inside err, or nil.
func asRedisError(err error) *RedisError {
	var re *RedisError
	if errors.As(err, &re) {
		return re
	}
	var e redis.Error
	if errors.As(err, &e) {
		return &RedisError{Msg: string(e)}
	}
	return nil
}

// orRedisError turns a redigo error reply into a *RedisError; other errors
// pass through.
func orRedisError(err error) error {
	if re := asRedisError(err); re != nil {
		return re
	}
	return err
}

// syncFailed is the error of a WAIT or WAITAOF that failed. A server that
// does not know the command (WAITAOF on one that claimed 7.2 or later, or
// hid its version) lacks the feature: ErrUnsupported, though the batch's
// commands were applied.
func syncFailed(err error) error {
	re := asRedisError(err)
	if re != nil && strings.HasPrefix(re.Msg, "ERR unknown command") {
		return fmt.Errorf("sync failed: %w: %w", ErrUnsupported, re)
	}
	return fmt.Errorf("sync failed: %w", orRedisError(err))
}

// redisErrorOf returns the reply as a *RedisError when it is an error
// reply, else nil.
func redisErrorOf(reply any) *RedisError {
	if e, ok := reply.(redis.Error); ok {
		return &RedisError{Msg: string(e)}
	}
	return nil
}
