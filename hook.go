package rbatch

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/internal/pool"
)

// Hook observes what a client's batches do: each batch's start and end,
// each node group's start and end, redirects, retries, and waits for a
// pooled connection. Install one with Client.AddHook; embed NopHook to
// implement only the methods you need.
//
// The methods are called on the batch's goroutines, synchronously: a slow
// hook slows the batch. BatchStart and GroupStart may return a context
// derived from the one they get (a tracing span's); it is the context the
// matching End gets, and GroupStart gets the batch's. A group is one node's
// share of one round (with WithTransactionPerSlot, one slot's): a batch
// whose commands were redirected or retried has several groups on a node,
// told apart by Attempt. The I/O of the
// Redis-side modes while commands are queued (before Execute) is not a
// group; their Execute is.
type Hook interface {
	BatchStart(ctx context.Context, b BatchInfo) context.Context
	BatchEnd(ctx context.Context, b BatchInfo, res *BatchResult, err error)
	GroupStart(ctx context.Context, g GroupInfo) context.Context
	GroupEnd(ctx context.Context, g GroupInfo, r GroupResult)
	Redirect(ctx context.Context, r RedirectInfo)
	Retry(ctx context.Context, r RetryInfo)
	ConnWait(ctx context.Context, w ConnWaitInfo)
}

// NopHook does nothing: embed it in a Hook to implement only some methods.
type NopHook struct{}

func (NopHook) BatchStart(ctx context.Context, _ BatchInfo) context.Context { return ctx }
func (NopHook) BatchEnd(context.Context, BatchInfo, *BatchResult, error)    {}
func (NopHook) GroupStart(ctx context.Context, _ GroupInfo) context.Context { return ctx }
func (NopHook) GroupEnd(context.Context, GroupInfo, GroupResult)            {}
func (NopHook) Redirect(context.Context, RedirectInfo)                      {}
func (NopHook) Retry(context.Context, RetryInfo)                            {}
func (NopHook) ConnWait(context.Context, ConnWaitInfo)                      {}

// BatchInfo describes a batch as Execute starts it — or, for a Streaming
// batch, whose commands go as they are queued, as NewBatch makes it: at
// BatchStart its Commands is 0 and Command "", at BatchEnd they say what
// was queued, and Start is when it was made.
type BatchInfo struct {
	Options  BatchOptions // Options.Mode is the mode
	Commands int          // commands queued
	// Command is the name every command shares ("SET"), or "" when they
	// differ or there are none.
	Command    string
	Conditions int       // conditions added
	Start      time.Time // when Execute started
	// Addr is the configured address the client connected through (of
	// Config.Addrs; "" for a NewClientFromPool client), the same for every
	// batch: a cluster batch's nodes are its groups'.
	Addr string
}

// GroupInfo describes one node group as it starts.
type GroupInfo struct {
	Addr     string // the node routed to (the connection's, once it is had, is GroupResult.Addr)
	Commands int
	Attempt  int // the round: 1, then 2… for redirected or retried commands
	Start    time.Time
}

// GroupResult is how a node group ended.
type GroupResult struct {
	Addr     string // the node whose connection ran it
	Duration time.Duration
	// BytesWritten and BytesRead are what the group weighed on its
	// connection: 0 for a redigo pool's; in the Redis-side modes, whose
	// commands went as they were queued, and for BytesRead in Streaming,
	// whose replies are read apart from the groups, 0 as well.
	BytesWritten, BytesRead int64
	Counts                  Counts // the group's commands by state, as this round left them
	// Redirected counts the commands the node sent elsewhere, which
	// rbatch followed (MOVED, ASK: see Hook.Redirect); they are not in Counts.
	Redirected int
	// ServerError is the first error reply among the group's commands
	// (WRONGTYPE, TRYAGAIN, a MOVED not followed, …; a MOVED or ASK that
	// sent its command on is a Redirect), or else the one that aborted its transaction
	// (a queue-time error, EXECABORT) or refused its conditions' reads;
	// nil when none.
	ServerError *RedisError
	// Err is why the group failed as a whole (a transport error, a timeout,
	// no connection), nil when every expected reply was read.
	Err error
}

// RedirectInfo says that a node sent commands elsewhere (MOVED or ASK).
type RedirectInfo struct {
	From, To string
	Kind     string // "MOVED" or "ASK"
	Commands int
}

// RetryInfo says that commands that cannot have been applied are sent
// again after Interval (WithRetry).
type RetryInfo struct {
	Attempt  int // 1 for the first retry
	Commands int
	Interval time.Duration
}

// ConnWaitInfo says that a group waited for a pooled connection of Addr
// because all were in use; Err is set when its context ended first.
type ConnWaitInfo struct {
	Addr     string
	Duration time.Duration
	Err      error
}

// hooks is the client's list of hooks, read without a lock by every batch.
type hooks struct {
	mu   sync.Mutex // serialises AddHook
	list atomic.Pointer[[]Hook]
}

// AddHook installs h: every batch executed from now on reports to it, after
// the hooks installed before. A client without hooks pays nothing for them.
func (c *Client) AddHook(h Hook) {
	if h == nil {
		return
	}
	c.hooks.mu.Lock()
	defer c.hooks.mu.Unlock()
	var list []Hook
	if old := c.hooks.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, h)
	c.hooks.list.Store(&list)
}

