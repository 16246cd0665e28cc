package rbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"golang.org/x/sync/errgroup"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/ctxerr"
	"github.com/rbatch/rbatch/internal/pool"
)

// maxRedirects bounds how often one command follows MOVED or ASK.
const maxRedirects = 5

// replicaRecheck is how old the slot map must be before read-only work
// that found no replica to go to reloads it (at most that often).
const replicaRecheck = time.Second

func (b *Batch) execute(ctx context.Context) (*BatchResult, error) {
	if b.stream != nil {
		return b.stream.finish(ctx)
	}
	ctx = pool.WithReplyBound(ctx, b.plan.ResponseTimeout) // a connection dialed for it too
	if bg := b.opts.Context; bg != nil {
		// WithContext's context bounds Execute too: ended already, the
		// batch is refused (a Redis-side MULTI discarded) before EXEC.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := context.AfterFunc(bg, func() { cancel(ctxerr.Of(bg)) })
		defer stop()
		if bg.Err() != nil {
			cancel(ctxerr.Of(bg))
		}
	}
	hs := b.c.hooks.installed()
	if hs == nil && b.opts.Progress == nil {
		return b.executeAll(ctx)
	}
	start := time.Now()
	var p *progress
	if b.opts.Progress != nil {
		p = startProgress(b.opts.ProgressEvery, b.opts.Progress, start)
		p.queued.Store(int64(b.q.Len()))
		b.run.progress = p
	}
	end := func(*BatchResult, error) {}
	if hs != nil {
		b.run.hooks = hs
		info := b.batchInfo(start)
		ctx, end = batchHooks(ctx, hs, &info)
	}
	res, err := b.executeAll(ctx)
	if p != nil {
		p.finish(res.Counts)
	}
	end(res, err)
	return res, err
}

// executeAll runs the batch: every command is resolved when it returns.
func (b *Batch) executeAll(ctx context.Context) (*BatchResult, error) {
	if err := b.refusal(ctx); err != nil {
		b.discardRemote(ctx) // a Redis-side queue is dropped: nothing applied
		return b.refuse(err)
	}
	if b.q.Len() == 0 && len(b.conds) == 0 {
		return &BatchResult{Responses: []any{}}, nil
	}
	b.guard = b.makeGuard()
	entries := b.remote
	var splits []split
	var unserved []int
	if len(b.remoteWaiting) > 0 {
		unserved = b.remoteWaiting
		b.unserved(unserved, b.remoteWaitErr)
	}
	n := b.q.Len() // the commands queued, before any is split
	if !b.opts.Mode.redisSide() {
		var idx []int
		idx, splits = b.splitMultiKey()
		if len(b.bad) > 0 {
			idx = b.withoutBad(idx)
		}
		var err error
		if b.pipe != nil {
			b.pipe.genFrom = b.c.router.Generation()
		}
		if entries, unserved, err = b.groupByNode(idx); err != nil {
			return b.refuse(err)
		}
		if b.pipe != nil {
			b.pipe.genTo = b.c.router.Generation()
		}
	}
	if p := b.run.progress; p != nil {
		b.run.marks = newProgressMarks(p, n, b.run.partOf, b.run.partsFrom)
	}
	stats := &b.run.stats
	stats.list, stats.at = b.out.nodes[:0], stats.at[:0]
	var nodeErr error
	if len(entries) == 1 && len(unserved) == 0 && b.run.hooks == nil && b.pipe == nil && entries[0].session == nil {
		// One group, as most batches: its first round runs here, and the
		// rounds are entered only when it leaves something to do.
		// (Read-only work that found no replica goes into the rounds too:
		// they reload an old slot map.)
		first := soleRound{gen: b.c.router.Generation()}
		var done bool
		if first.fu, done = b.runSole(ctx, entries[0], stats); !done || b.run.noReplica {
			nodeErr = b.runRounds(ctx, entries, unserved, stats, &first)
		}
	} else {
		nodeErr = b.runRounds(ctx, entries, unserved, stats, nil)
	}
	b.joinSplits(splits)
	if len(b.conds) > 0 {
		b.settleConditions(&notSentError{cause: errCondsUnread})
	}
	return b.collect(stats.list, nodeErr)
}

