package pool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// RedigoNode runs groups on connections of an existing redigo pool
// (rbatch.NewClientFromPool). Commands are re-parsed from RESP and sent with
// redigo's Send. A redigo connection cannot be interrupted from outside, so a
// cancelled context takes effect at the next reply or at the pool's read
// timeout.
type RedigoNode struct {
	Pool *redis.Pool
}

var _ Node = RedigoNode{}

func (n RedigoNode) Addr() string { return "redigo-pool" }

// ErrNilPool is the cause of everything a client given no redigo pool is
// asked to send.
var ErrNilPool = errors.New("NewClientFromPool was given a nil *redis.Pool")

func (n RedigoNode) Get(ctx context.Context) (Lease, error) {
	if n.Pool == nil {
		return nil, ErrNilPool
	}
	c, err := n.Pool.GetContext(ctx)
	if err != nil {
		return nil, err
	}
	return &redigoConn{c: c}, nil
}

// Release gives the connection back to the redigo pool. redigo reuses
// whatever is closed without an error, so an unclean connection is first
// broken: a read with an expired deadline makes redigo mark it failed and
// drop it.
//
// A connection that was sent CLIENT REPLY OFF or SKIP is broken too, clean
// or not: redigo counts a reply owed for every command sent, and its Close
// waits for all of them, which Redis never sends for the skipped ones.
func (r *redigoConn) Release(clean bool) {
	c := r.c
	if !clean || r.skipped {
		for i := 0; c.Err() == nil && i < 1000; i++ {
			redis.ReceiveWithTimeout(c, time.Nanosecond)
		}
	}
	c.Close()
}

func (n RedigoNode) Close() error { return nil }

// Stats are what a redigo pool counts: its connections open, idle and in
// use, and its waits. Timeouts and discarded connections it does not count.
func (n RedigoNode) Stats() Stats {
	if n.Pool == nil {
		return Stats{}
	}
	st := n.Pool.Stats()
	return Stats{Total: st.ActiveCount, Idle: st.IdleCount, InUse: st.ActiveCount - st.IdleCount,
		Waits: st.WaitCount, WaitTime: st.WaitDuration}
}

// Addr names the redigo pool, whose address is not known.
func (r *redigoConn) Addr() string { return RedigoNode{}.Addr() }

type redigoConn struct {
	c       redis.Conn
	args    []any // scratch for Send
	skipped bool  // sent CLIENT REPLY OFF or SKIP: redigo expects replies that never come

	mu sync.Mutex // guards the fields below: the writer and the reader both use them
	// armed, when set, holds the next Receive until it is closed (by
	// ArmReadDeadline, its timeout armedFor) or the connection aborted.
	armed    chan struct{}
	armedFor time.Duration
	aborted  chan struct{} // closed by Abort
}

func (r *redigoConn) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		var err error
		var name string
		name, r.args, rest, err = parseCommand(rest, r.args[:0])
		if err != nil {
			return 0, err
		}
		if len(r.args) == 2 && strings.EqualFold(name, "CLIENT") && strings.EqualFold(string(r.args[0].([]byte)), "REPLY") &&
			!strings.EqualFold(string(r.args[1].([]byte)), "ON") {
			r.skipped = true
		}
		if err := r.c.Send(name, r.args...); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (r *redigoConn) Flush() error { return r.c.Flush() }

func (r *redigoConn) Receive(timeout time.Duration) (any, error) {
	r.mu.Lock()
	armed, aborted := r.armed, r.abortedLocked()
	r.mu.Unlock()
	if armed != nil {
		select {
		case <-armed:
		case <-aborted:
		}
		r.mu.Lock()
		r.armed, timeout = nil, r.armedFor
		r.mu.Unlock()
	}
	select {
	case <-aborted:
		return nil, errAborted
	default:
	}
	var reply any
	var err error
	switch {
	case timeout == 0: // the pool's own read timeout
		reply, err = r.c.Receive()
	default: // a negative timeout is none, which redigo spells 0
		reply, err = redis.ReceiveWithTimeout(r.c, max(timeout, 0))
	}
	if e, ok := err.(redis.Error); ok {
		return e, nil
	}
	return reply, err
}

// Abort cannot interrupt a redigo connection's read under way; the reads
// after it fail at once, and Release breaks the connection.
func (r *redigoConn) Abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.abortedLocked():
	default:
		close(r.aborted)
	}
}

func (r *redigoConn) abortedLocked() chan struct{} {
	if r.aborted == nil {
		r.aborted = make(chan struct{})
	}
	return r.aborted
}

// WaitForArm holds the next Receive until ArmReadDeadline (see
// batch.armWaiter): redigo sets a read's deadline as it starts.
func (r *redigoConn) WaitForArm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = make(chan struct{})
}

// ArmReadDeadline lets the held Receive start, bounded by timeout (0: the
// pool's read timeout).
func (r *redigoConn) ArmReadDeadline(timeout time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed != nil {
		r.armedFor = timeout
		close(r.armed)
		r.armed = nil
	}
}

// FlushPending hands the server what Send buffered (see batch.sendBuffer).
func (r *redigoConn) FlushPending() { _ = r.c.Flush() }

var errBadRESP = errors.New("malformed encoded command")

// parseCommand reads one RESP array of bulk strings from p: the command name
// and its arguments (appended to args as []byte).
func parseCommand(p []byte, args []any) (name string, _ []any, rest []byte, err error) {
	n, p, err := parseHeader(p, '*')
	if err != nil || n < 1 {
		return "", args, nil, errBadRESP
	}
	for i := 0; i < n; i++ {
		var size int
		if size, p, err = parseHeader(p, '$'); err != nil || len(p) < size+2 {
			return "", args, nil, errBadRESP
		}
		if i == 0 {
			name = string(p[:size])
		} else {
			args = append(args, p[:size:size])
		}
		p = p[size+2:]
	}
	return name, args, p, nil
}

func parseHeader(p []byte, kind byte) (int, []byte, error) {
	if len(p) < 4 || p[0] != kind {
		return 0, nil, errBadRESP
	}
	for i := 1; i+1 < len(p); i++ {
		if p[i] == '\r' {
			n, err := strconv.Atoi(string(p[1:i]))
			if err != nil {
				return 0, nil, fmt.Errorf("%w: %v", errBadRESP, err)
			}
			return n, p[i+2:], nil
		}
	}
	return 0, nil, errBadRESP
}