// installed returns the hooks, nil when there are none.
func (h *hooks) installed() []Hook {
	if p := h.list.Load(); p != nil {
		return *p
	}
	return nil
}

// batchInfo describes b for its hooks.
func (b *Batch) batchInfo(start time.Time) BatchInfo {
	info := BatchInfo{Options: *b.opts, Commands: b.q.Len(), Conditions: len(b.conds), Start: start, Addr: b.c.addr}
	if info.Commands == 0 {
		return info
	}
	first := b.q.NameBytes(0)
	for i := 1; i < info.Commands; i++ {
		if !bytes.Equal(b.q.NameBytes(i), first) {
			return info
		}
	}
	info.Command = b.q.Name(0)
	return info
}

// batchHooks calls the hooks' BatchStart in order, each getting the
// context the previous returned, and returns the last context and a
// function calling their BatchEnd (in reverse order), each with its own.
// BatchEnd gets *info as it is then: a stream fills in its commands.
func batchHooks(ctx context.Context, hs []Hook, info *BatchInfo) (context.Context, func(*BatchResult, error)) {
	ctxs := make([]context.Context, len(hs))
	for i, h := range hs {
		ctxs[i] = h.BatchStart(ctx, *info)
		ctx = ctxs[i]
	}
	return ctx, func(res *BatchResult, err error) {
		for i := len(hs) - 1; i >= 0; i-- {
			hs[i].BatchEnd(ctxs[i], *info, res, err)
		}
	}
}

// groupHooks calls the hooks' GroupStart and returns a function calling
// their GroupEnd (in reverse order) with the context each returned.
func groupHooks(ctx context.Context, hs []Hook, info GroupInfo) (context.Context, func(GroupResult)) {
	ctxs := make([]context.Context, len(hs))
	for i, h := range hs {
		ctxs[i] = h.GroupStart(ctx, info)
		ctx = ctxs[i]
	}
	return ctx, func(r GroupResult) {
		for i := len(hs) - 1; i >= 0; i-- {
			hs[i].GroupEnd(ctxs[i], info, r)
		}
	}
}

// reportGroup tells the hooks how a group ended and where it sent
// commands on.
func (b *Batch) reportGroup(ctx context.Context, e *entry, addr string, nr NodeResult, r batch.Result, connErr error,
	errs []errReply, fu followUp, groupEnd func(GroupResult)) {
	gr := GroupResult{Addr: addr, Duration: nr.Duration, BytesWritten: e.written, BytesRead: e.read, Err: r.Err}
	if connErr != nil {
		gr.Err = connErr
	}
	redirected := fu.redirected()
	for _, i := range e.indices {
		if redirected[i] {
			gr.Redirected++
			continue
		}
		gr.Counts.add(b.q.At(i).Future.(outcome).failure())
	}
	for _, er := range errs {
		if re := asRedisError(er.err); re != nil && !redirected[er.index] {
			gr.ServerError = re
			break
		}
	}
	if gr.ServerError == nil && r.Aborted != nil && gr.Redirected == 0 { // a queue-time error, or EXEC's own refusal
		gr.ServerError = asRedisError(r.Aborted.Cause)
	}
	if gr.ServerError == nil && r.GuardErr != nil {
		gr.ServerError = asRedisError(r.GuardErr)
	}
	for _, to := range []struct {
		kind string
		cmds map[string][]int
	}{{"MOVED", fu.moved}, {"ASK", fu.asked}} {
		for dest, idx := range to.cmds {
			for _, h := range b.run.hooks {
				h.Redirect(ctx, RedirectInfo{From: addr, To: dest, Kind: to.kind, Commands: len(idx)})
			}
		}
	}
	groupEnd(gr)
}

// timedNode is a node that says how long Get waited for a free connection.
type timedNode interface {
	GetTimed(ctx context.Context) (pool.Lease, time.Duration, error)
}

// get takes a connection of node, telling the hooks when it had to wait.
func get(ctx context.Context, node pool.Node, hs []Hook) (pool.Lease, error) {
	tn, ok := node.(timedNode)
	if hs == nil || !ok {
		return node.Get(ctx)
	}
	return reportWait(ctx, node.Addr(), hs, func() (pool.Lease, time.Duration, error) { return tn.GetTimed(ctx) })
}

// reportWait takes a connection of addr with take, telling the hooks when
// it had to wait.
func reportWait(ctx context.Context, addr string, hs []Hook, take func() (pool.Lease, time.Duration, error)) (pool.Lease, error) {
	conn, waited, err := take()
	if waited > 0 {
		w := ConnWaitInfo{Addr: addr, Duration: waited, Err: err}
		for _, h := range hs {
			h.ConnWait(ctx, w)
		}
	}
	return conn, err
}

// redirected returns the commands fu sends on to another node (a MOVED
// or ASK followed); nil when none.
func (fu *followUp) redirected() map[int]bool {
	var out map[int]bool
	for _, m := range []map[string][]int{fu.moved, fu.asked} {
		for _, idx := range m {
			if out == nil {
				out = make(map[int]bool, len(idx))
			}
			for _, i := range idx {
				out[i] = true
			}
		}
	}
	return out
}
