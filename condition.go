package rbatch

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/resp"
)

// ErrConditionFailed resolves every command of an InMemoryAtomic batch one
// of whose conditions (AddCondition) did not hold: nothing of the batch was
// sent, let alone applied. Execute's error names the condition.
var ErrConditionFailed = errors.New("rbatch: condition failed")

// Condition is a check an InMemoryAtomic batch makes on the server before it
// is applied (StackExchange.Redis's transaction conditions). Build one with
// KeyExists, HashIntAtLeast, … and add it with Batch.AddCondition. The zero
// Condition is invalid.
type Condition struct {
	kind  condKind
	key   string
	field string  // the hash field, or the set or sorted-set member
	value any     // the value compared with (StringEqual, HashEqual, …)
	n     int64   // the bound or length compared with
	score float64 // SortedSetScoreEqual's score
}

type condKind uint8

const (
	condNone condKind = iota
	condKeyExists
	condKeyNotExists
	condStringEqual
	condStringNotEqual
	condHashEqual
	condHashNotEqual
	condHashExists
	condHashNotExists
	condIntAtLeast
	condHashIntAtLeast
	condListLengthEqual
	condSetLengthEqual
	condSortedSetLengthEqual
	condHashLengthEqual
	condSetContains
	condSetNotContains
	condSortedSetScoreEqual
)

// condKinds says, per kind, the constructor's name (for messages) and the
// command that reads what the condition checks.
var condKinds = [...]struct{ name, read string }{
	condKeyExists:            {"KeyExists", "EXISTS"},
	condKeyNotExists:         {"KeyNotExists", "EXISTS"},
	condStringEqual:          {"StringEqual", "GET"},
	condStringNotEqual:       {"StringNotEqual", "GET"},
	condHashEqual:            {"HashEqual", "HGET"},
	condHashNotEqual:         {"HashNotEqual", "HGET"},
	condHashExists:           {"HashExists", "HEXISTS"},
	condHashNotExists:        {"HashNotExists", "HEXISTS"},
	condIntAtLeast:           {"IntAtLeast", "GET"},
	condHashIntAtLeast:       {"HashIntAtLeast", "HGET"},
	condListLengthEqual:      {"ListLengthEqual", "LLEN"},
	condSetLengthEqual:       {"SetLengthEqual", "SCARD"},
	condSortedSetLengthEqual: {"SortedSetLengthEqual", "ZCARD"},
	condHashLengthEqual:      {"HashLengthEqual", "HLEN"},
	condSetContains:          {"SetContains", "SISMEMBER"},
	condSetNotContains:       {"SetNotContains", "SISMEMBER"},
	condSortedSetScoreEqual:  {"SortedSetScoreEqual", "ZSCORE"},
}

// KeyExists holds when key exists.
func KeyExists(key string) Condition { return Condition{kind: condKeyExists, key: key} }

// KeyNotExists holds when key does not exist.
func KeyNotExists(key string) Condition { return Condition{kind: condKeyNotExists, key: key} }

// StringEqual holds when the string at key equals v (encoded as a command
// argument is, through the batch's codec if v needs one). A missing key
// equals nothing.
func StringEqual(key string, v any) Condition {
	return Condition{kind: condStringEqual, key: key, value: v}
}

// StringNotEqual holds when the string at key is missing or differs from v.
func StringNotEqual(key string, v any) Condition {
	return Condition{kind: condStringNotEqual, key: key, value: v}
}

// HashEqual holds when the hash field's value equals v. A missing field
// equals nothing.
func HashEqual(key, field string, v any) Condition {
	return Condition{kind: condHashEqual, key: key, field: field, value: v}
}

// HashNotEqual holds when the hash field is missing or differs from v.
func HashNotEqual(key, field string, v any) Condition {
	return Condition{kind: condHashNotEqual, key: key, field: field, value: v}
}

// HashExists holds when the hash at key has field.
func HashExists(key, field string) Condition {
	return Condition{kind: condHashExists, key: key, field: field}
}

// HashNotExists holds when the hash at key has no field (or key is missing).
func HashNotExists(key, field string) Condition {
	return Condition{kind: condHashNotExists, key: key, field: field}
}

// IntAtLeast holds when the integer at key (missing: 0) is at least n. A
// value that is not an integer makes the condition fail with that error.
func IntAtLeast(key string, n int64) Condition {
	return Condition{kind: condIntAtLeast, key: key, n: n}
}

