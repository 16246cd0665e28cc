package rbatch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/ctxerr"
	"github.com/rbatch/rbatch/internal/pool"
	"github.com/rbatch/rbatch/queue"
)

// Batch collects commands and sends them together; how depends on its
// ExecutionMode. A Batch may be filled from several goroutines at once; each
// command keeps the submission index it was given when queued. Execute,
// ExecuteAsync and Discard may run once between them. A RedisReadAtomic or
// RedisWriteAtomic batch holds a connection from its first command on: it
// must be executed or discarded.
type Batch struct {
	c *Client
	// opts are the batch's options, never changed once it is made: a batch
	// made without options shares noOptions.
	opts *BatchOptions
	sig  signal // started and done, for the futures

	// stream runs a Streaming batch (nil in the other modes): its commands
	// go to segments, never to q.
	stream *stream

	mu    sync.Mutex // guards state, submitted and, while open, work
	state batchState
	// submitted is the number of commands the user queued, fixed when the
	// batch starts (split commands' parts are queued after them). Like a
	// future's index, it fits an int32.
	submitted int32
	// unqueued counts the commands of a Streaming batch with an invalid
	// option: failed as they were queued, and kept nowhere.
	unqueued int
	// work is what the batch queues into and executes with. It comes from
	// a pool and goes back to it when the batch finishes: a finished batch
	// keeps only what its futures and result need.
	*work

	firsts firsts // the first future of each common type (see slab)
	// out holds a small batch's result, responses (up to three commands)
	// and its one node's figures: they outlive the batch's work.
	out struct {
		result    BatchResult
		responses [3]any
		nodes     [1]NodeResult
	}
}

// work is a batch's queue and everything Execute works with, kept apart
// from Batch so that it can be used again once the batch finished.
type work struct {
	optErr error      // the first invalid or unsupported option, reported by Execute
	plan   batch.Plan // how each group is laid out on the wire, from the options
	pooled bool       // taken from works: given back when the batch ends

	// A segment of a stream is a batch of its own: segment is set, base is
	// the stream index of its first command, bytes the size of its
	// commands. bad are the positions of the commands, of a segment or of
	// any batch, that failed at queueing (see failQueued): they stay in q as
	// stand-ins, and are not sent.
	segment bool
	base    int
	// streamSyncs is set on the segments of a stream that waits for its
	// replicas at its end (their own options leave WAIT out).
	streamSyncs bool
	// pipe runs a segment on its stream's lines, beside the one before it.
	pipe *segmentPipe
	// ownConn is set once a command that blocks its connection or changes
	// its state is queued: the batch does not share connections.
	ownConn bool
	// blockWait is the longest a blocking command queued may hold its reply
	// back (-1: forever); see extendForBlock.
	blockWait time.Duration
	// stateful is set once a command that changes its connection's state
	// (CLIENT SETNAME, READONLY, …) is queued: the connection is closed
	// after the batch, not given to the next one.
	stateful bool
	bytes    int
	bad      []int

	q       queue.Queue
	scripts map[string]string // SHA1 → body of the scripts queued with EvalAsync
	// remote holds the Redis-side queues of a RedisReadAtomic or
	// RedisWriteAtomic batch, one entry per node, in order of first use.
	remote []*entry
	// remoteErr is why the Redis-side queue cannot go on (a write command in
	// a RedisReadAtomic batch, a key that cannot be routed): Execute discards
	// the transaction and refuses the batch.
	remoteErr error
	// remoteTx is the slot a Redis-side batch in a cluster keeps to, pinned
	// by its first key.
	remoteTx txSlot
	// remoteWaiting are the commands of a Redis-side batch whose slot no
	// primary served when they were queued (remoteWaitSlots, the first
	// cause in remoteWaitErr): they are sent at Execute, as a buffered
	// transaction, once a refreshed slot map serves it.
	remoteWaiting   []int
	remoteWaitSlots []int
	remoteWaitErr   error
	// conds are the batch's conditions (AddCondition), in order; guard is
	// their WATCH and reads, made when Execute starts.
	conds []*condition
	guard *batch.Guard
	// lastName and lastFlags are the command table's answer for the last
	// command name queued.
	lastName  string
	lastFlags queue.Flags

	run execution // the state of the batch's one Execute

	// slabs hand out the batch's futures (the first of each type from
	// the batch's firsts) while it is open.
	slabs slabs
}

var works = sync.Pool{New: func() any { return new(work) }}

// noOptions are the options of every batch made without any: shared, so
// that such a batch does not carry a copy (it would be 136 bytes more).
var noOptions BatchOptions

