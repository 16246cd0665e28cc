package rbatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rbatch/rbatch/batch"
	"github.com/rbatch/rbatch/queue"
)

// Batch collects commands and sends them together at Execute. A Batch may be
// filled from several goroutines at once; each command keeps the submission
// index it was given when queued. Execute, ExecuteAsync and Discard may run
// once between them.
type Batch struct {
	c      *Client
	opts   BatchOptions
	optErr error         // the first invalid option, reported by Execute
	done   chan struct{} // closed when the batch finished; every future is resolved before

	mu      sync.Mutex // guards q, scripts and state
	q       queue.Queue
	scripts map[string]string // SHA1 → body of the scripts queued with EvalAsync
	state   batchState
}

type batchState int

const (
	open batchState = iota
	running
	finished
)

func newBatch(c *Client, opts []Option) *Batch {
	b := &Batch{c: c, done: make(chan struct{})}
	for _, o := range opts {
		if o != nil {
			o(&b.opts)
		}
	}
	b.optErr = b.opts.validate()
	return b
}

// Options returns the batch's resolved options.
func (b *Batch) Options() BatchOptions { return b.opts }

// Len returns the number of commands queued.
func (b *Batch) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.q.Len()
}

// enqueue queues one command whose reply dec decodes. key routes it ("" for
// none); argErr, when set, is a problem found before encoding (a NaN score, a
// zero TTL) that makes Execute refuse the batch.
func enqueue[T any](b *Batch, dec func(any) (T, error), name, key string, argErr error, args ...any) *Future[T] {
	f := &Future[T]{done: b.done, dec: dec}
	c := queue.Command{Name: name, Key: key, Flags: queue.FlagsOf(name), Sink: f, Err: argErr}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != open {
		return failedFuture[T](ErrAlreadyExecuted)
	}
	f.index = b.q.Add(c, b.opts.Codec, args...)
	return f
}

// Do queues any command. In a cluster it is routed by its first argument as
// the key. Commands that would change the connection (SUBSCRIBE, MONITOR,
// SELECT, …) or that the modes own (MULTI, EXEC, WATCH, …) fail Execute.
func (b *Batch) Do(cmd string, args ...any) *Future[any] {
	var sub string
	if len(args) > 0 {
		sub, _ = args[0].(string)
	}
	name, flags, err := queue.Lookup(cmd, sub)
	if err != nil {
		err = fmt.Errorf("Do(%q): %w", cmd, err)
	}
	key := ""
	if flags&queue.NoKey == 0 {
		key = sub
	}
	return enqueue(b, decodeAny, name, key, err, args...)
}

// Execute sends the batch and waits for every reply. The result holds one
// response per command in submission order. The error is nil exactly when
// every command succeeded (nil replies count as success); otherwise it is a
// *BatchError naming each failed command, and the result still holds what
// did succeed. A batch that cannot be sent as a whole (an invalid option, a
// value that does not encode, a closed client) sends nothing.
func (b *Batch) Execute(ctx context.Context) (*BatchResult, error) {
	b.mu.Lock()
	if b.state != open {
		b.mu.Unlock()
		return nil, ErrAlreadyExecuted
	}
	b.state = running
	b.mu.Unlock()
	// From here on nobody else touches b.q: queueing sees state != open.
	defer func() {
		b.mu.Lock()
		b.state = finished
		b.mu.Unlock()
		close(b.done)
	}()
	return b.execute(ctx)
}

// ExecuteAsync runs Execute in its own goroutine.
func (b *Batch) ExecuteAsync(ctx context.Context) *Future[*BatchResult] {
	done := make(chan struct{})
	f := &Future[*BatchResult]{done: done, index: -1}
	go func() {
		defer close(done)
		f.val, f.err = b.Execute(ctx)
	}()
	return f
}

// Discard drops the batch without sending it: every future resolves with
// ErrDiscarded.
func (b *Batch) Discard(ctx context.Context) error {
	b.mu.Lock()
	if b.state != open {
		b.mu.Unlock()
		return ErrAlreadyExecuted
	}
	b.state = finished
	b.mu.Unlock()
	for i := 0; i < b.q.Len(); i++ {
		b.q.At(i).Sink.Resolve(nil, ErrDiscarded)
	}
	close(b.done)
	return nil
}

