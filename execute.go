package rbatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/queue"
)

func (b *Batch) execute(ctx context.Context) (*BatchResult, error) {
	if err := b.refusal(ctx); err != nil {
		b.discardRemote(ctx) // a Redis-side queue is dropped: nothing applied
		return b.refuse(err)
	}
	if b.q.Len() == 0 {
		return &BatchResult{Responses: []any{}}, nil
	}
	entries := b.remote
	if !b.opts.Mode.redisSide() {
		var err error
		if entries, err = b.groupByNode(); err != nil {
			return b.refuse(err)
		}
	}
	nodes := make([]NodeResult, len(entries))
	errs := make([]error, len(entries))
	var g errgroup.Group
	for i, e := range entries {
		g.Go(func() error {
			nodes[i], errs[i] = b.runEntry(ctx, e)
			return nil
		})
	}
	g.Wait()
	return b.collect(nodes, errors.Join(errs...))
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
	for i := 0; i < b.q.Len(); i++ {
		if c := b.q.At(i); c.Err != nil {
			return &CommandError{Index: i, Command: c.Name, Err: c.Err}
		}
	}
	if b.remoteErr != nil {
		return b.remoteErr
	}
	return ctx.Err()
}

// refuse fails every command as not sent because of cause.
func (b *Batch) refuse(cause error) (*BatchResult, error) {
	err := &notSentError{cause: cause}
	bad, _ := cause.(*CommandError)
	for i := 0; i < b.q.Len(); i++ {
		if bad != nil && bad.Index == i {
			b.q.At(i).Future.(outcome).resolve(nil, &notSentError{cause: bad.Err})
			continue
		}
		b.q.At(i).Future.(outcome).resolve(nil, err)
	}
	res, _ := b.collect(nil, nil)
	berr := &BatchError{Err: err}
	if bad != nil {
		berr.Commands = []CommandError{*bad}
	}
	return res, berr
}

// plan is the wire layout the options ask for.
func (b *Batch) plan() batch.Plan {
	p := batch.Plan{
		Atomic:          b.opts.Mode.atomic(),
		SkipResult:      b.opts.SkipResult,
		ResponseTimeout: b.opts.ResponseTimeout,
	}
	switch {
	case b.opts.SyncAOF:
		p.Tail = batch.WaitAOF(b.opts.SyncAOFLocal, b.opts.SyncAOFReplicas, b.opts.SyncAOFTimeout)
	case b.opts.Sync:
		p.Tail = batch.Wait(b.opts.SyncReplicas, b.opts.SyncTimeout)
	}
	return p
}

// runEntry runs one node's group, retrying what is safe to retry, and
// resolves every command of it. The error is about the node as a whole
// (a refused sync, a refused MULTI); command failures are in the futures.
func (b *Batch) runEntry(ctx context.Context, e *entry) (NodeResult, error) {
	nr := NodeResult{Addr: e.node.Addr(), Commands: len(e.indices)}
	start := time.Now()
	idx := e.indices
	var nodeErr error
	for {
		nr.Attempts++
		var r batch.Result
		var connErr error
		if nr.Attempts == 1 && e.session != nil {
			r, connErr = b.closeSession(ctx, e, false)
		} else {
			r, connErr = b.runGroup(ctx, e, idx)
		}
		if e.used != nil {
			nr.Addr = e.used.Addr()
		}
		var retry []int
		retry, nodeErr = b.settle(idx, r, connErr, &nr)
		if len(retry) == 0 || nr.Attempts > b.opts.RetryAttempts || !sleep(ctx, b.opts.RetryInterval) {
			break
		}
		idx = retry
	}
	nr.Duration = time.Since(start)
	return nr, nodeErr
}

// runGroup sends idx as one group on a connection of e's node (or its
// fallback when the node cannot be reached).
func (b *Batch) runGroup(ctx context.Context, e *entry, idx []int) (batch.Result, error) {
	conn, err := e.acquire(ctx)
	if err != nil {
		return batch.Result{}, err
	}
	r := batch.Run(ctx, conn, batch.Group{Queue: &b.q, Indices: idx, Prefix: b.scriptLoads(), Resolve: b.resolveReply, Plan: b.plan()})
	e.used.Put(conn, r.Clean)
	return r, nil
}