// HashIntAtLeast holds when the hash field's integer value (missing: 0) is
// at least n, such as a stock count before an order takes one.
func HashIntAtLeast(key, field string, n int64) Condition {
	return Condition{kind: condHashIntAtLeast, key: key, field: field, n: n}
}

// ListLengthEqual holds when the list at key has n elements (missing: 0).
func ListLengthEqual(key string, n int64) Condition {
	return Condition{kind: condListLengthEqual, key: key, n: n}
}

// SetLengthEqual holds when the set at key has n members (missing: 0).
func SetLengthEqual(key string, n int64) Condition {
	return Condition{kind: condSetLengthEqual, key: key, n: n}
}

// SortedSetLengthEqual holds when the sorted set at key has n members (missing: 0).
func SortedSetLengthEqual(key string, n int64) Condition {
	return Condition{kind: condSortedSetLengthEqual, key: key, n: n}
}

// HashLengthEqual holds when the hash at key has n fields (missing: 0).
func HashLengthEqual(key string, n int64) Condition {
	return Condition{kind: condHashLengthEqual, key: key, n: n}
}

// SetContains holds when member is in the set at key.
func SetContains(key, member string) Condition {
	return Condition{kind: condSetContains, key: key, field: member}
}

// SetNotContains holds when member is not in the set at key.
func SetNotContains(key, member string) Condition {
	return Condition{kind: condSetNotContains, key: key, field: member}
}

// SortedSetScoreEqual holds when member's score in the sorted set at key is
// score. A missing member has no score.
func SortedSetScoreEqual(key, member string, score float64) Condition {
	return Condition{kind: condSortedSetScoreEqual, key: key, field: member, score: score}
}

// maxShown bounds how much of a value an error message shows.
const maxShown = 64

// clipped is s, a value as an error shows it, cut to maxShown bytes and
// saying how long it was: a large value must not make a large message.
func clipped(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (" + strconv.Itoa(len(s)) + " characters in all)"
}

// String describes the condition as it was built, such as
// HashIntAtLeast("stock:{42}", "sku-1", 1).
func (c Condition) String() string {
	if c.kind == condNone || int(c.kind) >= len(condKinds) {
		return "Condition{}"
	}
	args := []string{strconv.Quote(c.key)}
	switch c.kind {
	case condHashEqual, condHashNotEqual, condHashExists, condHashNotExists, condHashIntAtLeast,
		condSetContains, condSetNotContains, condSortedSetScoreEqual:
		args = append(args, strconv.Quote(c.field))
	}
	switch c.kind {
	case condStringEqual, condStringNotEqual, condHashEqual, condHashNotEqual:
		args = append(args, clipped(fmt.Sprintf("%#v", c.value)))
	case condIntAtLeast, condHashIntAtLeast, condListLengthEqual, condSetLengthEqual,
		condSortedSetLengthEqual, condHashLengthEqual:
		args = append(args, strconv.FormatInt(c.n, 10))
	case condSortedSetScoreEqual:
		args = append(args, strconv.FormatFloat(c.score, 'g', -1, 64))
	}
	return condKinds[c.kind].name + "(" + strings.Join(args, ", ") + ")"
}

// condition is a Condition added to a batch: its read, the bytes it
// compares with, and its future.
type condition struct {
	Condition
	read   []byte // the encoded read command
	want   []byte // value, encoded (StringEqual, HashEqual, …)
	err    error  // why it cannot be checked (a value without codec): Execute refuses the batch
	future *Future[bool]
	held   bool // set by the last evaluation
	judged bool // it was evaluated
}