// recycle gives w back to the pool when it came from there; a stream and
// its segments keep theirs, which their goroutines may still read.
func (w *work) recycle() {
	if w.pooled {
		*w = work{}
		works.Put(w)
	}
}

// execution is what one Execute works with besides the queue.
type execution struct {
	stats nodeStats // the NodeResults, filled as groups finish
	// single and singles are the one entry of a batch that goes to one
	// node, and the list holding it.
	single  entry
	singles [1]*entry
	// A small batch's indices (up to four commands).
	indices [4]int
	// unmet is the first condition that did not hold in the last check.
	unmet *conditionError
	// noReplica is set when read-only work for a replica went to its
	// primary because the slot map knows no replica of it.
	noReplica bool
	// wrote are the primaries written to, whose reads stay on them (nil:
	// none, or ReadFrom is Primary).
	wrote *writtenPrimaries
	// hooks are the client's hooks as Execute found them (nil: none).
	hooks []Hook
	// progress is WithProgress's report, which the groups' writes and
	// replies count in as they happen (nil: none).
	progress *progress
	// marks count each command once in progress (nil: no progress).
	marks *progressMarks
	// partOf[k] is the command that the part at queue position partsFrom+k
	// was split from (see splitMultiKey).
	partOf    []int
	partsFrom int
	// unsucceeded counts the commands that did not succeed, as collect
	// found them: an error other than ErrResultSkipped.
	unsucceeded int
}

type batchState int32

const (
	open batchState = iota
	running
	finished
)

func newBatch(c *Client, opts []Option) *Batch {
	b := &Batch{c: c, opts: &noOptions, work: works.Get().(*work)}
	b.pooled = true
	for _, o := range opts {
		if o != nil {
			if b.opts == &noOptions {
				b.opts = new(BatchOptions)
			}
			o(b.opts)
		}
	}
	if b.opts != &noOptions { // the defaults are valid everywhere
		b.optErr = b.opts.validate()
		if b.optErr == nil && c.info.Proxy {
			b.optErr = proxyRefusal(*b.opts)
		}
		if b.optErr == nil && b.opts.SyncAOF {
			if v := c.version(); v[0] < 7 || v[0] == 7 && v[1] < 2 {
				b.optErr = fmt.Errorf("rbatch: WithSyncAOF needs WAITAOF (Redis 7.2+), server is %d.%d.%d: %w", v[0], v[1], v[2], ErrUnsupported)
			}
		}
	}
	b.plan = b.makePlan()
	b.remoteTx.perSlot = b.opts.TransactionPerSlot
	if b.optErr == nil && b.opts.Mode == Streaming {
		b.stream = newStream(b)
		b.pooled = false // the stream's goroutines may outlive its end
	}
	return b
}

// backgroundContext is the context of the work the batch does before
// Execute (WithContext).
func (b *Batch) backgroundContext() context.Context {
	ctx := context.Background()
	if b.opts.Context != nil {
		ctx = b.opts.Context
	}
	return pool.WithReplyBound(ctx, b.plan.ResponseTimeout) // a connection dialed for it too
}

// Options returns the batch's resolved options.
func (b *Batch) Options() BatchOptions { return *b.opts }

// Len returns the number of commands queued.
func (b *Batch) Len() int {
	if s := b.stream; s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != open {
		return int(b.submitted) + b.unqueued
	}
	return b.q.Len() + b.unqueued
}

// enqueue queues one command whose reply dec decodes. keyArg is the
// position among args of the key that routes it (1 for the first; 0 for
// none): whatever its bytes, even empty, that argument is the key. argErr,
// when set, is a problem found before encoding (a NaN score, a zero TTL)
// that makes Execute refuse the batch.
func enqueue[T any](b *Batch, dec func(any) (T, error), name string, keyArg int, argErr error, args ...any) *Future[T] {
	return push(b, dec, queue.Command{Name: name, KeyArg: keyArg, Err: argErr}, false, args)
}

// keyed is enqueue for a command whose first argument is its key: the key
// is encoded from the string, not passed among args.
func keyed[T any](b *Batch, dec func(any) (T, error), name, key string, argErr error, args ...any) *Future[T] {
	return push(b, dec, queue.Command{Name: name, Key: key, Err: argErr}, true, args)
}

