package rbatch

import (
	"strconv"
	"strings"
	"time"

	"github.com/rbatch/rbatch/queue"
)

// blocks reports whether XREAD or XREADGROUP with args blocks.
func blocks(name string, args []any) bool {
	if name != "XREAD" && name != "XREADGROUP" {
		return false
	}
	strs := make([]string, len(args))
	for i, a := range args {
		strs[i] = argString(a)
	}
	return queue.Blocks(name, strs)
}

// blockFor notes a blocking command queued that may hold its reply back
// for wait (-1: forever), and extends the plan's bound past the longest.
func (b *Batch) blockFor(wait time.Duration) {
	if b.blockWait >= 0 && (wait < 0 || wait > b.blockWait) {
		b.blockWait = wait
		b.extendForBlock()
	}
}

// extendForBlock lets the plan's bound on each reply start after the
// longest block queued, as Redisson adds a blocking command's timeout to its
// response timeout: the client's ReadTimeout counts from there. A batch's
// own WithResponseTimeout stays as it is, and so does a MULTI's (nothing
// blocks inside it); a stream's parts are InMemory batches, each extended
// for the blocks it carries.
func (b *Batch) extendForBlock() {
	if b.opts.ResponseTimeout == 0 && b.opts.Mode == InMemory {
		b.plan.ResponseTimeout = b.extended(b.blockWait)
	}
}

// blockWait returns how long a blocking command may hold its reply back:
// its own timeout argument (BLPOP's seconds, XREAD's BLOCK milliseconds),
// or -1 when it may block forever (a timeout of 0). ok is false for a
// command that does not block, or whose timeout is not a number (Redis
// refuses it at once).
func blockWait(name string, args []any) (wait time.Duration, ok bool) {
	var arg any
	millis := false
	switch name {
	case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "BRPOPLPUSH", "BLMOVE":
		if len(args) == 0 {
			return 0, false
		}
		arg = args[len(args)-1]
	case "BLMPOP", "BZMPOP":
		if len(args) == 0 {
			return 0, false
		}
		arg = args[0]
	case "XREAD", "XREADGROUP":
		for i, a := range args[:max(len(args)-1, 0)] {
			if strings.EqualFold(argString(a), "BLOCK") {
				arg, millis = args[i+1], true
				break
			}
		}
		if arg == nil {
			return 0, false
		}
	default:
		return 0, false
	}
	n, ok := number(arg)
	if !ok || n < 0 {
		return 0, false
	}
	if n == 0 {
		return -1, true
	}
	if millis {
		return time.Duration(n * float64(time.Millisecond)), true
	}
	return time.Duration(n * float64(time.Second)), true
}

// number reads a timeout argument: an integer or float, or its text.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case time.Duration:
		return 0, false // its text ("1s") is no number to Redis
	}
	if n, ok := argInt(v); ok {
		return float64(n), true
	}
	f, err := strconv.ParseFloat(argString(v), 64)
	return f, err == nil
}