// AddCondition makes the batch apply only if c holds: at Execute the
// conditions' keys are WATCHed and read in one round trip; when every
// condition holds the batch runs as MULTI … EXEC on that connection (MULTI
// answered before the commands are written: refused, the commands end not
// sent, as nothing would guard them), and when one does not, UNWATCH ends
// it and nothing is sent — every command
// ends ErrConditionFailed and Execute's error names the condition. If a
// watched key changes before EXEC (EXEC answers nil), the conditions are
// read and the transaction sent again within WithRetry's attempts; after
// them the commands end ErrTxAborted.
//
// Conditions need InMemoryAtomic and EXEC's reply: in another mode, or with
// WithSkipResult, Execute refuses the batch and nothing is applied (a
// Streaming batch, which sends as it is filled, fails the condition and
// every command queued after it, not sent, and Execute says why). In a
// cluster the conditions' keys must share the transaction's slot
// (ErrCrossSlot). The future is true when the condition held, false when it
// did not, and fails when it could not be checked.
func (b *Batch) AddCondition(c Condition) *Future[bool] {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != open {
		return failedFuture[bool](ErrAlreadyExecuted)
	}
	k := len(b.conds)
	cd := &condition{Condition: c, future: &Future[bool]{sig: &b.sig, index: -1}}
	switch {
	case c.kind == condNone || int(c.kind) >= len(condKinds):
		cd.err = errors.New("the zero Condition checks nothing (build one with KeyExists, HashIntAtLeast, …)")
	case b.opts.Mode != InMemoryAtomic:
		cd.err = fmt.Errorf("conditions need InMemoryAtomic, the batch is %s", b.opts.Mode)
	case b.opts.SkipResult:
		cd.err = errors.New("conditions need EXEC's reply, which WithSkipResult does not read")
	default:
		cd.read, cd.want, cd.err = c.encode(b.opts.Codec)
	}
	if cd.err != nil {
		cd.err = fmt.Errorf("rbatch: invalid condition %d, %v: %w", k, c, cd.err)
		if b.stream != nil { // a stream cannot be refused whole: the condition alone fails
			b.stream.refuseCondition(cd.err) // Execute says so; what follows it is not sent
			return failedFuture[bool](&notSentError{cause: cd.err})
		}
		if b.opts.Mode.redisSide() && b.remoteErr == nil {
			b.remoteErr = cd.err // the Redis-side queue stops: Execute discards it
		}
	}
	b.conds = append(b.conds, cd)
	return cd.future
}

// encode builds c's read command and the bytes it compares with.
func (c Condition) encode(enc resp.Encoder) (read, want []byte, err error) {
	name := condKinds[c.kind].read
	switch c.kind {
	case condHashEqual, condHashNotEqual, condHashExists, condHashNotExists, condHashIntAtLeast,
		condSetContains, condSetNotContains, condSortedSetScoreEqual:
		read, err = resp.AppendKeyedCommand(nil, nil, name, c.key, c.field)
	default:
		read, err = resp.AppendKeyedCommand(nil, nil, name, c.key)
	}
	if err != nil {
		return nil, nil, err
	}
	switch c.kind {
	case condStringEqual, condStringNotEqual, condHashEqual, condHashNotEqual:
		arg, err := resp.AppendArg(nil, enc, c.value)
		if err != nil {
			return nil, nil, fmt.Errorf("value: %w", err)
		}
		n, rest := resp.Header(arg)
		want = rest[:n]
	}
	return read, want, nil
}

// judge evaluates the condition on its read's reply: whether it held, and
// what was found when it did not (or why it could not be checked).
func (cd *condition) judge(reply any) (held bool, found string, err error) {
	if e := redisErrorOf(reply); e != nil {
		return false, "", e
	}
	switch cd.kind {
	case condKeyExists, condHashExists, condSetContains:
		n, err := decodeInt64(reply)
		return n == 1, "it does not exist", err
	case condKeyNotExists, condHashNotExists, condSetNotContains:
		n, err := decodeInt64(reply)
		return n == 0, "it exists", err
	case condStringEqual, condHashEqual, condStringNotEqual, condHashNotEqual:
		v, isBytes := reply.([]byte)
		if reply != nil && !isBytes {
			return false, "", unexpected("a string", reply)
		}
		equal := reply != nil && bytes.Equal(v, cd.want)
		if cd.kind == condStringNotEqual || cd.kind == condHashNotEqual {
			return !equal, "it is equal", nil
		}
		if reply == nil {
			return false, "it does not exist", nil
		}
		return equal, "it is " + clipped(strconv.Quote(string(v))), nil
	case condIntAtLeast, condHashIntAtLeast:
		n := int64(0) // missing counts as 0
		if reply != nil {
			v, ok := redisInt(reply)
			if b, isBytes := reply.([]byte); !ok && isBytes {
				return false, "", fmt.Errorf("not an integer: the value %s is not one to Redis", clipped(strconv.Quote(string(b))))
			} else if !ok {
				return false, "", fmt.Errorf("not an integer: %w", unexpected("an integer", reply))
			}
			n = v
		}
		return n >= cd.n, fmt.Sprintf("it is %d", n), nil
	case condSortedSetScoreEqual:
		if reply == nil {
			return false, "the member does not exist", nil
		}
		f, err := decodeFloat(reply)
		return f == cd.score, fmt.Sprintf("its score is %g", f), err
	default: // the lengths
		n, err := decodeInt64(reply)
		return n == cd.n, fmt.Sprintf("its length is %d", n), err
	}
}