// settle resolves the commands of idx that the group left unresolved, fills
// nr, and returns the commands that are safe to send again.
func (b *Batch) settle(idx []int, r batch.Result, connErr error, nr *NodeResult) (retry []int, nodeErr error) {
	wrap := func(err error) error { return fmt.Errorf("%s: %w", nr.Addr, err) }
	if connErr != nil { // nothing was written
		b.resolve(idx, &notSentError{cause: wrap(connErr)})
		return idx, nil
	}
	nr.SyncedReplicas, nr.SyncedLocal, nr.ServerErrors = r.Replicas, r.Local, r.ServerErrors
	if r.SyncErr != nil {
		nodeErr = wrap(fmt.Errorf("sync failed: %w", orRedisError(r.SyncErr)))
	}
	p := b.plan()
	switch {
	case r.Skipped:
		b.resolve(idx, ErrResultSkipped)
		if r.Err != nil { // the commands were done; the sync reply was lost
			nodeErr = errors.Join(nodeErr, wrap(fmt.Errorf("sync: %w", &unknownError{cause: r.Err})))
		}
	case p.Atomic && r.MultiRefused == nil && r.Answered < len(idx):
		if r.Aborted != nil {
			b.resolve(idx, &txAbortedError{cause: b.abortCause(idx, r.Aborted)})
			if retryable(r.Aborted.Cause) {
				retry = idx
			}
		} else if r.ExecSent || (p.SkipResult && r.Sent > 0) {
			b.resolve(idx, &unknownError{cause: wrap(r.Err)})
		} else {
			// Before EXEC, a dropped connection discards the transaction.
			b.resolve(idx, &txAbortedError{cause: wrap(r.Err)})
		}
	case p.SkipResult: // replies were off and never turned back on
		b.resolve(idx[:r.Sent], &unknownError{cause: wrap(r.Err)})
		b.resolve(idx[r.Sent:], &notSentError{cause: wrap(r.Err)})
		retry = idx[r.Sent:]
	default:
		for _, i := range idx[:r.Answered] {
			if retryable(b.q.At(i).Future.(outcome).failure()) {
				retry = append(retry, i)
			}
		}
		if r.Answered < len(idx) {
			unknown := &unknownError{cause: wrap(r.Err)}
			for _, i := range idx[r.Answered:r.Sent] {
				b.q.At(i).Future.(outcome).resolve(nil, unknown)
				if b.q.At(i).Flags&queue.ReadOnly != 0 {
					retry = append(retry, i) // reading twice is harmless
				}
			}
			b.resolve(idx[r.Sent:], &notSentError{cause: wrap(r.Err)})
			retry = append(retry, idx[r.Sent:]...)
		}
		if r.MultiRefused != nil {
			nodeErr = errors.Join(nodeErr, wrap(fmt.Errorf("MULTI refused, the commands ran without a transaction: %w",
				orRedisError(r.MultiRefused))))
		}
	}
	if p.Atomic && len(retry) > 0 {
		retry = idx // a transaction is retried whole
	}
	return retry, nodeErr
}

// abortCause names the command whose queue-time error aborted a transaction.
func (b *Batch) abortCause(idx []int, a *batch.AbortError) error {
	cause := orRedisError(a.Cause)
	if a.Index >= 0 && a.Index < len(idx) {
		i := idx[a.Index]
		return &CommandError{Index: i, Command: b.q.At(i).Name, Err: cause}
	}
	return cause
}

// resolveReply hands command i its reply; a batch.Resolver.
func (b *Batch) resolveReply(i int, reply any) { b.q.At(i).Future.(outcome).resolve(reply, nil) }

func (b *Batch) resolve(idx []int, err error) {
	for _, i := range idx {
		b.q.At(i).Future.(outcome).resolve(nil, err)
	}
}

// collect builds the result from the resolved futures.
func (b *Batch) collect(nodes []NodeResult, nodeErr error) (*BatchResult, error) {
	n := b.q.Len()
	res := &BatchResult{Nodes: nodes}
	if !b.opts.SkipResult {
		res.Responses = make([]any, n)
	}
	if b.opts.Sync || b.opts.SyncAOF {
		for i, nr := range nodes {
			if i == 0 || nr.SyncedReplicas < res.SyncedReplicas {
				res.SyncedReplicas = nr.SyncedReplicas
			}
		}
	}
	var failed []CommandError
	for i := 0; i < n; i++ {
		c := b.q.At(i)
		o := c.Future.(outcome)
		if res.Responses != nil {
			res.Responses[i] = o.response()
		}
		if err := o.failure(); err != nil && err != ErrResultSkipped {
			failed = append(failed, CommandError{Index: i, Command: c.Name, Err: err})
		}
	}
	if failed != nil || nodeErr != nil {
		return res, &BatchError{Err: nodeErr, Commands: failed}
	}
	return res, nil
}

// retryable reports a rejection that means "not now": the command was not
// applied and may be sent again after a pause.
func retryable(err error) bool {
	re := asRedisError(err)
	if re == nil {
		return false
	}
	switch re.Prefix() {
	case "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN":
		return true
	}
	return false
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
// be reached; it records which one in e.used.
func (e *entry) acquire(ctx context.Context) (batch.Conn, error) {
	conn, err := e.node.Get(ctx)
	e.used = e.node
	if err != nil && e.fallback != nil && ctx.Err() == nil {
		conn, err = e.fallback.Get(ctx)
		e.used = e.fallback
	}
	return conn, err
}
