package rbatch

import (
	"context"
	"fmt"
	"time"
)

// ExecutionMode says how a batch travels to Redis. The names follow Redisson's
// BatchOptions.ExecutionMode.
type ExecutionMode int

const (
	// InMemory buffers the commands in the client and pipelines them at
	// Execute. Each command succeeds or fails on its own; other clients may
	// see the batch half applied.
	InMemory ExecutionMode = iota

	// InMemoryAtomic buffers the commands and sends them wrapped in
	// MULTI … EXEC at Execute: other clients see all or none of them.
	InMemoryAtomic

	// RedisReadAtomic sends MULTI and each command as it is queued, on a
	// connection held for the batch, and EXEC at Execute. Read-only commands
	// only; it may run on a replica (Config.ReadFrom). The connection is
	// taken in the background; batches opened on a node get theirs in the
	// order they were opened (their first command queued), so with the pool
	// exhausted, executing them in that order never waits on a later one.
	RedisReadAtomic

	// RedisWriteAtomic is RedisReadAtomic for any command, on the primary.
	RedisWriteAtomic

	// Streaming sends the commands while the batch is filled, for bulk
	// loads: memory stays bounded however many are queued (queueing blocks
	// while Config.StreamBuffer bytes are queued and unanswered), and the
	// library keeps nothing of a command once it is answered. Not atomic;
	// each command succeeds or fails on its own, as in InMemory. See
	// "Streaming" in the package doc.
	Streaming
)

var modeNames = [...]string{"IN_MEMORY", "IN_MEMORY_ATOMIC", "REDIS_READ_ATOMIC", "REDIS_WRITE_ATOMIC", "STREAMING"}

// String gives Redisson's name for the mode, such as "IN_MEMORY".
func (m ExecutionMode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("ExecutionMode(%d)", int(m))
}

// atomic reports whether the mode wraps the batch in MULTI … EXEC.
func (m ExecutionMode) atomic() bool { return m == InMemoryAtomic || m.redisSide() }

// redisSide reports whether commands go to Redis as they are queued.
func (m ExecutionMode) redisSide() bool { return m == RedisReadAtomic || m == RedisWriteAtomic }

// ReadFrom says where read-only work may go.
type ReadFrom int

const (
	Primary       ReadFrom = iota // default: always the primary
	Replica                       // read-only work on a replica of the owning primary
	PreferReplica                 // a replica when one is up, else the primary
)

func (r ReadFrom) String() string {
	switch r {
	case Primary:
		return "Primary"
	case Replica:
		return "Replica"
	case PreferReplica:
		return "PreferReplica"
	}
	return fmt.Sprintf("ReadFrom(%d)", int(r))
}

// BatchOptions holds the resolved options of a batch. The zero value is an
// InMemory batch with no sync, no retry and no codec.
type BatchOptions struct {
	Mode       ExecutionMode
	SkipResult bool

	// Sync, SyncReplicas and SyncTimeout are WithSync's WAIT arguments.
	Sync         bool
	SyncReplicas int
	SyncTimeout  time.Duration

	// SyncAOF, SyncAOFLocal, SyncAOFReplicas and SyncAOFTimeout are
	// WithSyncAOF's WAITAOF arguments.
	SyncAOF         bool
	SyncAOFLocal    bool
	SyncAOFReplicas int
	SyncAOFTimeout  time.Duration

	// ResponseTimeout bounds the wait for each reply (0: the client's ReadTimeout).
	ResponseTimeout time.Duration

	// RetryAttempts and RetryInterval bound the retries of what is safe to retry.
	RetryAttempts int
	RetryInterval time.Duration

	// Codec encodes values that are not strings, []byte, numbers or bool
	// (nil: such values are an error).
	Codec Codec

	// TransactionPerSlot runs an atomic batch on a cluster as one
	// transaction per hash slot: each is atomic on its own, the batch as a
	// whole is NOT.
	TransactionPerSlot bool

	// Progress, called every ProgressEvery, is WithProgress's.
	Progress      func(Progress)
	ProgressEvery time.Duration
	progressNoFn  bool // WithProgress was given a nil function

	// Context bounds the work a batch does before Execute (WithContext).
	Context context.Context
}

// Option sets one batch option; see NewBatch.
type Option func(*BatchOptions)

// WithMode sets the execution mode (default InMemory).
func WithMode(m ExecutionMode) Option { return func(o *BatchOptions) { o.Mode = m } }

// WithSkipResult asks Redis not to reply to the commands (CLIENT REPLY OFF …
// ON). Futures resolve with ErrResultSkipped and BatchResult.Responses is empty.
// On a cluster the replies are read instead of turned off: only a reply
// tells a MOVED, ASK or TRYAGAIN, and a command redirected unseen would be
// lost. There, as wherever replies are read (a proxy, a server that
// refuses CLIENT REPLY), a command the server rejects (WRONGTYPE, …) fails
// with its error, as without WithSkipResult; the others end skipped.
//
// In the atomic modes the transaction also names its connection (CLIENT
// SETNAME rbatch-tx-N, its last command) and reads the name back after
// CLIENT REPLY ON (CLIENT GETNAME): with replies off, the EXECABORT of a
// transaction Redis discarded for a queue-time error is never read, and
// the name tells. Its commands then end with ErrTxAborted, not
// ErrResultSkipped.
func WithSkipResult() Option { return func(o *BatchOptions) { o.SkipResult = true } }