// conditionError says which condition did not hold and what was found.
type conditionError struct {
	index int
	cond  Condition
	found string
	cause error // why it could not be checked (nil: it was, and failed)
}

func (e *conditionError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("rbatch: condition failed: condition %d, %v, could not be checked: %s",
			e.index, e.cond, strings.TrimPrefix(e.cause.Error(), "rbatch: "))
	}
	return fmt.Sprintf("rbatch: condition failed: condition %d, %v, did not hold: %s", e.index, e.cond, e.found)
}

func (e *conditionError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrConditionFailed, e.cause}
	}
	return []error{ErrConditionFailed}
}

// makeGuard builds the WATCH and reads of the batch's conditions (nil when
// it has none). Its Holds records each condition's verdict and the first
// that failed in b.run.unmet.
func (b *Batch) makeGuard() *batch.Guard {
	if len(b.conds) == 0 {
		return nil
	}
	keys := make([]any, 0, len(b.conds))
	seen := make(map[string]bool, len(b.conds))
	g := &batch.Guard{Reads: make([][]byte, len(b.conds))}
	for k, cd := range b.conds {
		if !seen[cd.key] {
			seen[cd.key] = true
			keys = append(keys, cd.key)
		}
		g.Reads[k] = cd.read
	}
	g.Watch, _ = resp.AppendCommand(nil, nil, "WATCH", keys...) // strings always encode
	if b.c.cluster {
		g.Probe = b.placementProbe(keys, seen)
	}
	g.Holds = func(replies []any) bool {
		b.run.unmet = nil
		for k, cd := range b.conds {
			held, found, err := cd.judge(replies[k])
			cd.held, cd.judged = held && err == nil, true
			if !cd.held && b.run.unmet == nil {
				b.run.unmet = &conditionError{index: k, cond: cd.Condition, found: found, cause: err}
			}
			cd.future.val, cd.future.err = cd.held, err
		}
		return b.run.unmet == nil
	}
	return g
}

// placementProbe returns EXISTS of every key of the conditions (watched,
// in seen) and of the transaction when the transaction names a key the
// conditions do not (nil otherwise). While its slot migrates, WATCH of the
// conditions' keys alone would let the transaction run on a node that
// lacks a key it writes (forking the key, or reading a condition's key as
// missing); Redis answers a command naming keys on both sides ASK or
// TRYAGAIN, and the transaction then waits or goes whole to where they
// all are.
func (b *Batch) placementProbe(watched []any, seen map[string]bool) []byte {
	keys := watched
	add := func(k []byte) error {
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, string(k))
		}
		return nil
	}
	for i := range b.q.Len() {
		_ = b.eachKey(i, add)
	}
	if len(keys) == len(watched) {
		return nil
	}
	probe, _ := resp.AppendCommand(nil, nil, "EXISTS", keys...)
	return probe
}

// conditionsRefusal is why the batch's conditions cannot be checked (the
// first invalid one), or nil.
func (b *Batch) conditionsRefusal() error {
	for _, cd := range b.conds {
		if cd.err != nil {
			return cd.err
		}
	}
	return nil
}

// settleConditions resolves the futures of conditions that were never
// evaluated (the batch was refused, or failed before they were read) with
// the error of the batch's first command, or cause.
func (b *Batch) settleConditions(cause error) {
	for _, cd := range b.conds {
		if cd.judged {
			continue
		}
		err := cause
		if b.submitted > 0 {
			if e := b.q.At(0).Future.(outcome).failure(); e != nil {
				err = e
			}
		}
		cd.future.val, cd.future.err = false, err
	}
}

// redisInt reads reply as Redis reads a value it increments: decimal
// digits, an optional minus sign, no plus sign, spaces or leading zeros
// ("+5", "05" and "-0" are strings to it), within 64 bits.
func redisInt(reply any) (int64, bool) {
	b, ok := reply.([]byte)
	if !ok || len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	digits := b
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] < '1' || digits[0] > '9' {
		return 0, false
	}
	for _, c := range digits[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}
