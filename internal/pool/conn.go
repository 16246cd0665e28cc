// Package pool dials Redis connections, keeps them per node, and hands them
// to batches. A connection goes back to its pool only when clean.
package pool

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/rbatch/rbatch/internal/resp"
)

// writeBufferSize is the connection's write buffer: commands smaller than this
// are gathered into one write; larger spans go to the socket directly.
const writeBufferSize = 64 << 10

// Conn is one connection to a node. Its writer side (Write, Flush) and reader
// side (Receive) may each be used by one goroutine at a time, concurrently;
// Abort may be called from anywhere.
type Conn struct {
	nc           net.Conn
	bw           *bufio.Writer
	rr           *resp.Reader
	readTimeout  time.Duration
	writeTimeout time.Duration

	// The reader's deadline is armed by a Receive's first read from the
	// socket (replies already buffered need none), and then only when a
	// good part of it has passed: a socket read returns thousands of small
	// replies, and setting a deadline costs more than reading one. Later
	// reads of the same Receive keep the deadline, so a reply that trickles
	// in is bounded as a whole. Used by the reader goroutine only.
	timeout  time.Duration // the bound asked for by the Receive under way
	arm      bool          // the Receive under way has not read the socket yet
	armedAt  time.Time
	armedFor time.Duration
	// writeArmedAt is when the write deadline was last set: it is set as
	// bytes go to the socket (not as they go into the buffer), again only
	// once an eighth of the write timeout passed. Used by the writer only.
	writeArmedAt time.Time
	// written counts the bytes the socket took: a batch that failed
	// before its first byte went out reached no server. Writer only.
	written atomic.Int64
	read    atomic.Int64 // bytes taken from the socket
	idle    *idleCheck   // looks at the socket while the connection is idle
	tw      *tryWriter   // writes without waiting for room in the socket
	home    *Pool        // the pool it was taken from (nil: dialed outside one)
	shared  bool         // taken by GetShared: counted as Shared while out
	// readOnly: READONLY was sent (a cluster replica's reads), and not
	// READWRITE after it (Pool.fitRole).
	readOnly bool
	addr     string // as dialed

	abortOnce sync.Once
	aborted   chan struct{}
}

var _ Lease = (*Conn)(nil)

func newConn(nc net.Conn, readTimeout, writeTimeout time.Duration) *Conn {
	c := &Conn{
		nc:           nc,
		readTimeout:  readTimeout,
		writeTimeout: writeTimeout,
		aborted:      make(chan struct{}),
		idle:         newIdleCheck(nc),
		tw:           newTryWriter(nc),
	}
	c.rr = resp.NewReader(socketReader{c}, 0)
	c.bw = bufio.NewWriterSize(socketWriter{c}, writeBufferSize)
	return c
}

// Write buffers p, sending it when the buffer fills. Each write to the
// socket is bounded by the write timeout (to within an eighth of it).
func (c *Conn) Write(p []byte) (int, error) { return c.bw.Write(p) }

// Flush sends what is buffered.
func (c *Conn) Flush() error { return c.bw.Flush() }

// TryWrite hands p to the socket without waiting for room in it: n is
// what the socket took, less than len(p) when it filled. ok is false when
// the connection cannot be written that way (TLS) or has bytes buffered
// by Write: then nothing was written. Writer side.
func (c *Conn) TryWrite(p []byte) (n int, ok bool, err error) {
	if c.bw.Buffered() > 0 {
		return 0, false, nil
	}
	// Such a write never waits, but the socket refuses any write once its
	// deadline has passed: keep it ahead, as a plain write does.
	c.armWriteDeadline()
	n, ok, err = c.tw.write(p)
	c.written.Add(int64(n))
	if err != nil {
		err = fmt.Errorf("write %s: %w", c.addr, err)
	}
	return n, ok, err
}

// Receive reads the next reply; an error reply comes back as a redis.Error
// value. A reply that takes longer than timeout (the connection's read
// timeout when 0; none when negative) fails the connection; the bound is
// kept to within an eighth of it, as the deadline is re-armed only after
// that much passed. After an error the connection is closed: the replies
// it may still bring would answer the wrong commands.
func (c *Conn) Receive(timeout time.Duration) (any, error) {
	if timeout == 0 {
		timeout = c.readTimeout
	}
	c.timeout, c.arm = timeout, true
	reply, err := c.rr.Read()
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && c.home != nil && !c.Aborted() {
			c.home.timeouts.Add(1)
		}
		c.Abort()
	}
	return reply, err
}

func (c *Conn) armReadDeadline(timeout time.Duration) {
	if timeout <= 0 {
		if c.armedFor != 0 {
			c.nc.SetReadDeadline(time.Time{})
			c.armedFor = 0
		}
		return
	}
	now := time.Now()
	if timeout != c.armedFor || now.Sub(c.armedAt) > timeout/8 {
		c.nc.SetReadDeadline(now.Add(timeout))
		c.armedAt, c.armedFor = now, timeout
	}
}

// HoldReadDeadline removes the read deadline: a Receive with a timeout arms
// its own, one without (negative) waits until ArmReadDeadline. Reader side.
func (c *Conn) HoldReadDeadline() {
	c.nc.SetReadDeadline(time.Time{})
	c.armedFor = 0
}