var errCondsUnread = errors.New("the batch ended before its conditions were read")

// runRounds runs the entries, all at once, then again what came back to be
// sent elsewhere (MOVED, ASK) or later (retries), until nothing is left.
// unserved are commands already resolved not sent because no node serves
// their slot: they are retried like the rest, after a refresh of the slot
// map. first, when set, is the first round of a single entry, already run
// (runSole). Every command is resolved when it returns.
func (b *Batch) runRounds(ctx context.Context, entries []*entry, unserved []int, stats *nodeStats, first *soleRound) error {
	var nodeErrs []error
	var redirects map[int]int // per command, how often it was redirected
	retryRounds := 0
	for round := 1; len(entries) > 0 || len(unserved) > 0; round++ {
		if p := b.pipe; p != nil {
			if round == 1 {
				p.left.Store(int32(len(entries)))
				if len(entries) == 0 {
					p.markAppended()
				}
			} else {
				p.markAppended() // a first-round group failed to get a line
				p.waitPrev(ctx)
			}
		}
		gen := b.c.router.Generation()
		if round == 1 && first != nil {
			gen = first.gen // the slot map it was routed by
		}
		next := nextRound{retry: unserved, refresh: len(unserved) > 0, redirects: redirects}
		switch len(entries) {
		case 0: // only commands waiting for their slot to be served
		case 1: // one node, as most batches: run it here
			if round == 1 && first != nil {
				next.add(first.fu)
			} else {
				next.add(b.runEntry(ctx, entries[0], round, stats))
			}
		default:
			outs := make([]followUp, len(entries))
			var g errgroup.Group
			r := round // the goroutines' copy: round itself stays on the stack
			for i, e := range entries {
				g.Go(func() error {
					outs[i] = b.runEntry(ctx, e, r, stats)
					return nil
				})
			}
			g.Wait()
			for _, o := range outs {
				next.add(o)
			}
		}
		nodeErrs, redirects = append(nodeErrs, next.errs...), next.redirects
		if p := b.pipe; p != nil && round == 1 && next.leavesWork() {
			p.later.Store(true) // the next segment waits for these (see overtakes)
		}

		if len(next.retry) > 0 && retryRounds < b.opts.RetryAttempts && ctx.Err() == nil {
			// Only retries that will be sent need their order checked: a
			// cancelled bulk load ends with most of its commands here.
			b.keepRetriesInOrder(&next, entries)
		}
		retry := next.retry
		if len(retry) > 0 {
			retryRounds++
			if retryRounds > b.opts.RetryAttempts {
				retry = nil // they keep their last outcome
			} else {
				if len(next.moved)+len(next.asked)+len(next.again) > 0 {
					b.holdBehindRetries(&next)
					retry = next.retry
				}
				// A retry counts against RetryAttempts: its redirects start
				// again (in a migration ASK and TRYAGAIN alternate until it
				// ends, and that is not a loop).
				for _, i := range retry {
					delete(redirects, i)
				}
				for _, h := range b.run.hooks {
					h.Retry(ctx, RetryInfo{Attempt: retryRounds, Commands: len(retry), Interval: b.opts.RetryInterval})
				}
				if !sleep(ctx, b.opts.RetryInterval) {
					retry = nil
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		if b.run.noReplica && b.c.router.Age() > replicaRecheck {
			// Replicas that came online after the map was loaded (a client
			// started with its cluster) are learnt by a refresh.
			b.run.noReplica, next.refresh = false, true
		}
		if next.refresh {
			b.refresh(ctx, gen, next.failed)
		}
		entries, unserved = nil, nil
		if len(retry) > 0 {
			var err error
			if entries, unserved, err = b.groupByNode(retry); err != nil {
				b.resolve(retry, &notSentError{cause: err})
				entries, unserved = nil, nil
			}
		}
		// Redirected commands go where the redirect says, in their original order.
		// Commands whose script the node forgot go back to it.
		// A transaction of its own per slot stays one: two slots sent to
		// one node are two transactions there too.
		for _, to := range []struct {
			cmds             map[dest][]int
			asking, reloaded bool
		}{{next.moved, false, false}, {next.asked, true, false}, {next.again, false, true}} {
			for d, idx := range to.cmds {
				if len(idx) > 0 {
					b.inOrder(idx)
					if to.reloaded {
						b.asEval(idx)
					}
					entries = append(entries, &entry{node: b.c.router.Node(d.addr), slot: d.slot, indices: idx,
						asking: to.asking, reloaded: to.reloaded})
				}
			}
		}
	}
	return errors.Join(nodeErrs...)
}

func (b *Batch) allIndices() []int {
	var idx []int
	if n := b.q.Len(); n <= len(b.run.indices) {
		idx = b.run.indices[:n]
	} else {
		idx = make([]int, n)
	}
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// runEntry runs one entry's group (closing its Redis-side session in the
// first round) and resolves what the group did not.
func (b *Batch) runEntry(ctx context.Context, e *entry, round int, stats *nodeStats) followUp {
	start := time.Now()
	var groupEnd func(GroupResult)
	if b.run.hooks != nil {
		ctx, groupEnd = groupHooks(ctx, b.run.hooks, GroupInfo{Addr: e.node.Addr(), Commands: len(e.indices), Attempt: round, Start: start})
	}
	var r batch.Result
	var addr string
	var connErr error
	if round == 1 && e.session != nil {
		r, addr, connErr = b.closeSession(ctx, e, false)
	} else {
		if b.pipe != nil {
			r, addr, connErr = b.runPiped(ctx, e, round)
		} else {
			addr, connErr = b.runGroup(ctx, e, &r)
		}
	}
	if addr == "" { // no connection was had
		addr = e.node.Addr()
	}
	nr := NodeResult{Addr: addr, Commands: sentCommands(e, &r, connErr), Duration: time.Since(start)}
	errs := e.errs // the error replies, noted as they were read
	fu, _ := b.settleEntry(e, addr, &r, connErr, &nr, round, stats)
	if groupEnd != nil {
		b.reportGroup(ctx, e, addr, nr, r, connErr, errs, fu, groupEnd)
	}
	return fu
}

// sentCommands is how many commands a round sent to its node: none when
// it never had a connection (connErr) or its conditions kept them back
// (r.Sent: a guarded group writes its commands only once they hold), all
// of its group's otherwise.
func sentCommands(e *entry, r *batch.Result, connErr error) int {
	switch {
	case connErr != nil:
		return 0
	case e.group.Guard != nil:
		return min(r.Sent, len(e.indices))
	}
	return len(e.indices)
}

// soleRound is the first round of a batch's only group, run by runSole
// before the rounds: what it left, and the slot map's generation then.
type soleRound struct {
	fu  followUp
	gen uint64
}

// runSole is runEntry for the first round of a batch's only group, with no
// hooks, Redis-side session or stream; done is settleEntry's: nothing is
// left to do. Kept apart so that most batches pass through two large
// frames fewer, which at 512 goroutines of small batches made about a
// tenth more of them a second.
func (b *Batch) runSole(ctx context.Context, e *entry, stats *nodeStats) (fu followUp, done bool) {
	start := time.Now()
	var r batch.Result
	addr, connErr := b.runGroup(ctx, e, &r)
	if addr == "" { // no connection was had
		addr = e.node.Addr()
	}
	nr := NodeResult{Addr: addr, Commands: sentCommands(e, &r, connErr), Duration: time.Since(start)}
	return b.settleEntry(e, addr, &r, connErr, &nr, 1, stats)
}

// answeredAll reports that r answered every command of e with its own
// reply, none an error, and the WAIT or WAITAOF asked for (tail): settle
// would find nothing to resolve, redirect or retry.
func answeredAll(r *batch.Result, e *entry, tail bool) bool {
	return r.Err == nil && r.Answered == len(e.indices) && len(e.errs) == 0 && len(e.again) == 0 &&
		r.Aborted == nil && r.MultiRefused == nil && r.SyncErr == nil && !r.Unmet && r.GuardErr == nil &&
		(!tail || r.Synced)
}

// settleEntry settles what e's group left (settle), notes the EVALSHAs to
// send again, and counts the node's figures: the end of a round for e.
// done reports that every command was answered with its own reply, so
// that nothing was left to settle and nothing follows.
func (b *Batch) settleEntry(e *entry, addr string, r *batch.Result, connErr error, nr *NodeResult, round int, stats *nodeStats) (fu followUp, done bool) {
	if connErr == nil && answeredAll(r, e, b.plan.Tail != nil) {
		nr.SyncedReplicas, nr.SyncedLocal = r.Replicas, r.Local
		if b.skipsRead() || r.RepliesRead {
			b.skipAnswers(e.indices, e.errs)
		}
		stats.add(*nr, round, true)
		return followUp{}, true
	}
	fu = b.settle(e.indices, e.errs, r, connErr, nr)
	fu.slot = e.slot
	if len(e.again) > 0 {
		addTo(&fu.again, addr, "", e.again)
	}
	stats.add(*nr, round, connErr == nil && b.mayHaveApplied(e.indices))
	return fu, false
}

// runGroup sends the entry's commands as one group on a connection of its
// node (or its fallback when the node cannot be reached), puts what the
// wire did in r, and says which node's connection ran it. r is written in
// place: a result copied from frame to frame costs more than reading it.
func (b *Batch) runGroup(ctx context.Context, e *entry, r *batch.Result) (addr string, connErr error) {
	addr, connErr = b.runGroupOnce(ctx, e, r)
	if connErr == nil && b.replicaDown(e, r) && ctx.Err() == nil {
		// The replica serves no data (MASTERDOWN: its link to the primary
		// is down, and replica-serve-stale-data is no): nothing ran there,
		// and the primary answers instead, as for a replica not reachable.
		// When the primary cannot be had either, the replica's refusals
		// stand (and WithRetry decides).
		replica, refused, errs := e.node, *r, slices.Clone(e.errs)
		e.node, e.fallback = e.fallback, nil
		*r = batch.Result{}
		if primary, err := b.runGroupOnce(ctx, e, r); err == nil {
			return primary, nil
		}
		e.node, e.fallback, e.errs, *r = replica, e.node, append(e.errs[:0], errs...), refused
	}
	return addr, connErr
}

// runGroupOnce is runGroup on the entry's node (or its fallback, when the
// node cannot be reached).
func (b *Batch) runGroupOnce(ctx context.Context, e *entry, r *batch.Result) (addr string, connErr error) {
	if b.shares() {
		if sh := b.c.sharedOf(e.node); sh != nil {
			addr = e.node.Addr()
			g, shas := b.buildGroup(e)
			if batch.Shareable(g) {
				t, connErr := sh.Run(ctx, g, r)
				if connErr == nil {
					e.written, e.read = t.Written, t.Read
					b.afterGroup(e, shas, r)
					return addr, nil
				}
				*r = batch.Result{}
				if e.fallback == nil || ctx.Err() != nil {
					return addr, connErr
				}
			}
		}
	}
	conn, err := e.acquire(ctx, b.run.hooks)
	if err != nil {
		return "", err
	}
	addr = conn.Addr()
	g, shas := b.buildGroup(e)
	wc, counted := conn.(byteCounter)
	var before, beforeRead int64
	if counted {
		before, beforeRead = wc.Written(), wc.BytesRead()
	}
	*r = batch.Run(ctx, conn, g)
	if counted {
		e.written, e.read = wc.Written()-before, wc.BytesRead()-beforeRead
	}
	conn.Release(r.Clean && !b.stateful)
	if r.Err != nil && counted && wc.Written() == before && r.Answered == 0 {
		// The connection failed before its first byte went out (the server
		// had closed it): no command reached Redis, so none is unknown.
		err := fmt.Errorf("connection failed before anything was written: %w", r.Err)
		*r = batch.Result{}
		return addr, err
	}
	b.afterGroup(e, shas, r)
	return addr, nil
}

// buildGroup lays out the entry's commands as the group sent to its node, in
// the entry (which is allocated anyway); shas are its scripts' SHA1s.
func (b *Batch) buildGroup(e *entry) (*batch.Group, []string) {
	e.q, e.errs, e.again, e.proxy = &b.q, e.errs[:0], nil, b.c.info.Proxy
	loads, shas := b.scriptLoads(e.indices)
	g := &e.group
	// Field by field: the group's scratch space (its layout and result,
	// some 500 bytes) is reset by whatever runs it, and zeroing it here
	// was a tenth of a small batch's own work.
	g.Queue, g.Indices, g.Prefix, g.Resolve = &b.q, e.indices, loads, (*groupReplies)(e)
	g.Plan, g.Guard, g.Added, g.Wrote, e.marks = b.plan, b.guard, nil, nil, b.run.marks
	if m := b.run.marks; m != nil {
		g.Wrote = m.wrote
	}
	if e.asking {
		g.AskMulti, g.AskEach = g.Atomic, !g.Atomic
	}
	return g, shas
}

// afterGroup gives the EVALSHAs whose script failed to load that error, and
// notes which the node answered NOSCRIPT for, to go again as EVAL.
func (b *Batch) afterGroup(e *entry, shas []string, r *batch.Result) {
	if len(b.scripts) > 0 {
		failed := b.scriptsLoaded(e.indices, shas, r.PrefixReplies)
		if !b.plan.Atomic && !b.plan.SkipResult {
			e.again = b.noScript(e, e.errs, failed)
		}
	}
}

// byteCounter is a connection that counts the bytes its socket took and gave.
type byteCounter interface {
	Written() int64
	BytesRead() int64
}

// errReply is an error reply a command was answered with.
type errReply struct {
	index int
	err   error
}

// groupReplies is an entry as its group's batch.Resolver: it hands each
// command its reply and notes the error replies as they are read.
type groupReplies entry

// Resolve hands command i its reply.
func (g *groupReplies) Resolve(i int, reply any) {
	e, isErr := reply.(redis.Error)
	if isErr && g.proxy && proxyFault(string(e)) {
		g.q.At(i).Future.(outcome).resolve(nil, &unknownError{cause: &proxyLost{msg: string(e)}})
	} else {
		g.q.At(i).Future.(outcome).resolve(reply, nil)
	}
	if isErr {
		g.errs = append(g.errs, errReply{index: i, err: e})
	}
	if g.marks != nil && !(isErr && redirectReply(string(e))) { // a redirected command is answered where it goes
		g.marks.answer(i)
	}
}

// redirectReply reports whether an error reply sends its command to
// another node (MOVED, ASK).
func redirectReply(msg string) bool {
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")
}

func (b *Batch) resolve(idx []int, err error) {
	for _, i := range idx {
		b.q.At(i).Future.(outcome).resolve(nil, err)
	}
}

// collect builds the result from the resolved futures.
func (b *Batch) collect(nodes []NodeResult, nodeErr error) (*BatchResult, error) {
	n := int(b.submitted)
	x := &b.out
	res := &x.result // a batch runs once: its result lives in it
	*res = BatchResult{Nodes: nodes}
	if !b.opts.SkipResult && !b.segment { // a stream keeps no responses
		if n <= len(x.responses) {
			res.Responses = x.responses[:n:n]
		} else {
			res.Responses = make([]any, n)
		}
	}
	if b.opts.Sync || b.opts.SyncAOF {
		first := true
		for i, nr := range nodes {
			if i < len(b.run.stats.at) && !b.run.stats.at[i].wrote {
				continue // it applied nothing: its WAIT acknowledges nothing of the batch
			}
			if first || nr.SyncedReplicas < res.SyncedReplicas {
				res.SyncedReplicas, first = nr.SyncedReplicas, false
			}
		}
	}
	nFailed := 0
	for i := 0; i < n; i++ {
		o := b.q.At(i).Future.(outcome)
		if res.Responses != nil {
			res.Responses[i] = o.response()
		}
		err := o.failure()
		if err == nil {
			res.Counts.Applied++
			continue
		}
		res.Counts.add(err)
		if err != ErrResultSkipped {
			nFailed++
		}
	}
	b.run.unsucceeded = nFailed
	var failed []CommandError
	if nFailed > 0 && !b.segment { // a stream lists its segments' failures itself (stream.keepFailures)
		failed = b.failures(nFailed)
	}
	if failed != nil || nodeErr != nil {
		counts := res.Counts
		return res, &BatchError{Err: nodeErr, Commands: failed, counts: &counts, unsucceeded: nFailed}
	}
	return res, nil
}

// tooLong reports an argument of command i longer than the server's
// proto-max-bulk-len: Redis would drop the connection mid-batch.
// admit returns why queued command i cannot be sent (it did not encode,
// it is forbidden, an argument is over the server's limit), or nil. Every
// mode asks it: a buffered batch at Execute, a Redis-side one and a stream
// as each command is queued.
func (b *Batch) admit(i int) error {
	if err := b.q.Err(i); err != nil {
		return err
	}
	return b.tooLong(i)
}

func (b *Batch) tooLong(i int) error {
	max := b.c.info.MaxBulkLen
	if max <= 0 || int64(len(b.q.Bytes(i))) <= max {
		return nil
	}
	for k, a := range b.q.Args(i) {
		if int64(len(a)) > max {
			return fmt.Errorf("argument %d is %d bytes, over the server's proto-max-bulk-len of %d", k+1, len(a), max)
		}
	}
	return nil
}

// sleep waits d, or returns false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// acquire gets a connection from the entry's node, or from its fallback
// (the primary, for read-only work sent to a replica) when the node cannot
// be reached. The caller releases it.
func (e *entry) acquire(ctx context.Context, hs []Hook) (pool.Lease, error) {
	conn, err := get(ctx, e.node, hs)
	if err != nil && e.fallback != nil && ctx.Err() == nil {
		conn, err = get(ctx, e.fallback, hs)
	}
	return conn, err
}

// acquireLease is acquire as a Redis-side session takes it: in its turn
// on the node, taken as the session opened; hs hear of a wait for a free
// connection (ConnWait).
func (e *entry) acquireLease(ctx context.Context, hs []Hook) (batch.Lease, error) {
	var conn pool.Lease
	var err error
	if p, ok := e.node.(*pool.Pool); ok && e.turn != nil {
		conn, err = reportWait(ctx, p.Addr(), hs, func() (pool.Lease, time.Duration, error) { return p.GetInTurn(ctx, e.turn) })
		if err != nil && e.fallback != nil && ctx.Err() == nil {
			conn, err = get(ctx, e.fallback, hs)
		}
	} else {
		conn, err = e.acquire(ctx, hs)
	}
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// refusal returns why the batch cannot be sent at all, naming the first bad
// command; nil when it can go.
func (b *Batch) refusal(ctx context.Context) error {
	switch {
	case b.c.closed.Load():
		return ErrClosed
	case b.optErr != nil:
		return b.optErr
	}
	for i := 0; i < b.q.Len() && !b.segment; i++ { // a stream's bad commands failed alone
		if err := b.admit(i); err != nil {
			return &CommandError{Index: i, Command: b.q.Name(i), Err: err}
		}
	}
	if err := b.conditionsRefusal(); err != nil {
		return err
	}
	if b.remoteErr != nil {
		return b.remoteErr
	}
	return ctxerr.Of(ctx)
}

// refuse fails every command as not sent because of cause.
func (b *Batch) refuse(cause error) (*BatchResult, error) {
	err := &notSentError{cause: cause}
	// The batch is refused for one bad command (the first that cannot be
	// encoded or sent, or one whose slot breaks the transaction's); it and
	// every other that cannot be sent fail with their own cause, the rest
	// with that first one.
	var bad []CommandError
	var own map[int]bool
	if first, ok := cause.(*CommandError); ok {
		bad, own = append(bad, *first), map[int]bool{first.Index: true}
		for i := first.Index + 1; i < b.q.Len(); i++ {
			if cerr := b.admit(i); cerr != nil {
				bad = append(bad, CommandError{Index: i, Command: b.q.Name(i), Err: cerr})
				own[i] = true
			}
		}
	}
	for i := range int(b.submitted) {
		if own[i] {
			continue
		}
		b.q.At(i).Future.(outcome).resolve(nil, err)
	}
	for _, c := range bad {
		b.q.At(c.Index).Future.(outcome).resolve(nil, &notSentError{cause: c.Err})
	}
	// Commands already queued in a Redis-side MULTI reached Redis: the
	// DISCARD aborted them. A session that never had its connection wrote
	// nothing: its commands stay not sent.
	var aborted error
	for _, e := range b.remote {
		if e.unwritten {
			continue
		}
		for _, i := range e.indices {
			if !own[i] {
				if aborted == nil { // one error for them all
					aborted = &txAbortedError{cause: cause}
				}
				b.q.At(i).Future.(outcome).resolve(nil, aborted)
			}
		}
	}
	b.settleConditions(err)
	res, _ := b.collect(nil, nil)
	res.Counts.NotSent += b.unqueued
	counts := res.Counts
	berr := &BatchError{Err: err, counts: &counts, unsucceeded: counts.Total() - counts.Skipped, refused: aborted == nil}
	switch {
	case aborted != nil && counts.NotSent == 0: // every command was in the discarded MULTI
		berr.Err = aborted
	case aborted != nil:
		berr.Err = errors.Join(err, aborted)
	}
	if bad != nil {
		berr.Commands = bad
		berr.errSaid = true // Err wraps the first one's cause
	}
	return res, berr
}

// plan is the wire layout the options ask for.
//
// A skip-result batch on a cluster has its replies read, not turned off
// (see skipsRead): only a reply tells a MOVED, ASK or TRYAGAIN, and a
// command redirected unseen would be lost. So does one through a proxy,
// which takes no CLIENT REPLY.
//
// An atomic one on a server that refuses CLIENT SETNAME or GETNAME has its
// replies read too: a transaction run with replies off is told
// run or discarded by the name it gives its connection (see batch.Plan),
// and there the CLIENT SETNAME would itself discard it.
func (b *Batch) makePlan() batch.Plan {
	atomic := b.opts.Mode.atomic()
	// No CLIENT REPLY through a proxy, nor for a transaction where the
	// connection cannot be named (its mark): the replies are read, as on a
	// cluster, and a command refused (or lost by the proxy) keeps its error.
	read := b.c.cluster || b.c.info.Proxy || atomic && b.c.info.NoClientName
	p := batch.Plan{
		Atomic:          atomic,
		SkipResult:      b.opts.SkipResult && !read,
		ResponseTimeout: b.opts.ResponseTimeout,
	}
	switch {
	case b.opts.SyncAOF:
		p.Tail = batch.WaitAOF(b.opts.SyncAOFLocal, b.opts.SyncAOFReplicas, b.opts.SyncAOFTimeout)
		p.TailTimeout = b.tailTimeout(b.opts.SyncAOFTimeout)
	case b.opts.Sync:
		p.Tail = batch.Wait(b.opts.SyncReplicas, b.opts.SyncTimeout)
		p.TailTimeout = b.tailTimeout(b.opts.SyncTimeout)
	}
	return p
}

// tailTimeout bounds the reply to a WAIT or WAITAOF of timeout wait: the
// server answers once the replicas acknowledged or wait passed, so the
// bound is the response timeout on top of wait. A wait of 0 waits for the
// replicas however long that takes (the context still ends it).
func (b *Batch) tailTimeout(wait time.Duration) time.Duration {
	if wait == 0 {
		return -1
	}
	return b.extended(wait)
}

// extended is the response timeout on top of wait (-1: no bound), for a
// reply the server holds back that long.
func (b *Batch) extended(wait time.Duration) time.Duration {
	if wait < 0 {
		return -1
	}
	rt := b.opts.ResponseTimeout
	if rt == 0 {
		rt = b.c.readTimeout
	}
	if rt <= 0 { // a redigo pool's client: its timeout is not known here
		rt = defaultIOTimeout
	}
	return rt + wait + serverTimerSlack
}

// serverTimerSlack is how late Redis may answer a WAIT or blocking command
// whose timeout passed: it looks at such timeouts on its timer, 1000/hz ms
// apart (100 ms at the default hz of 10), so its answer comes up to that
// much after the timeout, and more on a busy server.
const serverTimerSlack = 250 * time.Millisecond