// push queues c (its Name, key and Err set by the caller) with args.
func push[T any](b *Batch, dec func(any) (T, error), c queue.Command, keyFirst bool, args []any) *Future[T] {
	if b.stream != nil {
		return pushStream(b, dec, c, keyFirst, args)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != open {
		return failedFuture[T](ErrAlreadyExecuted)
	}
	if b.optErr != nil && b.opts.Mode == Streaming {
		// A bulk load that cannot start keeps nothing of what it is fed:
		// each command fails at once, not sent, and is only counted.
		b.unqueued++
		return &Future[T]{sig: resolved, err: &notSentError{cause: b.optErr}, index: int32(b.unqueued - 1)}
	}
	f := newFuture[T](&b.slabs, &b.firsts)
	f.sig, f.dec = &b.sig, dec
	if c.Name != b.lastName { // batches mostly repeat one command: skip the table
		b.lastName, b.lastFlags = c.Name, queue.FlagsOf(c.Name)
	}
	c.Flags, c.Future = b.lastFlags, f
	var i int
	if keyFirst {
		i = b.q.AddKeyed(c, b.opts.Codec, args...)
	} else {
		i = b.q.Add(c, b.opts.Codec, args...)
	}
	f.index = int32(i)
	if err := b.c.proxyCommandRefusal(&b.q, i); err != nil && !b.segment { // (a stream's segment: pushStream)
		failQueued(b, f, i, err)
	}
	if b.opts.Mode.redisSide() {
		if bg := b.opts.Context; bg != nil && bg.Err() != nil {
			failQueued(b, f, i, ctxerr.Of(bg)) // WithContext's ended: its MULTI was dropped, nothing more reaches Redis
		} else {
			b.pushRemote(i)
		}
	}
	return f
}

// failQueued makes command i, just queued with future f, fail alone and at
// once, not sent, because of err: a stand-in keeps its place in the queue,
// to be counted not sent, and b.bad keeps it off the wire (a Redis-side
// command is kept off it by not being pushed). The rest of the batch runs.
func failQueued[T any](b *Batch, f *Future[T], i int, err error) {
	nsErr := &notSentError{cause: err} // the batch's error names the command
	f.sig, f.err = resolved, nsErr
	b.q.At(i).Future = &Future[any]{sig: resolved, err: nsErr, index: f.index, dec: decodeAny}
	b.bad = append(b.bad, i)
}

// Do queues any command. In a cluster it is routed by its first argument as
// the key, except for the commands whose first argument cannot be one:
// EVAL, EVALSHA, FCALL and their _RO forms, and the commands that take a
// count of keys first (SINTERCARD, ZINTER, ZUNION, ZDIFF, ZINTERCARD,
// LMPOP, ZMPOP, BLMPOP, BZMPOP) go by their first key (none when the count
// is 0), OBJECT, MEMORY USAGE, XGROUP and XINFO by the key after the
// subcommand, BITOP by its destination, XREAD and XREADGROUP by the first
// stream after STREAMS. Commands that would change
// the connection (SUBSCRIBE, MONITOR, SELECT, …) or that the modes own
// (MULTI, EXEC, WATCH, …) fail Execute.
//
// A command with no key (PING, TIME, DBSIZE, INFO, FLUSHALL, SCRIPT FLUSH,
// …) runs on one primary of a cluster, any one (in an atomic batch, the
// transaction's): not on each, so DBSIZE
// counts that node's keys only. Each argument is one argument of the
// command, as the objects encode values: a []string or []any is not spread
// into several (without a codec it is refused, with one it is sent
// encoded as one value); pass args... instead.
func (b *Batch) Do(cmd string, args ...any) *Future[any] {
	var sub string
	if len(args) > 0 {
		sub = argString(args[0])
	}
	name, flags, err := queue.Lookup(cmd, sub)
	if err != nil {
		err = fmt.Errorf("Do(%q): %w", cmd, err)
	}
	if flags&queue.OwnConn != 0 || blocks(name, args) {
		wait, blocking := blockWait(name, args)
		b.mu.Lock()
		if b.state == open {
			b.ownConn = true
			b.stateful = b.stateful || changesConn(name, sub)
			if b.stateful && b.stream != nil {
				b.stream.lines.stateful.Store(true)
			}
			if blocking {
				b.blockFor(wait) // (a stream's part notes it as it is queued: pushStream)
			}
		}
		b.mu.Unlock()
	}
	keyArg := 0 // the first argument, whatever its type or bytes ("" and 42 are keys too)
	if flags&queue.NoKey == 0 && len(args) > 0 {
		keyArg = rawKeyArg(name, args)
	}
	return enqueue(b, decodeAny, name, keyArg, err, args...)
}

// changesConn reports whether command name (sub its first argument) leaves
// state on its connection that a later batch would inherit.
func changesConn(name, sub string) bool {
	switch name {
	case "READONLY", "READWRITE":
		return true
	case "CLIENT":
		switch strings.ToUpper(sub) {
		case "ID", "INFO", "LIST", "GETNAME", "GETREDIR", "TRACKINGINFO":
			return false
		}
		return true
	}
	return false
}

// Execute sends the batch and waits for every reply. The result holds one
// response per command in submission order. The error is nil exactly when
// every command succeeded (nil replies count as success); otherwise it is a
// *BatchError naming each failed command, and the result still holds what
// did succeed. A batch that cannot be sent as a whole (an invalid option, a
// value that does not encode, a closed client) sends nothing. A nil ctx is
// refused with an error and leaves the batch as it was.
func (b *Batch) Execute(ctx context.Context) (*BatchResult, error) {
	if ctx == nil {
		return nil, errNilContext // the batch stays as it was, to execute with a context
	}
	if !b.start() {
		return nil, ErrAlreadyExecuted
	}
	return b.executeStarted(ctx)
}

// executeStarted runs a started batch and ends it, also when execute
// panics: then abandon settles it first.
func (b *Batch) executeStarted(ctx context.Context) (res *BatchResult, err error) {
	returned := false
	defer func() {
		if !returned {
			b.abandon()
		}
		b.end()
	}()
	res, err = b.execute(ctx)
	returned = true
	return res, err
}

// abandon resolves a batch whose Execute is unwinding from a panic: what it
// had sent is not known, so every command is unknown (its value, if it had
// one, is dropped rather than trusted). A Redis-side MULTI still open is
// discarded first (closing an executed session again does nothing), so
// that its connection goes back and no session reader still resolves.
func (b *Batch) abandon() {
	if b.stream != nil {
		return
	}
	if len(b.remote) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), closeDiscardTimeout)
		b.discardRemote(ctx)
		cancel()
	}
	b.resolveAll(&unknownError{cause: errPanicked})
}

