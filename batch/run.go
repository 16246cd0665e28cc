// Package batch runs one node's group of queued commands on one connection:
// a writer goroutine streams the encoded commands while the calling goroutine
// reads the replies, so a group of millions of commands never piles up in
// either direction.
package batch

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rbatch/rbatch/queue"
)

// Conn is a connection as a group needs it. One goroutine calls Write and
// Flush while another calls Receive; Abort may be called from any goroutine
// and makes both return promptly.
type Conn interface {
	// Write hands encoded commands to the connection (buffered).
	Write(p []byte) (int, error)
	// Flush sends what Write buffered.
	Flush() error
	// Receive returns the next reply. An error reply is returned as a
	// redis.Error value with a nil error; the error is for transport faults.
	// timeout bounds the wait (0: the connection's default).
	Receive(timeout time.Duration) (any, error)
	// Abort breaks the connection so that pending Write and Receive calls
	// fail. The connection must not be reused afterwards.
	Abort()
}

// Group is one node's share of a batch.
type Group struct {
	Queue   *queue.Queue
	Indices []int // submission indices, in submission order

	// Prefix holds encoded commands sent before the group whose replies are
	// read and dropped, such as SCRIPT LOAD for the group's EVALSHAs.
	Prefix [][]byte

	// ResponseTimeout bounds the wait for each reply (0: the connection's default).
	ResponseTimeout time.Duration
}

// Result says how far a group got. Commands Indices[:Answered] were resolved
// with their replies; Indices[Answered:Sent] were handed to the connection
// and not answered (their outcome is unknown); Indices[Sent:] were never sent.
type Result struct {
	Answered int
	Sent     int
	// Err is why the group stopped early (nil when everything was answered):
	// a transport error, a timeout, or the context's error.
	Err error
	// Clean reports that the connection holds no pending replies or state
	// and may go back to its pool.
	Clean bool
}

// Run sends g's commands on conn and resolves each command's sink with its
// reply, in order. It returns when every command was answered, or at the
// first transport error or when ctx ends (then conn is aborted).
func Run(ctx context.Context, conn Conn, g Group) Result {
	var sent atomic.Int64
	werr := make(chan error, 1)
	stop := context.AfterFunc(ctx, conn.Abort)
	defer stop()

	go func() { werr <- write(ctx, conn, g, &sent) }()

	var res Result
	for range g.Prefix {
		if _, err := conn.Receive(g.ResponseTimeout); err != nil {
			res.Err = err
			break
		}
	}
	for res.Err == nil && res.Answered < len(g.Indices) {
		reply, err := conn.Receive(g.ResponseTimeout)
		if err != nil {
			res.Err = err
			break
		}
		g.Queue.At(g.Indices[res.Answered]).Sink.Resolve(reply, nil)
		res.Answered++
	}
	if res.Err != nil {
		// The writer may be blocked on a socket nobody reads: break it.
		conn.Abort()
	}
	writeErr := <-werr
	res.Sent = int(sent.Load())
	if res.Err == nil && writeErr != nil {
		res.Err = writeErr
	}
	if ctxErr := ctx.Err(); ctxErr != nil && res.Answered < len(g.Indices) {
		res.Err = ctxErr
	}
	res.Clean = res.Err == nil
	return res
}

// write streams the group's commands and flushes; it counts in sent every
// command handed to the connection. When it stops early it aborts conn, so
// that the reader does not wait for replies that will never come.
func write(ctx context.Context, conn Conn, g Group, sent *atomic.Int64) error {
	for _, p := range g.Prefix {
		if _, err := conn.Write(p); err != nil {
			conn.Abort()
			return err
		}
	}
	idx := g.Indices
	for len(idx) > 0 {
		if err := ctx.Err(); err != nil {
			conn.Abort()
			return err
		}
		b, n := g.Queue.Span(idx)
		sent.Add(int64(n))
		if _, err := conn.Write(b); err != nil {
			conn.Abort()
			return err
		}
		idx = idx[n:]
	}
	if err := conn.Flush(); err != nil {
		conn.Abort()
		return err
	}
	return nil
}

// ErrAborted is the cause reported when a connection was aborted while in use.
var ErrAborted = errors.New("connection aborted")
