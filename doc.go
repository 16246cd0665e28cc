// Package rbatch sends batches of Redis commands the way Redisson's RBatch
// does: typed futures per command, five execution modes,
// skip-result bulk loads and replica-acknowledged writes, with one known
// outcome for every command even when the network fails.
//
// # Batches
//
// A Client holds pooled connections; a Batch collects commands through
// Redisson-style objects and sends them together:
//
//	b := client.NewBatch()
//	n := b.AtomicLong("visits").IncrementAndGetAsync()
//	b.List("log").AddAsync("visited")
//	res, err := b.Execute(ctx)
//	visits, err := n.Get()
//
// Each accessor method queues one command and returns a *Future of the
// command's result type. BatchResult.Responses holds every command's value
// (or error) in submission order; Future.Index is a command's position.
// Values are strings, []byte, integers, floats or bool; anything else needs a
// Codec (WithCodec(JSONCodec)). A batch that cannot be sent as a whole (a
// value with no codec, a NaN score, a forbidden command such as SUBSCRIBE)
// sends nothing.
//
// # Modes
//
// InMemory pipelines the commands at Execute: a writer goroutine streams
// them while the replies are read, so batches of millions keep one compact
// copy of the commands (encoded to RESP as they are queued) and never wait
// for a round trip per command. InMemoryAtomic wraps them in MULTI … EXEC.
// RedisWriteAtomic and RedisReadAtomic open MULTI on a held connection at the
// first command and send each command as it is queued; Execute sends EXEC,
// Discard sends DISCARD (or, still waiting for the connection, nothing, at
// once). RedisReadAtomic accepts only read-only commands and
// may run on a replica (Config.ReadFrom).
//
//	b := client.NewBatch(WithMode(RedisWriteAtomic), WithSync(1, time.Second))
//
// Redis transactions have no rollback: a command that fails inside EXEC
// (WRONGTYPE) fails alone while the others are applied. A command refused
// while queueing (wrong arity, unknown command) aborts the whole transaction:
// every future ends with ErrTxAborted and nothing is applied.
//
// WithSkipResult sends CLIENT REPLY OFF … ON around the commands: Redis
// sends no replies, futures end with ErrResultSkipped. Where CLIENT REPLY is
// refused (an ACL, a renamed command), rbatch reads the replies instead: a
// command answered an error fails with it, the others end with
// ErrResultSkipped. So does a transaction where CLIENT SETNAME is refused
// (see below). A server that refuses it for now (BUSY
// with a script, LOADING) refuses every command then: their replies are
// read, and the commands fail with BUSY or LOADING (a transaction is
// aborted), and WithRetry sends them again. On a cluster, and through a proxy that
// closes the connection on INFO (twemproxy), the replies are read, so that
// the commands a MOVED, ASK or TRYAGAIN turns away are sent where they
// belong, not lost unseen, and those refused keep their error; the others
// still end with ErrResultSkipped. Through such a proxy the atomic
// modes, WithSync and WithSyncAOF fail with ErrUnsupported, nothing sent, and
// so does, alone, a command it closes the connection on (XADD, MSETNX, …). WithSync and
// WithSyncAOF append WAIT or WAITAOF; BatchResult.SyncedReplicas is the
// fewest replicas that acknowledged on any node.
//
// # Streaming
//
// A Streaming batch is for bulk loads. Its commands are written while the
// batch is filled, a part at a time in the background, and their replies
// read as they come; queueing blocks while Config.StreamBuffer bytes are
// queued and unanswered, so memory does not grow with the batch. The
// library keeps nothing of a command once it is answered: futures belong
// to whoever holds them, BatchResult.Responses stays empty, Counts counts
// every command and a *BatchError lists the first 1,000 failures (errors.Is
// and errors.As still reach the causes of those past them). Each
// command has InMemory's outcomes, redirects and retries; WithSync and
// WithSyncAOF wait once per node, after the stream's last command, on the
// connection that carried the node's writes (WAIT covers all of them).
// Unlike InMemory a stream cannot be refused
// as a whole: a command that cannot be encoded or is forbidden fails alone,
// at once, and the stream goes on.
//
// The background work runs under WithContext's context (default
// context.Background()) and, from Execute on, under Execute's as well.
// Errors reach the futures as each part is answered (a future's Get waits
// only for its part, which goes as soon as the wire is free) and Progress
// counts them; Execute reports them all. When a context ends or Discard is
// called, written and unanswered commands end unknown, the rest not sent
// (ErrDiscarded after Discard; they count in Progress's Queued and in
// Counts.NotSent, so Counts add up to every command queued), and later
// queueing fails at once. A stream
// never executed nor discarded sends what was queued and then rests (its
// WithProgress timer keeps firing): end every stream.
//
// # Conditions
//
// An InMemoryAtomic batch applies only if its conditions hold
// (StackExchange.Redis's transaction conditions, go-redis's Watch without
// the loop to write):
//
//	b := client.NewBatch(WithMode(InMemoryAtomic), WithRetry(10, time.Millisecond))
//	inStock := b.AddCondition(HashIntAtLeast("stock:{42}", "sku-1", 1))
//	b.Map("stock:{42}").AddAndGetAsync("sku-1", -1)
//	_, err := b.Execute(ctx) // errors.Is(err, ErrConditionFailed): nothing applied
//
// The conditions' keys are WATCHed and read in one round trip on the
// transaction's connection. When all hold, MULTI … EXEC follows; when one
// does not, UNWATCH, and every command ends ErrConditionFailed. EXEC
// answering nil (another client changed a watched key) applied nothing: the
// conditions are read and the transaction sent again within WithRetry's
// attempts, then ErrTxAborted. In other modes, and with WithSkipResult,
// Execute refuses a batch with conditions before anything is applied.
//
// # Scripts
//
// Script().EvalAsync and its typed variants (EvalIntAsync, EvalStringAsync,
// EvalStringsAsync) send EVALSHA. A NOSCRIPT answer (the node never ran the
// script, SCRIPT FLUSH, a restart, a failover) means the script did not run:
// rbatch sends that command again as EVAL with the body, once. Sent again,
// it runs after the commands behind it, so a batch whose script is not its
// last command on a node, a transaction, a skip-result batch and a stream's
// parts send a SCRIPT LOAD of their scripts ahead of their commands instead.
//
// # Shared connections
//
// Small InMemory and InMemoryAtomic batches (a node's share of at most 32
// KiB and 64 runs of encoded commands), with or without WithSkipResult and
// WithSync, go on shared connections (Config.SharedConns per node, default
// 2: one for the batches that end in WAIT or WAITAOF, which Redis answers
// nothing after until the WAIT returns, one for the rest) that carry the
// batches of every caller back to back: each batch's frames are written
// whole, so a MULTI … EXEC or CLIENT REPLY OFF … ON block is never split by
// another batch, and replies come back by position. One
// write then carries many callers' batches, which is what makes hundreds of
// goroutines fast. A lost shared connection settles each command of each
// batch on it as a lost connection settles any batch: answered ones keep
// their replies, written ones are unknown, unwritten ones not sent. A
// batch whose context ends gives up alone: unwritten, it is taken back;
// written, its replies are read and dropped. A WAIT on a shared connection
// counts every write made on it before, never fewer than the batch's own.
// Larger batches, the Redis-side modes, Streaming, conditions, blocking
// commands (BLPOP, XREAD BLOCK, …), commands that change the connection
// (CLIENT …, READONLY) and WAIT with no timeout take a pooled connection of
// their own; Config.DisableSharing gives every batch one.
//
// # Observability
//
// Client.AddHook installs a Hook that sees each batch and node group start
// and end, redirects, retries and waits for a connection; Client.Stats
// gives each node's connection figures; BatchResult.Counts tells how many
// commands ended in each state. The module
// github.com/rbatch/rbatch/rbatchotel turns the hook into OpenTelemetry
// spans (one per batch, one per node group, none per command) and a
// duration histogram.
//
// # Errors
//
// Every command ends in exactly one state: applied (its value, or ErrNil for
// a nil reply), failed (a *RedisError such as WRONGTYPE), aborted
// (ErrTxAborted), not sent (ErrNotSent with its cause: safe to retry),
// unknown (ErrUnknownOutcome: written but not answered, it may or may not
// have been applied), or skipped (ErrResultSkipped). A reply that does not
// fit its future's type fails the future with ErrDecode, yet the command
// ran and counts as applied. rbatch never re-sends a
// write whose outcome is unknown. Execute returns nil exactly when every
// command succeeded; otherwise a *BatchError lists the failed commands, and
// errors.Is and errors.As reach each cause:
//
//	var re *rbatch.RedisError
//	if errors.As(err, &re) && re.Prefix() == "WRONGTYPE" { … }
//
// A Redis-side batch (RedisWriteAtomic, RedisReadAtomic) refused at Execute
// (a write in a read-only batch, a cross-slot key) discards its MULTI: the
// commands already queued in Redis end with ErrTxAborted, the rest ErrNotSent.
//
// WithRetry retries only what cannot have been applied: commands not sent,
// rejections with LOADING, BUSY, TRYAGAIN, CLUSTERDOWN or MASTERDOWN (a
// transaction is retried whole), and read-only commands left unknown (not
// in Streaming, whose later parts may have written their keys meanwhile).
//
// # Concurrency
//
// A Client and a Batch are safe for concurrent use: several goroutines may
// queue into one batch, and each command keeps the index it got when queued.
// Execute, ExecuteAsync and Discard run once per batch; a future's Get
// waits while its batch runs (after ExecuteAsync too) and fails with
// ErrNotExecuted only for a batch never executed. A connection goes back to
// its pool only when clean: no pending replies, no open MULTI, replies on,
// and no state a command of the batch left on it (CLIENT SETNAME,
// READONLY, …: such a connection is closed after its batch); the pool checks an idle connection's socket before handing it out, and a
// shared connection's reader waits at its socket, so one the server closed
// meanwhile is never used. A cancelled context stops a
// batch promptly: commands not yet written end not sent, written ones
// unknown. Close discards the Redis-side batches still open.
package rbatch
