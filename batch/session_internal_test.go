package batch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rbatch/rbatch/internal/ctxerr"
)

// Push joins commands that lie back to back in the queue's buffer into one
// frame, and only those.
func TestAdjacent(t *testing.T) {
	buf := []byte("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n")
	a, b := buf[0:14], buf[14:28]
	other := []byte("*1\r\n$4\r\nPING\r\n")
	for _, c := range []struct {
		name string
		a, b []byte
		want bool
	}{
		{"back to back", a, b, true},
		{"a gap between", buf[0:13], b, false},
		{"the other way round", b, a, false},
		{"another array", a, other, false},
		{"no room past a", a[:14:14], b, false},
		{"empty b", a, buf[14:14], false},
	} {
		if got := adjacent(c.a, c.b); got != c.want {
			t.Errorf("%s: adjacent = %v, want %v", c.name, got, c.want)
		}
	}
}

// A session discarded while it waits for its connection wrote nothing: its
// Discard ends the wait at once instead of waiting for a connection to
// write DISCARD on, and a connection that comes anyway goes back unused.
func TestDiscardWhileWaitingForConn(t *testing.T) {
	t.Run("the wait ends", func(t *testing.T) {
		waiting := make(chan struct{})
		s := Open(context.Background(), Plan{Atomic: true}, func(_, _ any) {}, func(ctx context.Context) (Lease, error) {
			close(waiting)
			<-ctx.Done()
			return nil, ctxerr.Of(ctx)
		})
		s.Push([]byte("*1\r\n$4\r\nPING\r\n"), nil)
		<-waiting
		r := s.Discard(context.Background())
		if !errors.Is(r.Err, errDiscardedWaiting) {
			t.Errorf("Err = %v, want errDiscardedWaiting", r.Err)
		}
		if s.Conn() != nil {
			t.Error("the session has a connection")
		}
	})
	t.Run("a connection comes anyway", func(t *testing.T) {
		proceed := make(chan struct{})
		lease := &unusedLease{}
		s := Open(context.Background(), Plan{Atomic: true}, func(_, _ any) {}, func(ctx context.Context) (Lease, error) {
			<-proceed // the discard came first, as the connection was on its way
			return lease, nil
		})
		s.Push([]byte("*1\r\n$4\r\nPING\r\n"), nil)
		go func() {
			s.mu.Lock()
			for !s.closed {
				s.cond.Wait()
			}
			s.mu.Unlock()
			close(proceed)
		}()
		r := s.Discard(context.Background())
		if !errors.Is(r.Err, errDiscardedWaiting) {
			t.Errorf("Err = %v, want errDiscardedWaiting", r.Err)
		}
		if lease.used || !lease.released || !lease.clean {
			t.Errorf("the connection: used %v, released %v, clean %v; want it back clean, unused", lease.used, lease.released, lease.clean)
		}
	})
}

// unusedLease is a connection that notes whether it was used and how it
// went back.
type unusedLease struct{ used, released, clean bool }

func (l *unusedLease) Write(p []byte) (int, error) { l.used = true; return len(p), nil }
func (l *unusedLease) Flush() error                { l.used = true; return nil }
func (l *unusedLease) Receive(time.Duration) (any, error) {
	l.used = true
	return nil, errors.New("nothing to read")
}
func (l *unusedLease) Abort()             { l.used = true }
func (l *unusedLease) Release(clean bool) { l.released, l.clean = true, clean }