func (b *Batch) execute(ctx context.Context) (*BatchResult, error) {
	if err := b.refusal(ctx); err != nil {
		return b.refuse(err)
	}
	if b.q.Len() == 0 {
		return &BatchResult{Responses: []any{}}, nil
	}
	entries, err := b.groupByNode()
	if err != nil {
		return b.refuse(err)
	}
	nodes := make([]NodeResult, len(entries))
	var g errgroup.Group
	for i, e := range entries {
		g.Go(func() error {
			nodes[i] = b.runEntry(ctx, e)
			return nil
		})
	}
	g.Wait()
	return b.collect(nodes)
}

// refusal returns why the batch cannot be sent at all, naming the first bad
// command; nil when it can go.
func (b *Batch) refusal(ctx context.Context) error {
	switch {
	case b.c.closed.Load():
		return ErrClosed
	case b.optErr != nil:
		return b.optErr
	case b.opts.Mode != InMemory:
		return fmt.Errorf("rbatch: mode %v: %w", b.opts.Mode, ErrNotImplemented)
	case b.opts.SkipResult || b.opts.Sync || b.opts.SyncAOF || b.opts.RetryAttempts > 0:
		return fmt.Errorf("rbatch: skip-result, sync and retry options: %w", ErrNotImplemented)
	}
	for i := 0; i < b.q.Len(); i++ {
		if c := b.q.At(i); c.Err != nil {
			return &CommandError{Index: i, Command: c.Name, Err: c.Err}
		}
	}
	return ctx.Err()
}

// refuse fails every command as not sent because of cause.
func (b *Batch) refuse(cause error) (*BatchResult, error) {
	err := &notSentError{cause: cause}
	bad, _ := cause.(*CommandError)
	for i := 0; i < b.q.Len(); i++ {
		if bad != nil && bad.Index == i {
			b.q.At(i).Sink.Resolve(nil, &notSentError{cause: bad.Err})
			continue
		}
		b.q.At(i).Sink.Resolve(nil, err)
	}
	res, _ := b.collect(nil)
	berr := &BatchError{Err: err}
	if bad != nil {
		berr.Commands = []CommandError{*bad}
	}
	return res, berr
}

// runEntry runs one node's group on one of its connections and resolves the
// commands it could not answer.
func (b *Batch) runEntry(ctx context.Context, e *entry) NodeResult {
	nr := NodeResult{Addr: e.node.Addr(), Commands: len(e.indices), Attempts: 1}
	start := time.Now()
	defer func() { nr.Duration = time.Since(start) }()

	conn, err := e.node.Get(ctx)
	if err != nil {
		b.resolveRest(e.indices, &notSentError{cause: fmt.Errorf("%s: %w", e.node.Addr(), err)})
		return nr
	}
	res := batch.Run(ctx, conn, batch.Group{
		Queue:           &b.q,
		Indices:         e.indices,
		Prefix:          b.scriptLoads(),
		ResponseTimeout: b.opts.ResponseTimeout,
	})
	e.node.Put(conn, res.Clean)
	if res.Answered < len(e.indices) {
		cause := fmt.Errorf("%s: %w", e.node.Addr(), res.Err)
		b.resolveRest(e.indices[res.Answered:res.Sent], &unknownError{cause: cause})
		b.resolveRest(e.indices[res.Sent:], &notSentError{cause: cause})
	}
	return nr
}

func (b *Batch) resolveRest(indices []int, err error) {
	for _, i := range indices {
		b.q.At(i).Sink.Resolve(nil, err)
	}
}

// collect builds the result from the resolved futures.
func (b *Batch) collect(nodes []NodeResult) (*BatchResult, error) {
	n := b.q.Len()
	res := &BatchResult{Responses: make([]any, n), Nodes: nodes}
	var failed []CommandError
	for i := 0; i < n; i++ {
		c := b.q.At(i)
		o := c.Sink.(outcome)
		res.Responses[i] = o.response()
		if err := o.failure(); err != nil {
			failed = append(failed, CommandError{Index: i, Command: c.Name, Err: err})
		}
	}
	if failed != nil {
		return res, &BatchError{Commands: failed}
	}
	return res, nil
}