// start moves the batch from open to running; false if it already left open
// (executed, discarded, or being so).
func (b *Batch) start() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != open {
		return false
	}
	b.state = running
	b.submitted = int32(b.q.Len()) // parts of split commands are queued after
	b.sig.started.Store(true)
	if b.stream != nil {
		b.stream.close() // from the call on, as for every mode
	}
	return true
}

// end marks the batch finished, hands its buffers on to later batches and
// releases every future's waiters.
func (b *Batch) end() {
	b.mu.Lock()
	b.state = finished
	b.q.Release()
	held := len(b.remote) > 0
	w := b.work
	if w.pooled {
		b.work = nil // a stream and its segments keep theirs: see recycle
	}
	b.mu.Unlock()
	if held {
		b.c.release(b)
	}
	b.sig.finish()
	w.recycle()
}

// ExecuteAsync runs Execute in its own goroutine. The batch counts as
// executed from the call on: the Get of any of its futures waits for it.
func (b *Batch) ExecuteAsync(ctx context.Context) *Future[*BatchResult] {
	if ctx == nil {
		return failedFuture[*BatchResult](errNilContext)
	}
	if !b.start() {
		return failedFuture[*BatchResult](ErrAlreadyExecuted)
	}
	sig := new(signal)
	sig.started.Store(true)
	f := &Future[*BatchResult]{sig: sig, index: -1}
	go func() {
		defer sig.finish()
		f.val, f.err = b.executeStarted(ctx)
	}()
	return f
}

// Discard drops the batch: every future resolves with ErrDiscarded. For a
// Redis-side queue it sends DISCARD, so nothing queued is applied; a queue
// still waiting for its connection wrote nothing, and is dropped at once
// without one. A Streaming batch has sent commands already: those answered
// keep their outcome, those written and unanswered end unknown, and only
// the rest end ErrDiscarded.
func (b *Batch) Discard(ctx context.Context) error {
	if ctx == nil {
		return errNilContext
	}
	if !b.start() {
		return ErrAlreadyExecuted
	}
	defer b.end()
	if b.stream != nil {
		b.stream.discard()
		return nil
	}
	b.discardRemote(ctx)
	b.resolveAll(ErrDiscarded)
	b.settleConditions(ErrDiscarded)
	if fn := b.opts.Progress; fn != nil { // its one call: the batch ended here
		res, _ := b.collect(nil, nil)
		fn(finalProgress(res.Counts, 0))
	}
	return nil
}

func (b *Batch) resolveAll(err error) {
	for i := 0; i < b.q.Len(); i++ {
		b.q.At(i).Future.(outcome).resolve(nil, err)
	}
}
