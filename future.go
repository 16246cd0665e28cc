package rbatch

import (
	"context"
	"sync/atomic"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Future is the result of one queued command. It resolves when its batch is
// executed or discarded. A Future is safe for concurrent use: Get, Wait and
// Done may be called from any goroutine.
type Future[T any] struct {
	sig   *signal // its batch's: done closes when val and err are set
	dec   func(reply any) (T, error)
	err   error
	index int32 // submission index; -1 for a future that never joined a batch
	val   T     // last: a small T packs beside index (a Future[bool] is 40 bytes)
}

// signal is what a batch tells its futures: that it started (Execute,
// ExecuteAsync or Discard was called) and that it finished. Its channel is
// made only when someone waits on it before the batch finished: a batch
// whose futures are read after Execute returns makes none.
type signal struct {
	started atomic.Bool
	// done is nil until a waiter makes its channel, and closedChan once
	// every future of the batch is resolved.
	done atomic.Pointer[chan struct{}]
}

var closedChan = func() *chan struct{} {
	c := make(chan struct{})
	close(c)
	return &c
}()

// finish marks every future resolved and releases their waiters.
func (s *signal) finish() {
	if p := s.done.Swap(closedChan); p != nil {
		close(*p)
	}
}

// finished reports whether finish ran.
func (s *signal) finished() bool { return s.done.Load() == closedChan }

// wait returns a channel closed once finish runs.
func (s *signal) wait() <-chan struct{} {
	if p := s.done.Load(); p != nil {
		return *p
	}
	c := make(chan struct{})
	if s.done.CompareAndSwap(nil, &c) {
		return c
	}
	return *s.done.Load() // finish, or another waiter, came first
}

// resolved is the signal of futures that fail as they are created.
var resolved = func() *signal {
	s := new(signal)
	s.started.Store(true)
	s.finish()
	return s
}()

// failedFuture returns a future already resolved with err.
func failedFuture[T any](err error) *Future[T] {
	return &Future[T]{sig: resolved, err: err, index: -1}
}

// Index is the command's submission index in its batch: its position in
// BatchResult.Responses. It is -1 for a command refused at queueing (queued
// after Execute).
func (f *Future[T]) Index() int { return int(f.index) }

// Get returns the command's result, waiting while its batch runs (as
// Redisson's get() does); for a batch not executed yet (Execute,
// ExecuteAsync or Discard not called) it returns ErrNotExecuted at once —
// except in a Streaming batch, whose commands are on their way as they are
// queued: Get waits for the command's answer. A nil reply gives the zero
// value and ErrNil.
func (f *Future[T]) Get() (T, error) {
	if f.sig.finished() {
		return f.val, f.err
	}
	if !f.sig.started.Load() {
		var zero T
		return zero, ErrNotExecuted
	}
	<-f.sig.wait()
	return f.val, f.err
}

// Wait blocks until the future resolved or ctx ended.
func (f *Future[T]) Wait(ctx context.Context) (T, error) {
	if f.sig.finished() {
		return f.val, f.err
	}
	if ctx == nil {
		var zero T
		return zero, errNilContext
	}
	select {
	case <-f.sig.wait():
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctxerr.Of(ctx) // with its cause (WithTimeoutCause), as Execute gives it
	}
}

// Done is closed when the future resolved.
func (f *Future[T]) Done() <-chan struct{} { return f.sig.wait() }

// resolve decodes the server's reply, or records why there is none. It runs
// before the batch's done channel closes (more than once when retried).
func (f *Future[T]) resolve(reply any, err error) {
	if err == nil {
		if re := redisErrorOf(reply); re != nil {
			err = re
		}
	}
	if err != nil {
		var zero T
		f.val, f.err = zero, err // a value an earlier round gave is not kept
		return
	}
	f.val, f.err = f.dec(reply)
	if f.err != nil && f.err != ErrNil {
		f.err = &decodeError{f.err} // the command ran: applied, its value lost
	}
}

// response is the command's entry in BatchResult.Responses: its value, nil
// for a nil reply, or its error.
func (f *Future[T]) response() any {
	switch f.err {
	case nil:
		return f.val
	case ErrNil:
		return nil
	}
	return f.err
}

// failure is the command's error when it failed (ErrNil is not a failure).
// at returns the future's submission index.
func (f *Future[T]) at() int { return int(f.index) }

func (f *Future[T]) failure() error {
	if f.err == ErrNil { // decoders return ErrNil itself, never wrapped
		return nil
	}
	return f.err
}

// outcome is what the batch needs of every future, whatever its type.
type outcome interface {
	resolve(reply any, err error)
	response() any
	failure() error
	at() int // its submission index
}

var _ outcome = (*Future[int64])(nil)

// A slab's arrays start small and double up to maxSlab futures, so that a
// three-command batch allocates a few futures, not hundreds, and a batch of
// a million makes thousands of allocations, not millions.
const (
	firstSlab = 1
	maxSlab   = 256
)

// slab hands out futures of one type: the first from the batch itself
// (firsts: a small batch allocates none), then from arrays allocated a few
// at a time. Futures are taken from the end of free, so that its capacity
// is the size of the array in use. A slab lives in the batch's work, which
// is recycled when the batch ends: only the futures handed out, which the
// user may keep, live in the batch or in arrays of their own. (In the
// batch, the slabs' slices made a small batch 576 bytes instead of 480.)
type slab[T any] struct {
	free       []Future[T]
	firstTaken bool // the batch's own future of this type was handed out
}

func (s *slab[T]) next(first *Future[T]) *Future[T] {
	if !s.firstTaken {
		s.firstTaken = true
		return first
	}
	n := len(s.free)
	if n == 0 {
		s.free = make([]Future[T], min(2*max(cap(s.free), firstSlab), maxSlab))
		n = len(s.free)
	}
	f := &s.free[n-1]
	s.free = s.free[:n-1]
	return f
}

// slabs holds a batch's slabs for the future types its objects use most.
// Not safe for concurrent use: the batch's lock guards it.
type slabs struct {
	bools   slab[bool]
	ints    slab[int64]
	strings slab[string]
	units   slab[struct{}]
}

// firsts are a batch's first future of each slab's type.
type firsts struct {
	bools   Future[bool]
	ints    Future[int64]
	strings Future[string]
	units   Future[struct{}]
}

// newFuture returns a zero future, from a slab when its type has one.
func newFuture[T any](s *slabs, first *firsts) *Future[T] {
	var f any
	switch any((*T)(nil)).(type) {
	case *bool:
		f = s.bools.next(&first.bools)
	case *int64:
		f = s.ints.next(&first.ints)
	case *string:
		f = s.strings.next(&first.strings)
	case *struct{}:
		f = s.units.next(&first.units)
	default:
		return new(Future[T])
	}
	return f.(*Future[T])
}