// WithSync makes each node WAIT until replicas replicas acknowledged the
// batch's writes, or timeout passed (0 waits forever, as WAIT does, and only
// the context ends it). WAIT counts in milliseconds: a positive timeout
// under 1ms is an invalid option (it would become 0, forever). WAIT's reply
// is awaited for timeout on top of the response timeout. Fewer replicas than
// asked is a figure (SyncedReplicas), not an error; a WAIT refused, or lost
// unanswered (the connection failed after every command was answered), is
// one: Execute's error then wraps it (ErrUnknownOutcome for a lost one)
// although each command's future holds its result, since how many replicas
// hold the writes is not known.
func WithSync(replicas int, timeout time.Duration) Option {
	return func(o *BatchOptions) { o.Sync, o.SyncReplicas, o.SyncTimeout = true, replicas, timeout }
}

// WithSyncAOF makes each node WAITAOF until the batch's writes are fsynced to
// the local AOF (local) and by replicas replicas, or timeout passed (0 waits
// forever, as WAITAOF does; a positive timeout under 1ms is invalid, as for
// WithSync). Its reply is awaited as WithSync's is. Needs
// Redis 7.2 or later. A batch ends in one WAIT or one WAITAOF: with
// WithSync as well, the batch's options are invalid.
func WithSyncAOF(local bool, replicas int, timeout time.Duration) Option {
	return func(o *BatchOptions) {
		o.SyncAOF, o.SyncAOFLocal, o.SyncAOFReplicas, o.SyncAOFTimeout = true, local, replicas, timeout
	}
}

// WithResponseTimeout bounds the wait for each reply (to within an eighth of
// d: the socket deadline is re-armed as replies flow, not at each one; a
// WAIT's reply gets its own timeout on top, and a quarter second more, as
// Redis answers a WAIT that timed out on its timer, up to 100 ms late at
// the default hz). It bounds a blocking
// command's reply too (BLPOP, XREAD BLOCK, …): without it, the client's
// ReadTimeout counts from the end of the longest block queued, and a block
// of 0 (forever) leaves the batch's replies unbounded. On
// expiry the commands not yet answered end with ErrUnknownOutcome, the
// connection is closed, and no write among them is re-sent. A batch with
// its own response timeout keeps a connection of its own rather than
// sharing one (see Config.SharedConns), so its timeout is its alone.
// With WithSkipResult the one reply is CLIENT REPLY ON's, which comes once
// the server has worked through what its socket still held when the last
// command was written: d must cover that as well.
func WithResponseTimeout(d time.Duration) Option {
	return func(o *BatchOptions) { o.ResponseTimeout = d }
}

// WithRetry retries what is safe to retry (commands not sent, LOADING/BUSY/
// TRYAGAIN rejections, read-only commands) up to attempts times, interval apart.
// A rejected command that a later command on one of its keys already
// overtook (answered while it was refused, further down the pipeline) is
// not retried: it keeps its rejection rather than run after that one.
func WithRetry(attempts int, interval time.Duration) Option {
	return func(o *BatchOptions) { o.RetryAttempts, o.RetryInterval = attempts, interval }
}

// WithCodec sets how values other than strings, []byte, numbers and bool are
// encoded, such as JSONCodec.
func WithCodec(c Codec) Option { return func(o *BatchOptions) { o.Codec = c } }

// WithTransactionPerSlot lets an atomic batch on a cluster span several hash
// slots by running one MULTI/EXEC per slot. Each slot's commands are applied
// all or none; the batch as a whole is NOT atomic: another client may see one
// slot's transaction applied and another's not yet, and one may abort while
// another commits. Without it, an atomic batch whose keys span slots fails
// with ErrCrossSlot before anything is sent. A multi-key command whose keys
// span slots (Keys().DeleteAsync, Buckets().GetAsync, …) is split in
// InMemoryAtomic, each part in the transaction of its slot and its replies
// joined into the one future (so it too is not atomic as a whole); the
// Redis-side modes queue each command in Redis whole, so there its keys
// must share a slot, or Execute fails with ErrCrossSlot and nothing is
// applied. A command that cannot be split (a script, RENAME, SMOVE, …)
// must name keys of one slot in either mode, or Execute fails likewise.
// With WithSync or WithSyncAOF each slot's transaction is followed by a
// WAIT (or WAITAOF) of its own, on its own connection, the slots side by
// side: a WAIT covers only what its connection wrote. The node's
// NodeResult.SyncedReplicas is the fewest of its slots'.
func WithTransactionPerSlot() Option {
	return func(o *BatchOptions) { o.TransactionPerSlot = true }
}