// AwaitReply waits, with no deadline, until the socket brings a byte (or
// fails), taking nothing: a shared connection's reader idles there, so it
// sees at once a server that closes the connection, and wakes only once
// for a reply. A writer bounds the wait with ArmReadDeadline once it wrote
// what the reply answers. Reader side.
func (c *Conn) AwaitReply() error {
	c.arm = false
	err := c.rr.Await()
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && c.home != nil && !c.Aborted() {
			c.home.timeouts.Add(1)
		}
		c.Abort()
	}
	return err
}

// ArmReadDeadline bounds the read under way (or the next) by timeout from
// now (0: the read timeout). The writer calls it once it wrote everything
// a held reader waits on; it touches only the socket, so it is safe while
// a Receive runs.
func (c *Conn) ArmReadDeadline(timeout time.Duration) {
	if timeout == 0 {
		timeout = c.readTimeout
	}
	if timeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(timeout))
	}
}

// Do runs one command and waits for its reply (no batch may be using the
// connection), bounded by the read timeout.
// An error reply is returned as both the reply and the error.
func (c *Conn) Do(cmd string, args ...any) (any, error) {
	p, err := resp.AppendCommand(nil, nil, cmd, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	if _, err := c.Write(p); err != nil {
		c.Abort()
		return nil, err
	}
	if err := c.Flush(); err != nil {
		c.Abort()
		return nil, err
	}
	reply, err := c.Receive(c.readTimeout)
	if e, ok := reply.(redis.Error); ok && err == nil {
		err = e
	}
	return reply, err
}

// socketReader is the socket as the reply reader sees it: a Receive's
// first read from the socket arms the Conn's read deadline.
type socketReader struct{ c *Conn }

func (s socketReader) Read(p []byte) (int, error) {
	if s.c.arm {
		s.c.arm = false
		s.c.armReadDeadline(s.c.timeout)
	}
	n, err := s.c.nc.Read(p)
	s.c.read.Add(int64(n))
	return n, err
}

// socketWriter is the socket as the write buffer sees it: each write to the
// socket is bounded by the write timeout.
type socketWriter struct{ c *Conn }

func (s socketWriter) Write(p []byte) (int, error) {
	c := s.c
	c.armWriteDeadline()
	n, err := c.nc.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// armWriteDeadline bounds the socket's writes by the write timeout from
// now, once an eighth of it passed since it was last set. Writer side.
func (c *Conn) armWriteDeadline() {
	if c.writeTimeout > 0 {
		if now := time.Now(); now.Sub(c.writeArmedAt) > c.writeTimeout/8 {
			c.nc.SetWriteDeadline(now.Add(c.writeTimeout))
			c.writeArmedAt = now
		}
	}
}

// Written returns how many bytes the socket has taken so far. When a batch
// fails with this unchanged since it started, none of it reached Redis.
func (c *Conn) Written() int64 { return c.written.Load() }

// Consumed returns how many bytes of replies were read so far (those taken
// from the socket less those still buffered). Reader side.
func (c *Conn) Consumed() int64 { return c.read.Load() - int64(c.rr.Buffered()) }

// BytesRead returns how many bytes were read from the socket so far.
func (c *Conn) BytesRead() int64 { return c.read.Load() }

// check reports why an idle connection cannot be used, or nil: it was
// aborted, holds buffered bytes, or its socket shows the server closed it
// (or sent something unasked).
func (c *Conn) check() error {
	switch {
	case c.Aborted():
		return errAborted
	case c.rr.Buffered() > 0 || c.bw.Buffered() > 0:
		return errUnexpectedBytes
	}
	return c.idle.check()
}

// Alive reports why a connection held outside the pool (a shared one)
// with nothing in flight cannot be written to, or nil: it was aborted, or
// its socket shows the server closed it or sent something unasked. It is
// safe while the connection's reader waits at the socket (it takes
// nothing from it), not while another goroutine writes.
func (c *Conn) Alive() error {
	if c.Aborted() {
		return errAborted
	}
	return c.idle.check()
}

var (
	errAborted = errors.New("connection aborted")
	// errUnexpectedBytes says an idle connection holds bytes nobody asked
	// for: a late reply, or a server's goodbye such as "-ERR max idle time".
	errUnexpectedBytes = errors.New("idle connection holds unexpected bytes")
)

// Abort closes the socket: pending and later calls fail.
func (c *Conn) Abort() {
	c.abortOnce.Do(func() {
		close(c.aborted)
		c.nc.Close()
	})
}

// Aborted reports whether Abort was called.
func (c *Conn) Aborted() bool {
	select {
	case <-c.aborted:
		return true
	default:
		return false
	}
}

// Release gives the connection back to its pool (closing it when it is not
// clean, or was dialed outside a pool).
func (c *Conn) Release(clean bool) {
	if p := c.home; p != nil {
		c.home = nil
		p.put(c, clean)
		return
	}
	c.Close()
}

// Addr is the address the connection was dialed to.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connection.
func (c *Conn) Close() error {
	c.Abort()
	return nil
}