// validate reports the first invalid option, naming it.
func (o *BatchOptions) validate() error {
	switch {
	case o.Mode < InMemory || o.Mode > Streaming:
		return fmt.Errorf("rbatch: invalid option: unknown execution mode %d", int(o.Mode))
	case o.Mode == Streaming && o.TransactionPerSlot:
		return fmt.Errorf("rbatch: invalid option: WithTransactionPerSlot is for the atomic modes, the batch is STREAMING")
	case o.progressNoFn:
		return fmt.Errorf("rbatch: invalid option: WithProgress has a nil function to call")
	case o.ProgressEvery < 0:
		return fmt.Errorf("rbatch: invalid option: WithProgress interval %v is negative", o.ProgressEvery)
	case o.Progress != nil && o.ProgressEvery == 0:
		return fmt.Errorf("rbatch: invalid option: WithProgress needs a positive interval")
	case o.SyncReplicas < 0:
		return fmt.Errorf("rbatch: invalid option: WithSync replicas %d is negative", o.SyncReplicas)
	case o.SyncTimeout < 0:
		return fmt.Errorf("rbatch: invalid option: WithSync timeout %v is negative", o.SyncTimeout)
	case o.SyncTimeout > 0 && o.SyncTimeout < time.Millisecond:
		return fmt.Errorf("rbatch: invalid option: WithSync timeout %v is under the 1ms WAIT counts in (it would be sent as 0, which waits forever)", o.SyncTimeout)
	case o.SyncAOFReplicas < 0:
		return fmt.Errorf("rbatch: invalid option: WithSyncAOF replicas %d is negative", o.SyncAOFReplicas)
	case o.SyncAOFTimeout < 0:
		return fmt.Errorf("rbatch: invalid option: WithSyncAOF timeout %v is negative", o.SyncAOFTimeout)
	case o.SyncAOFTimeout > 0 && o.SyncAOFTimeout < time.Millisecond:
		return fmt.Errorf("rbatch: invalid option: WithSyncAOF timeout %v is under the 1ms WAITAOF counts in (it would be sent as 0, which waits forever)", o.SyncAOFTimeout)
	case o.Sync && o.SyncAOF:
		return fmt.Errorf("rbatch: invalid option: WithSync and WithSyncAOF together: a batch ends in one WAIT or one WAITAOF, choose one")
	case o.SyncAOF && !o.SyncAOFLocal && o.SyncAOFReplicas == 0:
		return fmt.Errorf("rbatch: invalid option: WithSyncAOF asks for nothing (local false, 0 replicas)")
	case o.ResponseTimeout < 0:
		return fmt.Errorf("rbatch: invalid option: WithResponseTimeout %v is negative", o.ResponseTimeout)
	case o.RetryAttempts < 0:
		return fmt.Errorf("rbatch: invalid option: WithRetry attempts %d is negative", o.RetryAttempts)
	case o.RetryInterval < 0:
		return fmt.Errorf("rbatch: invalid option: WithRetry interval %v is negative", o.RetryInterval)
	case o.RetryAttempts > 0 && o.RetryInterval == 0:
		return fmt.Errorf("rbatch: invalid option: WithRetry with %d attempts needs a positive interval", o.RetryAttempts)
	}
	return nil
}

// WithProgress calls fn about every interval while the batch runs, and
// once at the end with the final figures, always from one goroutine of the
// library: a slow fn makes it skip calls, it never slows the batch. In
// Streaming mode the figures move as each part of the stream is answered;
// in the other modes Queued is known from the start and the other figures
// come with the last call (made by Discard for a batch discarded instead of
// executed). The last call has Queued = Counts.Total(),
// Written = Total − NotSent, Answered = Applied + Failed + Skipped and
// Failed = Failed + Aborted + NotSent + Unknown.
func WithProgress(interval time.Duration, fn func(Progress)) Option {
	return func(o *BatchOptions) { o.Progress, o.ProgressEvery, o.progressNoFn = fn, interval, fn == nil }
}

// WithContext sets the context of the work a batch does before Execute: a
// Streaming batch sends its commands in the background as they are queued,
// and RedisReadAtomic/RedisWriteAtomic send each command as it is queued.
// When ctx ends, that work stops as Execute's context would stop it
// (written and unanswered: unknown; not written: not sent) and queueing
// fails at once (not sent, with ctx's cause). From Execute on, Execute's
// context bounds the batch too, and ctx still does (a batch whose ctx
// ended is refused at Execute; a Redis-side MULTI is discarded).
// Default: context.Background().
func WithContext(ctx context.Context) Option { return func(o *BatchOptions) { o.Context = ctx } }

// Progress is how far a batch got; see WithProgress.
type Progress struct {
	Queued, Written, Answered, Failed int // commands so far
	Elapsed                           time.Duration
}
